//! Running our own cubecl kernels on burn's tensors: which cubecl runtime a
//! backend's tensors live on, and moving tensors to and from cubecl's type.
//! A backend whose float tensors are not plain cubecl tensors (Flex, burn's
//! fused backend) gets `None`, and the caller uses burn's operations.

use std::any::{Any, TypeId};

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, Tensor, TensorMetadata, TensorPrimitive};
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl::calculate_cube_count_elemwise;
use burn_cubecl::cubecl::prelude::{ArrayArg, CubeCount, CubeDim};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

/// Work generic over the cubecl runtime, run by [`on_runtime_of`].
pub trait CubeTask {
    type Output;
    fn run<R: CubeRuntime>(self) -> Self::Output;
}

/// Runs `task` on the cubecl runtime of backend `B`'s tensors, if it has one.
pub fn on_runtime_of<B: Backend, T: CubeTask>(task: T) -> Option<T::Output> {
    #[cfg(feature = "cuda")]
    if is_on::<burn_cubecl::cubecl::cuda::CudaRuntime, B>() {
        return Some(task.run::<burn_cubecl::cubecl::cuda::CudaRuntime>());
    }
    #[cfg(feature = "wgpu")]
    if is_on::<burn_cubecl::cubecl::wgpu::WgpuRuntime, B>() {
        return Some(task.run::<burn_cubecl::cubecl::wgpu::WgpuRuntime>());
    }
    None
}

fn is_on<R: CubeRuntime, B: Backend>() -> bool {
    TypeId::of::<FloatTensor<B>>() == TypeId::of::<CubeTensor<R>>()
}

/// `t` as a contiguous cubecl tensor of runtime `R`, if it is one of f32.
/// Only for a `B` that [`on_runtime_of`] found on `R`.
pub fn to_cube<R: CubeRuntime, B: Backend, const D: usize>(
    t: &Tensor<B, D>,
) -> Option<CubeTensor<R>> {
    raw_f32::<R, B, D>(t).map(into_contiguous)
}

/// `t` as the cubecl tensor of f32 it is, strides as they are; `None` if
/// it is not f32. Only for a `B` that [`on_runtime_of`] found on `R`.
pub fn raw_f32<R: CubeRuntime, B: Backend, const D: usize>(
    t: &Tensor<B, D>,
) -> Option<CubeTensor<R>> {
    let cube = raw::<R, B, D>(t);
    (cube.dtype == DType::F32).then_some(cube)
}

/// `t` as the cubecl tensor it is, strides and dtype as they are.
fn raw<R: CubeRuntime, B: Backend, const D: usize>(t: &Tensor<B, D>) -> CubeTensor<R> {
    let primitive: FloatTensor<B> = t.clone().into_primitive().tensor();
    cast(primitive)
}

/// Back to `B`'s tensor type (which is `R`'s, as [`to_cube`] checked).
pub fn from_cube<R: CubeRuntime, B: Backend, const D: usize>(t: CubeTensor<R>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast::<_, FloatTensor<B>>(t)))
}

/// A new uninitialised tensor on `like`'s device, of its dtype.
pub fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: &[usize]) -> CubeTensor<R> {
    empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape.to_vec()),
        like.dtype,
    )
}

/// The launch grid for one unit per element, `units` elements.
pub fn grid<R: CubeRuntime>(like: &CubeTensor<R>, units: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&like.client, units);
    (calculate_cube_count_elemwise(&like.client, units, dim), dim)
}

/// `t`'s buffer as a kernel's array of `len` values.
///
/// # Safety
/// `t`'s buffer is contiguous (from [`to_cube`], [`empty`] or
/// [`super::channels`]) and holds at least
/// `len` elements of the kernel's element type.
pub unsafe fn array<R: CubeRuntime>(t: &CubeTensor<R>, len: usize) -> ArrayArg<R> {
    // Safety: as the caller promised.
    unsafe { ArrayArg::from_raw_parts(t.handle.clone(), len) }
}

/// The shape of a cubecl tensor.
pub fn dims<R: CubeRuntime>(t: &CubeTensor<R>) -> Vec<usize> {
    t.shape().to_vec()
}

/// A float primitive as a tensor of its backend (autodiff nodes hold
/// primitives).
pub fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// A float tensor's primitive.
pub fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// A tensor of a backend checked (by `TypeId`) to be `C`, as `C`'s.
pub fn retype<A: Backend, C: Backend, const D: usize>(t: Tensor<A, D>) -> Tensor<C, D> {
    let primitive: FloatTensor<A> = t.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(cast(primitive)))
}

/// Moves a value to the type it was checked (by `TypeId`) to be.
pub fn cast<T: 'static, U: 'static>(value: T) -> U {
    match (Box::new(value) as Box<dyn Any>).downcast::<U>() {
        Ok(u) => *u,
        Err(_) => unreachable!("gpu::cube: a value cast to a type it was not checked to be"),
    }
}
