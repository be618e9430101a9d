//! Per-channel sums for our kernels (batch norm's statistics and gradient
//! sums, the Dice loss's per-slice, per-class terms): how a launch splits
//! each channel's values into chunks (one cube per chunk and group of
//! channels), the tree that adds a cube's units in shared memory, and the
//! in-order total over the chunks. Deterministic: the same order every time.

use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::tensor::CubeTensor;

use super::channels::ChannelOrder;

/// Units per cube of the sum kernels, at most: a power of two, for the tree.
const SUM_UNITS: u32 = 256;
/// About how many cubes a sum launches: enough to fill a large GPU when a
/// layer has few channels (16 at 256² on the U-Net's first level).
const SUM_CUBES: usize = 1024;
/// Fewest values each unit adds before another chunk is worth a cube.
const VALUES_PER_UNIT: usize = 8;

/// The buffer index of channel `c`'s `j`-th value in an [n, c, pixels]
/// tensor: j counts positions (image, pixel), and the buffer is NCHW or,
/// with `last`, NHWC.
#[cube]
pub fn channel_value(
    j: usize,
    c: usize,
    pixels: usize,
    channels: usize,
    #[comptime] last: bool,
) -> usize {
    let mut i = j * channels + c;
    if !last {
        i = ((j / pixels) * channels + c) * pixels + j % pixels;
    }
    i
}

/// The channel of buffer index `i` (NCHW, or NHWC with `last`).
#[cube]
pub fn channel_of(i: usize, pixels: usize, channels: usize, #[comptime] last: bool) -> usize {
    let mut c = i % channels;
    if !last {
        c = (i / pixels) % channels;
    }
    c
}

/// The channel this unit of a sum kernel's cube (k, g) adds: g·lanes +
/// its lane ([`SumLayout`]).
#[cube]
pub fn unit_channel(lanes: usize) -> usize {
    CUBE_POS_Y as usize * lanes + UNIT_POS_X as usize % lanes
}

/// This unit's row: the first of a chunk's positions it adds.
#[cube]
pub fn unit_row(lanes: usize) -> usize {
    UNIT_POS_X as usize / lanes
}

/// The cube's rows: how far a unit steps between the positions it adds.
#[cube]
pub fn rows(lanes: usize) -> usize {
    CUBE_DIM_X as usize / lanes
}

/// Where chunk `k` of a channel's `per_channel` values ends.
#[cube]
pub fn chunk_end(k: usize, chunk_len: usize, per_channel: usize) -> usize {
    let mut end = (k + 1) * chunk_len;
    if end > per_channel {
        end = per_channel;
    }
    end
}

/// Adds the `a` and `b` of the units that share a lane (units ≡ lane mod
/// `lanes`) over the cube, and the first unit of each lane writes its
/// channel's sums for chunk `k` to partial[c·chunks + k] and
/// partial[(channels + c)·chunks + k]; c = g·lanes + lane, below `channels`.
#[cube]
pub fn write_cube_sums<F: Float>(
    a: F,
    b: F,
    partial: &mut Array<F>,
    lanes: usize,
    channels: usize,
    chunks: usize,
    #[comptime] units: u32,
) {
    let mut shared = SharedMemory::<F>::new(2 * units as usize);
    let u = UNIT_POS_X as usize;
    let half = units as usize;
    shared[u] = a;
    shared[half + u] = b;
    sync_cube();
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride >= lanes {
        if u < stride {
            shared[u] = shared[u] + shared[u + stride];
            shared[half + u] = shared[half + u] + shared[half + u + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let c = unit_channel(lanes);
    if u < lanes && c < channels {
        let k = CUBE_POS_X as usize;
        partial[c * chunks + k] = shared[u];
        partial[(channels + c) * chunks + k] = shared[half + u];
    }
}

/// Σ over the chunks of row `row` of a [rows, chunks] array, in order.
#[cube]
pub fn chunk_total<F: Float>(partial: &Array<F>, row: usize, chunks: usize) -> F {
    let mut s = F::new(0.0);
    for k in 0..chunks {
        s += partial[row * chunks + k];
    }
    s
}

/// How a sum kernel splits the work. Cube (k, g) adds chunk k (`chunk_len`
/// positions) of the channels in group g. Its units form `lanes` lanes, one
/// channel each, and `units / lanes` rows, which step through the chunk's
/// positions together. NCHW buffers get one lane (each channel's values are
/// consecutive, so a cube's units read consecutive values); NHWC buffers
/// get as many lanes as channels, up to the cube (each pixel's channels are
/// consecutive, so a row reads them in one sweep). Powers of two, for the
/// tree.
#[derive(Clone, Copy, Debug)]
pub struct SumLayout {
    pub units: u32,
    pub lanes: usize,
    pub groups: usize,
    pub chunks: usize,
    pub chunk_len: usize,
}

impl SumLayout {
    pub fn new<R: CubeRuntime>(
        like: &CubeTensor<R>,
        channels: usize,
        per_channel: usize,
        order: ChannelOrder,
    ) -> Self {
        let max = like.client.properties().hardware.max_units_per_cube.max(1);
        let units = floor_power_of_two(SUM_UNITS.min(max) as usize);
        let lanes = match order {
            ChannelOrder::First => 1,
            ChannelOrder::Last => floor_power_of_two(channels.min(units)),
        };
        let groups = channels.div_ceil(lanes).max(1);
        let rows = units / lanes;
        let by_cubes = SUM_CUBES.div_ceil(groups);
        let by_values = per_channel.div_ceil(rows * VALUES_PER_UNIT);
        let wanted = by_cubes.min(by_values).max(1);
        let chunk_len = per_channel.div_ceil(wanted).max(1);
        SumLayout {
            units: units as u32,
            lanes,
            groups,
            chunks: per_channel.div_ceil(chunk_len).max(1),
            chunk_len,
        }
    }

    pub fn cubes(&self) -> CubeCount {
        CubeCount::Static(self.chunks as u32, self.groups as u32, 1)
    }
}

/// The largest power of two ≤ `n` (1 for 0).
fn floor_power_of_two(n: usize) -> usize {
    if n <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}
