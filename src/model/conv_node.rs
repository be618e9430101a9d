//! Convolutions steered to one kernel on burn's GPU backends, instead of
//! cubecl's autotuner (experimental: `NEXTSLICE_GPU_CONV=implicit-gemm`).
//!
//! burn-cubecl autotunes every convolution shape among all its candidates:
//! 8 for the forward pass, 6 for the data gradient, 7 for the weight
//! gradient, one of which tunes a nested convolution of its own. On an H200
//! each candidate is a kernel compiled on one CPU thread, and the first
//! training step at the paper's widths had not finished after 150 s
//! (docs/performance/cuda.md, stop 28). Here the three passes run one
//! kernel each, burn-cubecl's implicit GEMM (`ConvStrategy::ImplicitGemm`),
//! in an autodiff node of ours. A pass that kernel cannot take (no
//! tensor-core tiles, as on lavapipe, or a shape it refuses) falls back to
//! burn's default strategy, the autotuner, so results never depend on the
//! switch. The bias is added by burn's operations after the node.
//!
//! Off by default until a GPU measures it: the kernel may be slower than
//! the autotuner's pick, and only a GPU says by how much.

use std::any::TypeId;
use std::cell::Cell;
use std::sync::OnceLock;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::conv::{
    ConvStrategy, conv_data_backward, conv_forward, conv_weight_backward,
};
use burn_cubecl::tensor::CubeTensor;

use super::weight_grad_fold;
use crate::gpu::cube::{CubeTask, cast, on_runtime_of, primitive, retype};
use crate::switch::PassCounts;

/// The environment variable that picks how GPU convolutions are chosen:
/// `implicit-gemm` or `direct` steers them to that kernel; unset, they are
/// autotuned.
pub const CONV_ENV: &str = "NEXTSLICE_GPU_CONV";

/// The one kernel a steered convolution runs, each pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// burn-cubecl's implicit GEMM on tensor-core tiles (simple, sync).
    ImplicitGemm,
    /// burn-cubecl's direct kernel and its fallback gradients: slow, but it
    /// runs on every cubecl backend (the tests' lavapipe too).
    Direct,
}

impl Steer {
    /// The name `NEXTSLICE_GPU_CONV` takes for it.
    pub fn name(self) -> &'static str {
        match self {
            Steer::ImplicitGemm => "implicit-gemm",
            Steer::Direct => "direct",
        }
    }

    fn strategy(self) -> ConvStrategy {
        match self {
            Steer::ImplicitGemm => ConvStrategy::ImplicitGemm,
            Steer::Direct => ConvStrategy::Direct,
        }
    }
}

thread_local! {
    /// Set by [`with_conv_steering`]; `None` defers to the environment.
    static OVERRIDE: Cell<Option<Option<Steer>>> = const { Cell::new(None) };
}

/// Runs `f` with convolutions on this thread steered to `steer` (`None`:
/// autotuned), whatever the environment says.
pub fn with_conv_steering<R>(steer: Option<Steer>, f: impl FnOnce() -> R) -> R {
    crate::switch::with_thread_value(&OVERRIDE, Some(steer), f)
}

/// How convolutions are steered on this thread, if they are.
pub fn steering() -> Option<Steer> {
    static FROM_ENV: OnceLock<Option<Steer>> = OnceLock::new();
    OVERRIDE.get().unwrap_or_else(|| {
        let meaning = [
            "implicit-gemm, direct or autotune",
            "convolutions are autotuned",
        ];
        crate::switch::from_env(&FROM_ENV, CONV_ENV, parse, None, meaning)
    })
}

fn parse(value: &str) -> Option<Option<Steer>> {
    match value.trim().to_ascii_lowercase().as_str() {
        "implicit-gemm" => Some(Some(Steer::ImplicitGemm)),
        "direct" => Some(Some(Steer::Direct)),
        "" | "autotune" => Some(None),
        _ => None,
    }
}

/// Convolution passes (forward, data and weight gradients) that ran the
/// steered kernel, and those it refused, which ran burn's default instead.
static PASSES: PassCounts = PassCounts::new();

/// (passes run by the steered kernel, passes it refused) in this process:
/// whether steering is in force, and where it is not.
pub fn steering_counts() -> (u64, u64) {
    PASSES.get()
}

/// `layer` applied to `x` through the node steered to `steer`, where `B`
/// is a cubecl backend it serves, the layer's padding symmetric (as ours
/// all are) and the steered kernel takes the forward pass; `Err(x)` else.
pub(super) fn conv2d<B: Backend>(
    steer: Steer,
    layer: &Conv2d<B>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if !super::norm_node::serves::<B>() || x.dtype() != DType::F32 || layer.groups != 1 {
        return Err(x);
    }
    let Some(padding) = super::cpu::conv::symmetric_padding(layer) else {
        return Err(x);
    };
    let options = ConvOptions::new(layer.stride, padding, layer.dilation, 1);
    let y = unbiased::<B>(x, layer.weight.val(), Steered { steer, options })?;
    Ok(match &layer.bias {
        Some(bias) => {
            let c = bias.dims()[0];
            y + bias.val().reshape([1, c, 1, 1])
        }
        None => y,
    })
}

/// The convolution without bias on `B` = `I` or `Autodiff<I>`.
fn unbiased<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    options: Steered,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    #[cfg(feature = "cuda")]
    let x = match on::<burn::backend::Cuda, B>(x, &weight, &options) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    #[cfg(feature = "wgpu")]
    let x = match on::<burn::backend::Wgpu, B>(x, &weight, &options) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    Err(x)
}

fn on<I: Backend, B: Backend>(
    x: Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    options: &Steered,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if TypeId::of::<B>() == TypeId::of::<I>() {
        let x_inner: FloatTensor<I> = cast(primitive(x.clone()));
        let w_inner: FloatTensor<I> = cast(primitive(weight.clone()));
        return match forward::<I>(x_inner, w_inner, options) {
            Some(y) => Ok(retype::<I, B, 4>(Tensor::from_primitive(
                TensorPrimitive::Float(y),
            ))),
            None => Err(x),
        };
    }
    if TypeId::of::<B>() == TypeId::of::<Autodiff<I>>() {
        return tracked::<I, B>(x.clone(), weight.clone(), options).ok_or(x);
    }
    Err(x)
}

/// The forward pass as one node of `Autodiff<I>` (= `B`); `None` where
/// the forward kernel is refused and burn's path should run instead.
fn tracked<I: Backend, B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    options: &Steered,
) -> Option<Tensor<B, 4>> {
    type Tracked<I> = FloatTensor<Autodiff<I>>;
    let x: Tracked<I> = cast(primitive(x));
    let weight: Tracked<I> = cast(primitive(weight));
    let y = forward::<I>(x.primitive.clone(), weight.primitive.clone(), options)?;
    let y: Tracked<I> = match ConvBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            Saved {
                x: x.primitive,
                weight: weight.primitive,
                options: options.clone(),
            },
            y,
        ),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(cast(y))))
}

/// The convolution's options, and the kernel steered to.
#[derive(Clone, Debug)]
struct Steered {
    steer: Steer,
    options: ConvOptions<2>,
}

/// What the backward pass needs: both operands, and how they were convolved.
#[derive(Clone, Debug)]
struct Saved<I: Backend> {
    x: FloatTensor<I>,
    weight: FloatTensor<I>,
    options: Steered,
}

#[derive(Debug)]
struct ConvBackward;

impl<I: Backend> Backward<I, 2> for ConvBackward {
    type State = Saved<I>;

    fn backward(self, ops: Ops<Saved<I>, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dy = grads.consume::<I>(&ops.node);
        let Saved { x, weight, options } = ops.state;
        let gradient = |task: Gradient<I>| {
            on_runtime_of::<I, _>(task).expect("the node is only built on cubecl backends")
        };
        if let Some(node) = node_x {
            let dx = gradient(Gradient {
                dy: dy.clone(),
                other: weight.clone(),
                shape: x.shape(),
                options: &options,
                by: Operand::Input,
            });
            grads.register::<I>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let groups = weight_grad_fold::groups(
                weight_grad_fold::weight_grad_fold(),
                x.shape().dims::<4>()[0],
                weight.shape().dims(),
            );
            let [co, ci, kh, kw] = weight.shape().dims();
            let (dy, x) = match groups {
                1 => (dy, x),
                g => (
                    weight_grad_fold::fold::<I>(dy, g),
                    weight_grad_fold::fold::<I>(x, g),
                ),
            };
            let dw = gradient(Gradient {
                dy,
                other: x,
                shape: Shape::new([groups * co, groups * ci, kh, kw]),
                options: &options,
                by: Operand::Weight,
            });
            let dw = match groups {
                1 => dw,
                g => weight_grad_fold::unfold::<I>(dw, g),
            };
            grads.register::<I>(node.id, dw);
        }
    }
}

/// The forward kernel; `None` where it refuses the problem.
fn forward<I: Backend>(
    x: FloatTensor<I>,
    weight: FloatTensor<I>,
    options: &Steered,
) -> Option<FloatTensor<I>> {
    struct Forward<I: Backend> {
        x: FloatTensor<I>,
        weight: FloatTensor<I>,
        options: Steered,
    }
    impl<I: Backend> CubeTask for Forward<I> {
        type Output = Option<FloatTensor<I>>;
        fn run<R: CubeRuntime>(self) -> Self::Output {
            let x: CubeTensor<R> = cast(self.x);
            let weight: CubeTensor<R> = cast(self.weight);
            let Steered { steer, options } = self.options;
            let y = conv_forward::<R, 2>(x, weight, None, options, steer.strategy()).ok();
            PASSES.count(y.is_some());
            y.map(cast)
        }
    }
    on_runtime_of::<I, _>(Forward::<I> {
        x,
        weight,
        options: options.clone(),
    })
    .flatten()
}

/// Which operand a backward pass differentiates by.
#[derive(Clone, Copy)]
enum Operand {
    Input,
    Weight,
}

/// ∂L/∂x or ∂L/∂weight: the steered kernel, else burn's default strategy.
struct Gradient<'a, I: Backend> {
    dy: FloatTensor<I>,
    /// The operand not differentiated by: the weight for ∂L/∂x, the input
    /// for ∂L/∂weight.
    other: FloatTensor<I>,
    /// The shape of the operand differentiated by.
    shape: Shape,
    options: &'a Steered,
    by: Operand,
}

impl<I: Backend> CubeTask for Gradient<'_, I> {
    type Output = FloatTensor<I>;
    fn run<R: CubeRuntime>(self) -> Self::Output {
        let dy: CubeTensor<R> = cast(self.dy);
        let other: CubeTensor<R> = cast(self.other);
        let Steered { steer, options } = self.options;
        let pass = |strategy| match self.by {
            Operand::Input => conv_data_backward::<R, 2>(
                dy.clone(),
                other.clone(),
                self.shape.clone(),
                options.clone(),
                strategy,
            ),
            Operand::Weight => conv_weight_backward::<R, 2>(
                other.clone(),
                dy.clone(),
                self.shape.clone(),
                options.clone(),
                strategy,
            ),
        };
        let steered = pass(steer.strategy());
        PASSES.count(steered.is_ok());
        let gradient = steered
            .or_else(|_| pass(ConvStrategy::default()))
            .expect("burn's default strategy takes every convolution");
        cast(gradient)
    }
}
