//! Summary statistics of a volume's voxel values (after scaling), the way
//! `nibabel`'s `get_fdata()` followed by numpy's `nansum`/`nanmin`/… would
//! report them, so a user can check a file against another tool.

/// Sum, mean, extremes and NaN count of the finite-or-not values.
#[derive(Clone, Debug, PartialEq)]
pub struct VoxelStats {
    pub count: usize,
    /// Values that are NaN (left out of the other figures).
    pub nan: usize,
    /// Non-zero values, NaN excluded.
    pub nonzero: usize,
    /// Accumulated in f64 over the non-NaN values.
    pub sum: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl VoxelStats {
    pub fn of(values: &[f32]) -> VoxelStats {
        let (mut nan, mut nonzero, mut sum) = (0, 0, 0.0f64);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in values {
            if v.is_nan() {
                nan += 1;
                continue;
            }
            let v = f64::from(v);
            nonzero += usize::from(v != 0.0);
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        let counted = values.len() - nan;
        VoxelStats {
            count: values.len(),
            nan,
            nonzero,
            sum,
            mean: if counted > 0 {
                sum / counted as f64
            } else {
                f64::NAN
            },
            min: if counted > 0 { min } else { f64::NAN },
            max: if counted > 0 { max } else { f64::NAN },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_leave_nan_out_and_count_it() {
        let s = VoxelStats::of(&[1.0, -2.0, 0.0, f32::NAN, 4.5]);
        assert_eq!((s.count, s.nan, s.nonzero), (5, 1, 3));
        assert_eq!((s.sum, s.min, s.max), (3.5, -2.0, 4.5));
        assert!((s.mean - 3.5 / 4.0).abs() < 1e-12);
        let empty = VoxelStats::of(&[f32::NAN]);
        assert!(empty.mean.is_nan() && empty.min.is_nan() && empty.max.is_nan());
    }
}
