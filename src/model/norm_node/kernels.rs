//! Batch norm as five cubecl kernels, three forward and two backward (plus
//! a tiny one for the parameter gradients):
//!
//! - forward: [`statistics_sums`] (Σx and Σx² per channel, one pass over
//!   x), [`affine`] (the per-channel mean, inv_std, scale and shift, and the
//!   running averages' update), [`normalize`] (scale, shift and activation);
//! - backward: [`gradient_sums`] (Σ∂L/∂z and Σ∂L/∂z·x̂ per channel, one
//!   pass over ∂L/∂y, y and x) and [`input_gradient`].
//!
//! Before, the same work was about twenty launches per layer and step: each
//! per-channel sum two reductions (and one more pass for x²), a dozen
//! operations on vectors of a few hundred channels, and two full tensors
//! (∂L/∂z, ∂L/∂z·x̂) written only to be summed. `None` on a backend whose
//! tensors are not plain cubecl ones (burn's fused backend): the caller then
//! uses burn's operations, which fusion merges itself.
//!
//! The sums are deterministic: cube (k, c) adds chunk k of channel c in a
//! fixed order and a tree in shared memory, and [`affine`] or [`totals`]
//! add the chunks in order.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::tensor::CubeTensor;

use super::Activation;
use crate::gpu::cube::{CubeTask, array, dims, empty, from_cube, grid, on_runtime_of, to_cube};

/// Units per cube of the sum kernels, at most: a power of two, for the tree.
const SUM_UNITS: u32 = 256;
/// About how many cubes a sum launches: enough to fill a large GPU when a
/// layer has few channels (16 at 256² on the U-Net's first level).
const SUM_CUBES: usize = 1024;
/// Fewest values each unit adds before another chunk is worth a cube.
const VALUES_PER_UNIT: usize = 8;

/// ∂L/∂z from ∂L/∂y through the activation, whose sign is y's (z > 0
/// exactly where y > 0); `activation` 0 is the identity, 1 ReLU, 2
/// LeakyReLU with `slope`.
#[cube]
fn through_activation<F: Float>(dy: F, y: F, activation: u32, slope: f32) -> F {
    let mut g = dy;
    if y <= F::new(0.0) {
        if activation == 1 {
            g = F::new(0.0);
        } else if activation == 2 {
            g *= F::cast_from(slope);
        }
    }
    g
}

/// The index in an [n, c, pixels] tensor of channel `c`'s `j`-th value.
#[cube]
fn channel_value(j: usize, c: usize, pixels: usize, channels: usize) -> usize {
    ((j / pixels) * channels + c) * pixels + j % pixels
}

/// Adds every unit's `a` and `b` over the cube, and unit 0 writes the sums
/// to `out[at_a]` and `out[at_b]`.
#[cube]
fn write_cube_sums<F: Float>(
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

/// Cube (k, c) adds chunk k (`chunk_len` values) of channel c's n·pixels
/// values of x and x², into partial[c·chunks + k] and
/// partial[(channels + c)·chunks + k].
#[cube(launch_unchecked)]
fn statistics_sums_kernel<F: Float>(
    x: &Array<F>,
    partial: &mut Array<F>,
    pixels: usize,
    channels: usize,
    chunk_len: usize,
    chunks: usize,
    #[comptime] units: u32,
) {
    let k = CUBE_POS_X as usize;
    let c = CUBE_POS_Y as usize;
    let per_channel = x.len() / channels;
    let mut end = (k + 1) * chunk_len;
    if end > per_channel {
        end = per_channel;
    }
    let mut s = F::new(0.0);
    let mut s2 = F::new(0.0);
    let mut j = k * chunk_len + UNIT_POS_X as usize;
    while j < end {
        let v = x[channel_value(j, c, pixels, channels)];
        s += v;
        s2 += v * v;
        j += CUBE_DIM_X as usize;
    }
    write_cube_sums::<F>(
        s,
        s2,
        partial,
        c * chunks + k,
        (channels + c) * chunks + k,
        units,
    );
}

/// [`statistics_sums_kernel`] for the backward pass: Σdz and Σdz·x̂, with
/// dz = ∂L/∂z and x̂ = (x − mean)·inv_std.
#[cube(launch_unchecked)]
fn gradient_sums_kernel<F: Float>(
    dy: &Array<F>,
    y: &Array<F>,
    x: &Array<F>,
    mean: &Array<F>,
    inv_std: &Array<F>,
    partial: &mut Array<F>,
    pixels: usize,
    channels: usize,
    chunk_len: usize,
    chunks: usize,
    activation: u32,
    slope: f32,
    #[comptime] units: u32,
) {
    let k = CUBE_POS_X as usize;
    let c = CUBE_POS_Y as usize;
    let per_channel = x.len() / channels;
    let mut end = (k + 1) * chunk_len;
    if end > per_channel {
        end = per_channel;
    }
    let m = mean[c];
    let s_inv = inv_std[c];
    let mut s = F::new(0.0);
    let mut s_x_hat = F::new(0.0);
    let mut j = k * chunk_len + UNIT_POS_X as usize;
    while j < end {
        let i = channel_value(j, c, pixels, channels);
        let g = through_activation::<F>(dy[i], y[i], activation, slope);
        s += g;
        s_x_hat += g * (x[i] - m) * s_inv;
        j += CUBE_DIM_X as usize;
    }
    write_cube_sums::<F>(
        s,
        s_x_hat,
        partial,
        c * chunks + k,
        (channels + c) * chunks + k,
        units,
    );
}

/// Σ over the chunks of row `row` of a [rows, chunks] array, in order.
#[cube]
fn chunk_total<F: Float>(partial: &Array<F>, row: usize, chunks: usize) -> F {
    let mut s = F::new(0.0);
    for k in 0..chunks {
        s += partial[row * chunks + k];
    }
    s
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

/// The parameter gradients from [`gradient_sums_kernel`]'s partial sums:
/// ∂L/∂β = Σdz, ∂L/∂γ = Σdz·x̂.
#[cube(launch_unchecked)]
fn totals_kernel<F: Float>(
    partial: &Array<F>,
    d_beta: &mut Array<F>,
    d_gamma: &mut Array<F>,
    channels: usize,
    chunks: usize,
) {
    let c = ABSOLUTE_POS;
    if c < channels {
        d_beta[c] = chunk_total::<F>(partial, c, chunks);
        d_gamma[c] = chunk_total::<F>(partial, channels + c, chunks);
    }
}

/// y = act(x·scale[c] + shift[c]) over [n, c, pixels].
#[cube(launch_unchecked)]
fn normalize_kernel<F: Float>(
    x: &Array<F>,
    scale: &Array<F>,
    shift: &Array<F>,
    y: &mut Array<F>,
    pixels: usize,
    channels: usize,
    activation: u32,
    slope: f32,
) {
    let i = ABSOLUTE_POS;
    if i < x.len() {
        let c = (i / pixels) % channels;
        let z = x[i] * scale[c] + shift[c];
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

/// ∂L/∂x = scale·(dz − (x̂·Σdz·x̂ + Σdz)/count) with batch statistics
/// (`from_batch` = 1), else scale·dz; dz = ∂L/∂z from ∂L/∂y and y.
#[cube(launch_unchecked)]
fn input_gradient_kernel<F: Float>(
    dy: &Array<F>,
    y: &Array<F>,
    x: &Array<F>,
    mean: &Array<F>,
    inv_std: &Array<F>,
    scale: &Array<F>,
    d_gamma: &Array<F>,
    d_beta: &Array<F>,
    dx: &mut Array<F>,
    pixels: usize,
    channels: usize,
    count: f32,
    from_batch: u32,
    activation: u32,
    slope: f32,
) {
    let i = ABSOLUTE_POS;
    if i < dy.len() {
        let c = (i / pixels) % channels;
        let mut g = through_activation::<F>(dy[i], y[i], activation, slope);
        if from_batch == 1 {
            let x_hat = (x[i] - mean[c]) * inv_std[c];
            g -= (x_hat * d_gamma[c] + d_beta[c]) / F::cast_from(count);
        }
        dx[i] = g * scale[c];
    }
}

fn activation_code(activation: Activation) -> (u32, f32) {
    match activation {
        Activation::Identity => (0, 0.0),
        Activation::Relu => (1, 0.0),
        Activation::LeakyRelu(slope) => (2, slope),
    }
}

/// How a sum kernel splits each channel's `per_channel` values: the units
/// per cube (a power of two the device allows), the chunks per channel and
/// the values per chunk.
#[derive(Clone, Copy, Debug)]
struct SumLayout {
    units: u32,
    chunks: usize,
    chunk_len: usize,
}

impl SumLayout {
    fn new<R: CubeRuntime>(like: &CubeTensor<R>, channels: usize, per_channel: usize) -> Self {
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

    fn cubes(&self, channels: usize) -> CubeCount {
        CubeCount::Static(self.chunks as u32, channels as u32, 1)
    }
}

/// The per-channel vectors the forward pass needs and yields.
pub(super) struct Affine<I: Backend> {
    pub mean: Tensor<I, 1>,
    pub inv_std: Tensor<I, 1>,
    pub scale: Tensor<I, 1>,
    pub shift: Tensor<I, 1>,
    /// The running averages after this pass (moved with batch statistics,
    /// unchanged without).
    pub running: (Tensor<I, 1>, Tensor<I, 1>),
}

/// How [`affine`] gets its statistics.
pub(super) enum Statistics<'a, I: Backend> {
    /// The batch's, from x; the running averages move by `momentum`.
    Batch { x: &'a Tensor<I, 4>, momentum: f64 },
    /// The running averages.
    Running,
}

/// The per-channel affine map of batch norm: from x's batch statistics
/// ([`statistics_sums_kernel`] then [`affine_kernel`]: two launches), or
/// from the running averages (one).
pub(super) fn affine<I: Backend>(
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
                let x = to_cube::<R, I, 4>(x)?;
                let shape = dims(&x);
                let pixels = shape[2] * shape[3];
                let per_channel = shape[0] * pixels;
                let layout = SumLayout::new(&x, channels, per_channel);
                let partial = empty(&x, &[2 * channels * layout.chunks]);
                // Safety: x holds n·channels·pixels contiguous f32 values and
                // every index the kernel forms is below that; `partial` holds
                // 2·channels·chunks, one per (row, chunk) cube.
                unsafe {
                    statistics_sums_kernel::launch_unchecked::<f32, R>(
                        &client,
                        layout.cubes(channels),
                        CubeDim::new_1d(layout.units),
                        array(&x, x.meta.num_elements()),
                        array(&partial, 2 * channels * layout.chunks),
                        pixels,
                        channels,
                        layout.chunk_len,
                        layout.chunks,
                        layout.units,
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

/// See [`normalize_kernel`].
pub(super) fn normalize<I: Backend>(
    x: &Tensor<I, 4>,
    scale: &Tensor<I, 1>,
    shift: &Tensor<I, 1>,
    activation: Activation,
) -> Option<Tensor<I, 4>> {
    on_runtime_of::<I, _>(NormalizeTask {
        x,
        scale,
        shift,
        activation,
    })
    .flatten()
}

struct NormalizeTask<'a, I: Backend> {
    x: &'a Tensor<I, 4>,
    scale: &'a Tensor<I, 1>,
    shift: &'a Tensor<I, 1>,
    activation: Activation,
}

impl<I: Backend> CubeTask for NormalizeTask<'_, I> {
    type Output = Option<Tensor<I, 4>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let x = to_cube::<R, I, 4>(self.x)?;
        let scale = to_cube::<R, I, 1>(self.scale)?;
        let shift = to_cube::<R, I, 1>(self.shift)?;
        let shape = dims(&x);
        let (channels, pixels) = (shape[1], shape[2] * shape[3]);
        let n = x.meta.num_elements();
        let y = empty(&x, &shape);
        let (kind, slope) = activation_code(self.activation);
        let client = x.client.clone();
        let (cube_count, cube_dim) = grid(&x, n);
        // Safety: x and y hold n contiguous f32 values, scale and shift one
        // per channel; c = (i / pixels) % channels < channels.
        unsafe {
            normalize_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&x, n),
                array(&scale, channels),
                array(&shift, channels),
                array(&y, n),
                pixels,
                channels,
                kind,
                slope,
            );
        }
        Some(from_cube(y))
    }
}

/// What the backward kernels read: ∂L/∂y, the output y (the activation's
/// mask), the input x, and the forward pass's per-channel mean, inv_std and
/// scale = γ·inv_std.
pub(super) struct BackwardInputs<'a, I: Backend> {
    pub dy: &'a Tensor<I, 4>,
    pub y: &'a Tensor<I, 4>,
    pub x: &'a Tensor<I, 4>,
    pub mean: &'a Tensor<I, 1>,
    pub inv_std: &'a Tensor<I, 1>,
    pub scale: &'a Tensor<I, 1>,
    pub activation: Activation,
}

// References only: copied whatever `I` is (a derive would ask `I: Copy`).
impl<I: Backend> Clone for BackwardInputs<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I: Backend> Copy for BackwardInputs<'_, I> {}

/// The backward pass's results: ∂L/∂x, and (∂L/∂γ, ∂L/∂β), each where asked.
pub(super) type Gradients<I> = (Option<Tensor<I, 4>>, Option<(Tensor<I, 1>, Tensor<I, 1>)>);

/// Which gradients the backward pass computes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wanted {
    /// ∂L/∂x (x is tracked).
    pub input: bool,
    /// ∂L/∂γ and ∂L/∂β (either parameter is tracked).
    pub parameters: bool,
    /// The forward pass used batch statistics, which depend on x too.
    pub batch_statistics: bool,
}

/// The backward pass: [`gradient_sums_kernel`] and [`totals_kernel`] for
/// the per-channel sums (when the parameters' gradients or the batch
/// statistics need them), then [`input_gradient_kernel`]: at most three
/// launches.
pub(super) fn backward<I: Backend>(
    inputs: BackwardInputs<'_, I>,
    wanted: Wanted,
) -> Option<Gradients<I>> {
    on_runtime_of::<I, _>(BackwardTask { inputs, wanted }).flatten()
}

struct BackwardTask<'a, I: Backend> {
    inputs: BackwardInputs<'a, I>,
    wanted: Wanted,
}

impl<I: Backend> CubeTask for BackwardTask<'_, I> {
    type Output = Option<Gradients<I>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let inputs = self.inputs;
        let wanted = self.wanted;
        let [dy, y, x] = [
            to_cube::<R, I, 4>(inputs.dy)?,
            to_cube::<R, I, 4>(inputs.y)?,
            to_cube::<R, I, 4>(inputs.x)?,
        ];
        let [mean, inv_std, scale] = [
            to_cube::<R, I, 1>(inputs.mean)?,
            to_cube::<R, I, 1>(inputs.inv_std)?,
            to_cube::<R, I, 1>(inputs.scale)?,
        ];
        let shape = dims(&x);
        let (channels, pixels) = (shape[1], shape[2] * shape[3]);
        let per_channel = shape[0] * pixels;
        let n = x.meta.num_elements();
        let (kind, slope) = activation_code(inputs.activation);
        let client = x.client.clone();

        let sums = (wanted.parameters || wanted.batch_statistics).then(|| {
            let layout = SumLayout::new(&x, channels, per_channel);
            let partial = empty(&x, &[2 * channels * layout.chunks]);
            let (d_beta, d_gamma) = (empty(&x, &[channels]), empty(&x, &[channels]));
            let (cube_count, cube_dim) = grid(&x, channels);
            // Safety: dy, y and x hold n contiguous f32 values and every
            // index the sum kernel forms is below n; the per-channel arrays
            // hold `channels` values, `partial` 2·channels·chunks.
            unsafe {
                gradient_sums_kernel::launch_unchecked::<f32, R>(
                    &client,
                    layout.cubes(channels),
                    CubeDim::new_1d(layout.units),
                    array(&dy, n),
                    array(&y, n),
                    array(&x, n),
                    array(&mean, channels),
                    array(&inv_std, channels),
                    array(&partial, 2 * channels * layout.chunks),
                    pixels,
                    channels,
                    layout.chunk_len,
                    layout.chunks,
                    kind,
                    slope,
                    layout.units,
                );
                totals_kernel::launch_unchecked::<f32, R>(
                    &client,
                    cube_count,
                    cube_dim,
                    array(&partial, 2 * channels * layout.chunks),
                    array(&d_beta, channels),
                    array(&d_gamma, channels),
                    channels,
                    layout.chunks,
                );
            }
            (d_gamma, d_beta)
        });
        let dx = wanted.input.then(|| {
            // Without batch statistics the sums are not read: any
            // per-channel array stands in.
            let (d_gamma, d_beta) = match &sums {
                Some((d_gamma, d_beta)) => (d_gamma.clone(), d_beta.clone()),
                None => (mean.clone(), mean.clone()),
            };
            let dx = empty(&x, &shape);
            let (cube_count, cube_dim) = grid(&x, n);
            // Safety: four arrays of n contiguous f32 values, five of one
            // per channel; c = (i / pixels) % channels < channels.
            unsafe {
                input_gradient_kernel::launch_unchecked::<f32, R>(
                    &client,
                    cube_count,
                    cube_dim,
                    array(&dy, n),
                    array(&y, n),
                    array(&x, n),
                    array(&mean, channels),
                    array(&inv_std, channels),
                    array(&scale, channels),
                    array(&d_gamma, channels),
                    array(&d_beta, channels),
                    array(&dx, n),
                    pixels,
                    channels,
                    per_channel as f32,
                    u32::from(wanted.batch_statistics),
                    kind,
                    slope,
                );
            }
            from_cube(dx)
        });
        let parameters = sums.map(|(d_gamma, d_beta)| (from_cube(d_gamma), from_cube(d_beta)));
        Some((dx, parameters))
    }
}
