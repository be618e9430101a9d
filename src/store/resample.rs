//! In-plane resampling of a canonical volume to the store's spacing
//! (`slicing.spacing`): linear for images, nearest for labels and masks,
//! along the slice's row and column axes only (slices stay slices). The
//! same mapping takes a native mask plane onto the store's grid at import
//! and a stored prediction back onto the native grid for evaluation, so
//! experts and metrics always work at the volume's own resolution.
//!
//! Resampled index j along an axis with factor f (target ÷ native spacing)
//! samples native continuous index f·j + (f − 1)/2: pixel centres line up,
//! and the field of view stays where it was.

use serde::{Deserialize, Serialize};

use crate::config::SliceAxis;
use crate::volume::{Affine, Volume};

/// How a volume is resampled in the plane of `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InPlane {
    pub axis: SliceAxis,
    /// Target ÷ native spacing along the (row, column) axes; 1 = unchanged.
    pub factor: [f64; 2],
}

impl InPlane {
    pub fn identity(axis: SliceAxis) -> InPlane {
        InPlane {
            axis,
            factor: [1.0, 1.0],
        }
    }

    /// To `spacing` (mm, row and column) from the grid of `affine`.
    pub fn to_spacing(axis: SliceAxis, affine: &Affine, spacing: [f64; 2]) -> InPlane {
        let native = affine.spacing();
        let (row, col) = axis.in_plane_axes();
        let factor = [spacing[0] / native[row], spacing[1] / native[col]];
        // Within 0.1 % of the native grid: leave it alone (header noise).
        let factor = factor.map(|f| if (f - 1.0).abs() < 1e-3 { 1.0 } else { f });
        InPlane { axis, factor }
    }

    pub fn is_identity(&self) -> bool {
        self.factor == [1.0, 1.0]
    }

    /// Canonical voxel axes of the (row, column) directions.
    fn axes(&self) -> [usize; 2] {
        let (row, col) = self.axis.in_plane_axes();
        [row, col]
    }

    /// The resampled grid's size.
    pub fn dims(&self, dims: [usize; 4]) -> [usize; 4] {
        let mut out = dims;
        for (k, a) in self.axes().into_iter().enumerate() {
            out[a] = ((dims[a] as f64 / self.factor[k]).round() as usize).max(1);
        }
        out
    }

    /// The resampled grid's voxel → world.
    pub fn affine(&self, affine: &Affine) -> Affine {
        let mut m = Affine::identity();
        for (k, a) in self.axes().into_iter().enumerate() {
            m.0[a][a] = self.factor[k];
            m.0[a][3] = (self.factor[k] - 1.0) / 2.0;
        }
        affine.mul(&m)
    }

    /// Native continuous index sampled by resampled index `j` along `k`.
    fn native(&self, k: usize, j: usize) -> f64 {
        self.factor[k] * j as f64 + (self.factor[k] - 1.0) / 2.0
    }

    /// The resampled index whose pixel covers native index `i` along `k`
    /// (0 = row, 1 = column), within `0..n`.
    pub fn covering(&self, k: usize, i: usize, n: usize) -> usize {
        (((i as f64 + 0.5) / self.factor[k]).floor() as usize).min(n.saturating_sub(1))
    }

    /// Images: bilinear in the plane, clamped at the edges.
    pub fn linear(&self, v: &Volume) -> Volume {
        self.resample(v, |values, taps| {
            taps.iter().map(|&(i, w)| w * values[i]).sum::<f32>()
        })
    }

    /// Labels and masks: the nearest native voxel.
    pub fn nearest<T: Copy + Default>(&self, v: &Volume<T>) -> Volume<T> {
        self.resample(v, |values, taps| {
            // The heaviest tap is the nearest voxel.
            let mut best = (0usize, -1f32);
            for &(i, w) in taps {
                if w > best.1 {
                    best = (i, w);
                }
            }
            values[best.0]
        })
    }

    /// Each output voxel from its four bilinear taps (native index, weight).
    fn resample<T: Copy + Default>(
        &self,
        v: &Volume<T>,
        combine: impl Fn(&[T], &[(usize, f32); 4]) -> T,
    ) -> Volume<T> {
        if self.is_identity() {
            return v.clone();
        }
        let dims = self.dims(v.dims);
        let [row, col] = self.axes();
        let strides = [1, v.dims[0], v.dims[0] * v.dims[1]];
        let out_strides = [1, dims[0], dims[0] * dims[1]];
        // Per axis and output index: the two native neighbours and the
        // weight of the second.
        let taps_along = |k: usize, axis: usize| -> Vec<(usize, usize, f32)> {
            let n = v.dims[axis];
            (0..dims[axis])
                .map(|j| {
                    let x = self.native(k, j).clamp(0.0, (n - 1) as f64);
                    let lo = x.floor() as usize;
                    let hi = (lo + 1).min(n - 1);
                    (lo, hi, (x - lo as f64) as f32)
                })
                .collect()
        };
        let (rows, cols) = (taps_along(0, row), taps_along(1, col));
        let normal = self.axis.normal_axis();
        let mut data = vec![T::default(); dims.iter().product()];
        for s in 0..dims[normal] {
            for (r, &(r0, r1, wr)) in rows.iter().enumerate() {
                for (c, &(c0, c1, wc)) in cols.iter().enumerate() {
                    let at = |ri: usize, ci: usize| {
                        s * strides[normal] + ri * strides[row] + ci * strides[col]
                    };
                    let taps = [
                        (at(r0, c0), (1.0 - wr) * (1.0 - wc)),
                        (at(r0, c1), (1.0 - wr) * wc),
                        (at(r1, c0), wr * (1.0 - wc)),
                        (at(r1, c1), wr * wc),
                    ];
                    let o = s * out_strides[normal] + r * out_strides[row] + c * out_strides[col];
                    data[o] = combine(&v.data, &taps);
                }
            }
        }
        Volume::new(dims, self.affine(&v.affine), data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An axial 4 × 4 × 1 volume at 1 mm, value = x + 10 y.
    fn ramp() -> Volume {
        let data = (0..16)
            .map(|i| (i % 4) as f32 + 10.0 * (i / 4) as f32)
            .collect();
        Volume::new(
            [4, 4, 1, 1],
            Affine::diagonal([1.0, 1.0, 3.0], [0.0; 3]),
            data,
        )
    }

    #[test]
    fn halving_the_resolution_keeps_the_field_of_view_and_centres() {
        let v = ramp();
        let r = InPlane::to_spacing(SliceAxis::Axial, &v.affine, [2.0, 2.0]);
        assert_eq!(r.factor, [2.0, 2.0]);
        let down = r.linear(&v);
        assert_eq!(down.dims, [2, 2, 1, 1]);
        // Resampled voxel 0 sits at native 0.5 (between voxels 0 and 1).
        assert_eq!(down.affine.apply([0.0; 3]), [0.5, 0.5, 0.0]);
        assert_eq!(down.affine.spacing(), [2.0, 2.0, 3.0]);
        // Linear: the mean of the four native voxels it covers.
        assert_eq!(down.data, vec![5.5, 7.5, 25.5, 27.5]);
        // Every native voxel maps back to the resampled pixel covering it.
        let cover: Vec<usize> = (0..4).map(|i| r.covering(1, i, 2)).collect();
        assert_eq!(cover, vec![0, 0, 1, 1]);
    }

    #[test]
    fn labels_take_the_nearest_voxel_and_identity_changes_nothing() {
        let labels = Volume::new(
            [4, 4, 1, 1],
            Affine::identity(),
            vec![0u8, 0, 0, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 0, 0, 0],
        );
        let up = InPlane {
            axis: SliceAxis::Axial,
            factor: [0.5, 0.5],
        };
        let fine = up.nearest(&labels);
        assert_eq!(fine.dims, [8, 8, 1, 1]);
        assert!(fine.data.iter().all(|&v| v == 0 || v == 2));
        assert_eq!(fine.data.iter().filter(|&&v| v == 2).count(), 16);
        let same = InPlane::identity(SliceAxis::Axial);
        assert_eq!(same.nearest(&labels), labels);
    }
}
