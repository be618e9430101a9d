//! The per-channel sums both passes need: how a launch splits each
//! channel's values into chunks (one cube per chunk and channel), the
//! tree that adds a cube's units in shared memory, and the in-order total
//! over the chunks. Deterministic: the same order every time.

use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::tensor::CubeTensor;

/// Units per cube of the sum kernels, at most: a power of two, for the tree.
const SUM_UNITS: u32 = 256;
/// About how many cubes a sum launches: enough to fill a large GPU when a
/// layer has few channels (16 at 256² on the U-Net's first level).
const SUM_CUBES: usize = 1024;
/// Fewest values each unit adds before another chunk is worth a cube.
const VALUES_PER_UNIT: usize = 8;

/// The index in an [n, c, pixels] tensor of channel `c`'s `j`-th value.
#[cube]
pub(super) fn channel_value(j: usize, c: usize, pixels: usize, channels: usize) -> usize {
    ((j / pixels) * channels + c) * pixels + j % pixels
}

/// Where chunk `k` of a channel's `per_channel` values ends.
#[cube]
pub(super) fn chunk_end(k: usize, chunk_len: usize, per_channel: usize) -> usize {
    let mut end = (k + 1) * chunk_len;
    if end > per_channel {
        end = per_channel;
    }
    end
}

/// Adds every unit's `a` and `b` over the cube, and unit 0 writes the sums
/// to `out[at_a]` and `out[at_b]`.
#[cube]
pub(super) fn write_cube_sums<F: Float>(
    a: F,
    b: F,
    out: &mut Array<F>,
    at_a: usize,
    at_b: usize,
    #[comptime] units: u32,
) {
    let mut shared = SharedMemory::<F>::new(2 * units as usize);
    let u = UNIT_POS_X as usize;
    let half = units as usize;
    shared[u] = a;
    shared[half + u] = b;
    sync_cube();
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if u < stride {
            shared[u] = shared[u] + shared[u + stride];
            shared[half + u] = shared[half + u] + shared[half + u + stride];
        }
        sync_cube();
        stride /= 2;
    }
    if u == 0 {
        out[at_a] = shared[0];
        out[at_b] = shared[half];
    }
}

/// Σ over the chunks of row `row` of a [rows, chunks] array, in order.
#[cube]
pub(super) fn chunk_total<F: Float>(partial: &Array<F>, row: usize, chunks: usize) -> F {
    let mut s = F::new(0.0);
    for k in 0..chunks {
        s += partial[row * chunks + k];
    }
    s
}

/// How a sum kernel splits each channel's `per_channel` values: the units
/// per cube (a power of two the device allows), the chunks per channel and
/// the values per chunk.
#[derive(Clone, Copy, Debug)]
pub(super) struct SumLayout {
    pub units: u32,
    pub chunks: usize,
    pub chunk_len: usize,
}

impl SumLayout {
    pub fn new<R: CubeRuntime>(like: &CubeTensor<R>, channels: usize, per_channel: usize) -> Self {
        let max = like.client.properties().hardware.max_units_per_cube.max(1);
        let allowed = SUM_UNITS.min(max);
        // The largest power of two the device allows, for the tree.
        let units = 1 << (u32::BITS - 1 - allowed.leading_zeros());
        let by_cubes = SUM_CUBES.div_ceil(channels.max(1));
        let by_values = per_channel.div_ceil(units as usize * VALUES_PER_UNIT);
        let wanted = by_cubes.min(by_values).max(1);
        let chunk_len = per_channel.div_ceil(wanted).max(1);
        SumLayout {
            units,
            chunks: per_channel.div_ceil(chunk_len).max(1),
            chunk_len,
        }
    }

    pub fn cubes(&self, channels: usize) -> CubeCount {
        CubeCount::Static(self.chunks as u32, channels as u32, 1)
    }
}
