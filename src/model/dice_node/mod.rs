//! Eq. 2 per slice from logits as one autodiff node on burn's GPU backends.
//!
//! From burn's operations the loss is a softmax and a dozen broadcasting
//! reductions and element-wise steps, and autodiff adds a backward kernel
//! for each: about fifty launches per training step, and again in each
//! gradient-guided step (Eq. 3's ∂Dice/∂x). Here the forward pass runs
//! on the inner backend, untracked, as two kernels ([`kernels`]), and one
//! node carries the hand-derived backward pass as one kernel (the same
//! derivation as `cpu::dice`'s).
//!
//! Served: plain f32 tensors of burn-cuda and burn-wgpu, with or without
//! autodiff, unless burn's kernels were asked for; anything else (burn's
//! fused backend, other dtypes) keeps burn's operations.

use std::any::TypeId;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;

use crate::gpu::cube::{cast, primitive, retype, tensor};

mod kernels;

/// `(logits, targets)`, handed back where this module does not serve them.
pub(super) type Unserved<B> = (Tensor<B, 4>, Tensor<B, 4>);

/// Per-slice losses [n] of `logits` against `targets` ([n, K, h, w]), or
/// the inputs back, unchanged, on a backend or dtype this does not serve.
pub(super) fn dice_per_slice<B: Backend>(
    logits: Tensor<B, 4>,
    targets: Tensor<B, 4>,
    smoothing: f32,
) -> Result<Tensor<B, 1>, Unserved<B>> {
    if super::cpu::burn_kernels_requested() {
        return Err((logits, targets));
    }
    #[cfg(feature = "cuda")]
    let (logits, targets) = match on::<burn::backend::Cuda, B>(logits, targets, smoothing) {
        Ok(losses) => return Ok(losses),
        Err(inputs) => inputs,
    };
    #[cfg(feature = "wgpu")]
    let (logits, targets) = match on::<burn::backend::Wgpu, B>(logits, targets, smoothing) {
        Ok(losses) => return Ok(losses),
        Err(inputs) => inputs,
    };
    Err((logits, targets))
}

/// `Ok` when `B` is `I` (untracked) or `Autodiff<I>` (tracked) and the
/// kernels take the tensors.
fn on<I: Backend, B: Backend>(
    logits: Tensor<B, 4>,
    targets: Tensor<B, 4>,
    smoothing: f32,
) -> Result<Tensor<B, 1>, Unserved<B>> {
    if TypeId::of::<B>() == TypeId::of::<I>() {
        let (z, y): (Tensor<I, 4>, Tensor<I, 4>) =
            (retype(logits.clone()), retype(targets.clone()));
        return match kernels::forward(&z, &y, smoothing) {
            Some(out) => Ok(retype(out.losses)),
            None => Err((logits, targets)),
        };
    }
    if TypeId::of::<B>() == TypeId::of::<Autodiff<I>>() {
        return tracked::<I, B>(logits, targets, smoothing);
    }
    Err((logits, targets))
}

/// What the backward pass needs of the forward one.
#[derive(Clone, Debug)]
struct Saved<I: Backend> {
    logits: FloatTensor<I>,
    targets: FloatTensor<I>,
    /// (N_k, D_k) of each slice and class, [2·n·K].
    terms: FloatTensor<I>,
}

/// The forward pass as one node of `Autodiff<I>` (= `B`).
fn tracked<I: Backend, B: Backend>(
    logits: Tensor<B, 4>,
    targets: Tensor<B, 4>,
    smoothing: f32,
) -> Result<Tensor<B, 1>, Unserved<B>> {
    type Tracked<I> = FloatTensor<Autodiff<I>>;
    let z: Tracked<I> = cast(primitive(logits.clone()));
    let y: Tracked<I> = cast(primitive(targets.clone()));
    let (z_inner, y_inner) = (
        tensor::<I, 4>(z.primitive.clone()),
        tensor::<I, 4>(y.primitive.clone()),
    );
    let Some(out) = kernels::forward(&z_inner, &y_inner, smoothing) else {
        return Err((logits, targets));
    };
    let losses: Tracked<I> = match DiceBackward
        .prepare::<NoCheckpointing>([z.node.clone(), y.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let saved = Saved {
                logits: z.primitive.clone(),
                targets: y.primitive.clone(),
                terms: primitive(out.terms),
            };
            prep.finish(saved, primitive(out.losses))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(out.losses)),
    };
    Ok(Tensor::from_primitive(TensorPrimitive::Float(cast(losses))))
}

#[derive(Debug)]
struct DiceBackward;

impl<I: Backend> Backward<I, 2> for DiceBackward {
    type State = Saved<I>;

    fn backward(
        self,
        ops: Ops<Saved<I>, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_logits, node_targets] = ops.parents;
        let saved = ops.state;
        let up = tensor::<I, 1>(grads.consume::<I>(&ops.node));
        let (logits, targets) = (tensor::<I, 4>(saved.logits), tensor::<I, 4>(saved.targets));
        let terms = tensor::<I, 1>(saved.terms);
        let inputs = kernels::BackwardInputs {
            logits: &logits,
            targets: &targets,
            terms: &terms,
            up: &up,
        };
        let wants_targets = node_targets.is_some();
        let (d_logits, d_targets) = kernels::backward(inputs, wants_targets)
            .unwrap_or_else(|| composed_backward(inputs, wants_targets));
        if let Some(node) = node_logits {
            grads.register::<I>(node.id, primitive(d_logits));
        }
        if let (Some(node), Some(d_targets)) = (node_targets, d_targets) {
            grads.register::<I>(node.id, primitive(d_targets));
        }
    }
}

/// [`kernels::backward`] from burn's operations (where the saved tensors
/// are not ones the kernels take, which the forward pass already checked).
fn composed_backward<I: Backend>(
    inputs: kernels::BackwardInputs<'_, I>,
    wants_targets: bool,
) -> (Tensor<I, 4>, Option<Tensor<I, 4>>) {
    let [n, k, _, _] = inputs.logits.dims();
    let terms = inputs.terms.clone().reshape([n, k, 2, 1]);
    let slice = |i: usize| terms.clone().narrow(2, i, 1).reshape([n, k, 1, 1]);
    let (numerator, denominator) = (slice(0), slice(1));
    let scale = inputs
        .up
        .clone()
        .reshape([n, 1, 1, 1])
        .mul_scalar(-1.0 / k as f64);
    let p = softmax(inputs.logits.clone(), 1);
    let y = inputs.targets.clone();
    // ∂L/∂a = scale·(2b/D − 2N·a/D²) for (a, b) = (ŷ, y) or (y, ŷ).
    let partial = |a: Tensor<I, 4>, b: Tensor<I, 4>| {
        (b.mul_scalar(2.0) / denominator.clone()
            - a.mul_scalar(2.0) * numerator.clone() / denominator.clone().square())
            * scale.clone()
    };
    let g = partial(p.clone(), y.clone());
    let weighted = (g.clone() * p.clone()).sum_dim(1);
    let d_logits = p.clone() * (g - weighted);
    (d_logits, wants_targets.then(|| partial(y, p)))
}
