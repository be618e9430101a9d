//! The geometry of a label volume and the regions scored on it. A region is
//! a set of label values because BraTS scores nested unions of labels (the
//! whole tumour contains the core, which contains the enhancing part), not
//! single labels.

use super::EvalError;
use crate::volume::Volume;

/// Shape and voxel size of a 3D label volume in NIfTI order (x fastest).
/// Validated once so the metrics need not re-check spacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    dims: [usize; 3],
    spacing: [f64; 3],
}

impl Grid {
    /// `spacing` in mm per axis; anisotropic spacing is fine, zero, negative
    /// or non-finite spacing is an error.
    pub fn new(dims: [usize; 3], spacing: [f64; 3]) -> Result<Grid, EvalError> {
        if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(EvalError::Spacing(spacing));
        }
        dims.iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or(EvalError::Dims(dims))?;
        Ok(Grid { dims, spacing })
    }

    /// The spatial grid of frame 0 of `volume`, spacing from its affine.
    pub fn of_volume<T: Copy>(volume: &Volume<T>) -> Result<Grid, EvalError> {
        Grid::new(volume.spatial_dims(), volume.affine.spacing())
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    pub fn spacing(&self) -> [f64; 3] {
        self.spacing
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length in mm of the diagonal of the field of view, √Σ(nᵢ·sᵢ)²: no two
    /// voxels are further apart. For BraTS (240×240×155 at 1 mm) it is
    /// 373.13 mm, the value the BraTS toolkits report as HD95 when exactly one
    /// of prediction and truth is empty.
    pub fn diagonal_mm(&self) -> f64 {
        (0..3)
            .map(|a| (self.dims[a] as f64 * self.spacing[a]).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// Checks that a per-voxel array covers exactly this grid.
    pub(crate) fn check(&self, what: &'static str, got: usize) -> Result<(), EvalError> {
        if got == self.len() {
            Ok(())
        } else {
            Err(EvalError::Length {
                what,
                expected: self.len(),
                got,
            })
        }
    }
}

/// A named set of label values scored as one foreground mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub labels: Vec<i64>,
}

impl Region {
    pub fn new(name: impl Into<String>, labels: &[i64]) -> Region {
        Region {
            name: name.into(),
            labels: labels.to_vec(),
        }
    }

    /// The three BraTS regions: whole tumour {1, 2, 4}, tumour core {1, 4},
    /// enhancing tumour {4} (1 necrosis/non-enhancing, 2 oedema, 4 enhancing).
    pub fn brats() -> Vec<Region> {
        vec![
            Region::new("WT", &[1, 2, 4]),
            Region::new("TC", &[1, 4]),
            Region::new("ET", &[4]),
        ]
    }

    /// One region per label, named by its value (MALC-style per-structure
    /// scores).
    pub fn each(labels: &[i64]) -> Vec<Region> {
        labels
            .iter()
            .map(|&l| Region::new(l.to_string(), &[l]))
            .collect()
    }

    pub fn contains<L: Copy + Into<i64>>(&self, label: L) -> bool {
        let label = label.into();
        self.labels.contains(&label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brats_diagonal_is_the_toolkit_sentinel() {
        let grid = Grid::new([240, 240, 155], [1.0; 3]).unwrap();
        assert!((grid.diagonal_mm() - 373.128_664).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_spacing_and_overflowing_dims() {
        assert_eq!(
            Grid::new([2, 2, 2], [1.0, 0.0, 1.0]),
            Err(EvalError::Spacing([1.0, 0.0, 1.0]))
        );
        assert!(Grid::new([2, 2, 2], [1.0, f64::NAN, 1.0]).is_err());
        assert!(Grid::new([2, 2, 2], [-1.0, 1.0, 1.0]).is_err());
        let huge = [usize::MAX / 2, 3, 1];
        assert_eq!(Grid::new(huge, [1.0; 3]), Err(EvalError::Dims(huge)));
    }

    #[test]
    fn brats_regions_nest() {
        let [wt, tc, et] = <[Region; 3]>::try_from(Region::brats()).unwrap();
        assert!(wt.contains(2u8) && !tc.contains(2u8) && !et.contains(2u8));
        assert!(wt.contains(1i32) && tc.contains(1i32) && !et.contains(1i32));
        assert!(wt.contains(4u8) && tc.contains(4u8) && et.contains(4u8));
        assert!(!wt.contains(0u8) && !wt.contains(3u8));
    }
}
