//! The element-wise halves of batch norm as single cubecl kernels: the
//! per-channel affine map from the statistics (a dozen operations on
//! vectors of a few hundred channels, one launch each, before) and the
//! normalise-and-activate sweep (four launches before). `None` on a backend
//! whose tensors are not plain cubecl ones (burn's fused backend): the
//! caller then uses burn's operations, which fusion merges itself.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

use super::Activation;
use crate::gpu::cube::{CubeTask, array, dims, empty, from_cube, grid, on_runtime_of, to_cube};

/// Per channel: mean, var, inv_std = 1/√(var + ε), scale = γ·inv_std,
/// shift = β − mean·scale. With `from_sums` (= 1), `a` and `b` are Σx and
/// Σx² over `count` values (var clamped at 0); else they are the mean and
/// variance to use.
#[cube(launch_unchecked)]
fn affine_kernel<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    gamma: &Array<F>,
    beta: &Array<F>,
    mean: &mut Array<F>,
    var: &mut Array<F>,
    inv_std: &mut Array<F>,
    scale: &mut Array<F>,
    shift: &mut Array<F>,
    count: f32,
    epsilon: f32,
    from_sums: u32,
) {
    let c = ABSOLUTE_POS;
    if c < a.len() {
        let mut m = a[c];
        let mut v = b[c];
        if from_sums == 1 {
            let n = F::cast_from(count);
            m = a[c] / n;
            v = b[c] / n - m * m;
            if v < F::new(0.0) {
                v = F::new(0.0);
            }
        }
        let s = F::new(1.0) / F::sqrt(v + F::cast_from(epsilon));
        let k = gamma[c] * s;
        mean[c] = m;
        var[c] = v;
        inv_std[c] = s;
        scale[c] = k;
        shift[c] = beta[c] - m * k;
    }
}

/// y = act(x·scale[c] + shift[c]) over [n, c, pixels]; `activation` 0 is
/// the identity, 1 ReLU, 2 LeakyReLU with `slope`.
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

/// The per-channel vectors [`affine_kernel`] writes.
pub(super) struct Affine<I: Backend> {
    pub mean: Tensor<I, 1>,
    pub var: Tensor<I, 1>,
    pub inv_std: Tensor<I, 1>,
    pub scale: Tensor<I, 1>,
    pub shift: Tensor<I, 1>,
}

/// See [`affine_kernel`]; `count` = Some(n) when `a`, `b` are sums over n.
pub(super) fn affine<I: Backend>(
    a: &Tensor<I, 1>,
    b: &Tensor<I, 1>,
    gamma: &Tensor<I, 1>,
    beta: &Tensor<I, 1>,
    count: Option<f64>,
    epsilon: f64,
) -> Option<Affine<I>> {
    on_runtime_of::<I, _>(AffineTask {
        inputs: [a, b, gamma, beta],
        count,
        epsilon,
    })
    .flatten()
}

struct AffineTask<'a, I: Backend> {
    inputs: [&'a Tensor<I, 1>; 4],
    count: Option<f64>,
    epsilon: f64,
}

impl<I: Backend> CubeTask for AffineTask<'_, I> {
    type Output = Option<Affine<I>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let [a, b, gamma, beta] = self.inputs;
        let [a, b, gamma, beta] = [
            to_cube::<R, I, 1>(a)?,
            to_cube::<R, I, 1>(b)?,
            to_cube::<R, I, 1>(gamma)?,
            to_cube::<R, I, 1>(beta)?,
        ];
        let channels = a.meta.num_elements();
        let out = || empty(&a, &[channels]);
        let [mean, var, inv_std, scale, shift] = [out(), out(), out(), out(), out()];
        let client = a.client.clone();
        let (cube_count, cube_dim) = grid(&a, channels);
        // Safety: nine contiguous f32 arrays of `channels` elements (checked
        // by `to_cube`, or made here); the kernel indexes below that.
        unsafe {
            affine_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&a, channels),
                array(&b, channels),
                array(&gamma, channels),
                array(&beta, channels),
                array(&mean, channels),
                array(&var, channels),
                array(&inv_std, channels),
                array(&scale, channels),
                array(&shift, channels),
                self.count.unwrap_or(1.0) as f32,
                self.epsilon as f32,
                u32::from(self.count.is_some()),
            );
        }
        Some(Affine {
            mean: from_cube(mean),
            var: from_cube(var),
            inv_std: from_cube(inv_std),
            scale: from_cube(scale),
            shift: from_cube(shift),
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
        let (kind, slope) = match self.activation {
            Activation::Identity => (0, 0.0),
            Activation::Relu => (1, 0.0),
            Activation::LeakyRelu(slope) => (2, slope),
        };
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

/// The backward sweep before the per-channel sums: dz = ∂L/∂z (through the
/// activation, whose sign is y's) and dz·x̂, with x̂ = (x − mean)·inv_std.
#[cube(launch_unchecked)]
fn backward_sweep_kernel<F: Float>(
    dy: &Array<F>,
    y: &Array<F>,
    x: &Array<F>,
    mean: &Array<F>,
    inv_std: &Array<F>,
    dz: &mut Array<F>,
    dz_x_hat: &mut Array<F>,
    pixels: usize,
    channels: usize,
    activation: u32,
    slope: f32,
) {
    let i = ABSOLUTE_POS;
    if i < dy.len() {
        let c = (i / pixels) % channels;
        let mut g = dy[i];
        if y[i] <= F::new(0.0) {
            if activation == 1 {
                g = F::new(0.0);
            } else if activation == 2 {
                g *= F::cast_from(slope);
            }
        }
        dz[i] = g;
        dz_x_hat[i] = g * (x[i] - mean[c]) * inv_std[c];
    }
}

/// ∂L/∂x = scale·(dz − (x̂·Σdz·x̂ + Σdz)/count) with batch statistics
/// (`from_batch` = 1), else scale·dz.
#[cube(launch_unchecked)]
fn input_gradient_kernel<F: Float>(
    dz: &Array<F>,
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
) {
    let i = ABSOLUTE_POS;
    if i < dz.len() {
        let c = (i / pixels) % channels;
        let mut g = dz[i];
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

/// See [`backward_sweep_kernel`]: (dz, dz·x̂).
pub(super) fn backward_sweep<I: Backend>(
    dy: &Tensor<I, 4>,
    y: &Tensor<I, 4>,
    x: &Tensor<I, 4>,
    mean: &Tensor<I, 1>,
    inv_std: &Tensor<I, 1>,
    activation: Activation,
) -> Option<(Tensor<I, 4>, Tensor<I, 4>)> {
    on_runtime_of::<I, _>(SweepTask {
        full: [dy, y, x],
        channel: [mean, inv_std],
        activation,
    })
    .flatten()
}

struct SweepTask<'a, I: Backend> {
    full: [&'a Tensor<I, 4>; 3],
    channel: [&'a Tensor<I, 1>; 2],
    activation: Activation,
}

impl<I: Backend> CubeTask for SweepTask<'_, I> {
    type Output = Option<(Tensor<I, 4>, Tensor<I, 4>)>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let [dy, y, x] = self.full;
        let [dy, y, x] = [
            to_cube::<R, I, 4>(dy)?,
            to_cube::<R, I, 4>(y)?,
            to_cube::<R, I, 4>(x)?,
        ];
        let [mean, inv_std] = self.channel;
        let [mean, inv_std] = [to_cube::<R, I, 1>(mean)?, to_cube::<R, I, 1>(inv_std)?];
        let shape = dims(&x);
        let (channels, pixels) = (shape[1], shape[2] * shape[3]);
        let n = x.meta.num_elements();
        let (dz, dz_x_hat) = (empty(&x, &shape), empty(&x, &shape));
        let (kind, slope) = activation_code(self.activation);
        let client = x.client.clone();
        let (cube_count, cube_dim) = grid(&x, n);
        // Safety: five arrays of n contiguous f32 values, two of one per
        // channel; c = (i / pixels) % channels < channels.
        unsafe {
            backward_sweep_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&dy, n),
                array(&y, n),
                array(&x, n),
                array(&mean, channels),
                array(&inv_std, channels),
                array(&dz, n),
                array(&dz_x_hat, n),
                pixels,
                channels,
                kind,
                slope,
            );
        }
        Some((from_cube(dz), from_cube(dz_x_hat)))
    }
}

/// See [`input_gradient_kernel`]; `count` = Some(n) with batch statistics.
#[allow(clippy::too_many_arguments)]
pub(super) fn input_gradient<I: Backend>(
    dz: &Tensor<I, 4>,
    x: &Tensor<I, 4>,
    mean: &Tensor<I, 1>,
    inv_std: &Tensor<I, 1>,
    scale: &Tensor<I, 1>,
    d_gamma: &Tensor<I, 1>,
    d_beta: &Tensor<I, 1>,
    count: Option<f64>,
) -> Option<Tensor<I, 4>> {
    on_runtime_of::<I, _>(InputGradientTask {
        full: [dz, x],
        channel: [mean, inv_std, scale, d_gamma, d_beta],
        count,
    })
    .flatten()
}

struct InputGradientTask<'a, I: Backend> {
    full: [&'a Tensor<I, 4>; 2],
    channel: [&'a Tensor<I, 1>; 5],
    count: Option<f64>,
}

impl<I: Backend> CubeTask for InputGradientTask<'_, I> {
    type Output = Option<Tensor<I, 4>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let [dz, x] = self.full;
        let [dz, x] = [to_cube::<R, I, 4>(dz)?, to_cube::<R, I, 4>(x)?];
        let [mean, inv_std, scale, d_gamma, d_beta] = self.channel;
        let [mean, inv_std, scale, d_gamma, d_beta] = [
            to_cube::<R, I, 1>(mean)?,
            to_cube::<R, I, 1>(inv_std)?,
            to_cube::<R, I, 1>(scale)?,
            to_cube::<R, I, 1>(d_gamma)?,
            to_cube::<R, I, 1>(d_beta)?,
        ];
        let shape = dims(&x);
        let (channels, pixels) = (shape[1], shape[2] * shape[3]);
        let n = x.meta.num_elements();
        let dx = empty(&x, &shape);
        let client = x.client.clone();
        let (cube_count, cube_dim) = grid(&x, n);
        // Safety: three arrays of n contiguous f32 values, five of one per
        // channel; c = (i / pixels) % channels < channels.
        unsafe {
            input_gradient_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&dz, n),
                array(&x, n),
                array(&mean, channels),
                array(&inv_std, channels),
                array(&scale, channels),
                array(&d_gamma, channels),
                array(&d_beta, channels),
                array(&dx, n),
                pixels,
                channels,
                self.count.unwrap_or(1.0) as f32,
                u32::from(self.count.is_some()),
            );
        }
        Some(from_cube(dx))
    }
}
