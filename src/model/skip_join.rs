//! The U-Net's skip join: the upsampled features and the encoder's, side
//! by side along channels.
//!
//! On burn-cuda and burn-wgpu, the convolution after the join works
//! channels-last, as do our batch-norm kernels, so both inputs already lie
//! NHWC; burn's `cat` along channels would write an NCHW tensor that the
//! convolution copies back to NHWC, forward and again for its weight
//! gradient. Joined along the last axis of their NHWC views instead, the
//! result is NHWC already, and the backward pass's slices are views.

use burn::prelude::*;

use super::conv_weights::convolves_channels_last;
use super::cpu::concat::cat_channels;

/// `Tensor::cat(vec![a, b], 1)` for [n, c, h, w] tensors, in the layout the
/// next convolution wants.
pub(super) fn join<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    if convolves_channels_last::<B>() {
        let nhwc = |t: Tensor<B, 4>| t.permute([0, 2, 3, 1]);
        return Tensor::cat(vec![nhwc(a), nhwc(b)], 3).permute([0, 3, 1, 2]);
    }
    cat_channels(a, b)
}
