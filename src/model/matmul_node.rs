//! Matmuls steered to one kernel on burn's GPU backends, instead of
//! cubecl's autotuner (experimental: `NEXTSLICE_GPU_MATMUL=fixed`).
//!
//! burn-cubecl autotunes every matmul shape. For a large general matmul
//! its first batch of candidates is every tensor-core kernel it has (a
//! dozen and more on an H100 or H200), each compiled on one CPU thread
//! before it is timed, and a training step runs three matmuls per layer
//! that has one (the decoders' up-convolutions, `upsample`, and the VAE's
//! linear maps): forward, and both gradients. With convolutions steered
//! (`conv_node`), a cold first step on an H200 still compiled for about
//! three minutes per model (docs/performance/cuda.md, stop 29).
//!
//! Here the three passes run one kernel each: cubek's simple tensor-core
//! matmul (`SimpleCyclicCmma`), or where the GPU has no tensor cores or
//! the shape is refused its simple unit matmul, which is what burn runs in
//! a build without autotune. A pass neither takes falls back to burn's
//! matmul (the autotuner). The switch changes how a product is computed,
//! not what: on CUDA the tensor-core kernel multiplies f32 operands as
//! TF32, as the autotuner's tensor-core candidates do, where a unit kernel
//! it might pick would not. Off by default until a GPU measures what the
//! fixed kernel costs at steady state.

use std::any::TypeId;
use std::cell::Cell;
use std::sync::OnceLock;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorPrimitive};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::matmul::init_matmul_output;
use burn_cubecl::tensor::CubeTensor;
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems, MatmulSetupError};
use cubek::matmul::launch::{Strategy, launch_ref};
use cubek::std::InputBinding;

use crate::gpu::cube::{CubeTask, cast, on_runtime_of, primitive, retype};
use crate::switch::PassCounts;

/// The environment variable that picks how GPU matmuls are chosen: `fixed`
/// runs one kernel per pass; unset (or `autotune`), they are autotuned.
pub const MATMUL_ENV: &str = "NEXTSLICE_GPU_MATMUL";

thread_local! {
    /// Set by [`with_matmul_steering`]; `None` defers to the environment.
    static OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Runs `f` with matmuls on this thread steered (`true`) or autotuned,
/// whatever the environment says.
pub fn with_matmul_steering<R>(steered: bool, f: impl FnOnce() -> R) -> R {
    crate::switch::with_thread_value(&OVERRIDE, Some(steered), f)
}

/// Whether matmuls on this thread run the fixed kernel.
pub fn matmuls_steered() -> bool {
    static FROM_ENV: OnceLock<bool> = OnceLock::new();
    OVERRIDE.get().unwrap_or_else(|| {
        let meaning = ["fixed or autotune", "matmuls are autotuned"];
        crate::switch::from_env(&FROM_ENV, MATMUL_ENV, parse, false, meaning)
    })
}

fn parse(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "fixed" => Some(true),
        "" | "autotune" => Some(false),
        _ => None,
    }
}

/// Matmul passes (forward and both gradients) that ran the fixed kernel,
/// and those it refused, which ran burn's autotuned matmul instead.
static PASSES: PassCounts = PassCounts::new();

/// (passes run by the fixed kernel, passes it refused) in this process.
pub fn matmul_counts() -> (u64, u64) {
    PASSES.get()
}

/// `a` × `b` ([m, k] × [k, n]): the fixed kernel where `B` is a cubecl
/// backend of f32 it serves, burn's matmul else.
pub(super) fn matmul<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return a.matmul(b);
    }
    match steered(a, b) {
        Ok(y) => y,
        Err((a, b)) => a.matmul(b),
    }
}

type Operands<B> = (Tensor<B, 2>, Tensor<B, 2>);

/// `a` × `b` through the fixed kernel on `B` = `I` or `Autodiff<I>` for a
/// cubecl backend `I` of this build; the operands back where it cannot.
fn steered<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Result<Tensor<B, 2>, Operands<B>> {
    #[cfg(feature = "cuda")]
    let (a, b) = match on::<burn::backend::Cuda, B>(a, b) {
        Ok(y) => return Ok(y),
        Err(operands) => operands,
    };
    #[cfg(feature = "wgpu")]
    let (a, b) = match on::<burn::backend::Wgpu, B>(a, b) {
        Ok(y) => return Ok(y),
        Err(operands) => operands,
    };
    Err((a, b))
}

fn on<I: Backend, B: Backend>(
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, Operands<B>> {
    if TypeId::of::<B>() == TypeId::of::<I>() {
        let a_inner: FloatTensor<I> = cast(primitive(a.clone()));
        let b_inner: FloatTensor<I> = cast(primitive(b.clone()));
        return match fixed::<I>(a_inner, b_inner) {
            Some(y) => Ok(retype::<I, B, 2>(Tensor::from_primitive(
                TensorPrimitive::Float(y),
            ))),
            None => Err((a, b)),
        };
    }
    if TypeId::of::<B>() == TypeId::of::<Autodiff<I>>() {
        return match tracked::<I, B>(a.clone(), b.clone()) {
            Some(y) => Ok(y),
            None => Err((a, b)),
        };
    }
    Err((a, b))
}

/// The forward pass as one node of `Autodiff<I>` (= `B`); `None` where the
/// fixed kernel refuses it and burn's matmul should run instead.
fn tracked<I: Backend, B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    type Tracked<I> = FloatTensor<Autodiff<I>>;
    let a: Tracked<I> = cast(primitive(a));
    let b: Tracked<I> = cast(primitive(b));
    let y = fixed::<I>(a.primitive.clone(), b.primitive.clone())?;
    let y: Tracked<I> = match MatmulBackward
        .prepare::<NoCheckpointing>([a.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((a.primitive, b.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(cast(y))))
}

#[derive(Debug)]
struct MatmulBackward;

impl<I: Backend> Backward<I, 2> for MatmulBackward {
    /// Both operands.
    type State = (FloatTensor<I>, FloatTensor<I>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let dy = grads.consume::<I>(&ops.node);
        let (a, b) = ops.state;
        let transposed = |t: FloatTensor<I>| -> FloatTensor<I> {
            primitive(Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(t)).transpose())
        };
        // Where the fixed kernel refuses a gradient, burn's matmul runs it.
        let product = |x: FloatTensor<I>, y: FloatTensor<I>| -> FloatTensor<I> {
            fixed::<I>(x.clone(), y.clone()).unwrap_or_else(|| I::float_matmul(x, y))
        };
        if let Some(node) = node_a {
            // ∂L/∂a = ∂L/∂y · bᵀ
            grads.register::<I>(node.id, product(dy.clone(), transposed(b)));
        }
        if let Some(node) = node_b {
            // ∂L/∂b = aᵀ · ∂L/∂y
            grads.register::<I>(node.id, product(transposed(a), dy));
        }
    }
}

/// `a` × `b` by the fixed kernel; `None` where it refuses (counted).
fn fixed<I: Backend>(a: FloatTensor<I>, b: FloatTensor<I>) -> Option<FloatTensor<I>> {
    struct Fixed<I: Backend> {
        a: FloatTensor<I>,
        b: FloatTensor<I>,
    }
    impl<I: Backend> CubeTask for Fixed<I> {
        type Output = Option<FloatTensor<I>>;
        fn run<R: CubeRuntime>(self) -> Self::Output {
            let a: CubeTensor<R> = cast(self.a);
            let b: CubeTensor<R> = cast(self.b);
            let tensor_cores = Strategy::SimpleCyclicCmma(Default::default());
            // No tensor cores (lavapipe), or a shape their kernel refuses:
            // the unit matmul, which burn runs untuned.
            let out = launch(&tensor_cores, &a, &b)
                .or_else(|_| launch(&Strategy::SimpleUnit(Default::default()), &a, &b));
            PASSES.count(out.is_ok());
            match out {
                Ok(out) => Some(cast(out)),
                Err(error) => {
                    say_first_refusal(&error);
                    None
                }
            }
        }
    }
    on_runtime_of::<I, _>(Fixed::<I> { a, b }).flatten()
}

/// The first refusal in a process on stderr (the worker's log): why the
/// autotuner runs where the switch asked for no tuning.
fn say_first_refusal(error: &MatmulSetupError) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!("{MATMUL_ENV}=fixed: a matmul refused both fixed kernels ({error:?}); the autotuner runs it");
    });
}

/// `a` × `b` into a new tensor by cubek's `strategy`, as burn-cubecl's
/// untuned matmul launches it (strides as they are: transposed views too).
fn launch<R: CubeRuntime>(
    strategy: &Strategy,
    a: &CubeTensor<R>,
    b: &CubeTensor<R>,
) -> Result<CubeTensor<R>, MatmulSetupError> {
    let out = init_matmul_output(a, b, a.dtype);
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: a.dtype.into(),
        rhs: b.dtype.into(),
        out: out.dtype.into(),
    });
    launch_ref(
        strategy,
        &out.client,
        InputBinding::new(a.clone().binding(), a.dtype.into()),
        InputBinding::new(b.clone().binding(), b.dtype.into()),
        out.clone().binding(),
        &mut dtypes,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_read_as_fixed_or_autotune() {
        assert_eq!(parse("fixed"), Some(true));
        assert_eq!(parse(" FIXED "), Some(true));
        assert_eq!(parse("autotune"), Some(false));
        assert_eq!(parse(""), Some(false));
        assert_eq!(parse("cmma"), None);
    }

    #[test]
    fn the_override_wins_on_this_thread_only_while_it_runs() {
        let outside = matmuls_steered();
        assert!(with_matmul_steering(true, matmuls_steered));
        assert!(!with_matmul_steering(false, matmuls_steered));
        assert_eq!(matmuls_steered(), outside);
    }
}
