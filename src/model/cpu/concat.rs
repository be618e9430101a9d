//! Channel concatenation of two feature maps (the U-Net's skip joins) whose
//! backward hands each input a contiguous gradient. burn's cat backward
//! gives narrowed views of the output gradient; the encoder features also
//! get a gradient from the pooling below them, and burn-flex adds a view to
//! a contiguous tensor one strided element at a time (9 % of a demo-width
//! U-Net training step).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use super::{Route, Tracked, from_primitive, route, to_tracked};

/// `Tensor::cat(vec![a, b], 1)` for [n, c, h, w] tensors.
pub fn cat_channels<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    match route(&a) {
        Some(Route::AutodiffFlex) => from_primitive(track(to_tracked(a), to_tracked(b))),
        // Forward only: burn's cat is already a run of copies.
        _ => Tensor::cat(vec![a, b], 1),
    }
}

/// Per-image copies of `a` then `b` along channels.
fn join(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a, b) = (a.to_contiguous(), b.to_contiguous());
    let [n, ca, h, w]: [usize; 4] = a.layout().shape().dims();
    let cb = b.layout().shape().dims::<4>()[1];
    let (xa, xb) = (a.storage::<f32>(), b.storage::<f32>());
    let (la, lb) = (ca * h * w, cb * h * w);
    let mut out = Vec::with_capacity(n * (la + lb));
    for i in 0..n {
        out.extend_from_slice(&xa[i * la..(i + 1) * la]);
        out.extend_from_slice(&xb[i * lb..(i + 1) * lb]);
    }
    FlexTensor::from_data(TensorData::new(out, [n, ca + cb, h, w]))
}

/// The output gradient's first `ca` channels and the rest, each contiguous.
fn split(dy: &FlexTensor, ca: usize) -> (FlexTensor, FlexTensor) {
    let dy = dy.to_contiguous();
    let [n, c, h, w]: [usize; 4] = dy.layout().shape().dims();
    let cb = c - ca;
    let values = dy.storage::<f32>();
    let (la, lb) = (ca * h * w, cb * h * w);
    let (mut da, mut db) = (Vec::with_capacity(n * la), Vec::with_capacity(n * lb));
    for image in values.chunks_exact((la + lb).max(1)).take(n) {
        da.extend_from_slice(&image[..la]);
        db.extend_from_slice(&image[la..]);
    }
    (
        FlexTensor::from_data(TensorData::new(da, [n, ca, h, w])),
        FlexTensor::from_data(TensorData::new(db, [n, cb, h, w])),
    )
}

#[derive(Debug)]
struct ConcatBackward;

impl Backward<Flex, 2> for ConcatBackward {
    /// Channels of the first input.
    type State = usize;

    fn backward(self, ops: Ops<usize, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (da, db) = split(&dy, ops.state);
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, da);
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, db);
        }
    }
}

fn track(a: Tracked, b: Tracked) -> Tracked {
    let ca = a.primitive.layout().shape().dims::<4>()[1];
    let joined = join(&a.primitive, &b.primitive);
    match ConcatBackward
        .prepare::<NoCheckpointing>([a.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(ca, joined),
        OpsKind::UnTracked(prep) => prep.finish(joined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;

    type Ad = Autodiff<Flex>;

    #[test]
    fn concatenation_matches_burn_forward_and_backward() {
        let device = Default::default();
        let a = Tensor::<Ad, 4>::random([3, 2, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<Ad, 4>::random([3, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
            let y = if ours {
                cat_channels(a.clone(), b.clone())
            } else {
                Tensor::cat(vec![a.clone(), b.clone()], 1)
            };
            let r = Tensor::<Ad, 1, Int>::arange(0..3 * 5 * 4 * 5, &device)
                .float()
                .sin()
                .reshape([3, 5, 4, 5]);
            let grads = (y.clone() * r).sum().backward();
            [
                y.inner().into_data(),
                a.grad(&grads).unwrap().into_data(),
                b.grad(&grads).unwrap().into_data(),
            ]
        };
        assert_eq!(run(true), run(false));
    }
}
