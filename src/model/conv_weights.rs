//! Convolution weights kept channels-last on cubecl backends.
//!
//! burn-cubecl convolves channels-last: it reads an [out, in, kh, kw]
//! weight as [out, kh, kw, in] and copies it into that order on every call
//! unless its input channels are contiguous already: a copy of each 3×3
//! weight every forward pass. Stored in that order from the start (after
//! initialisation and after loading), the weight is read as it lies. Adam
//! (`gpu::adam`) writes each update in its parameter's order, so the layout,
//! which burn's autotuner keys convolutions by, never changes between steps.
//!
//! Only `Conv2d` weights: the transposed convolutions' weights are reshaped
//! by `upsample` as they lie, row-major.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

/// `model` with its convolutions' weights channels-last where `B`
/// convolves channels-last (plain burn-cuda and burn-wgpu, running our
/// layers); unchanged, and not initialised early, on any other backend.
pub fn conv_weights_channels_last<B: Backend, M: Module<B>>(model: M) -> M {
    if convolves_channels_last::<B>() {
        return model.map(&mut ConvWeights::default());
    }
    model
}

/// Whether `B` is a plain cubecl backend (the ones our batch-norm kernels
/// serve), running our layers.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(super) fn convolves_channels_last<B: Backend>() -> bool {
    super::norm_node::serves::<B>() && !super::cpu::burn_kernels_requested()
}

/// Flex (the only backend of a CPU build) convolves NCHW.
#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
#[allow(clippy::extra_unused_type_parameters)] // One signature for both builds.
pub(super) fn convolves_channels_last<B: Backend>() -> bool {
    false
}

/// Finds each `Conv2d`'s `weight` as the mapper walks the module tree: for
/// every field entered, whether it is one.
#[derive(Default)]
struct ConvWeights {
    entered: Vec<bool>,
}

impl<B: Backend> ModuleMapper<B> for ConvWeights {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // burn names the struct that holds the field, not the field's type.
        self.entered
            .push(container_type == "Struct:Conv2d" && name == "weight");
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.entered.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if D != 4 || self.entered.last() != Some(&true) {
            return param;
        }
        param.map(|weight| {
            let weight = Tensor::<B, 4>::from_primitive(weight.into_primitive());
            Tensor::from_primitive(channels_last(weight).into_primitive())
        })
    }
}

/// `weight`'s values with its buffer channels-last (copied only if it is
/// not already), as a tracked leaf again where it was one.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn channels_last<B: Backend>(weight: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "cuda")]
    let weight = match on::<burn::backend::Cuda, B>(weight) {
        Ok(relaid) => return relaid,
        Err(weight) => weight,
    };
    #[cfg(feature = "wgpu")]
    let weight = match on::<burn::backend::Wgpu, B>(weight) {
        Ok(relaid) => return relaid,
        Err(weight) => weight,
    };
    weight
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn channels_last<B: Backend>(weight: Tensor<B, 4>) -> Tensor<B, 4> {
    weight
}

/// `Ok` when `B` is `I` (inference) or `Autodiff<I>` (training).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn on<I: Backend, B: Backend>(weight: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    use std::any::TypeId;

    use burn::backend::Autodiff;

    use crate::gpu::cube::retype;

    if TypeId::of::<B>() == TypeId::of::<I>() {
        return Ok(retype(relaid::<I>(retype(weight))));
    }
    if TypeId::of::<B>() == TypeId::of::<Autodiff<I>>() {
        let tracked: Tensor<Autodiff<I>, 4> = retype(weight);
        let require_grad = tracked.is_require_grad();
        let relaid = Tensor::<Autodiff<I>, 4>::from_inner(relaid::<I>(tracked.inner()));
        return Ok(retype(relaid.set_require_grad(require_grad)));
    }
    Err(weight)
}

/// `t` channels-last on the cubecl runtime of `I`.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn relaid<I: Backend>(t: Tensor<I, 4>) -> Tensor<I, 4> {
    use burn_cubecl::CubeRuntime;

    use crate::gpu::channels::{ChannelOrder, to_cube_in};
    use crate::gpu::cube::{CubeTask, from_cube, on_runtime_of};

    struct Relay<'a, I: Backend>(&'a Tensor<I, 4>);
    impl<I: Backend> CubeTask for Relay<'_, I> {
        type Output = Option<Tensor<I, 4>>;
        fn run<R: CubeRuntime>(self) -> Self::Output {
            to_cube_in::<R, I>(self.0, ChannelOrder::Last).map(from_cube)
        }
    }
    on_runtime_of::<I, _>(Relay(&t)).flatten().unwrap_or(t)
}
