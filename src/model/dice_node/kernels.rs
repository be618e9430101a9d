//! Eq. 2 from logits as cubecl kernels: two launches forward (each slice's
//! and class's Σŷy and Σŷ² + Σy² in one pass, then the per-slice losses)
//! and one backward (∂L/∂logits, and ∂L/∂targets when asked). ŷ, the
//! softmax over classes, is recomputed where it is needed instead of being
//! written out. Logits and targets may each be NCHW or NHWC, as the head
//! convolution and `one_hot` leave them.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;

use crate::gpu::channels::{empty_in, to_cube_4d};
use crate::gpu::cube::{CubeTask, array, dims, empty, from_cube, grid, on_runtime_of, raw_f32};
use crate::gpu::sums::{
    SumLayout, chunk_end, chunk_total, rows, unit_channel, unit_row, write_cube_sums,
};

/// The buffer index of (slice n, class k, pixel q), NCHW or, with `last`,
/// NHWC.
#[cube]
fn at(
    n: usize,
    k: usize,
    q: usize,
    pixels: usize,
    classes: usize,
    #[comptime] last: bool,
) -> usize {
    let mut i = ((n * classes) + k) * pixels + q;
    if last {
        i = (n * pixels + q) * classes + k;
    }
    i
}

/// The largest logit of pixel q of slice n (the softmax's shift).
#[cube]
fn largest<F: Float>(
    z: &Array<F>,
    n: usize,
    q: usize,
    pixels: usize,
    classes: usize,
    #[comptime] last: bool,
) -> F {
    let mut max = z[at(n, 0, q, pixels, classes, last)];
    for c in 1..classes {
        let v = z[at(n, c, q, pixels, classes, last)];
        if v > max {
            max = v;
        }
    }
    max
}

/// Σ_c exp(z_c − max) at pixel q of slice n (the softmax's denominator).
#[cube]
fn exp_sum<F: Float>(
    z: &Array<F>,
    max: F,
    n: usize,
    q: usize,
    pixels: usize,
    classes: usize,
    #[comptime] last: bool,
) -> F {
    let mut sum = F::new(0.0);
    for c in 0..classes {
        sum += F::exp(z[at(n, c, q, pixels, classes, last)] - max);
    }
    sum
}

/// Cube (j, g) adds chunk j of the pixels of each (slice, class) row
/// r = n·classes + k of group g ([`SumLayout`]): Σŷy into
/// partial[r·chunks + j], Σŷ² + Σy² into partial[(rows + r)·chunks + j].
#[cube(launch_unchecked)]
fn dice_sums_kernel<F: Float>(
    z: &Array<F>,
    y: &Array<F>,
    partial: &mut Array<F>,
    pixels: usize,
    classes: usize,
    slice_rows: usize,
    chunk_len: usize,
    chunks: usize,
    lanes: usize,
    #[comptime] units: u32,
    #[comptime] z_last: bool,
    #[comptime] y_last: bool,
) {
    let chunk = CUBE_POS_X as usize;
    let r = unit_channel(lanes);
    let end = chunk_end(chunk, chunk_len, pixels);
    let step = rows(lanes);
    let mut overlap = F::new(0.0);
    let mut norms = F::new(0.0);
    if r < slice_rows {
        let n = r / classes;
        let k = r % classes;
        let mut q = chunk * chunk_len + unit_row(lanes);
        while q < end {
            let max = largest::<F>(z, n, q, pixels, classes, z_last);
            let sum = exp_sum::<F>(z, max, n, q, pixels, classes, z_last);
            let p = F::exp(z[at(n, k, q, pixels, classes, z_last)] - max) / sum;
            let t = y[at(n, k, q, pixels, classes, y_last)];
            overlap += p * t;
            norms += p * p + t * t;
            q += step;
        }
    }
    write_cube_sums::<F>(overlap, norms, partial, lanes, slice_rows, chunks, units);
}

/// Per slice n: loss = −(1/K) Σ_k N_k / D_k with N_k = 2Σŷy + s and
/// D_k = Σŷ² + Σy² + s, adding the chunks in order; N_k and D_k are kept in
/// terms[2r], terms[2r + 1] for the backward pass.
#[cube(launch_unchecked)]
fn dice_totals_kernel<F: Float>(
    partial: &Array<F>,
    losses: &mut Array<F>,
    terms: &mut Array<F>,
    classes: usize,
    chunks: usize,
    smoothing: f32,
    per_class: f32,
) {
    let n = ABSOLUTE_POS;
    if n < losses.len() {
        let slice_rows = losses.len() * classes;
        let s = F::cast_from(smoothing);
        let mut total = F::new(0.0);
        for k in 0..classes {
            let r = n * classes + k;
            let numerator = F::new(2.0) * chunk_total::<F>(partial, r, chunks) + s;
            let denominator = chunk_total::<F>(partial, slice_rows + r, chunks) + s;
            terms[2 * r] = numerator;
            terms[2 * r + 1] = denominator;
            total += numerator / denominator;
        }
        losses[n] = -total * F::cast_from(per_class);
    }
}

/// One unit per logit, in z's order. With g_c = ∂L/∂ŷ_c =
/// −(up_n/K)(2y_c/D_c − 2N_c ŷ_c/D_c²), the softmax's Jacobian gives
/// ∂L/∂z_k = ŷ_k (g_k − Σ_c g_c ŷ_c); with `targets`, also
/// ∂L/∂y_k = −(up_n/K)(2ŷ_k/D_k − 2N_k y_k/D_k²), in y's order.
#[cube(launch_unchecked)]
fn dice_backward_kernel<F: Float>(
    z: &Array<F>,
    y: &Array<F>,
    terms: &Array<F>,
    up: &Array<F>,
    dz: &mut Array<F>,
    dy: &mut Array<F>,
    pixels: usize,
    classes: usize,
    per_class: f32,
    #[comptime] z_last: bool,
    #[comptime] y_last: bool,
    #[comptime] targets: bool,
) {
    let i = ABSOLUTE_POS;
    if i < dz.len() {
        let mut k = (i / pixels) % classes;
        let mut q = i % pixels;
        let mut n = i / (pixels * classes);
        if z_last {
            k = i % classes;
            q = (i / classes) % pixels;
            n = i / (classes * pixels);
        }
        let max = largest::<F>(z, n, q, pixels, classes, z_last);
        let sum = exp_sum::<F>(z, max, n, q, pixels, classes, z_last);
        let scale = -up[n] * F::cast_from(per_class);
        let mut weighted = F::new(0.0);
        let mut g_k = F::new(0.0);
        let mut p_k = F::new(0.0);
        for c in 0..classes {
            let p = F::exp(z[at(n, c, q, pixels, classes, z_last)] - max) / sum;
            let t = y[at(n, c, q, pixels, classes, y_last)];
            let r = n * classes + c;
            let numerator = terms[2 * r];
            let denominator = terms[2 * r + 1];
            let g = scale
                * (F::new(2.0) * t / denominator
                    - F::new(2.0) * numerator * p / (denominator * denominator));
            weighted += g * p;
            if c == k {
                g_k = g;
                p_k = p;
            }
        }
        dz[i] = p_k * (g_k - weighted);
        if targets {
            let j = at(n, k, q, pixels, classes, y_last);
            let r = n * classes + k;
            let numerator = terms[2 * r];
            let denominator = terms[2 * r + 1];
            dy[j] = scale
                * (F::new(2.0) * p_k / denominator
                    - F::new(2.0) * numerator * y[j] / (denominator * denominator));
        }
    }
}

/// The per-slice losses [n], and the terms (N_k, D_k) of each slice and
/// class [2·n·K] that [`backward`] needs.
pub(super) struct Losses<I: Backend> {
    pub losses: Tensor<I, 1>,
    pub terms: Tensor<I, 1>,
}

/// Eq. 2 per slice from `logits` and `targets` ([n, K, h, w]); `None` where
/// the tensors are not plain f32 cubecl ones.
pub(super) fn forward<I: Backend>(
    logits: &Tensor<I, 4>,
    targets: &Tensor<I, 4>,
    smoothing: f32,
) -> Option<Losses<I>> {
    on_runtime_of::<I, _>(ForwardTask {
        logits,
        targets,
        smoothing,
    })
    .flatten()
}

struct ForwardTask<'a, I: Backend> {
    logits: &'a Tensor<I, 4>,
    targets: &'a Tensor<I, 4>,
    smoothing: f32,
}

impl<I: Backend> CubeTask for ForwardTask<'_, I> {
    type Output = Option<Losses<I>>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let (z, z_order) = to_cube_4d::<R, I>(self.logits)?;
        let (y, y_order) = to_cube_4d::<R, I>(self.targets)?;
        let shape = dims(&z);
        let (n, classes, pixels) = (shape[0], shape[1], shape[2] * shape[3]);
        let slice_rows = n * classes;
        // Rows of one slice and class: NCHW reads a row's pixels in one
        // sweep (one lane); NHWC puts a pixel's classes side by side.
        let layout = SumLayout::new(&z, slice_rows, pixels, z_order);
        let partial = empty(&z, &[2 * slice_rows * layout.chunks]);
        let losses = empty(&z, &[n]);
        let terms = empty(&z, &[2 * slice_rows]);
        let client = z.client.clone();
        let len = z.meta.num_elements();
        // Safety: z's and y's buffers hold n·K·pixels contiguous f32 values
        // in their orders, and `at` stays below that for n, k, q in range;
        // `partial` holds 2·rows·chunks, and each cube writes its rows'
        // pairs for its chunk.
        unsafe {
            dice_sums_kernel::launch_unchecked::<f32, R>(
                &client,
                layout.cubes(),
                CubeDim::new_1d(layout.units),
                array(&z, len),
                array(&y, len),
                array(&partial, 2 * slice_rows * layout.chunks),
                pixels,
                classes,
                slice_rows,
                layout.chunk_len,
                layout.chunks,
                layout.lanes,
                layout.units,
                z_order.is_last(),
                y_order.is_last(),
            );
        }
        let (cube_count, cube_dim) = grid(&z, n);
        // Safety: `partial` as written above; `losses` holds n values and
        // `terms` 2·n·K, indexed below those.
        unsafe {
            dice_totals_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&partial, 2 * slice_rows * layout.chunks),
                array(&losses, n),
                array(&terms, 2 * slice_rows),
                classes,
                layout.chunks,
                self.smoothing,
                1.0 / classes as f32,
            );
        }
        Some(Losses {
            losses: from_cube(losses),
            terms: from_cube(terms),
        })
    }
}

/// What [`backward`] reads.
pub(super) struct BackwardInputs<'a, I: Backend> {
    pub logits: &'a Tensor<I, 4>,
    pub targets: &'a Tensor<I, 4>,
    pub terms: &'a Tensor<I, 1>,
    /// ∂(whatever follows)/∂loss of each slice, [n].
    pub up: &'a Tensor<I, 1>,
}

// References only: copied whatever `I` is (a derive would ask `I: Copy`).
impl<I: Backend> Clone for BackwardInputs<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I: Backend> Copy for BackwardInputs<'_, I> {}

/// ∂L/∂logits in the logits' order, and ∂L/∂targets in the targets' when
/// `targets`; `None` where the tensors are not plain f32 cubecl ones.
pub(super) fn backward<I: Backend>(
    inputs: BackwardInputs<'_, I>,
    targets: bool,
) -> Option<(Tensor<I, 4>, Option<Tensor<I, 4>>)> {
    on_runtime_of::<I, _>(BackwardTask { inputs, targets }).flatten()
}

struct BackwardTask<'a, I: Backend> {
    inputs: BackwardInputs<'a, I>,
    targets: bool,
}

impl<I: Backend> CubeTask for BackwardTask<'_, I> {
    type Output = Option<(Tensor<I, 4>, Option<Tensor<I, 4>>)>;

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let (z, z_order) = to_cube_4d::<R, I>(self.inputs.logits)?;
        let (y, y_order) = to_cube_4d::<R, I>(self.inputs.targets)?;
        let terms = into_contiguous(raw_f32::<R, I, 1>(self.inputs.terms)?);
        let up = into_contiguous(raw_f32::<R, I, 1>(self.inputs.up)?);
        let shape = dims(&z);
        let (classes, pixels) = (shape[1], shape[2] * shape[3]);
        let len = z.meta.num_elements();
        let dz = empty_in(&z, &shape, z_order);
        // Unused (one value) unless the targets' gradient is wanted.
        let dy = if self.targets {
            empty_in(&y, &shape, y_order)
        } else {
            empty(&y, &[1])
        };
        let dy_len = dy.meta.num_elements();
        let client = z.client.clone();
        let (cube_count, cube_dim) = grid(&z, len);
        // Safety: z, y and dz hold n·K·pixels contiguous f32 values in
        // their orders (dy too when written, with `targets`); terms holds
        // 2·n·K and up n; every index formed is below those.
        unsafe {
            dice_backward_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&z, len),
                array(&y, len),
                array(&terms, terms.meta.num_elements()),
                array(&up, up.meta.num_elements()),
                array(&dz, len),
                array(&dy, dy_len),
                pixels,
                classes,
                1.0 / classes as f32,
                z_order.is_last(),
                y_order.is_last(),
                self.targets,
            );
        }
        let dy = self.targets.then(|| from_cube(dy));
        Some((from_cube(dz), dy))
    }
}
