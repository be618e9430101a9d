//! The running averages batch norm keeps for inference, moved towards each
//! training batch's statistics as PyTorch moves them (the variance unbiased).

use burn::prelude::*;

/// `running` (mean, variance) after one batch of `count` values per channel
/// with biased statistics `batch`, moved by `momentum`.
pub(super) fn updated<B: Backend>(
    running: (Tensor<B, 1>, Tensor<B, 1>),
    batch: (Tensor<B, 1>, Tensor<B, 1>),
    count: f64,
    momentum: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let (mean, var) = batch;
    let unbiased = var.detach().mul_scalar(count / (count - 1.0).max(1.0));
    let keep = 1.0 - momentum;
    let running_mean = running.0.mul_scalar(keep) + mean.detach().mul_scalar(momentum);
    let running_var = running.1.mul_scalar(keep) + unbiased.mul_scalar(momentum);
    (running_mean.detach(), running_var.detach())
}
