//! Batch norm + activation as one autodiff node on `Autodiff<Flex>`: the
//! backward pass is two sweeps over x and ∂L/∂y, where burn's graph of
//! broadcast ops took a dozen.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use super::super::Tracked;
use super::kernels::{self, Planes, Saved};

#[derive(Debug)]
struct NormBackward;

type State = (Planes, Saved, NodeId);

fn vector(values: Vec<f32>) -> FlexTensor {
    let n = values.len();
    FlexTensor::from_data(TensorData::new(values, [n]))
}

impl Backward<Flex, 3> for NormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (planes, saved, x_state) = ops.state;
        let x = checkpointer
            .retrieve_node_output::<FlexTensor>(x_state)
            .to_contiguous();
        let shape = x.layout().shape().clone();
        let affine = node_gamma.is_some() || node_beta.is_some();
        let g = kernels::backward(
            planes,
            x.storage::<f32>(),
            dy.storage::<f32>(),
            &saved,
            affine,
        );
        if let Some(node) = node_x {
            let dx = FlexTensor::from_data(TensorData::new(g.x, shape));
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, vector(g.gamma));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, vector(g.beta));
        }
    }
}

/// `y` (already computed from `x` with `saved`'s scale and shift) as a
/// tracked node whose parents are x, γ and β.
pub fn track(
    planes: Planes,
    saved: Saved,
    x: &Tracked,
    gamma: &Tracked,
    beta: &Tracked,
    y: FlexTensor,
) -> Tracked {
    let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    match NormBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(x);
            prep.finish((planes, saved, x_state), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
