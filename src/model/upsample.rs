//! The decoders' 2×2 stride-2 transposed convolutions (U-Net and VAE), on
//! every backend.
//!
//! When a transposed convolution's kernel equals its stride and it has no
//! padding, every input pixel paints its own k×k patch of the output and no
//! two patches overlap. The layer is then one matmul, [N·H·W, Cin] ×
//! [Cin, Cout·k·k], and a reshape, and its gradients are two matmuls.
//!
//! Why on GPU backends: burn 0.21's generic backward computes this layer's
//! weight gradient as a convolution of the output gradient with the input
//! image *as the kernel* (`conv_transpose2d_weight_grad_no_groups`: kernel
//! H×W, dilation 2, the batch as channels), a shape cubecl's direct and
//! implicit-GEMM convolutions are not built for; its forward picks between
//! a direct kernel and col2im. A matmul runs on cubecl's tuned tensor-core
//! matmul instead. On Flex, our CPU kernels serve the layer (`cpu::conv`).

use burn::nn::conv::ConvTranspose2d;
use burn::prelude::*;

use super::cpu;

/// `layer.forward(x)`, by the fastest path this backend has.
pub(super) fn conv_transpose2d<B: Backend>(
    layer: &ConvTranspose2d<B>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    if cpu::served(&x).is_some() {
        return cpu::conv::conv_transpose2d(layer, x);
    }
    match patch_size(layer).filter(|_| !cpu::burn_kernels_requested()) {
        Some(patch) => paint_patches(
            x,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
            patch,
        ),
        None => layer.forward(x),
    }
}

/// The patch each input pixel paints, when the layer's windows do not
/// overlap (kernel = stride, no padding, no dilation, one group).
fn patch_size<B: Backend>(layer: &ConvTranspose2d<B>) -> Option<[usize; 2]> {
    let [_, _, kh, kw] = layer.weight.dims();
    let plain = layer.stride == [kh, kw]
        && layer.padding == [0, 0]
        && layer.padding_out == [0, 0]
        && layer.dilation == [1, 1]
        && layer.groups == 1;
    plain.then_some([kh, kw])
}

/// A transposed convolution with kernel = stride = `patch` and no padding.
///
/// `x`: [N, Cin, H, W]; `weight`: [Cin, Cout, kh, kw] (burn's layout);
/// returns [N, Cout, H·kh, W·kw].
fn paint_patches<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    [kh, kw]: [usize; 2],
) -> Tensor<B, 4> {
    let [n, cin, h, w] = x.dims();
    let [_, cout, _, _] = weight.dims();
    // One row per input pixel, one column per (output channel, patch offset).
    let pixels = x.permute([0, 2, 3, 1]).reshape([n * h * w, cin]);
    let patches = super::dense::matmul(pixels, weight.reshape([cin, cout * kh * kw]));
    // [n, h, w, cout, kh, kw] → [n, cout, h, kh, w, kw]: each patch in place.
    let y = patches
        .reshape([n, h, w, cout, kh, kw])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([n, cout, h * kh, w * kw]);
    match bias {
        Some(b) => y + b.reshape([1, cout, 1, 1]),
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::conv::ConvTranspose2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    type Tracked = Autodiff<Flex>;

    fn layer(cin: usize, cout: usize, k: usize, bias: bool) -> ConvTranspose2d<Tracked> {
        ConvTranspose2dConfig::new([cin, cout], [k, k])
            .with_stride([k, k])
            .with_bias(bias)
            .init(&Default::default())
    }

    /// The matmul form against burn's own transposed convolution on the same
    /// weights: output, and the gradients of the input, weight and bias.
    fn matches_burn(cin: usize, cout: usize, k: usize, bias: bool, [h, w]: [usize; 2]) {
        let device = Default::default();
        let layer = layer(cin, cout, k, bias);
        let x =
            Tensor::<Tracked, 4>::random([3, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
        // A loss that weighs every output element differently, so a patch
        // painted in the wrong place cannot pass.
        let weights = Tensor::<Tracked, 4>::random(
            [3, cout, h * k, w * k],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                paint_patches(
                    x.clone(),
                    layer.weight.val(),
                    layer.bias.as_ref().map(|b| b.val()),
                    patch_size(&layer).expect("a patch layer"),
                )
            } else {
                layer.forward(x.clone())
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let bias_grad = layer
                .bias
                .as_ref()
                .map(|b| b.grad(&grads).expect("bias grad"));
            (
                y.inner(),
                x.grad(&grads).expect("x grad"),
                layer.weight.grad(&grads).expect("weight grad"),
                bias_grad,
            )
        };
        let (y, dx, dw, db) = run(true);
        let (y_ref, dx_ref, dw_ref, db_ref) = run(false);
        let tol = Tolerance::<f32>::absolute(1e-4).set_half_precision_relative(1e-3);
        y.into_data().assert_approx_eq(&y_ref.into_data(), tol);
        dx.into_data().assert_approx_eq(&dx_ref.into_data(), tol);
        dw.into_data().assert_approx_eq(&dw_ref.into_data(), tol);
        match (db, db_ref) {
            (Some(db), Some(db_ref)) => db.into_data().assert_approx_eq(&db_ref.into_data(), tol),
            (None, None) => {}
            _ => panic!("bias gradient on one side only"),
        }
    }

    #[test]
    fn the_matmul_form_is_the_transposed_convolution_forward_and_backward() {
        cpu::with_burn_kernels(|| {
            matches_burn(5, 3, 2, true, [4, 6]);
            matches_burn(4, 6, 2, false, [3, 3]);
            matches_burn(2, 3, 3, true, [2, 5]);
        });
    }

    #[test]
    fn overlapping_or_padded_layers_keep_burns_path() {
        let device = Default::default();
        let overlapping = ConvTranspose2dConfig::new([2, 2], [3, 3])
            .with_stride([2, 2])
            .init::<Flex>(&device);
        assert_eq!(patch_size(&overlapping), None);
        let padded = ConvTranspose2dConfig::new([2, 2], [2, 2])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .init::<Flex>(&device);
        assert_eq!(patch_size(&padded), None);
        let plain = ConvTranspose2dConfig::new([2, 2], [2, 2])
            .with_stride([2, 2])
            .init::<Flex>(&device);
        assert_eq!(patch_size(&plain), Some([2, 2]));
    }
}
