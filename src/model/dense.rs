//! Which path runs the models' matrix products (the decoders'
//! up-convolutions as matmuls, the VAE's and the loss head's linear maps):
//! the steered GPU node where `NEXTSLICE_GPU_MATMUL` asks for it
//! (`matmul_node`), else burn's.

use burn::nn::Linear;
use burn::prelude::*;

/// `a` × `b`, through whichever path serves the backend.
pub(super) fn matmul<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if fixed_requested() {
        return super::matmul_node::matmul(a, b);
    }
    a.matmul(b)
}

/// `layer.forward(x)` for a batch of vectors, through whichever path
/// serves the backend: burn's layer, or `x · weight + bias` by [`matmul`].
pub(super) fn linear<B: Backend>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    if !fixed_requested() {
        return layer.forward(x);
    }
    let y = matmul(x, layer.weight.val());
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    }
}

/// Whether this thread's matmuls go to the fixed kernel (never in a build
/// without a GPU backend, nor under `with_burn_kernels`).
fn fixed_requested() -> bool {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if super::matmul_node::matmuls_steered() {
        return !super::cpu::burn_kernels_requested();
    }
    false
}
