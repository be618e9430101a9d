//! Convolution forward, data gradient and weight gradient on contiguous f32
//! NCHW buffers: im2col in cache-sized bands of output rows, one gemm per
//! band. Images run in parallel on rayon's pool, each on one thread; a batch
//! smaller than the pool hands its threads to gemm instead.

use std::cell::RefCell;

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use super::im2col::{col2im_add, im2col};
use super::matmul::{View, gemm};
use super::winograd;

/// Target size of one band's im2col block: about half a core's L2, so the
/// band is still cached when gemm packs it.
const BAND_BYTES: usize = 512 * 1024;

thread_local! {
    /// Each thread's im2col block, kept between calls: a fresh multi-megabyte
    /// buffer per band would be fresh pages (faults) every time.
    static BAND: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch slice of `len` floats (contents unspecified).
fn with_band<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    BAND.with(|cell| match cell.try_borrow_mut() {
        Ok(mut band) => {
            if band.len() < len {
                band.resize(len, 0.0);
            }
            f(&mut band[..len])
        }
        // Re-entered from a stolen rayon task while this thread's band is in
        // use: take a private one rather than share.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Bands of output rows covering the whole output.
fn bands(g: &ConvGeometry) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
    let step = g.rows_per_tile(BAND_BYTES);
    let rows = g.output[0];
    (0..rows)
        .step_by(step)
        .map(move |start| start..(start + step).min(rows))
}

/// Calls `f(image, out_chunk, gemm_threads)` for each image's chunk of `out`:
/// images in parallel when there are enough of them, else one after another
/// with gemm using the pool.
fn per_image(
    batch: usize,
    out: &mut [f32],
    chunk: usize,
    f: impl Fn(usize, &mut [f32], usize) + Sync,
) {
    let threads = rayon::current_num_threads();
    if batch >= threads && threads > 1 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| f(i, o, 1));
    } else {
        out.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| f(i, o, threads));
    }
}

/// `y = conv(x, w) + bias`: x [batch, in, h, w], w [out, in, kh, kw] → y [batch, out, oh, ow].
pub fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (cin, cout, k) = (g.channels_in, g.channels_out, g.patch_len());
    let (in_len, out_plane) = (cin * g.input_plane(), g.output_plane());
    assert_eq!(x.len(), g.batch * in_len, "conv forward: input size");
    assert_eq!(w.len(), cout * k, "conv forward: weight size");
    let mut y = vec![0.0; g.batch * cout * out_plane];
    if winograd::applies(g) {
        let u = winograd::transform_filters(w, cout, cin);
        per_image(g.batch, &mut y, cout * out_plane, |i, y, threads| {
            let x = &x[i * in_len..(i + 1) * in_len];
            winograd::convolve_image(g, x, &u, bias, y, threads);
        });
        return y;
    }
    per_image(g.batch, &mut y, cout * out_plane, |i, y, threads| {
        let x = &x[i * in_len..(i + 1) * in_len];
        if g.is_pointwise() {
            let lhs = View::rows(w, cin);
            gemm(
                [cout, out_plane, cin],
                y,
                out_plane,
                false,
                lhs,
                View::rows(x, out_plane),
                threads,
            );
        } else {
            for rows in bands(g) {
                let width = rows.len() * g.output[1];
                let first = rows.start * g.output[1];
                with_band(k * width, |cols| {
                    im2col(g, x, rows, cols);
                    gemm(
                        [cout, width, k],
                        &mut y[first..],
                        out_plane,
                        false,
                        View::rows(w, k),
                        View::rows(cols, width),
                        threads,
                    );
                });
            }
        }
        if let Some(bias) = bias {
            for (plane, b) in y.chunks_exact_mut(out_plane).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
    });
    y
}

/// ∂L/∂x from ∂L/∂y: dy [batch, out, oh, ow], w [out, in, kh, kw] → dx [batch, in, h, w].
pub fn data_backward(g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (cin, cout, k) = (g.channels_in, g.channels_out, g.patch_len());
    let (in_len, out_plane) = (cin * g.input_plane(), g.output_plane());
    assert_eq!(
        dy.len(),
        g.batch * cout * out_plane,
        "conv data backward: gradient size"
    );
    assert_eq!(w.len(), cout * k, "conv data backward: weight size");
    let mut dx = vec![0.0; g.batch * in_len];
    // A 3×3, stride-1, padding-1 convolution's data gradient is the same
    // convolution of dy with the filters flipped and in/out swapped.
    let flipped = ConvGeometry {
        channels_in: cout,
        channels_out: cin,
        input: g.output,
        output: g.input,
        ..*g
    };
    if winograd::applies(&flipped) {
        let w = winograd::flipped_transposed(w, cout, cin);
        let u = winograd::transform_filters(&w, cin, cout);
        per_image(g.batch, &mut dx, in_len, |i, dx, threads| {
            let dy = &dy[i * cout * out_plane..(i + 1) * cout * out_plane];
            winograd::convolve_image(&flipped, dy, &u, None, dx, threads);
        });
        return dx;
    }
    per_image(g.batch, &mut dx, in_len, |i, dx, threads| {
        let dy = &dy[i * cout * out_plane..(i + 1) * cout * out_plane];
        if g.is_pointwise() {
            let lhs = View::transposed(w, cin);
            gemm(
                [cin, out_plane, cout],
                dx,
                out_plane,
                false,
                lhs,
                View::rows(dy, out_plane),
                threads,
            );
            return;
        }
        for rows in bands(g) {
            let width = rows.len() * g.output[1];
            let first = rows.start * g.output[1];
            with_band(k * width, |dcols| {
                let dy_band = View {
                    data: &dy[first..],
                    row_stride: out_plane,
                    col_stride: 1,
                };
                gemm(
                    [k, width, cout],
                    dcols,
                    width,
                    false,
                    View::transposed(w, k),
                    dy_band,
                    threads,
                );
                col2im_add(g, dcols, rows, dx);
            });
        }
    });
    dx
}

/// ∂L/∂w from the input and ∂L/∂y: → dw [out, in, kh, kw], summed over the batch.
pub fn weight_backward(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (cin, cout, k) = (g.channels_in, g.channels_out, g.patch_len());
    let (in_len, out_plane) = (cin * g.input_plane(), g.output_plane());
    assert_eq!(
        x.len(),
        g.batch * in_len,
        "conv weight backward: input size"
    );
    assert_eq!(
        dy.len(),
        g.batch * cout * out_plane,
        "conv weight backward: gradient size"
    );
    // dw += dy_band [out × width] · cols_bandᵀ [width × patch].
    let add_image = |dw: &mut Vec<f32>, i: usize, threads: usize| {
        let x = &x[i * in_len..(i + 1) * in_len];
        let dy = &dy[i * cout * out_plane..(i + 1) * cout * out_plane];
        if g.is_pointwise() {
            let lhs = View::rows(dy, out_plane);
            let rhs = View::transposed(x, out_plane);
            gemm([cout, cin, out_plane], dw, cin, true, lhs, rhs, threads);
            return;
        }
        for rows in bands(g) {
            let width = rows.len() * g.output[1];
            let first = rows.start * g.output[1];
            with_band(k * width, |cols| {
                im2col(g, x, rows, cols);
                let dy_band = View {
                    data: &dy[first..],
                    row_stride: out_plane,
                    col_stride: 1,
                };
                gemm(
                    [cout, k, width],
                    dw,
                    k,
                    true,
                    dy_band,
                    View::transposed(cols, width),
                    threads,
                );
            });
        }
    };
    if winograd::applies(g) {
        let transformed = sum_images(g.batch, 16 * cout * cin, |du, i, threads| {
            let x = &x[i * in_len..(i + 1) * in_len];
            let dy = &dy[i * cout * out_plane..(i + 1) * cout * out_plane];
            winograd::filter_gradient_image(g, x, dy, du, threads);
        });
        return winograd::filters_from_transformed(&transformed, cout, cin);
    }
    sum_images(g.batch, cout * k, |dw, i, threads| {
        add_image(dw, i, threads)
    })
}

/// Σ over images of `add(acc, image, gemm_threads)` into a zeroed buffer of
/// `len`: images in parallel, one accumulator per rayon split, when there
/// are enough of them; else one after another with gemm using the pool.
fn sum_images(
    batch: usize,
    len: usize,
    add: impl Fn(&mut Vec<f32>, usize, usize) + Sync,
) -> Vec<f32> {
    let threads = rayon::current_num_threads();
    if batch >= threads && threads > 1 {
        (0..batch)
            .into_par_iter()
            .fold(
                || vec![0.0; len],
                |mut acc, i| {
                    add(&mut acc, i, 1);
                    acc
                },
            )
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
            .unwrap_or_else(|| vec![0.0; len])
    } else {
        let mut acc = vec![0.0; len];
        (0..batch).for_each(|i| add(&mut acc, i, threads));
        acc
    }
}

/// ∂L/∂bias: dy [batch, channels, …] summed over batch and pixels, per channel.
pub fn bias_backward(batch: usize, channels: usize, dy: &[f32]) -> Vec<f32> {
    let plane = dy.len() / (batch * channels).max(1);
    let mut db = vec![0.0f64; channels];
    if plane > 0 {
        for image in dy.chunks_exact(channels * plane) {
            for (sum, channel) in db.iter_mut().zip(image.chunks_exact(plane)) {
                *sum += channel.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
        }
    }
    db.into_iter().map(|v| v as f32).collect()
}

/// `y[n, c, …] += bias[c]` for a batch of `batch` images.
pub fn add_bias(batch: usize, y: &mut [f32], bias: &[f32]) {
    let plane = y.len() / (batch * bias.len()).max(1);
    if plane == 0 {
        return;
    }
    for (index, plane) in y.chunks_exact_mut(plane).enumerate() {
        let b = bias[index % bias.len()];
        plane.iter_mut().for_each(|v| *v += b);
    }
}
