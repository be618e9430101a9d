//! The forward pass: the statistics' sums, the per-channel affine map (with
//! the running averages' update) and the normalisation.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

use super::{Activation, activation_code};
use crate::gpu::channels::{empty_in, to_cube_4d, to_cube_in};
use crate::gpu::cube::{CubeTask, array, dims, empty, from_cube, grid, on_runtime_of, to_cube};
use crate::gpu::sums::{
    SumLayout, channel_of, channel_value, chunk_end, chunk_total, rows, unit_channel, unit_row,
    write_cube_sums,
};

/// Cube (k, g) adds chunk k (`chunk_len` positions) of the n·pixels values
/// of x and x² of each channel c of group g ([`SumLayout`]), into
/// partial[c·chunks + k] and partial[(channels + c)·chunks + k]. x is NCHW,
/// or NHWC with `last`.
#[cube(launch_unchecked)]
fn statistics_sums_kernel<F: Float>(
    x: &Array<F>,
    partial: &mut Array<F>,
    pixels: usize,
    channels: usize,
    chunk_len: usize,
    chunks: usize,
    lanes: usize,
    #[comptime] units: u32,
    #[comptime] last: bool,
) {
    let k = CUBE_POS_X as usize;
    let c = unit_channel(lanes);
    let end = chunk_end(k, chunk_len, x.len() / channels);
    let rows = rows(lanes);
    let mut s = F::new(0.0);
    let mut s2 = F::new(0.0);
    if c < channels {
        let mut j = k * chunk_len + unit_row(lanes);
        while j < end {
            let v = x[channel_value(j, c, pixels, channels, last)];
            s += v;
            s2 += v * v;
            j += rows;
        }
    }
    write_cube_sums::<F>(s, s2, partial, lanes, channels, chunks, units);
}

/// Per channel: mean, var, inv_std = 1/√(var + ε), scale = γ·inv_std,
/// shift = β − mean·scale. With `from_sums` (= 1), `stats` holds
/// [`statistics_sums_kernel`]'s partial sums over `count` values (var
/// clamped at 0), and the running averages move by `momentum` towards the
/// batch's mean and unbiased variance, as PyTorch's do; else the running
/// averages are the statistics (and `stats` is not read).
#[cube(launch_unchecked)]
fn affine_kernel<F: Float>(
    stats: &Array<F>,
    gamma: &Array<F>,
    beta: &Array<F>,
    running_mean: &Array<F>,
    running_var: &Array<F>,
    mean: &mut Array<F>,
    inv_std: &mut Array<F>,
    scale: &mut Array<F>,
    shift: &mut Array<F>,
    new_mean: &mut Array<F>,
    new_var: &mut Array<F>,
    channels: usize,
    chunks: usize,
    count: f32,
    epsilon: f32,
    momentum: f32,
    from_sums: u32,
) {
    let c = ABSOLUTE_POS;
    if c < channels {
        let mut m = running_mean[c];
        let mut v = running_var[c];
        let mut moved_mean = m;
        let mut moved_var = v;
        if from_sums == 1 {
            let n = F::cast_from(count);
            m = chunk_total::<F>(stats, c, chunks) / n;
            v = chunk_total::<F>(stats, channels + c, chunks) / n - m * m;
            if v < F::new(0.0) {
                v = F::new(0.0);
            }
            let mut bessel = F::new(1.0);
            if count > 1.0 {
                bessel = n / (n - F::new(1.0));
            }
            let keep = F::new(1.0) - F::cast_from(momentum);
            moved_mean = moved_mean * keep + m * F::cast_from(momentum);
            moved_var = moved_var * keep + v * bessel * F::cast_from(momentum);
        }
        let s = F::new(1.0) / F::sqrt(v + F::cast_from(epsilon));
        let k = gamma[c] * s;
        mean[c] = m;
        inv_std[c] = s;
        scale[c] = k;
        shift[c] = beta[c] - m * k;
        new_mean[c] = moved_mean;
        new_var[c] = moved_var;
    }
}

/// y = act(x·scale[c] + shift[c] (+ shortcut with `joined`)) over
/// [n, c, pixels], x, shortcut and y all NCHW or (`last`) all NHWC.
#[cube(launch_unchecked)]
fn normalize_kernel<F: Float>(
    x: &Array<F>,
    scale: &Array<F>,
    shift: &Array<F>,
    shortcut: &Array<F>,
    y: &mut Array<F>,
    pixels: usize,
    channels: usize,
    activation: u32,
    slope: f32,
    #[comptime] last: bool,
    #[comptime] joined: bool,
) {
    let i = ABSOLUTE_POS;
    if i < x.len() {
        let c = channel_of(i, pixels, channels, last);
        let mut z = x[i] * scale[c] + shift[c];
        if joined {
            z += shortcut[i];
        }
        let mut out = z;
        if z < F::new(0.0) {
            if activation == 1 {
                out = F::new(0.0);
            } else if activation == 2 {
                out = z * F::cast_from(slope);
            }
        }
        y[i] = out;
    }
}

/// The per-channel vectors the forward pass needs and yields.
pub(crate) struct Affine<I: Backend> {
    pub mean: Tensor<I, 1>,
    pub inv_std: Tensor<I, 1>,
    pub scale: Tensor<I, 1>,
    pub shift: Tensor<I, 1>,
    /// The running averages after this pass (moved with batch statistics,
    /// unchanged without).
    pub running: (Tensor<I, 1>, Tensor<I, 1>),
}

/// How [`affine`] gets its statistics.
pub(crate) enum Statistics<'a, I: Backend> {
    /// The batch's, from x; the running averages move by `momentum`.
    Batch { x: &'a Tensor<I, 4>, momentum: f64 },
    /// The running averages.
    Running,
}

/// The per-channel affine map of batch norm: from x's batch statistics
/// ([`statistics_sums_kernel`] then [`affine_kernel`]: two launches), or
/// from the running averages (one).
pub(crate) fn affine<I: Backend>(
    statistics: Statistics<'_, I>,
    gamma: &Tensor<I, 1>,
    beta: &Tensor<I, 1>,
    running: (&Tensor<I, 1>, &Tensor<I, 1>),
    epsilon: f64,
) -> Option<Affine<I>> {
    on_runtime_of::<I, _>(AffineTask {
        statistics,
        channel: [gamma, beta, running.0, running.1],
        epsilon,
    })
    .flatten()
}

struct AffineTask<'a, I: Backend> {
    statistics: Statistics<'a, I>,
    channel: [&'a Tensor<I, 1>; 4],
    epsilon: f64,
}

impl<I: Backend> CubeTask for AffineTask<'_, I> {
    type Output = Option<Affine<I>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let [gamma, beta, running_mean, running_var] = self.channel;
        let [gamma, beta, running_mean, running_var] = [
            to_cube::<R, I, 1>(gamma)?,
            to_cube::<R, I, 1>(beta)?,
            to_cube::<R, I, 1>(running_mean)?,
            to_cube::<R, I, 1>(running_var)?,
        ];
        let channels = gamma.meta.num_elements();
        let client = gamma.client.clone();
        let (stats, chunks, count, momentum) = match self.statistics {
            Statistics::Batch { x, momentum } => {
                let (x, order) = to_cube_4d::<R, I>(x)?;
                let shape = dims(&x);
                let pixels = shape[2] * shape[3];
                let per_channel = shape[0] * pixels;
                let layout = SumLayout::new(&x, channels, per_channel, order);
                let partial = empty(&x, &[2 * channels * layout.chunks]);
                // Safety: x's buffer holds n·channels·pixels contiguous f32
                // values in `order` and every index the kernel forms is below
                // that; `partial` holds 2·channels·chunks, and each cube
                // writes its channels' pairs for its chunk.
                unsafe {
                    statistics_sums_kernel::launch_unchecked::<f32, R>(
                        &client,
                        layout.cubes(),
                        CubeDim::new_1d(layout.units),
                        array(&x, x.meta.num_elements()),
                        array(&partial, 2 * channels * layout.chunks),
                        pixels,
                        channels,
                        layout.chunk_len,
                        layout.chunks,
                        layout.lanes,
                        layout.units,
                        order.is_last(),
                    );
                }
                (partial, layout.chunks, Some(per_channel as f64), momentum)
            }
            Statistics::Running => (running_mean.clone(), 1, None, 0.0),
        };
        let stats_len = stats.meta.num_elements();
        let out = || empty(&gamma, &[channels]);
        let [mean, inv_std, scale, shift, new_mean, new_var] =
            [out(), out(), out(), out(), out(), out()];
        let (cube_count, cube_dim) = grid(&gamma, channels);
        // Safety: contiguous f32 arrays of `channels` values, and `stats` of
        // 2·channels·chunks (read only with sums); the kernel indexes below
        // those.
        unsafe {
            affine_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&stats, stats_len),
                array(&gamma, channels),
                array(&beta, channels),
                array(&running_mean, channels),
                array(&running_var, channels),
                array(&mean, channels),
                array(&inv_std, channels),
                array(&scale, channels),
                array(&shift, channels),
                array(&new_mean, channels),
                array(&new_var, channels),
                channels,
                chunks,
                count.unwrap_or(1.0) as f32,
                self.epsilon as f32,
                momentum as f32,
                u32::from(count.is_some()),
            );
        }
        Some(Affine {
            mean: from_cube(mean),
            inv_std: from_cube(inv_std),
            scale: from_cube(scale),
            shift: from_cube(shift),
            running: (from_cube(new_mean), from_cube(new_var)),
        })
    }
}

/// See [`normalize_kernel`]; `shortcut` of x's shape, in any order.
pub(crate) fn normalize<I: Backend>(
    x: &Tensor<I, 4>,
    scale: &Tensor<I, 1>,
    shift: &Tensor<I, 1>,
    shortcut: Option<&Tensor<I, 4>>,
    activation: Activation,
) -> Option<Tensor<I, 4>> {
    on_runtime_of::<I, _>(NormalizeTask {
        x,
        scale,
        shift,
        shortcut,
        activation,
    })
    .flatten()
}

struct NormalizeTask<'a, I: Backend> {
    x: &'a Tensor<I, 4>,
    scale: &'a Tensor<I, 1>,
    shift: &'a Tensor<I, 1>,
    shortcut: Option<&'a Tensor<I, 4>>,
    activation: Activation,
}

impl<I: Backend> CubeTask for NormalizeTask<'_, I> {
    type Output = Option<Tensor<I, 4>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let (x, order) = to_cube_4d::<R, I>(self.x)?;
        let scale = to_cube::<R, I, 1>(self.scale)?;
        let shift = to_cube::<R, I, 1>(self.shift)?;
        // Read in x's order; without a shortcut, one unread value.
        let shape = dims(&x);
        let shortcut = match self.shortcut {
            // The kernel indexes it as x: same shape or no launch.
            Some(t) if t.dims().as_slice() != shape.as_slice() => return None,
            Some(t) => to_cube_in::<R, I>(t, order)?,
            None => empty(&x, &[1]),
        };
        let shortcut_len = shortcut.meta.num_elements();
        let (channels, pixels) = (shape[1], shape[2] * shape[3]);
        let n = x.meta.num_elements();
        // y keeps x's order, so the next convolution need not copy it.
        let y = empty_in(&x, &[shape[0], channels, shape[2], shape[3]], order);
        let (kind, slope) = activation_code(self.activation);
        let client = x.client.clone();
        let (cube_count, cube_dim) = grid(&x, n);
        // Safety: x's and y's buffers hold n contiguous f32 values in the
        // same order (the shortcut's too when read, with `joined`), scale
        // and shift one per channel; channel_of < channels.
        unsafe {
            normalize_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&x, n),
                array(&scale, channels),
                array(&shift, channels),
                array(&shortcut, shortcut_len),
                array(&y, n),
                pixels,
                channels,
                kind,
                slope,
                order.is_last(),
                self.shortcut.is_some(),
            );
        }
        Some(from_cube(y))
    }
}
