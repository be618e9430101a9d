//! Errors from reading and writing volumes: always the file and what is wrong
//! with it, in words an operator can act on.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct VolumeError {
    pub path: PathBuf,
    pub problem: VolumeProblem,
}

impl VolumeError {
    pub fn new(path: &Path, problem: VolumeProblem) -> Self {
        VolumeError {
            path: path.to_path_buf(),
            problem,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeProblem {
    #[error("cannot read the file: {0}")]
    Io(#[source] std::io::Error),
    #[error("cannot write the file: {0}")]
    Write(#[source] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("the gzip stream is corrupt: {0}")]
    CorruptGzip(String),
    #[error("not a NIfTI file: {0}")]
    NotNifti(String),
    #[error("{0}")]
    HeaderPair(String),
    #[error("truncated header: {found} of the 348 header bytes are present")]
    TruncatedHeader { found: usize },
    #[error("invalid header: {0}")]
    BadHeader(String),
    #[error("unsupported voxel type {0}; scalar integer and float images are supported")]
    UnsupportedType(String),
    #[error("header only: no voxel data follows the header (expected {expected} bytes)")]
    HeaderOnly { expected: u64 },
    #[error("truncated voxel data: expected {expected} bytes after offset {offset}, found {found}")]
    Truncated {
        expected: u64,
        found: u64,
        offset: u64,
    },
    #[error("{0}")]
    Labels(String),
}
