//! Convolutions and transposed convolutions as im2col bands and gemm.
//! A transposed convolution is the adjoint of a convolution, so one set of
//! three kernels (forward, data gradient, weight gradient) serves both.

mod autodiff;
mod flex_ops;
mod geometry;
mod im2col;
mod kernels;
mod matmul;
mod winograd;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;

use super::{Route, from_primitive, route, to_flex, to_tracked};

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

/// The layer's padding as [rows, columns] on each side, where it is the
/// same on both sides (as all of ours are); kernels that take one padding
/// per axis (ours, burn-cubecl's) need that.
pub(in crate::model) fn symmetric_padding<B: Backend>(layer: &Conv2d<B>) -> Option<[usize; 2]> {
    match layer.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// The layer's geometry, when our kernels can run it.
fn conv_geometry<B: Backend>(layer: &Conv2d<B>, x: &Tensor<B, 4>) -> Option<ConvGeometry> {
    let padding = symmetric_padding(layer)?;
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

fn run<B: Backend>(
    route: Route,
    kind: ConvKind,
    g: ConvGeometry,
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 4> {
    match route {
        Route::Flex => {
            let b = bias.map(to_flex);
            let y = flex_ops::forward(kind, &g, &to_flex(x), &to_flex(weight), b.as_ref());
            from_primitive(y)
        }
        Route::AutodiffFlex => {
            let b = bias.map(to_tracked);
            from_primitive(autodiff::forward(
                kind,
                g,
                to_tracked(x),
                to_tracked(weight),
                b,
            ))
        }
    }
}

#[cfg(test)]
mod tests;
