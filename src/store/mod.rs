//! The slice store: every pool slice preprocessed once (canonical
//! orientation, crop/pad, per-volume z-score) into one flat file, read with
//! `pread`, plus an index, so training and sampling read any batch without
//! touching the rest of the pool. `keys` names stored slices durably.
//!
//! A store lives in `<root>/<key>/`, where the key hashes the preprocessing
//! settings and every input file's path, size and modification time: change
//! either and the store is rebuilt; otherwise it is reused. A build writes
//! into a temporary directory renamed into place when complete, so a crash
//! never leaves a store that looks valid.
//!
//! Imports config, fsutil, progress and volume; never models, projects or
//! terminals.

mod build;
mod content;
mod format;
mod keys;
mod preprocess;
mod reader;
pub mod resample;
pub mod users;

pub use build::{BuildOutcome, open_or_build, open_or_build_for, store_key, store_key_with};
pub use format::{META_FILE, SliceEntry, StoreMeta, VolumeRecord};
pub use keys::{SliceIndex, SliceKey};
pub use preprocess::{CropWindow, extract_slice};
pub use reader::SliceStore;

use build::lock_root;

use std::path::PathBuf;

use crate::volume::VolumeError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("case `{case}`: {message}")]
    Case { case: String, message: String },
    #[error("slice store {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("slice store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the slice store was cancelled")]
    Cancelled,
}

impl StoreError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
