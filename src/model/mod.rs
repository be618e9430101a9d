//! The learning core, as burn modules generic over the backend: the U-Net
//! that segments, the VAE that learns the slice manifold, their losses, the
//! input gradient of Eq. 3, and augmentation.
//!
//! Imports config and rng (the CPU backend in tests); no files, no projects.

pub mod augment;
mod conv;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod conv_node;
mod conv_weights;
mod cpu;
mod dense;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod dice_node;
mod gradient;
pub mod loss;
mod loss_head;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod matmul_node;
mod norm;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod norm_node;
mod running;
mod running_average;
mod skip_join;
mod unet;
mod upsample;
mod vae;
#[cfg(any(feature = "cuda", feature = "wgpu", test))]
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
mod weight_grad_fold;

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub use conv_node::{CONV_ENV, Steer, steering, steering_counts, with_conv_steering};
pub use conv_weights::conv_weights_channels_last;
pub use cpu::with_burn_kernels;
pub use gradient::{InputGradient, dice_gradient_wrt_input, inference_model};
pub use loss_head::{LossHead, UNetWithLossHead, ranking_loss};
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub use matmul_node::{MATMUL_ENV, matmul_counts, matmuls_steered, with_matmul_steering};
pub use norm::{Activation, BatchNorm2d, Mode};
pub use unet::{UNet, UNetOutput, UNetSpec};
pub use vae::{Vae, VaeOutput, VaeSpec};
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub use weight_grad_fold::{
    FOLD_ENV, Fold, folded_weight_gradients, weight_grad_fold, with_weight_grad_fold,
};

use crate::config::Config;

/// How GPU convolutions are chosen in this process: the steered kernel's
/// name, or "autotune" (always, in a build without a GPU backend).
pub fn convolution_choice() -> &'static str {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let Some(steer) = steering() {
        return steer.name();
    }
    "autotune"
}

/// How GPU matmuls are chosen in this process: "fixed" (one kernel, no
/// tuning) or "autotune" (always, in a build without a GPU backend).
pub fn matmul_choice() -> &'static str {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if matmuls_steered() {
        return "fixed";
    }
    "autotune"
}

/// What the steered kernels did in this process, a line each for
/// convolutions and matmuls where they are steered (empty otherwise): the
/// passes that ran the steered kernel, those that fell back to the
/// autotuner, and the weight gradients folded. For `gpu-warmup` and the
/// models bench.
pub fn steering_report() -> Vec<String> {
    #[allow(unused_mut)]
    let mut lines = Vec::new();
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        if let Some(steer) = steering() {
            let (ran, refused) = steering_counts();
            lines.push(format!(
                "convolutions steered to {} ({CONV_ENV}): {ran} passes ran it, {refused} fell back to the autotuner; {} weight gradients folded",
                steer.name(),
                folded_weight_gradients()
            ));
        }
        let (ran, refused) = matmul_counts();
        if matmuls_steered() || ran + refused > 0 {
            lines.push(format!(
                "matmuls steered to one kernel ({MATMUL_ENV}): {ran} passes ran it, {refused} fell back to the autotuner"
            ));
        }
    }
    lines
}

/// Whether batch norm runs as one autodiff node (`norm_node`) on backend
/// `B`: burn-cuda and burn-wgpu, plain or fused, training or inference.
pub fn batch_norm_is_one_node<B: burn::tensor::backend::Backend>() -> bool {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        norm_node::serves::<B>()
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    {
        false
    }
}

impl UNetSpec {
    /// The U-Net a configuration asks for.
    pub fn from_config(config: &Config) -> UNetSpec {
        UNetSpec {
            in_channels: config.dataset.modalities.len(),
            classes: config.labels.classes.len(),
            widths: config.unet.widths.clone(),
            bottleneck: config.unet.bottleneck,
        }
    }
}

impl VaeSpec {
    /// The VAE a configuration asks for.
    pub fn from_config(config: &Config) -> VaeSpec {
        VaeSpec {
            in_channels: config.dataset.modalities.len(),
            size: config.slicing.size,
            widths: config.vae.widths.clone(),
            z_dim: config.vae.z_dim,
        }
    }
}
