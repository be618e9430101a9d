//! Scoring at the volume's own resolution: each test volume's stored
//! predictions are put back on its canonical grid (through the crop window
//! and, when the store was resampled, the in-plane resampling), and scored
//! there against the label map read from its file, with the grid's own
//! spacing and field of view (so the BraTS empty-region HD95 is that
//! grid's diagonal, not the padded store's).

use std::collections::HashMap;
use std::path::PathBuf;

use super::context::EngineError;
use crate::config::SliceAxis;
use crate::eval::{self, Grid, Region, RegionScore};
use crate::store::{SliceStore, StoreMeta, VolumeRecord};
use crate::volume::{read_labels, to_canonical};

/// Writes stored slice `slice`'s label values (`values`, the store's
/// height × width) into `native`, the canonical volume's label values:
/// every native voxel of that slice takes the stored pixel covering it;
/// voxels outside the crop window keep what they hold (background).
pub fn place_slice(
    record: &VolumeRecord,
    axis: SliceAxis,
    size: [usize; 2],
    slice: usize,
    values: &[u8],
    native: &mut [u8],
) {
    let [nx, ny, _] = record.canonical_dims;
    let strides = [1, nx, nx * ny];
    let (row, col) = axis.in_plane_axes();
    let normal = axis.normal_axis();
    let in_plane = record.in_plane(axis);
    let dims = record.canonical_dims;
    let resampled = in_plane.dims([dims[0], dims[1], dims[2], 1]);
    let [h, w] = size;
    let covering = |k: usize, axis: usize, i: usize| -> Option<usize> {
        let j = in_plane.covering(k, i, resampled[axis]) as i64 - record.crop_origin[k];
        let n = if k == 0 { h } else { w };
        (0..n as i64).contains(&j).then_some(j as usize)
    };
    let columns: Vec<Option<usize>> = (0..dims[col]).map(|i| covering(1, col, i)).collect();
    for ir in 0..dims[row] {
        let Some(jr) = covering(0, row, ir) else {
            continue;
        };
        for (ic, jc) in columns.iter().enumerate() {
            if let Some(jc) = jc {
                native[slice * strides[normal] + ir * strides[row] + ic * strides[col]] =
                    values[jr * w + jc];
            }
        }
    }
}

/// Predicted class maps gathered volume by volume (store order), each
/// scored on its native grid when the pass moves on to the next volume.
pub struct NativeScores<'a> {
    meta: &'a StoreMeta,
    axis: SliceAxis,
    size: [usize; 2],
    regions: &'a [Region],
    /// Where each case's label map is now (the data may have moved).
    labels: &'a HashMap<String, PathBuf>,
    current: Option<(u32, Vec<u8>)>,
    scored: Vec<(String, Vec<RegionScore>)>,
}

impl<'a> NativeScores<'a> {
    pub fn new(
        meta: &'a StoreMeta,
        axis: SliceAxis,
        regions: &'a [Region],
        labels: &'a HashMap<String, PathBuf>,
    ) -> Self {
        NativeScores {
            meta,
            axis,
            size: [meta.height, meta.width],
            regions,
            labels,
            current: None,
            scored: Vec::new(),
        }
    }

    /// A batch's class maps (store ids `chunk`, height × width each).
    pub fn add(
        &mut self,
        store: &SliceStore,
        chunk: &[usize],
        predicted: &[u8],
    ) -> Result<(), EngineError> {
        let meta = self.meta;
        let plane = meta.height * meta.width;
        let background = meta.label_values.first().copied().unwrap_or(0);
        let mut values = vec![0u8; plane];
        for (j, &id) in chunk.iter().enumerate() {
            let entry = &store.entries()[id];
            if self.current.as_ref().is_none_or(|c| c.0 != entry.volume) {
                self.score_current()?;
                let [x, y, z] = self.record(entry.volume)?.canonical_dims;
                self.current = Some((entry.volume, vec![background; x * y * z]));
            }
            let record = self.record(entry.volume)?;
            let s = entry.slice as usize;
            if s >= record.canonical_dims[self.axis.normal_axis()] {
                return Err(EngineError::StoreMismatch(format!(
                    "slice {s} of {} is outside its volume",
                    record.case
                )));
            }
            for (v, &class) in values
                .iter_mut()
                .zip(&predicted[j * plane..(j + 1) * plane])
            {
                *v = meta.label_values.get(class as usize).copied().unwrap_or(0);
            }
            if let Some((_, native)) = self.current.as_mut() {
                place_slice(record, self.axis, self.size, s, &values, native);
            }
        }
        Ok(())
    }

    fn record(&self, volume: u32) -> Result<&'a VolumeRecord, EngineError> {
        self.meta
            .volumes
            .get(volume as usize)
            .ok_or_else(|| EngineError::StoreMismatch(format!("no volume record {volume}")))
    }

    fn score_current(&mut self) -> Result<(), EngineError> {
        let Some((volume, predicted)) = self.current.take() else {
            return Ok(());
        };
        let record = self.record(volume)?;
        let fail = |message: String| EngineError::Score {
            case: record.case.clone(),
            message,
        };
        let path = self
            .labels
            .get(&record.case)
            .or(record.label.as_ref())
            .ok_or_else(|| fail("no label map".into()))?;
        let truth = to_canonical(read_labels(path).map_err(|e| fail(e.to_string()))?);
        if truth.spatial_dims() != record.canonical_dims {
            return Err(fail(format!(
                "{} is {:?} voxels, the store recorded {:?}",
                path.display(),
                truth.spatial_dims(),
                record.canonical_dims
            )));
        }
        let grid = Grid::new(record.canonical_dims, record.canonical_affine.spacing())
            .map_err(|e| fail(e.to_string()))?;
        let scores = eval::score_volume(&predicted, &truth.data, &grid, self.regions)
            .map_err(|e| fail(e.to_string()))?;
        self.scored.push((record.case.clone(), scores));
        Ok(())
    }

    /// Scores the last volume; (case, region scores) per volume, in order.
    pub fn finish(mut self) -> Result<Vec<(String, Vec<RegionScore>)>, EngineError> {
        self.score_current()?;
        Ok(self.scored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::resample::InPlane;
    use crate::volume::Affine;

    /// A 4 × 4 × 1 axial volume at 1 mm stored at 2 mm in a 2 × 2 window.
    fn record() -> VolumeRecord {
        VolumeRecord {
            case: "c".into(),
            images: Vec::new(),
            label: None,
            canonical_dims: [4, 4, 1],
            canonical_affine: Affine::identity(),
            crop_origin: [0, 0],
            resampled: Some(InPlane {
                axis: SliceAxis::Axial,
                factor: [2.0, 2.0],
            }),
            grid_affine: Affine::identity(),
            normalisation: Vec::new(),
            first_slice: 0,
            slice_count: 1,
        }
    }

    #[test]
    fn a_stored_prediction_is_scored_on_the_native_grid() {
        // Stored (row, column): (0, 0) = 1, (1, 1) = 2.
        let mut native = vec![0u8; 16];
        place_slice(
            &record(),
            SliceAxis::Axial,
            [2, 2],
            0,
            &[1, 0, 0, 2],
            &mut native,
        );
        #[rustfmt::skip]
        let expected = vec![
            1, 1, 0, 0,
            1, 1, 0, 0,
            0, 0, 2, 2,
            0, 0, 2, 2,
        ];
        assert_eq!(native, expected);
        // Truth by hand: label 1 on 3 native voxels, two of them predicted.
        #[rustfmt::skip]
        let truth = vec![
            1, 0, 0, 0,
            1, 1, 0, 0,
            0, 0, 0, 0,
            0, 0, 0, 0,
        ];
        let grid = Grid::new([4, 4, 1], [1.0, 1.0, 1.0]).unwrap();
        let region = Region::new("one", &[1]);
        let scores = eval::score_volume(&native, &truth, &grid, &[region]).unwrap();
        // 2·3 / (4 + 3): the native grid counts 1 mm voxels, not 2 mm pixels.
        assert!((scores[0].dice - 6.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn a_window_smaller_than_the_volume_leaves_the_rest_background() {
        let mut r = record();
        r.resampled = None;
        r.crop_origin = [1, 1];
        let mut native = vec![0u8; 16];
        place_slice(&r, SliceAxis::Axial, [2, 2], 0, &[3, 3, 3, 3], &mut native);
        let inside: Vec<usize> = (0..16).filter(|&i| native[i] == 3).collect();
        assert_eq!(inside, vec![5, 6, 9, 10]);
    }
}
