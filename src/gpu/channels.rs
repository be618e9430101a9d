//! Where the channels of a 4-D activation lie in its buffer.
//!
//! burn's cubecl convolutions and pools work channels-last: they permute
//! their NCHW input to NHWC, copy it if its channels are not contiguous,
//! and hand back their NHWC output as an NCHW view. A kernel of ours that
//! wants NCHW copies that output back, and the next convolution copies
//! ours again: two full copies of every activation, each way. Kernels that
//! read either order, and write their output in their input's order, leave
//! the buffers as the convolutions want them.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::{permute_nchw_to_nhwc, permute_nhwc_to_nchw};
use burn_cubecl::tensor::CubeTensor;

use super::cube::{empty, raw_f32};

/// The order of an [n, c, h, w] tensor's contiguous buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelOrder {
    /// NCHW: each channel's pixels together.
    First,
    /// NHWC: each pixel's channels together.
    Last,
}

impl ChannelOrder {
    /// The order `t`'s buffer already has, if it is contiguous in either.
    /// NCHW wins where both fit (one channel, or one pixel: cubecl's
    /// contiguity ignores axes of size 1). Only 4-D tensors can be
    /// channels-last; any other is `First` when contiguous.
    pub fn of<R: CubeRuntime>(t: &CubeTensor<R>) -> Option<Self> {
        [ChannelOrder::First, ChannelOrder::Last]
            .into_iter()
            .find(|order| order.holds(t))
    }

    /// Whether `t`'s buffer is contiguous in this order (possibly in the
    /// other as well).
    pub fn holds<R: CubeRuntime>(self, t: &CubeTensor<R>) -> bool {
        match self {
            ChannelOrder::First => t.is_contiguous(),
            ChannelOrder::Last => {
                t.meta.rank() == 4 && permute_nchw_to_nhwc(t.clone()).is_contiguous()
            }
        }
    }

    /// The kernels' comptime flag: channels last.
    pub fn is_last(self) -> bool {
        self == ChannelOrder::Last
    }
}

/// `t` as a cubecl tensor of f32 whose buffer is contiguous in the order it
/// already has, or in NCHW (copied) if it has neither; `None` off `R` or f32.
pub fn to_cube_4d<R: CubeRuntime, B: Backend>(
    t: &Tensor<B, 4>,
) -> Option<(CubeTensor<R>, ChannelOrder)> {
    let cube = raw_f32::<R, B, 4>(t)?;
    Some(match ChannelOrder::of(&cube) {
        Some(order) => (cube, order),
        None => (into_contiguous(cube), ChannelOrder::First),
    })
}

/// `t` (f32, on `R`) with its buffer contiguous in `order`, copied only if
/// it is not already.
pub fn to_cube_in<R: CubeRuntime, B: Backend>(
    t: &Tensor<B, 4>,
    order: ChannelOrder,
) -> Option<CubeTensor<R>> {
    Some(into_order(raw_f32::<R, B, 4>(t)?, order))
}

/// `t` with its buffer contiguous in `order` (4-D for `Last`), copied only
/// if it is not already.
pub fn into_order<R: CubeRuntime>(t: CubeTensor<R>, order: ChannelOrder) -> CubeTensor<R> {
    if order.holds(&t) {
        return t;
    }
    match order {
        ChannelOrder::First => into_contiguous(t),
        ChannelOrder::Last => permute_nhwc_to_nchw(into_contiguous(permute_nchw_to_nhwc(t))),
    }
}

/// A new uninitialised tensor of shape `dims` like `like`, its buffer in
/// `order`.
pub fn empty_in<R: CubeRuntime>(
    like: &CubeTensor<R>,
    dims: &[usize],
    order: ChannelOrder,
) -> CubeTensor<R> {
    match (order, dims) {
        (ChannelOrder::Last, &[n, c, h, w]) => permute_nhwc_to_nchw(empty(like, &[n, h, w, c])),
        (ChannelOrder::Last, _) => unreachable!("gpu::channels: a channels-last tensor not 4-D"),
        (ChannelOrder::First, _) => empty(like, dims),
    }
}
