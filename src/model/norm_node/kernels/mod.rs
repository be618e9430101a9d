//! Batch norm as cubecl kernels: three launches forward ([`forward`]: the
//! statistics' sums, the per-channel affine map with the running averages'
//! update, the normalisation) and at most three backward ([`backward`]: the
//! gradients' sums, the parameters' gradients, the input gradient).
//!
//! Before, the same work was about twenty launches per layer and step: each
//! per-channel sum two reductions (and one more pass for x²), a dozen
//! operations on vectors of a few hundred channels, and two full tensors
//! (∂L/∂z, ∂L/∂z·x̂) written only to be summed. `None` on a backend whose
//! tensors are not plain cubecl ones (burn's fused backend): the caller then
//! uses burn's operations, which fusion merges itself.

use super::Activation;

mod backward;
mod forward;

pub(super) use backward::{BackwardInputs, Gradients, Wanted, backward};
pub(super) use forward::{Statistics, affine, normalize};

/// The activation as the kernels' (code, LeakyReLU slope).
fn activation_code(activation: Activation) -> (u32, f32) {
    match activation {
        Activation::Identity => (0, 0.0),
        Activation::Relu => (1, 0.0),
        Activation::LeakyRelu(slope) => (2, slope),
    }
}
