//! The convolutions as one autodiff node each on `Autodiff<Flex>`, whose
//! backward runs our kernels. burn's generic backward would compute the data
//! gradient with Flex's direct-loop transposed convolution and the weight
//! gradient as a convolution whose kernel is the whole output-gradient image
//! (after a strided copy) — together about a fifth of a U-Net training step.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

use super::super::Tracked;
use super::flex_ops::{self, ConvKind};
use super::geometry::ConvGeometry;

/// What the backward pass needs: the layer, its geometry, and the saved
/// input and weight.
type State = (ConvKind, ConvGeometry, NodeId, NodeId);

#[derive(Debug)]
struct ConvWithBias;

#[derive(Debug)]
struct ConvNoBias;

/// Registers ∂L/∂x and ∂L/∂w for the parents that want them.
fn input_and_weight_grads(
    [x_id, weight_id]: [Option<NodeId>; 2],
    state: State,
    dy: &FlexTensor,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let (kind, geometry, x_state, weight_state) = state;
    let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
    let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
    if let Some(id) = x_id {
        grads.register::<Flex>(id, flex_ops::input_grad(kind, &geometry, &weight, dy));
    }
    if let Some(id) = weight_id {
        grads.register::<Flex>(id, flex_ops::weight_grad(kind, &geometry, &x, dy));
    }
}

impl Backward<Flex, 3> for ConvWithBias {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (kind, geometry, _, _) = ops.state;
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, flex_ops::bias_grad(kind, &geometry, &dy));
        }
        let ids = [node_x.map(|n| n.id), node_weight.map(|n| n.id)];
        input_and_weight_grads(ids, ops.state, &dy, grads, checkpointer);
    }
}

impl Backward<Flex, 2> for ConvNoBias {
    type State = State;

    fn backward(self, ops: Ops<State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [node_x, node_weight] = ops.parents;
        let ids = [node_x.map(|n| n.id), node_weight.map(|n| n.id)];
        input_and_weight_grads(ids, ops.state, &dy, grads, checkpointer);
    }
}

/// The layer's output as a tracked node of the autodiff graph.
pub fn forward(
    kind: ConvKind,
    geometry: ConvGeometry,
    x: Tracked,
    weight: Tracked,
    bias: Option<Tracked>,
) -> Tracked {
    let run = |x: &Tracked, w: &Tracked, b: Option<&Tracked>| {
        flex_ops::forward(
            kind,
            &geometry,
            &x.primitive,
            &w.primitive,
            b.map(|b| &b.primitive),
        )
    };
    match bias {
        Some(bias) => {
            let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
            match ConvWithBias
                .prepare::<NoCheckpointing>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let weight_state = prep.checkpoint(&weight);
                    let y = run(&x, &weight, Some(&bias));
                    prep.finish((kind, geometry, x_state, weight_state), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(run(&x, &weight, Some(&bias))),
            }
        }
        None => {
            let nodes = [x.node.clone(), weight.node.clone()];
            match ConvNoBias
                .prepare::<NoCheckpointing>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let weight_state = prep.checkpoint(&weight);
                    let y = run(&x, &weight, None);
                    prep.finish((kind, geometry, x_state, weight_state), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(run(&x, &weight, None)),
            }
        }
    }
}
