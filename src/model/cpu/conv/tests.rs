//! Our kernels against burn's own layers, forward and every gradient, on
//! the geometries the U-Net and VAE use (and a few they do not).

use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::{conv_transpose2d, conv2d};

type Ad = Autodiff<Flex>;

fn assert_close<const D: usize>(ours: Tensor<Flex, D>, theirs: Tensor<Flex, D>, what: &str) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
    let ours = ours.into_data().to_vec::<f32>().unwrap();
    let theirs = theirs.into_data().to_vec::<f32>().unwrap();
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}[{i}]: ours {a}, burn {b} (scale {scale})"
        );
    }
}

/// Runs `ours` and `theirs` (the same layer) on the same input, on the
/// autodiff backend, and compares outputs and the gradients of x, weight
/// and bias under a random linear loss.
fn compare<M: burn::module::AutodiffModule<Ad> + Clone>(
    layer: M,
    x_shape: [usize; 4],
    ours: impl Fn(&M, Tensor<Ad, 4>) -> Tensor<Ad, 4>,
    theirs: impl Fn(&M, Tensor<Ad, 4>) -> Tensor<Ad, 4>,
    params: impl Fn(
        &M,
        &<Ad as burn::tensor::backend::AutodiffBackend>::Gradients,
    ) -> Vec<Tensor<Flex, 4>>,
    what: &str,
) {
    let device = Default::default();
    let x = Tensor::<Ad, 4>::random(x_shape, Distribution::Normal(0.0, 1.0), &device);
    let run = |f: &dyn Fn(&M, Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
        let x = x.clone().detach().require_grad();
        let y = f(&layer, x.clone());
        // A fixed, non-trivial linear loss: the same weights for both runs.
        let r = Tensor::<Ad, 1, Int>::arange(0..y.dims().iter().product::<usize>() as i64, &device)
            .float()
            .mul_scalar(0.37)
            .sin()
            .reshape(y.dims());
        let grads = (y.clone() * r).sum().backward();
        let dx = x.grad(&grads).unwrap();
        (y.inner(), dx, params(&layer, &grads))
    };
    let (y_ours, dx_ours, p_ours) = run(&ours);
    let (y_burn, dx_burn, p_burn) = run(&theirs);
    assert_close(y_ours, y_burn, &format!("{what} output"));
    assert_close(dx_ours, dx_burn, &format!("{what} ∂x"));
    for (i, (a, b)) in p_ours.into_iter().zip(p_burn).enumerate() {
        assert_close(a, b, &format!("{what} ∂param{i}"));
    }
}

#[test]
fn convolutions_match_burn_forward_and_backward() {
    let device = Default::default();
    for (batch, cin, cout, size, kernel, stride, pad, bias) in [
        (3, 4, 5, [6, 7], 3, 1, 1, false),     // U-Net 3×3
        (1, 3, 2, [5, 5], 3, 1, 1, true),      // a lone image: gemm threads
        (2, 3, 4, [8, 6], 3, 2, 1, false),     // VAE down 3×3 s2
        (2, 3, 4, [8, 8], 1, 2, 0, false),     // VAE shortcut 1×1 s2
        (4, 6, 3, [5, 4], 1, 1, 0, true),      // U-Net head 1×1
        (2, 2, 3, [4, 5], 3, 1, 0, true),      // unpadded
        (2, 16, 20, [12, 14], 3, 1, 1, false), // Winograd, forward and data gradient
        (1, 17, 16, [11, 13], 3, 1, 1, true),  // Winograd on odd sizes, a lone image
    ] {
        let layer = Conv2dConfig::new([cin, cout], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(bias)
            .init::<Ad>(&device);
        compare(
            layer,
            [batch, cin, size[0], size[1]],
            conv2d,
            |l, x| l.forward(x),
            |l, g| {
                let mut p = vec![l.weight.val().grad(g).unwrap()];
                if let Some(b) = &l.bias {
                    p.push(b.val().grad(g).unwrap().reshape([1, 1, 1, cout]));
                }
                p
            },
            &format!("conv {cin}->{cout} k{kernel} s{stride} p{pad} b{batch}"),
        );
    }
}

#[test]
fn transposed_convolutions_match_burn_forward_and_backward() {
    let device = Default::default();
    for (batch, cin, cout, size, kernel, stride, pad, bias) in [
        (3, 6, 4, [3, 4], 2, 2, 0, true),  // U-Net up
        (2, 4, 3, [4, 4], 2, 2, 0, false), // VAE up
        (1, 3, 2, [3, 3], 3, 2, 1, true),  // overlapping, padded
        (2, 2, 3, [4, 3], 3, 1, 1, false),
    ] {
        let layer = ConvTranspose2dConfig::new([cin, cout], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding([pad, pad])
            .with_bias(bias)
            .init::<Ad>(&device);
        compare(
            layer,
            [batch, cin, size[0], size[1]],
            conv_transpose2d,
            |l, x| l.forward(x),
            |l, g| {
                let mut p = vec![l.weight.val().grad(g).unwrap()];
                if let Some(b) = &l.bias {
                    p.push(b.val().grad(g).unwrap().reshape([1, 1, 1, cout]));
                }
                p
            },
            &format!("convT {cin}->{cout} k{kernel} s{stride} p{pad} b{batch}"),
        );
    }
}

#[test]
fn inference_on_the_plain_backend_matches_burn() {
    let device = Default::default();
    let conv = Conv2dConfig::new([3, 4], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init::<Flex>(&device);
    let up = ConvTranspose2dConfig::new([4, 2], [2, 2])
        .with_stride([2, 2])
        .init::<Flex>(&device);
    let x = Tensor::<Flex, 4>::random([2, 3, 5, 6], Distribution::Normal(0.0, 1.0), &device);
    let ours = conv_transpose2d(&up, conv2d(&conv, x.clone()));
    let theirs = up.forward(conv.forward(x));
    assert_close(ours, theirs, "plain Flex conv → convT");
}
