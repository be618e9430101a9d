//! Our own CPU kernels for the layers that dominate a training step —
//! convolutions (im2col bands + gemm) and batch norm fused with its
//! activation — on burn's Flex backend, forward and backward.
//!
//! Upstream gap (burn 0.21, burn-flex 0.21): Flex has no backward kernels
//! for convolutions, so burn's generic ones run (the data gradient as Flex's
//! direct-loop transposed convolution, the weight gradient as a convolution
//! with the output gradient as a whole-image kernel), and batch norm is a
//! chain of broadcast element-wise ops, each a pass over the activations in
//! both directions. A backend's ops cannot be replaced from outside burn, so
//! the model's layers call the functions here: on `Flex` and
//! `Autodiff<Flex>` (f32) they run our kernels as one autodiff node per
//! layer; on any other backend (CUDA) exactly what burn's layer would.

pub mod concat;
pub mod conv;
pub mod dice;
pub mod norm;
pub mod pool;

use std::any::{Any, TypeId};
use std::cell::Cell;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;

/// The backends our kernels serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Inference: plain Flex tensors.
    Flex,
    /// Training and input gradients: Flex under burn's autodiff.
    AutodiffFlex,
}

thread_local! {
    /// Set inside [`with_burn_kernels`].
    static BURN_KERNELS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with burn's own kernels for every layer this thread runs: the
/// reference ours are tested and benchmarked against (on Flex instead of the
/// kernels here; on a GPU instead of `model::upsample`'s matmul and
/// `model::norm_node`'s batch norm). Adam is not a layer: it stays ours.
pub fn with_burn_kernels<R>(f: impl FnOnce() -> R) -> R {
    crate::switch::with_thread_value(&BURN_KERNELS, true, f)
}

/// Whether [`with_burn_kernels`] is in force on this thread: then every
/// layer, on every backend, runs burn's own kernels.
pub(super) fn burn_kernels_requested() -> bool {
    BURN_KERNELS.get()
}

/// Which of our paths serves `x`, if any (f32 on Flex, with or without autodiff).
fn route<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Route> {
    if x.dtype() != DType::F32 || BURN_KERNELS.get() {
        return None;
    }
    let b = TypeId::of::<B>();
    if b == TypeId::of::<Flex>() {
        Some(Route::Flex)
    } else if b == TypeId::of::<Autodiff<Flex>>() {
        Some(Route::AutodiffFlex)
    } else {
        None
    }
}

/// Proof that our kernels serve a tensor's backend and dtype.
#[derive(Clone, Copy, Debug)]
pub struct Served(Route);

/// Whether our kernels serve `x` (f32 on Flex, with or without autodiff).
pub fn served<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Served> {
    route(x).map(Served)
}

/// `burn_autodiff::AutodiffTensor<Flex>` (not nameable from outside burn).
type Tracked = burn::tensor::ops::FloatTensor<Autodiff<Flex>>;

/// Moves a value to the type it is known (by `TypeId`, in [`route`]) to be.
fn cast<T: 'static, U: 'static>(value: T) -> U {
    match (Box::new(value) as Box<dyn Any>).downcast::<U>() {
        Ok(u) => *u,
        Err(_) => unreachable!("model::cpu: routed a tensor to the wrong backend"),
    }
}

/// The backend's primitive of a float tensor.
fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> burn::tensor::ops::FloatTensor<B> {
    t.into_primitive().tensor()
}

/// A plain Flex tensor of a tensor `route` sent down [`Route::Flex`].
fn to_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    cast(primitive(t))
}

/// A tracked Flex tensor of a tensor `route` sent down [`Route::AutodiffFlex`].
fn to_tracked<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tracked {
    cast(primitive(t))
}

/// Back to the caller's backend.
fn from_primitive<B: Backend, const D: usize, P: 'static>(p: P) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(p)))
}

/// The values of a small tensor (a per-channel vector) on either route.
fn flex_values<B: Backend, const D: usize>(route: Route, t: Tensor<B, D>) -> Vec<f32> {
    let flex = match route {
        Route::Flex => to_flex(t),
        Route::AutodiffFlex => to_tracked(t).primitive,
    };
    flex.to_contiguous().storage::<f32>().to_vec()
}
