//! On-disk format of a store directory:
//! - `images.bin`: slices × channels × height × width, little-endian f32 or f16;
//! - `labels.bin`: slices × height × width class indices (u8), when any volume
//!   has a label map (zeros for the others);
//! - `index.bin`: one 16-byte record per slice (see `SliceEntry`);
//! - `meta.json`: everything else, written last.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{SliceAxis, StoreDtype};
use crate::volume::Affine;

use super::resample::InPlane;

pub const FORMAT_VERSION: u32 = 1;
pub const META_FILE: &str = "meta.json";
pub const IMAGES_FILE: &str = "images.bin";
pub const LABELS_FILE: &str = "labels.bin";
pub const INDEX_FILE: &str = "index.bin";
pub const RECORD_LEN: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub format_version: u32,
    /// Hash of the inputs and preprocessing settings (the directory name).
    pub key: String,
    /// The same without file sizes and times: stores of one lineage hold the
    /// same dataset files with the same settings, at different times.
    pub lineage: String,
    pub dtype: StoreDtype,
    pub modalities: Vec<String>,
    pub axis: SliceAxis,
    pub height: usize,
    pub width: usize,
    /// Label value of class `i`.
    pub label_values: Vec<u8>,
    pub has_labels: bool,
    pub slices: usize,
    pub volumes: Vec<VolumeRecord>,
}

impl StoreMeta {
    pub fn channels(&self) -> usize {
        self.modalities.len()
    }

    /// Values in one stored slice (all channels).
    pub fn slice_values(&self) -> usize {
        self.channels() * self.height * self.width
    }

    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    pub fn bytes_per_value(&self) -> usize {
        match self.dtype {
            StoreDtype::F16 => 2,
            StoreDtype::F32 => 4,
        }
    }
}

/// One source volume and how its slices map back to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub case: String,
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
    /// Size of the canonical (RAS) volume.
    pub canonical_dims: [usize; 3],
    /// Voxel → world of the canonical volume.
    pub canonical_affine: Affine,
    /// Canonical voxel index of stored pixel (row 0, column 0) — on the
    /// resampled grid when `resampled` — negative where the slice was
    /// zero-padded.
    pub crop_origin: [i64; 2],
    /// How the canonical volume was resampled in-plane before cropping
    /// (`slicing.spacing`); absent: stored at its own resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampled: Option<InPlane>,
    /// Maps (column, row, canonical slice index) → world millimetres, so a
    /// stored slice can be written as NIfTI that lines up with the volume.
    pub grid_affine: Affine,
    /// Mean and standard deviation used to normalise each modality.
    pub normalisation: Vec<[f64; 2]>,
    /// Position of this volume's first slice in the index.
    pub first_slice: usize,
    pub slice_count: usize,
}

impl VolumeRecord {
    /// The in-plane resampling from the canonical volume to the store.
    pub fn in_plane(&self, axis: SliceAxis) -> InPlane {
        self.resampled.unwrap_or(InPlane::identity(axis))
    }
}

/// Index record of one stored slice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceEntry {
    pub volume: u32,
    /// Index along the slicing axis in the canonical volume.
    pub slice: u32,
    /// Fraction of the stored slice inside the brain.
    pub brain_fraction: f32,
    /// Fraction of pixels with a non-background label; `None` when the volume
    /// has no label map.
    pub foreground_fraction: Option<f32>,
}

impl SliceEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.volume.to_le_bytes());
        out.extend(self.slice.to_le_bytes());
        out.extend(self.brain_fraction.to_le_bytes());
        out.extend(self.foreground_fraction.unwrap_or(-1.0).to_le_bytes());
    }

    pub fn decode(record: &[u8; RECORD_LEN]) -> SliceEntry {
        let word = |i: usize| [record[i], record[i + 1], record[i + 2], record[i + 3]];
        let fg = f32::from_le_bytes(word(12));
        SliceEntry {
            volume: u32::from_le_bytes(word(0)),
            slice: u32::from_le_bytes(word(4)),
            brain_fraction: f32::from_le_bytes(word(8)),
            foreground_fraction: (fg >= 0.0).then_some(fg),
        }
    }
}
