//! The shape of one 2D convolution, as the kernels see it.

/// A dense (groups 1, dilation 1) 2D convolution with symmetric zero
/// padding, seen from the convolution's side: `input` is what it reads,
/// `output` what it writes. A transposed convolution is the adjoint of one
/// of these, so it uses the same geometry with the roles swapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub channels_in: usize,
    pub channels_out: usize,
    /// Input height and width.
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl ConvGeometry {
    /// The geometry of a convolution over `input`, with its output size
    /// derived as burn and PyTorch do; `None` where the kernel does not fit.
    pub fn forward(
        batch: usize,
        channels: [usize; 2],
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Option<ConvGeometry> {
        let out = |d: usize| {
            let padded = input[d] + 2 * padding[d];
            (stride[d] > 0 && kernel[d] > 0 && padded >= kernel[d])
                .then(|| (padded - kernel[d]) / stride[d] + 1)
        };
        Some(ConvGeometry {
            batch,
            channels_in: channels[0],
            channels_out: channels[1],
            input,
            kernel,
            stride,
            padding,
            output: [out(0)?, out(1)?],
        })
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn patch_len(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    pub fn input_plane(&self) -> usize {
        self.input[0] * self.input[1]
    }

    pub fn output_plane(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// A 1×1, stride-1, unpadded convolution reads its input as the im2col
    /// matrix itself.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Output rows per tile, so that one tile's im2col block stays near
    /// `target_bytes` (cache-sized) while its gemm stays wide.
    pub fn rows_per_tile(&self, target_bytes: usize) -> usize {
        let row_bytes = self.patch_len() * self.output[1] * std::mem::size_of::<f32>();
        (target_bytes / row_bytes.max(1)).clamp(1, self.output[0].max(1))
    }

    /// The output columns `ox` whose input column `ox·stride + k − pad`
    /// lies inside the image, as a half-open range.
    pub fn valid_columns(&self, k: usize) -> std::ops::Range<usize> {
        span_inside(
            self.output[1],
            self.stride[1],
            k,
            self.padding[1],
            self.input[1],
        )
    }

    /// The input row read by output row `oy` at kernel row `k`, if inside.
    pub fn input_row(&self, oy: usize, k: usize) -> Option<usize> {
        (oy * self.stride[0] + k)
            .checked_sub(self.padding[0])
            .filter(|&iy| iy < self.input[0])
    }
}

/// The `o` in `0..outputs` with `0 ≤ o·stride + k − pad < size`.
fn span_inside(
    outputs: usize,
    stride: usize,
    k: usize,
    pad: usize,
    size: usize,
) -> std::ops::Range<usize> {
    // o·stride ≥ pad − k
    let lo = pad.saturating_sub(k).div_ceil(stride);
    // o·stride + k − pad ≤ size − 1  ⇔  o·stride ≤ size − 1 + pad − k
    let hi = match (size + pad).checked_sub(k + 1) {
        Some(limit) => (limit / stride + 1).min(outputs),
        None => 0,
    };
    lo.min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_match_the_convolution_formula() {
        let g = ConvGeometry::forward(2, [3, 8], [7, 6], [3, 3], [2, 2], [1, 1]).unwrap();
        assert_eq!(g.output, [4, 3]);
        let g = ConvGeometry::forward(1, [1, 1], [4, 4], [2, 2], [2, 2], [0, 0]).unwrap();
        assert_eq!(g.output, [2, 2]);
        assert!(ConvGeometry::forward(1, [1, 1], [1, 1], [3, 3], [1, 1], [0, 0]).is_none());
    }

    #[test]
    fn valid_columns_agree_with_a_brute_force_scan() {
        for size in 1..7 {
            for stride in 1..4 {
                for kernel in 1..4 {
                    for pad in 0..3 {
                        let Some(g) = ConvGeometry::forward(
                            1,
                            [1, 1],
                            [size, size],
                            [kernel, kernel],
                            [stride, stride],
                            [pad, pad],
                        ) else {
                            continue;
                        };
                        for k in 0..kernel {
                            let expected: Vec<usize> = (0..g.output[1])
                                .filter(|&o| {
                                    let i = (o * stride + k) as isize - pad as isize;
                                    i >= 0 && (i as usize) < size
                                })
                                .collect();
                            let got: Vec<usize> = g.valid_columns(k).collect();
                            assert_eq!(got, expected, "size {size} s {stride} k {k} p {pad}");
                        }
                    }
                }
            }
        }
    }
}
