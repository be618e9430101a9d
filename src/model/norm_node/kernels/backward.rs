//! The backward pass: the gradients' sums, the parameters' gradients from
//! them, and the input gradient.

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

/// [`statistics_sums_kernel`] for the backward pass: Σdz and Σdz·x̂, with
/// dz = ∂L/∂z and x̂ = (x − mean)·inv_std; dy, y and x all NCHW or (`last`)
/// all NHWC.
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
    lanes: usize,
    activation: u32,
    slope: f32,
    #[comptime] units: u32,
    #[comptime] last: bool,
) {
    let k = CUBE_POS_X as usize;
    let c = unit_channel(lanes);
    let end = chunk_end(k, chunk_len, x.len() / channels);
    let rows = rows(lanes);
    let mut s = F::new(0.0);
    let mut s_x_hat = F::new(0.0);
    if c < channels {
        let m = mean[c];
        let s_inv = inv_std[c];
        let mut j = k * chunk_len + unit_row(lanes);
        while j < end {
            let i = channel_value(j, c, pixels, channels, last);
            let g = through_activation::<F>(dy[i], y[i], activation, slope);
            s += g;
            s_x_hat += g * (x[i] - m) * s_inv;
            j += rows;
        }
    }
    write_cube_sums::<F>(s, s_x_hat, partial, lanes, channels, chunks, units);
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

/// ∂L/∂x = scale·(dz − (x̂·Σdz·x̂ + Σdz)/count) with batch statistics
/// (`from_batch` = 1), else scale·dz; dz = ∂L/∂z from ∂L/∂y and y. With
/// `joined`, also ∂L/∂shortcut = dz (the shortcut was added to z). All
/// full tensors NCHW or (`last`) NHWC.
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
    d_shortcut: &mut Array<F>,
    pixels: usize,
    channels: usize,
    count: f32,
    from_batch: u32,
    activation: u32,
    slope: f32,
    #[comptime] last: bool,
    #[comptime] joined: bool,
) {
    let i = ABSOLUTE_POS;
    if i < dy.len() {
        let c = channel_of(i, pixels, channels, last);
        let mut g = through_activation::<F>(dy[i], y[i], activation, slope);
        if joined {
            d_shortcut[i] = g;
        }
        if from_batch == 1 {
            let x_hat = (x[i] - mean[c]) * inv_std[c];
            g -= (x_hat * d_gamma[c] + d_beta[c]) / F::cast_from(count);
        }
        dx[i] = g * scale[c];
    }
}

/// What the backward kernels read: ∂L/∂y, the output y (the activation's
/// mask), the input x, and the forward pass's per-channel mean, inv_std and
/// scale = γ·inv_std.
pub(crate) struct BackwardInputs<'a, I: Backend> {
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

/// The backward pass's results, each where asked.
pub(crate) struct Gradients<I: Backend> {
    pub input: Option<Tensor<I, 4>>,
    /// (∂L/∂γ, ∂L/∂β).
    pub parameters: Option<(Tensor<I, 1>, Tensor<I, 1>)>,
    /// ∂L/∂shortcut, which is ∂L/∂z.
    pub shortcut: Option<Tensor<I, 4>>,
}

/// Which gradients the backward pass computes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted {
    /// ∂L/∂x (x is tracked).
    pub input: bool,
    /// ∂L/∂γ and ∂L/∂β (either parameter is tracked).
    pub parameters: bool,
    /// ∂L/∂shortcut (a shortcut was joined and is tracked).
    pub shortcut: bool,
    /// The forward pass used batch statistics, which depend on x too.
    pub batch_statistics: bool,
}

/// The backward pass: [`gradient_sums_kernel`] and [`totals_kernel`] for
/// the per-channel sums (when the parameters' gradients or the batch
/// statistics need them), then [`input_gradient_kernel`] for ∂L/∂x and
/// ∂L/∂shortcut together: at most three launches.
pub(crate) fn backward<I: Backend>(
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
        // All in x's order: y already is (the forward pass wrote it so),
        // and ∂L/∂y usually is (from the next layer's convolution).
        let (x, order) = to_cube_4d::<R, I>(inputs.x)?;
        let dy = to_cube_in::<R, I>(inputs.dy, order)?;
        let y = to_cube_in::<R, I>(inputs.y, order)?;
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
            let layout = SumLayout::new(&x, channels, per_channel, order);
            let partial = empty(&x, &[2 * channels * layout.chunks]);
            let (d_beta, d_gamma) = (empty(&x, &[channels]), empty(&x, &[channels]));
            let (cube_count, cube_dim) = grid(&x, channels);
            // Safety: dy's, y's and x's buffers hold n contiguous f32
            // values in `order` and every index the sum kernel forms is
            // below n; the per-channel arrays hold `channels` values,
            // `partial` 2·channels·chunks.
            unsafe {
                gradient_sums_kernel::launch_unchecked::<f32, R>(
                    &client,
                    layout.cubes(),
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
                    layout.lanes,
                    kind,
                    slope,
                    layout.units,
                    order.is_last(),
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
        // ∂L/∂x is written whenever the kernel runs: a shortcut joined
        // to an input that is not tracked does not occur in our models.
        let sweep = (wanted.input || wanted.shortcut).then(|| {
            // Without batch statistics the sums are not read: any
            // per-channel array stands in.
            let (d_gamma, d_beta) = match &sums {
                Some((d_gamma, d_beta)) => (d_gamma.clone(), d_beta.clone()),
                None => (mean.clone(), mean.clone()),
            };
            // ∂L/∂x in x's order, as the convolution before wants it;
            // ∂L/∂shortcut likewise, or one unwritten value without it.
            let full = [shape[0], channels, shape[2], shape[3]];
            let dx = empty_in(&x, &full, order);
            let d_shortcut = match wanted.shortcut {
                true => empty_in(&x, &full, order),
                false => empty(&x, &[1]),
            };
            let shortcut_len = d_shortcut.meta.num_elements();
            let (cube_count, cube_dim) = grid(&x, n);
            // Safety: dy, y, x and dx hold n contiguous f32 values in one
            // order (d_shortcut too when written, with `joined`), five
            // arrays one per channel; channel_of < channels.
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
                    array(&d_shortcut, shortcut_len),
                    pixels,
                    channels,
                    per_channel as f32,
                    u32::from(wanted.batch_statistics),
                    kind,
                    slope,
                    order.is_last(),
                    wanted.shortcut,
                );
            }
            (
                from_cube(dx),
                wanted.shortcut.then(|| from_cube(d_shortcut)),
            )
        });
        let (input, shortcut) = match sweep {
            Some((dx, d_shortcut)) => (wanted.input.then_some(dx), d_shortcut),
            None => (None, None),
        };
        let parameters = sums.map(|(d_gamma, d_beta)| (from_cube(d_gamma), from_cube(d_beta)));
        Some(Gradients {
            input,
            parameters,
            shortcut,
        })
    }
}
