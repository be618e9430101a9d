//! Which path runs a convolution layer: our CPU kernels on Flex
//! (`cpu::conv`), the steered GPU node where `NEXTSLICE_GPU_CONV` asks for
//! it (`conv_node`), else burn's own layer.

use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// `layer.forward(x)`, through whichever path serves `x`'s backend.
pub(super) fn conv2d<B: Backend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    let x = match super::conv_node::steering() {
        Some(steer) if !super::cpu::burn_kernels_requested() => {
            match super::conv_node::conv2d(steer, layer, x) {
                Ok(y) => return y,
                Err(x) => x,
            }
        }
        _ => x,
    };
    super::cpu::conv::conv2d(layer, x)
}
