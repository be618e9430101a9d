//! Mask exchange with the experts: exporting suggested slices and importing,
//! validating and storing the masks they return. Imports config, volume,
//! store and layout; never the project: callers pass what a round awaits and
//! get back the rows to add to it.

mod export;
mod export_volumes;
mod import;
pub mod plane;
mod png_io;
pub mod preview;

pub use export::{
    Exported, ToExport, expected_mask_name, expected_png_mask_name, export, key_from_mask_name,
};
pub use export_volumes::export_volumes;
pub use import::{
    AcceptedMask, Awaited, ImportPlan, ImportedMask, apply_import, plan_import, rederive,
};

use std::path::{Path, PathBuf};

use crate::layout;
use crate::store::{SliceIndex, SliceKey, StoreError};
use crate::train::MaskSource;
use crate::volume::VolumeError;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where the class map derived from an accepted mask lives: height × width
/// class indices on the store's grid.
pub fn derived_path(project: &Path, key: &SliceKey) -> PathBuf {
    layout::derived_mask(project, &key.case, key.slice)
}

/// Where the U-Net's prediction for a suggested slice lives (written when
/// it is suggested, for the TUI's overlay): same format as `derived_path`.
pub fn predicted_path(project: &Path, key: &SliceKey) -> PathBuf {
    layout::predicted_mask(project, &key.case, key.slice)
}

/// Training masks from the project's accepted imports.
pub struct ProjectMasks<'a> {
    pub project: &'a Path,
    pub index: &'a SliceIndex,
}

impl ProjectMasks<'_> {
    /// Whether slice `id` has a class map to train on (an import that the
    /// store later outgrew may have lost it; see `engine::reconcile`).
    pub fn has(&self, id: usize) -> bool {
        derived_path(self.project, self.index.key(id)).exists()
    }
}

impl MaskSource for ProjectMasks<'_> {
    fn mask(&self, id: usize, out: &mut [u8]) -> Result<(), StoreError> {
        let path = derived_path(self.project, self.index.key(id));
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        if bytes.len() != out.len() {
            return Err(StoreError::Corrupt {
                path,
                message: format!("{} bytes, expected {}", bytes.len(), out.len()),
            });
        }
        out.copy_from_slice(&bytes);
        Ok(())
    }
}
