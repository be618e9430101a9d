//! The im2col matrix of one image, a band of output rows at a time, and its
//! adjoint (col2im). Rows are (input channel, kernel row, kernel column), the
//! order of a [out, in, kh, kw] weight's trailing dims, so the weight is the
//! gemm's left matrix as it lies; columns are output pixels of the band.
//! Stride-1 rows copy as contiguous runs: this is where burn-flex's generic
//! gather spent 13 % of a U-Net training step.

use super::geometry::ConvGeometry;

/// Fills `cols` ([patch_len, (rows.len)·out_w]) from one image `x`
/// ([channels_in, in_h, in_w]) for output rows `rows`.
pub fn im2col(g: &ConvGeometry, x: &[f32], rows: std::ops::Range<usize>, cols: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let ow = g.output[1];
    let width = rows.len() * ow;
    debug_assert_eq!(cols.len(), g.patch_len() * width);
    debug_assert_eq!(x.len(), g.channels_in * g.input_plane());
    for (r, dst_row) in cols.chunks_exact_mut(width).enumerate() {
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &x[c * g.input_plane()..(c + 1) * g.input_plane()];
        let inside = g.valid_columns(kx);
        for (oy, dst) in rows.clone().zip(dst_row.chunks_exact_mut(ow)) {
            let Some(iy) = g.input_row(oy, ky) else {
                dst.fill(0.0);
                continue;
            };
            let src = &plane[iy * g.input[1]..(iy + 1) * g.input[1]];
            dst[..inside.start].fill(0.0);
            dst[inside.end..].fill(0.0);
            if inside.is_empty() {
                continue;
            }
            // First input column read: inside.start·stride + kx − pad ≥ 0.
            let first = inside.start * g.stride[1] + kx - g.padding[1];
            if g.stride[1] == 1 {
                dst[inside.clone()].copy_from_slice(&src[first..first + inside.len()]);
            } else {
                for (d, s) in dst[inside.clone()]
                    .iter_mut()
                    .zip(src[first..].iter().step_by(g.stride[1]))
                {
                    *d = *s;
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `cols` ([patch_len, (rows.len)·out_w])
/// back into one image's gradient `dx` ([channels_in, in_h, in_w]).
pub fn col2im_add(g: &ConvGeometry, cols: &[f32], rows: std::ops::Range<usize>, dx: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let ow = g.output[1];
    let width = rows.len() * ow;
    debug_assert_eq!(cols.len(), g.patch_len() * width);
    debug_assert_eq!(dx.len(), g.channels_in * g.input_plane());
    let plane_len = g.input_plane();
    for (r, src_row) in cols.chunks_exact(width).enumerate() {
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &mut dx[c * plane_len..(c + 1) * plane_len];
        let inside = g.valid_columns(kx);
        if inside.is_empty() {
            continue;
        }
        let first = inside.start * g.stride[1] + kx - g.padding[1];
        for (oy, src) in rows.clone().zip(src_row.chunks_exact(ow)) {
            let Some(iy) = g.input_row(oy, ky) else {
                continue;
            };
            let dst = &mut plane[iy * g.input[1]..(iy + 1) * g.input[1]];
            if g.stride[1] == 1 {
                for (d, s) in dst[first..first + inside.len()]
                    .iter_mut()
                    .zip(&src[inside.clone()])
                {
                    *d += *s;
                }
            } else {
                for (d, s) in dst[first..]
                    .iter_mut()
                    .step_by(g.stride[1])
                    .zip(&src[inside.clone()])
                {
                    *d += *s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col by definition, one element at a time.
    fn im2col_reference(g: &ConvGeometry, x: &[f32]) -> Vec<f32> {
        let [kh, kw] = g.kernel;
        let [oh, ow] = g.output;
        let mut cols = vec![0.0; g.patch_len() * oh * ow];
        for c in 0..g.channels_in {
            for ky in 0..kh {
                for kx in 0..kw {
                    let r = (c * kh + ky) * kw + kx;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                            let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                            if iy >= 0
                                && ix >= 0
                                && (iy as usize) < g.input[0]
                                && (ix as usize) < g.input[1]
                            {
                                cols[r * oh * ow + oy * ow + ox] =
                                    x[c * g.input_plane() + iy as usize * g.input[1] + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    fn geometries() -> Vec<ConvGeometry> {
        let mut all = Vec::new();
        for (input, kernel, stride, padding) in [
            ([5, 6], [3, 3], [1, 1], [1, 1]),
            ([6, 5], [3, 3], [2, 2], [1, 1]),
            ([4, 4], [2, 2], [2, 2], [0, 0]),
            ([6, 6], [1, 1], [2, 2], [0, 0]),
            ([3, 7], [3, 1], [1, 2], [2, 0]),
        ] {
            all.push(ConvGeometry::forward(1, [2, 1], input, kernel, stride, padding).unwrap());
        }
        all
    }

    #[test]
    fn im2col_in_bands_matches_the_definition() {
        for g in geometries() {
            let x: Vec<f32> = (0..g.channels_in * g.input_plane())
                .map(|i| i as f32 + 1.0)
                .collect();
            let expected = im2col_reference(&g, &x);
            let [oh, ow] = g.output;
            for band in 1..=oh {
                let mut start = 0;
                while start < oh {
                    let rows = start..(start + band).min(oh);
                    let mut cols = vec![f32::NAN; g.patch_len() * rows.len() * ow];
                    im2col(&g, &x, rows.clone(), &mut cols);
                    for r in 0..g.patch_len() {
                        let got = &cols[r * rows.len() * ow..(r + 1) * rows.len() * ow];
                        let want =
                            &expected[r * oh * ow + rows.start * ow..r * oh * ow + rows.end * ow];
                        assert_eq!(got, want, "{g:?} rows {rows:?} r {r}");
                    }
                    start = rows.end;
                }
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for arbitrary x and c.
        for g in geometries() {
            let n_x = g.channels_in * g.input_plane();
            let n_c = g.patch_len() * g.output_plane();
            let x: Vec<f32> = (0..n_x).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
            let c: Vec<f32> = (0..n_c).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
            let mut cols = vec![0.0; n_c];
            im2col(&g, &x, 0..g.output[0], &mut cols);
            let mut back = vec![0.0; n_x];
            col2im_add(&g, &c, 0..g.output[0], &mut back);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }
}
