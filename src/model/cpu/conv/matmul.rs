//! A bounds-checked face on the `gemm` crate (the kernel burn-flex itself
//! uses), for row-major f32 matrices given by a slice, a row stride and a
//! column stride. Transposes are strides, never copies.

/// A read-only matrix view: element (i, j) is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> View<'a> {
        View {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> View<'a> {
        View {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Whether an `m × n` matrix fits inside the slice.
    fn holds(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.row_stride + (n - 1) * self.col_stride < self.data.len()
    }
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, or `dst += …` when `accumulate`.
/// `dst` is row-major with row stride `dst_row_stride`. `threads` > 1 lets
/// gemm split the product across rayon's pool (for a lone image); 1 keeps it
/// on the calling thread (the caller already runs one image per thread).
///
/// # Panics
/// If a view or `dst` is too short for its matrix.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_row_stride + n <= dst.len() && dst_row_stride >= n,
        "gemm: destination too short"
    );
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                dst[row * dst_row_stride..row * dst_row_stride + n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        lhs.holds(m, k) && rhs.holds(k, n),
        "gemm: operand too short"
    );
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the product touches lies inside the slices (checked
    // above); `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_transposes_match_the_definition() {
        let (m, n, k) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let expect = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
        let mut c = vec![1.0; m * n];
        gemm(
            [m, n, k],
            &mut c,
            n,
            false,
            View::rows(&a, k),
            View::rows(&b, n),
            1,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(c[i * n + j], expect(i, j));
            }
        }
        // (Bᵀ Aᵀ) = (A B)ᵀ, accumulated onto itself.
        let mut ct: Vec<f32> = (0..n * m).map(|t| c[(t % m) * n + t / m]).collect();
        gemm(
            [n, m, k],
            &mut ct,
            m,
            true,
            View::transposed(&b, n),
            View::transposed(&a, k),
            2,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(ct[j * m + i], 2.0 * expect(i, j));
            }
        }
    }

    #[test]
    #[should_panic(expected = "operand too short")]
    fn a_short_operand_is_refused() {
        let mut c = vec![0.0; 4];
        gemm(
            [2, 2, 3],
            &mut c,
            2,
            false,
            View::rows(&[0.0; 5], 3),
            View::rows(&[0.0; 6], 2),
            1,
        );
    }
}
