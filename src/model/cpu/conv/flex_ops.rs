//! The convolution and transposed convolution on burn-flex tensors, forward
//! and backward, through the f32 kernels. A transposed convolution is the
//! adjoint of the convolution its geometry describes: its forward pass is
//! that convolution's data gradient, its data gradient that convolution's
//! forward pass, and its weight gradient the same product with the input and
//! output gradient swapped.

use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use super::geometry::ConvGeometry;
use super::kernels;

/// Which layer a geometry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// `y = conv(x)`: the geometry's input is x.
    Conv,
    /// `y = convᵀ(x)`: the geometry's *output* is x, its input is y.
    Transposed,
}

fn from_vec(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Runs `f` on the tensor's values, contiguous.
fn values<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    let t = t.to_contiguous();
    f(t.storage::<f32>())
}

/// [batch, channels, h, w] of the layer's input (x) and output (y).
fn shapes(kind: ConvKind, g: &ConvGeometry) -> ([usize; 4], [usize; 4]) {
    let conv_in = [g.batch, g.channels_in, g.input[0], g.input[1]];
    let conv_out = [g.batch, g.channels_out, g.output[0], g.output[1]];
    match kind {
        ConvKind::Conv => (conv_in, conv_out),
        ConvKind::Transposed => (conv_out, conv_in),
    }
}

/// The layer's output.
pub fn forward(
    kind: ConvKind,
    g: &ConvGeometry,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> FlexTensor {
    let (_, y_shape) = shapes(kind, g);
    let y = values(x, |x| {
        values(weight, |w| match kind {
            ConvKind::Conv => match bias {
                Some(b) => values(b, |b| kernels::forward(g, x, w, Some(b))),
                None => kernels::forward(g, x, w, None),
            },
            ConvKind::Transposed => {
                let mut y = kernels::data_backward(g, x, w);
                if let Some(b) = bias {
                    values(b, |b| kernels::add_bias(g.batch, &mut y, b));
                }
                y
            }
        })
    });
    from_vec(y, y_shape)
}

/// ∂L/∂x.
pub fn input_grad(
    kind: ConvKind,
    g: &ConvGeometry,
    weight: &FlexTensor,
    dy: &FlexTensor,
) -> FlexTensor {
    let (x_shape, _) = shapes(kind, g);
    let dx = values(dy, |dy| {
        values(weight, |w| match kind {
            ConvKind::Conv => kernels::data_backward(g, dy, w),
            ConvKind::Transposed => kernels::forward(g, dy, w, None),
        })
    });
    from_vec(dx, x_shape)
}

/// ∂L/∂weight, in the layer's own weight layout.
pub fn weight_grad(
    kind: ConvKind,
    g: &ConvGeometry,
    x: &FlexTensor,
    dy: &FlexTensor,
) -> FlexTensor {
    let dw = values(x, |x| {
        values(dy, |dy| match kind {
            ConvKind::Conv => kernels::weight_backward(g, x, dy),
            // The adjoint convolution reads the layer's output gradient and
            // produces the layer's input.
            ConvKind::Transposed => kernels::weight_backward(g, dy, x),
        })
    });
    // [conv out, conv in, kh, kw]; for a transposed layer that is
    // [layer in, layer out, kh, kw], burn's ConvTranspose2d layout.
    from_vec(
        dw,
        [g.channels_out, g.channels_in, g.kernel[0], g.kernel[1]],
    )
}

/// ∂L/∂bias.
pub fn bias_grad(kind: ConvKind, g: &ConvGeometry, dy: &FlexTensor) -> FlexTensor {
    let channels = match kind {
        ConvKind::Conv => g.channels_out,
        ConvKind::Transposed => g.channels_in,
    };
    let db = values(dy, |dy| kernels::bias_backward(g.batch, channels, dy));
    FlexTensor::from_data(TensorData::new(db, [channels]))
}
