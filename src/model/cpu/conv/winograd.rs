//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", CVPR 2016) for the 3×3, stride-1,
//! padding-1 convolutions that make up most of both networks.
//!
//! Each 2×2 block of output comes from a 4×4 input tile: V = Bᵀ d B per
//! input channel, U = G g Gᵀ per filter, then for each of the 16 tile
//! positions ξ one gemm M[ξ] = U[ξ] · V[ξ] over channels, and Y = Aᵀ M A.
//! That is 16 multiplications per output block where direct convolution
//! takes 36: 2.25× fewer gemm flops, for transforms that cost O(input).
//! Rounding grows by a small constant factor over direct convolution
//! (F(2×2, 3×3) is the best-conditioned Winograd variant); the tests hold it
//! to the same tolerance as the im2col path.

use super::geometry::ConvGeometry;
use super::matmul::{View, gemm};

/// Winograd pays off once the gemm's inner dimension (input channels) is
/// wide enough; below it im2col's 9× wider product wins.
const MIN_CHANNELS_IN: usize = 16;

/// Fewer tiles per image than this leave gemm too narrow (the 8×8 bottleneck).
const MIN_TILES: usize = 32;

/// Target bytes of one band's transformed input and output.
const BAND_BYTES: usize = 2 * 1024 * 1024;

/// Whether this geometry is one Winograd F(2×2, 3×3) serves, and well.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.padding == [1, 1]
        && g.channels_in >= MIN_CHANNELS_IN
        && tiles(g).0 * tiles(g).1 >= MIN_TILES
}

/// Tile rows and columns covering the output.
fn tiles(g: &ConvGeometry) -> (usize, usize) {
    (g.output[0].div_ceil(2), g.output[1].div_ceil(2))
}

/// U = G g Gᵀ for every (out, in) filter, laid out [16][out][in] so that each
/// ξ is a row-major [out × in] matrix.
pub fn transform_filters(w: &[f32], channels_out: usize, channels_in: usize) -> Vec<f32> {
    let pairs = channels_out * channels_in;
    let mut u = vec![0.0; 16 * pairs];
    for (pair, g) in w.chunks_exact(9).enumerate() {
        // G·g: 4×3, rows g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2 over g's rows.
        let mut t = [[0.0f32; 3]; 4];
        for c in 0..3 {
            let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
            t[0][c] = a;
            t[1][c] = 0.5 * (a + b + d);
            t[2][c] = 0.5 * (a - b + d);
            t[3][c] = d;
        }
        // (G·g)·Gᵀ: the same combination over columns.
        for (r, row) in t.iter().enumerate() {
            let (a, b, d) = (row[0], row[1], row[2]);
            let out = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
            for (c, v) in out.into_iter().enumerate() {
                u[(4 * r + c) * pairs + pair] = v;
            }
        }
    }
    u
}

/// Input transform of one channel's tile row: V[ξ] = (Bᵀ d B)[ξ] for the
/// tiles along it, written to `v[ξ·stride + tx]`. `rows` holds the four
/// zero-padded input rows (`width` = 2·tiles + 2) the tiles span.
///
/// Bᵀ's rows are (1,0,−1,0), (0,1,1,0), (0,−1,1,0), (0,1,0,−1). Combining
/// whole rows first, then splitting columns into even and odd, makes both
/// halves of the transform contiguous element-wise loops over tiles
/// (vectorised), where a tile at a time was 16 scattered stores.
fn input_row(rows: &[f32], width: usize, scratch: &mut [f32], v: &mut [f32], stride: usize) {
    let tiles = (width - 2) / 2;
    let half = tiles + 1;
    let (r0, rest) = rows.split_at(width);
    let (r1, rest) = rest.split_at(width);
    let (r2, r3) = rest.split_at(width);
    // even[r][k], odd[r][k]: row combination r at columns 2k and 2k + 1.
    let (even, odd) = scratch[..8 * half].split_at_mut(4 * half);
    for (parity, out) in [(0, even), (1, odd)] {
        let (t0, rest) = out.split_at_mut(half);
        let (t1, rest) = rest.split_at_mut(half);
        let (t2, t3) = rest.split_at_mut(half);
        for k in 0..half {
            let col = 2 * k + parity;
            let (a, b, c, d) = (r0[col], r1[col], r2[col], r3[col]);
            t0[k] = a - c;
            t1[k] = b + c;
            t2[k] = c - b;
            t3[k] = b - d;
        }
    }
    let (even, odd) = scratch[..8 * half].split_at(4 * half);
    for r in 0..4 {
        let e = &even[r * half..(r + 1) * half];
        let o = &odd[r * half..(r + 1) * half];
        let (v0, rest) = v[4 * r * stride..].split_at_mut(stride);
        let (v1, rest) = rest.split_at_mut(stride);
        let (v2, v3) = rest.split_at_mut(stride);
        for tx in 0..tiles {
            v0[tx] = e[tx] - e[tx + 1];
            v1[tx] = o[tx] + e[tx + 1];
            v2[tx] = e[tx + 1] - o[tx];
            v3[tx] = o[tx] - o[tx + 1];
        }
    }
}

/// Output transform of one output channel's tile row: Y = Aᵀ M A from the
/// 16 runs `m[ξ·stride + tx]`, plus `bias`, into the two output rows it
/// covers (the second absent where an odd height cuts it off; an odd width
/// drops the last column). Aᵀ's rows are (1,1,1,0) and (0,1,−1,−1); rows
/// combine first, element-wise over tiles, as in [`input_row`].
fn output_row(
    m: &[f32],
    stride: usize,
    tiles: usize,
    scratch: &mut [f32],
    bias: f32,
    out: [Option<&mut [f32]>; 2],
) {
    // u[a][j][tx] = (Aᵀ M)[a][j].
    let (top, bottom) = scratch[..8 * tiles].split_at_mut(4 * tiles);
    for j in 0..4 {
        let m0 = &m[j * stride..][..tiles];
        let m1 = &m[(4 + j) * stride..][..tiles];
        let m2 = &m[(8 + j) * stride..][..tiles];
        let m3 = &m[(12 + j) * stride..][..tiles];
        let top = &mut top[j * tiles..(j + 1) * tiles];
        let bottom = &mut bottom[j * tiles..(j + 1) * tiles];
        for tx in 0..tiles {
            top[tx] = m0[tx] + m1[tx] + m2[tx];
            bottom[tx] = m1[tx] - m2[tx] - m3[tx];
        }
    }
    for (a, row) in out.into_iter().enumerate() {
        let Some(row) = row else { continue };
        let u = &scratch[4 * a * tiles..4 * (a + 1) * tiles];
        let (u0, rest) = u.split_at(tiles);
        let (u1, rest) = rest.split_at(tiles);
        let (u2, u3) = rest.split_at(tiles);
        let (pairs, last) = row.split_at_mut(row.len() / 2 * 2);
        for (tx, pair) in pairs.chunks_exact_mut(2).enumerate() {
            pair[0] = u0[tx] + u1[tx] + u2[tx] + bias;
            pair[1] = u1[tx] - u2[tx] - u3[tx] + bias;
        }
        if let Some(cell) = last.first_mut() {
            let tx = tiles - 1;
            *cell = u0[tx] + u1[tx] + u2[tx] + bias;
        }
    }
}

/// One image's working buffers, reused band after band: the four padded
/// input rows a tile row spans, the row transforms' scratch, and the
/// transformed input V and product M of the current band.
struct Workspace {
    tile_rows: usize,
    tile_cols: usize,
    band_rows: usize,
    /// Columns −1 ..= 2·tile_cols of four input rows; the margins stay zero.
    rows: Vec<f32>,
    scratch: Vec<f32>,
    v: Vec<f32>,
    m: Vec<f32>,
}

impl Workspace {
    fn new(g: &ConvGeometry) -> Workspace {
        let (tile_rows, tile_cols) = tiles(g);
        let per_row = 64 * (g.channels_in + g.channels_out) * tile_cols;
        Workspace {
            tile_rows,
            tile_cols,
            band_rows: (BAND_BYTES / per_row.max(1)).clamp(1, tile_rows),
            rows: vec![0.0; 4 * (2 * tile_cols + 2)],
            scratch: vec![0.0; 8 * (tile_cols + 1)],
            v: Vec::new(),
            m: Vec::new(),
        }
    }

    /// Bands of tile rows covering the output.
    fn bands(&self) -> Vec<std::ops::Range<usize>> {
        (0..self.tile_rows)
            .step_by(self.band_rows)
            .map(|first| first..(first + self.band_rows).min(self.tile_rows))
            .collect()
    }

    /// Sizes V and M for `band` and fills V[ξ][c][tile] from the image `x`;
    /// returns the band's tile count.
    fn transform_input(
        &mut self,
        g: &ConvGeometry,
        x: &[f32],
        band: &std::ops::Range<usize>,
    ) -> usize {
        let (cin, cout) = (g.channels_in, g.channels_out);
        let [h, w] = g.input;
        let n = band.len() * self.tile_cols;
        self.v.resize(16 * cin * n, 0.0);
        self.m.resize(16 * cout * n, 0.0);
        let padded_width = 2 * self.tile_cols + 2;
        for c in 0..cin {
            let plane = &x[c * h * w..(c + 1) * h * w];
            for (band_row, ty) in band.clone().enumerate() {
                for (r, row) in self.rows.chunks_exact_mut(padded_width).enumerate() {
                    match (2 * ty + r).checked_sub(1).filter(|&iy| iy < h) {
                        Some(iy) => row[1..1 + w].copy_from_slice(&plane[iy * w..(iy + 1) * w]),
                        None => row.fill(0.0),
                    }
                }
                let at = c * n + band_row * self.tile_cols;
                input_row(
                    &self.rows,
                    padded_width,
                    &mut self.scratch,
                    &mut self.v[at..],
                    cin * n,
                );
            }
        }
        n
    }
}

/// One image's convolution: x [in, h, w] → y [out, h, w] (overwritten), with
/// `u` from [`transform_filters`]. Bands of tile rows bound the scratch.
pub fn convolve_image(
    g: &ConvGeometry,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) {
    let (cin, cout) = (g.channels_in, g.channels_out);
    let [oh, ow] = g.output;
    let mut work = Workspace::new(g);
    let tile_cols = work.tile_cols;
    for band in work.bands() {
        let n = work.transform_input(g, x, &band);
        // 16 products over channels: M[ξ] = U[ξ] · V[ξ].
        for xi in 0..16 {
            gemm(
                [cout, n, cin],
                &mut work.m[xi * cout * n..(xi + 1) * cout * n],
                n,
                false,
                View::rows(&u[xi * cout * cin..(xi + 1) * cout * cin], cin),
                View::rows(&work.v[xi * cin * n..(xi + 1) * cin * n], n),
                threads,
            );
        }
        // Output transform into rows 2·ty and 2·ty + 1.
        for co in 0..cout {
            let b = bias.map_or(0.0, |b| b[co]);
            let plane = &mut y[co * oh * ow..(co + 1) * oh * ow];
            for (band_row, ty) in band.clone().enumerate() {
                let (top, bottom) = plane[2 * ty * ow..].split_at_mut(ow);
                let bottom = (2 * ty + 1 < oh).then(|| &mut bottom[..ow]);
                let at = co * n + band_row * tile_cols;
                let out = [Some(top), bottom];
                output_row(
                    &work.m[at..],
                    cout * n,
                    tile_cols,
                    &mut work.scratch,
                    b,
                    out,
                );
            }
        }
    }
}

/// The transform of one output-gradient tile row, Ŷ = A ∂y Aᵀ (4×4 from
/// each 2×2 block), written to `out[ξ·stride + tx]`; rows and columns past an
/// odd edge count as zero. A's rows are (1,0), (1,1), (1,−1), (0,−1).
fn gradient_row(
    top: &[f32],
    bottom: Option<&[f32]>,
    tiles: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    stride: usize,
) {
    // r[a][col] for a in 0..4 (A·rows), split into even and odd columns.
    let (even, odd) = scratch[..8 * tiles].split_at_mut(4 * tiles);
    for (parity, half) in [(0, even), (1, odd)] {
        let (r0, rest) = half.split_at_mut(tiles);
        let (r1, rest) = rest.split_at_mut(tiles);
        let (r2, r3) = rest.split_at_mut(tiles);
        for k in 0..tiles {
            let col = 2 * k + parity;
            let a = top.get(col).copied().unwrap_or(0.0);
            let c = bottom.and_then(|b| b.get(col)).copied().unwrap_or(0.0);
            r0[k] = a;
            r1[k] = a + c;
            r2[k] = a - c;
            r3[k] = -c;
        }
    }
    let (even, odd) = scratch[..8 * tiles].split_at(4 * tiles);
    for r in 0..4 {
        let p = &even[r * tiles..(r + 1) * tiles];
        let q = &odd[r * tiles..(r + 1) * tiles];
        let (o0, rest) = out[4 * r * stride..].split_at_mut(stride);
        let (o1, rest) = rest.split_at_mut(stride);
        let (o2, o3) = rest.split_at_mut(stride);
        for tx in 0..tiles {
            o0[tx] = p[tx];
            o1[tx] = p[tx] + q[tx];
            o2[tx] = p[tx] - q[tx];
            o3[tx] = -q[tx];
        }
    }
}

/// Adds one image's filter gradient, in the Winograd domain, to `du`
/// ([16][out][in]): ∂L/∂U[ξ] = Σ_tiles Ŷ[ξ] · V[ξ]ᵀ, one gemm per ξ whose
/// inner dimension is the tiles. [`filters_from_transformed`] maps the sum
/// back: ∂L/∂g = Gᵀ (∂L/∂U) G.
pub fn filter_gradient_image(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    du: &mut [f32],
    threads: usize,
) {
    let (cin, cout) = (g.channels_in, g.channels_out);
    let [oh, ow] = g.output;
    let mut work = Workspace::new(g);
    let tile_cols = work.tile_cols;
    for band in work.bands() {
        let n = work.transform_input(g, x, &band);
        for co in 0..cout {
            let plane = &dy[co * oh * ow..(co + 1) * oh * ow];
            for (band_row, ty) in band.clone().enumerate() {
                let top = &plane[2 * ty * ow..(2 * ty + 1) * ow];
                let bottom =
                    (2 * ty + 1 < oh).then(|| &plane[(2 * ty + 1) * ow..(2 * ty + 2) * ow]);
                let at = co * n + band_row * tile_cols;
                gradient_row(
                    top,
                    bottom,
                    tile_cols,
                    &mut work.scratch,
                    &mut work.m[at..],
                    cout * n,
                );
            }
        }
        for xi in 0..16 {
            gemm(
                [cout, cin, n],
                &mut du[xi * cout * cin..(xi + 1) * cout * cin],
                cin,
                true,
                View::rows(&work.m[xi * cout * n..(xi + 1) * cout * n], n),
                View::transposed(&work.v[xi * cin * n..(xi + 1) * cin * n], n),
                threads,
            );
        }
    }
}

/// ∂L/∂g = Gᵀ (∂L/∂U) G for every filter: [16][out][in] → [out][in][3][3].
pub fn filters_from_transformed(du: &[f32], channels_out: usize, channels_in: usize) -> Vec<f32> {
    let pairs = channels_out * channels_in;
    let mut dg = vec![0.0f32; 9 * pairs];
    // Gᵀ's rows: (1, ½, ½, 0), (0, ½, −½, 0), (0, ½, ½, 1).
    let combine = |v: [f32; 4]| {
        [
            v[0] + 0.5 * (v[1] + v[2]),
            0.5 * (v[1] - v[2]),
            0.5 * (v[1] + v[2]) + v[3],
        ]
    };
    for (pair, out) in dg.chunks_exact_mut(9).enumerate() {
        let at = |xi: usize| du[xi * pairs + pair];
        // Gᵀ·D over rows (4 → 3), then ·G over columns (4 → 3).
        let columns = [0, 1, 2, 3].map(|c| combine([at(c), at(4 + c), at(8 + c), at(12 + c)]));
        for (r, row) in out.chunks_exact_mut(3).enumerate() {
            row.copy_from_slice(&combine(columns.map(|col| col[r])));
        }
    }
    dg
}

/// The filters of the convolution whose forward pass is this one's data
/// gradient: w′[in][out][ky][kx] = w[out][in][2 − ky][2 − kx].
pub fn flipped_transposed(w: &[f32], channels_out: usize, channels_in: usize) -> Vec<f32> {
    let mut flipped = vec![0.0; w.len()];
    for co in 0..channels_out {
        for ci in 0..channels_in {
            let src = &w[(co * channels_in + ci) * 9..][..9];
            let dst = &mut flipped[(ci * channels_out + co) * 9..][..9];
            for k in 0..9 {
                dst[k] = src[8 - k];
            }
        }
    }
    flipped
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 3×3, stride-1, padding-1 convolution by definition.
    fn direct(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let [h, wd] = g.input;
        let mut y = vec![0.0f32; g.channels_out * h * wd];
        for co in 0..g.channels_out {
            for oy in 0..h {
                for ox in 0..wd {
                    let mut sum = 0.0f64;
                    for ci in 0..g.channels_in {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy + ky, ox + kx);
                                if iy >= 1 && ix >= 1 && iy <= h && ix <= wd {
                                    sum += f64::from(x[(ci * h + iy - 1) * wd + ix - 1])
                                        * f64::from(
                                            w[((co * g.channels_in + ci) * 3 + ky) * 3 + kx],
                                        );
                                }
                            }
                        }
                    }
                    y[(co * h + oy) * wd + ox] = sum as f32;
                }
            }
        }
        y
    }

    #[test]
    fn winograd_matches_direct_convolution_on_even_and_odd_sizes() {
        for (size, cin, cout) in [
            ([8, 10], 3, 4),
            ([7, 5], 2, 3),
            ([1, 1], 1, 1),
            ([130, 6], 2, 2),
        ] {
            let g = ConvGeometry::forward(1, [cin, cout], size, [3, 3], [1, 1], [1, 1]).unwrap();
            let x: Vec<f32> = (0..cin * size[0] * size[1])
                .map(|i| ((i * 29 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let w: Vec<f32> = (0..cout * cin * 9)
                .map(|i| ((i * 13 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let mut y = vec![f32::NAN; cout * size[0] * size[1]];
            let u = transform_filters(&w, cout, cin);
            convolve_image(&g, &x, &u, None, &mut y, 1);
            let want = direct(&g, &x, &w);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * scale, "{size:?}[{i}]: {a} vs {b}");
            }
        }
    }
}
