//! Convolutions for the CPU backend, forward and backward, as im2col bands
//! and gemm.
//!
//! Upstream gap (burn 0.21, burn-flex 0.21): Flex has no backward kernels for
//! convolutions, so burn's generic ones run — the data gradient as Flex's
//! direct-loop transposed convolution and the weight gradient as a
//! convolution with the output gradient as a whole-image kernel — and its
//! forward im2col gathers element by element from an NHWC copy made on one
//! thread. Burn cannot be extended with a backend's own backward from
//! outside, so the layers call [`conv2d`] and [`conv_transpose2d`] here: on
//! `Flex` and `Autodiff<Flex>` they run our kernels (one autodiff node per
//! layer), on every other backend (CUDA) exactly burn's layer.

mod autodiff;
mod flex_ops;
mod geometry;
mod im2col;
mod kernels;
mod matmul;

use std::any::{Any, TypeId};

use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;

use flex_ops::ConvKind;
use geometry::ConvGeometry;

/// `layer.forward(x)`, through our kernels where the backend allows.
pub fn conv2d<B: Backend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let planned = route(&x).zip(conv_geometry(layer, &x));
    match planned {
        Some((route, g)) => run(
            route,
            ConvKind::Conv,
            g,
            x,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
        ),
        None => layer.forward(x),
    }
}

/// `layer.forward(x)`, through our kernels where the backend allows.
pub fn conv_transpose2d<B: Backend>(layer: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let planned = route(&x).zip(transposed_geometry(layer, &x));
    match planned {
        Some((route, g)) => run(
            route,
            ConvKind::Transposed,
            g,
            x,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
        ),
        None => layer.forward(x),
    }
}

/// The backends our kernels serve (f32 tensors only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Flex,
    AutodiffFlex,
}

fn route<B: Backend>(x: &Tensor<B, 4>) -> Option<Route> {
    if x.dtype() != DType::F32 {
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

/// The layer's geometry, when our kernels can run it.
fn conv_geometry<B: Backend>(layer: &Conv2d<B>, x: &Tensor<B, 4>) -> Option<ConvGeometry> {
    let padding = match layer.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    if layer.dilation != [1, 1] || layer.groups != 1 {
        return None;
    }
    let [batch, channels, h, w] = x.dims();
    let [out, inside, _, _] = layer.weight.dims();
    (inside == channels).then_some(())?;
    ConvGeometry::forward(
        batch,
        [channels, out],
        [h, w],
        layer.kernel_size,
        layer.stride,
        padding,
    )
}

/// The geometry of the convolution a transposed layer is the adjoint of.
fn transposed_geometry<B: Backend>(
    layer: &ConvTranspose2d<B>,
    x: &Tensor<B, 4>,
) -> Option<ConvGeometry> {
    if layer.dilation != [1, 1] || layer.groups != 1 {
        return None;
    }
    let [batch, channels, h, w] = x.dims();
    let [inside, out, kh, kw] = layer.weight.dims();
    (inside == channels).then_some(())?;
    let size = |d: usize, input: usize, k: usize| {
        ((input.checked_sub(1)? * layer.stride[d] + k + layer.padding_out[d])
            .checked_sub(2 * layer.padding[d]))
        .filter(|_| layer.padding_out[d] < layer.stride[d])
    };
    let g = ConvGeometry::forward(
        batch,
        [out, channels],
        [size(0, h, kh)?, size(1, w, kw)?],
        [kh, kw],
        layer.stride,
        layer.padding,
    )?;
    (g.output == [h, w]).then_some(g)
}

/// Moves a value to the type it is known (by `TypeId`) to be.
fn cast<T: 'static, U: 'static>(value: T) -> U {
    match (Box::new(value) as Box<dyn Any>).downcast::<U>() {
        Ok(u) => *u,
        Err(_) => unreachable!("cpu_conv: routed a tensor to the wrong backend"),
    }
}

fn run<B: Backend>(
    route: Route,
    kind: ConvKind,
    g: ConvGeometry,
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 4> {
    fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> burn::tensor::ops::FloatTensor<B> {
        t.into_primitive().tensor()
    }
    let output: burn::tensor::ops::FloatTensor<B> = match route {
        Route::Flex => {
            let x: FlexTensor = cast(primitive(x));
            let w: FlexTensor = cast(primitive(weight));
            let b: Option<FlexTensor> = bias.map(|b| cast(primitive(b)));
            cast(flex_ops::forward(kind, &g, &x, &w, b.as_ref()))
        }
        Route::AutodiffFlex => {
            type Tracked = burn::tensor::ops::FloatTensor<Autodiff<Flex>>;
            let x: Tracked = cast(primitive(x));
            let w: Tracked = cast(primitive(weight));
            let b: Option<Tracked> = bias.map(|b| cast(primitive(b)));
            cast(autodiff::forward(kind, g, x, w, b))
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(output))
}

#[cfg(test)]
mod tests;
