//! Batch norm + activation as one autodiff node on burn's GPU backends.
//!
//! Written from burn's tensor operations, batch norm is a graph of about
//! thirty small nodes (statistics, per-channel vectors, broadcasts), and
//! autodiff derives a backward pass for each: on a GPU that is one kernel
//! launch per operation, most of them over a vector of a few hundred
//! channels. Here the forward pass runs on the inner backend, untracked, and
//! one node carries a backward pass derived by hand (the same as
//! `cpu::norm`'s): two per-channel sums and one element-wise sweep.
//!
//! The passes run as our own cubecl kernels ([`kernels`]): three launches
//! forward (the sums, the per-channel map with the running averages'
//! update, the normalisation), three backward. On burn's fused backend,
//! whose tensors our kernels cannot take, the same arithmetic runs from
//! burn's operations, which it fuses.
//!
//! Served: burn-cuda (`cuda` feature) and burn-wgpu (`wgpu` feature, which
//! tests it on lavapipe), with or without burn's fusion; other backends keep
//! `norm`'s composed operations.

use std::any::TypeId;

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

use super::cpu::norm::Activation;
use super::running::updated;
use crate::gpu::cube::{cast, primitive, retype, tensor};

mod kernels;

/// What one batch-norm layer normalises with.
pub(super) struct NormInputs<B: Backend> {
    pub x: Tensor<B, 4>,
    pub gamma: Tensor<B, 1>,
    pub beta: Tensor<B, 1>,
    /// The running mean and variance.
    pub running: (Tensor<B, 1>, Tensor<B, 1>),
    /// Some(momentum): normalise with the batch's statistics (training) and
    /// move the running averages by `momentum`; None: normalise with the
    /// running averages.
    pub momentum: Option<f64>,
    pub epsilon: f64,
    /// Added after the affine map, before the activation (a residual
    /// block's shortcut); x's shape.
    pub shortcut: Option<Tensor<B, 4>>,
    pub activation: Activation,
}

/// The activated output, and the running averages after a training pass.
pub(super) type NormOutput<B> = (Tensor<B, 4>, Option<(Tensor<B, 1>, Tensor<B, 1>)>);

/// `inputs` normalised on a backend this module serves; `Err(inputs)`
/// unchanged on any other.
pub(super) fn batch_norm<B: Backend>(
    inputs: NormInputs<B>,
) -> Result<NormOutput<B>, NormInputs<B>> {
    #[cfg(feature = "cuda")]
    let inputs = match on::<burn::backend::Cuda, B>(inputs) {
        Ok(out) => return Ok(out),
        Err(inputs) => inputs,
    };
    #[cfg(feature = "wgpu")]
    let inputs = match on::<burn::backend::Wgpu, B>(inputs) {
        Ok(out) => return Ok(out),
        Err(inputs) => inputs,
    };
    Err(inputs)
}

/// Whether [`batch_norm`] serves backend `B`.
pub(super) fn serves<B: Backend>() -> bool {
    let is = |i: TypeId| TypeId::of::<B>() == i;
    #[cfg(feature = "cuda")]
    {
        use burn::backend::Cuda;
        if is(TypeId::of::<Cuda>()) || is(TypeId::of::<Autodiff<Cuda>>()) {
            return true;
        }
    }
    #[cfg(feature = "wgpu")]
    {
        use burn::backend::Wgpu;
        if is(TypeId::of::<Wgpu>()) || is(TypeId::of::<Autodiff<Wgpu>>()) {
            return true;
        }
    }
    false
}

/// `Ok` when `B` is `I` (inference) or `Autodiff<I>` (training).
fn on<I: Backend, B: Backend>(inputs: NormInputs<B>) -> Result<NormOutput<B>, NormInputs<B>> {
    if TypeId::of::<B>() == TypeId::of::<I>() {
        let out = forward::<I>(NormInputs {
            x: retype(inputs.x),
            gamma: retype(inputs.gamma),
            beta: retype(inputs.beta),
            running: (retype(inputs.running.0), retype(inputs.running.1)),
            momentum: inputs.momentum,
            epsilon: inputs.epsilon,
            shortcut: inputs.shortcut.map(retype),
            activation: inputs.activation,
        });
        let running = out.running.map(|(m, v)| (retype(m), retype(v)));
        return Ok((retype(out.y), running));
    }
    if TypeId::of::<B>() == TypeId::of::<Autodiff<I>>() {
        return Ok(tracked::<I, B>(inputs));
    }
    Err(inputs)
}

/// What the backward pass needs of the forward one.
#[derive(Clone, Debug)]
struct Saved<I: Backend> {
    mean: FloatTensor<I>,
    inv_std: FloatTensor<I>,
    /// γ·inv_std: ∂y/∂x per channel before the activation.
    scale: FloatTensor<I>,
    /// The activated output: its sign is the pre-activation's.
    y: FloatTensor<I>,
    activation: Activation,
    batch_statistics: bool,
    x: NodeId,
}

/// What the forward pass computed.
struct Normalized<I: Backend> {
    y: Tensor<I, 4>,
    /// The mean and inv_std it normalised with, and scale = γ·inv_std.
    mean: Tensor<I, 1>,
    inv_std: Tensor<I, 1>,
    scale: Tensor<I, 1>,
    /// The running averages after a training pass.
    running: Option<(Tensor<I, 1>, Tensor<I, 1>)>,
}

/// The forward pass on `I`, untracked: `kernels`' three launches where the
/// backend's tensors are plain cubecl ones, else burn's operations.
fn forward<I: Backend>(inputs: NormInputs<I>) -> Normalized<I> {
    if let Some(out) = forward_by_kernels(&inputs) {
        return out;
    }
    let NormInputs {
        x,
        gamma,
        beta,
        running,
        momentum,
        epsilon,
        shortcut,
        activation,
    } = inputs;
    let [n, c, h, w] = x.dims();
    let (mean, var, running) = match momentum {
        None => (running.0, running.1, None),
        Some(momentum) => {
            let count = (n * h * w) as f64;
            let mean = per_channel_sum(x.clone()).div_scalar(count);
            let mean_sq = per_channel_sum(x.clone().square()).div_scalar(count);
            let var = (mean_sq - mean.clone().square()).clamp_min(0.0);
            let moved = updated(running, (mean.clone(), var.clone()), count, momentum);
            (mean, var, Some(moved))
        }
    };
    let inv_std = var.add_scalar(epsilon).sqrt().recip();
    let scale = gamma * inv_std.clone();
    let shift = beta - mean.clone() * scale.clone();
    let z = x * scale.clone().reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1]);
    let z = match shortcut {
        Some(shortcut) => z + shortcut,
        None => z,
    };
    let y = match activation {
        Activation::Identity => z,
        Activation::Relu => burn::tensor::activation::relu(z),
        Activation::LeakyRelu(slope) => burn::tensor::activation::leaky_relu(z, f64::from(slope)),
    };
    Normalized {
        y,
        mean,
        inv_std,
        scale,
        running,
    }
}

fn forward_by_kernels<I: Backend>(inputs: &NormInputs<I>) -> Option<Normalized<I>> {
    let statistics = match inputs.momentum {
        Some(momentum) => kernels::Statistics::Batch {
            x: &inputs.x,
            momentum,
        },
        None => kernels::Statistics::Running,
    };
    let running = (&inputs.running.0, &inputs.running.1);
    let map = kernels::affine(
        statistics,
        &inputs.gamma,
        &inputs.beta,
        running,
        inputs.epsilon,
    )?;
    let y = kernels::normalize(
        &inputs.x,
        &map.scale,
        &map.shift,
        inputs.shortcut.as_ref(),
        inputs.activation,
    )?;
    Some(Normalized {
        y,
        mean: map.mean,
        inv_std: map.inv_std,
        scale: map.scale,
        running: inputs.momentum.map(|_| map.running),
    })
}

/// Σ over batch and pixels, per channel, from contiguous reductions.
fn per_channel_sum<I: Backend>(t: Tensor<I, 4>) -> Tensor<I, 1> {
    let [n, c, h, w] = t.dims();
    t.reshape([n, c, h * w]).sum_dim(2).sum_dim(0).reshape([c])
}

/// The forward pass as one node of `Autodiff<I>` (= `B`).
fn tracked<I: Backend, B: Backend>(inputs: NormInputs<B>) -> NormOutput<B> {
    type Tracked<I> = FloatTensor<Autodiff<I>>;
    let untracked = |t: Tracked<I>| t.primitive;
    let x: Tracked<I> = cast(primitive(inputs.x));
    let gamma: Tracked<I> = cast(primitive(inputs.gamma));
    let beta: Tracked<I> = cast(primitive(inputs.beta));
    let inner = |t: Tensor<B, 1>| {
        let t: Tracked<I> = cast(primitive(t));
        tensor::<I, 1>(untracked(t))
    };
    let running = (inner(inputs.running.0), inner(inputs.running.1));
    let batch_statistics = inputs.momentum.is_some();
    let shortcut: Option<Tracked<I>> = inputs.shortcut.map(|t| cast(primitive(t)));
    let out = forward(NormInputs {
        x: tensor::<I, 4>(x.primitive.clone()),
        gamma: tensor(gamma.primitive.clone()),
        beta: tensor(beta.primitive.clone()),
        running,
        momentum: inputs.momentum,
        epsilon: inputs.epsilon,
        shortcut: shortcut
            .as_ref()
            .map(|t| tensor::<I, 4>(t.primitive.clone())),
        activation: inputs.activation,
    });
    let y = primitive(out.y.clone());
    let saved = |x: NodeId| Saved {
        mean: primitive(out.mean),
        scale: primitive(out.scale),
        inv_std: primitive(out.inv_std),
        y: primitive(out.y),
        activation: inputs.activation,
        batch_statistics,
        x,
    };
    let [x_node, gamma_node, beta_node] = [&x, &gamma, &beta].map(|t| t.node.clone());
    let y: Tracked<I> = match shortcut {
        None => record(
            NormBackward
                .prepare::<NoCheckpointing>([x_node, gamma_node, beta_node])
                .compute_bound()
                .stateful(),
            &x,
            y,
            saved,
        ),
        Some(shortcut) => record(
            NormBackward
                .prepare::<NoCheckpointing>([x_node, gamma_node, beta_node, shortcut.node])
                .compute_bound()
                .stateful(),
            &x,
            y,
            saved,
        ),
    };
    // The running averages are state, not part of the graph: untracked.
    let as_b = |t: Tensor<I, 1>| retype::<Autodiff<I>, B, 1>(Tensor::from_inner(t));
    let y = Tensor::from_primitive(TensorPrimitive::Float(cast(y)));
    (y, out.running.map(|(m, v)| (as_b(m), as_b(v))))
}

/// The node's output `y`, with the state `saved` builds from x's
/// checkpoint when the graph needs a backward pass.
fn record<I: Backend, const N: usize>(
    kind: OpsKind<NormBackward, I, Saved<I>, NoCheckpointing, N>,
    x: &FloatTensor<Autodiff<I>>,
    y: FloatTensor<I>,
    saved: impl FnOnce(NodeId) -> Saved<I>,
) -> FloatTensor<Autodiff<I>>
where
    NormBackward: Backward<I, N, State = Saved<I>>,
{
    match kind {
        OpsKind::Tracked(mut prep) => {
            let x = prep.checkpoint(x);
            prep.finish(saved(x), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// The backward pass of a node with parents x, γ, β and, when a shortcut
/// was joined, the shortcut (N = 4).
#[derive(Debug)]
struct NormBackward;

impl<I: Backend, const N: usize> Backward<I, N> for NormBackward {
    type State = Saved<I>;

    fn backward(
        self,
        ops: Ops<Saved<I>, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let mut parents = ops.parents.into_iter();
        let mut parent = || parents.next().flatten();
        let [node_x, node_gamma, node_beta, node_shortcut] = [(); 4].map(|_| parent());
        let saved = ops.state;
        let dy = tensor::<I, 4>(grads.consume::<I>(&ops.node));
        let x = tensor::<I, 4>(checkpointer.retrieve_node_output::<FloatTensor<I>>(saved.x));
        let [mean, inv_std, scale] = [saved.mean, saved.inv_std, saved.scale].map(tensor::<I, 1>);
        let y = tensor::<I, 4>(saved.y);
        let wanted = kernels::Wanted {
            input: node_x.is_some(),
            parameters: node_gamma.is_some() || node_beta.is_some(),
            shortcut: node_shortcut.is_some(),
            // The batch statistics depend on x too (Ioffe & Szegedy, 2015).
            batch_statistics: saved.batch_statistics,
        };
        let inputs = kernels::BackwardInputs {
            dy: &dy,
            y: &y,
            x: &x,
            mean: &mean,
            inv_std: &inv_std,
            scale: &scale,
            activation: saved.activation,
        };
        let kernels::Gradients {
            input,
            parameters,
            shortcut,
        } = kernels::backward(inputs, wanted).unwrap_or_else(|| composed_backward(inputs, wanted));
        if let (Some(node), Some(dx)) = (node_x, input) {
            grads.register::<I>(node.id, primitive(dx));
        }
        if let (Some(node), Some(d_shortcut)) = (node_shortcut, shortcut) {
            grads.register::<I>(node.id, primitive(d_shortcut));
        }
        if let Some((d_gamma, d_beta)) = parameters {
            if let Some(node) = node_gamma {
                grads.register::<I>(node.id, primitive(d_gamma));
            }
            if let Some(node) = node_beta {
                grads.register::<I>(node.id, primitive(d_beta));
            }
        }
    }
}

/// [`kernels::backward`] from burn's operations.
fn composed_backward<I: Backend>(
    inputs: kernels::BackwardInputs<'_, I>,
    wanted: kernels::Wanted,
) -> kernels::Gradients<I> {
    let [n, _, h, w] = inputs.x.dims();
    let (dz, dz_x_hat) = sweep(
        inputs.dy.clone(),
        inputs.y.clone(),
        inputs.x,
        inputs.mean,
        inputs.inv_std,
        inputs.activation,
    );
    let parameters = (wanted.parameters || wanted.batch_statistics)
        .then(|| (per_channel_sum(dz_x_hat), per_channel_sum(dz.clone())));
    let shortcut = wanted.shortcut.then(|| dz.clone());
    let input = wanted.input.then(|| {
        let count = wanted.batch_statistics.then_some((n * h * w) as f64);
        let sums = parameters.clone().filter(|_| count.is_some());
        input_gradient(
            dz,
            inputs.x.clone(),
            inputs.mean.clone(),
            inputs.inv_std.clone(),
            inputs.scale.clone(),
            sums,
            count,
        )
    });
    kernels::Gradients {
        input,
        parameters,
        shortcut,
    }
}

/// The backward sweep from burn's operations: (dz, dz·x̂), where
/// dz is ∂L/∂z through the activation (z > 0 exactly where y > 0).
fn sweep<I: Backend>(
    dy: Tensor<I, 4>,
    y: Tensor<I, 4>,
    x: &Tensor<I, 4>,
    mean: &Tensor<I, 1>,
    inv_std: &Tensor<I, 1>,
    activation: Activation,
) -> (Tensor<I, 4>, Tensor<I, 4>) {
    let c = mean.dims()[0];
    let dz = match activation {
        Activation::Identity => dy,
        Activation::Relu => dy.mask_fill(y.lower_equal_elem(0.0), 0.0),
        Activation::LeakyRelu(slope) => {
            let off = y.lower_equal_elem(0.0);
            dy.clone().mask_where(off, dy.mul_scalar(slope))
        }
    };
    let x_hat =
        (x.clone() - mean.clone().reshape([1, c, 1, 1])) * inv_std.clone().reshape([1, c, 1, 1]);
    let dz_x_hat = dz.clone() * x_hat;
    (dz, dz_x_hat)
}

/// ∂L/∂x from dz: scale·(dz − (x̂·Σdz·x̂ + Σdz)/count) with batch
/// statistics (`sums` = (Σdz·x̂, Σdz) over `count` values), else scale·dz.
fn input_gradient<I: Backend>(
    dz: Tensor<I, 4>,
    x: Tensor<I, 4>,
    mean: Tensor<I, 1>,
    inv_std: Tensor<I, 1>,
    scale: Tensor<I, 1>,
    sums: Option<(Tensor<I, 1>, Tensor<I, 1>)>,
    count: Option<f64>,
) -> Tensor<I, 4> {
    let c = mean.dims()[0];
    let channel = |t: Tensor<I, 1>| t.reshape([1, c, 1, 1]);
    let dz = match (sums, count) {
        (Some((d_gamma, d_beta)), Some(count)) => {
            let x_hat = (x - channel(mean)) * channel(inv_std);
            let mean_term = (x_hat * channel(d_gamma) + channel(d_beta)).div_scalar(count);
            dz - mean_term
        }
        _ => dz,
    };
    dz * channel(scale)
}
