//! Volumes in memory and on disk: NIfTI reading and writing, orientation,
//! dataset discovery and the synthetic phantom generator. Nothing here knows
//! about models or the terminal.
//!
//! Imports config, fsutil, progress and rng.

mod affine;
pub mod dataset;
mod datatype;
mod error;
mod nifti2;
mod nifti_read;
mod nifti_write;
mod orient;
pub mod phantom;
mod stats;

pub use affine::{Affine, Quatern};
pub use datatype::{Scaling, Voxel, VoxelType};
pub use error::{VolumeError, VolumeProblem};
pub use nifti_read::{HeaderSummary, read_header, read_labels, read_volume};
pub use nifti_write::{NiftiWriter, write_nifti};
pub use orient::{Orientation, axis_codes, to_canonical};
pub use stats::VoxelStats;

/// A 3D or 4D image in memory. Voxels are in NIfTI order: x fastest, then y,
/// then z, then t. Intensities are `f32` with the header's scaling applied;
/// label maps use `Volume<u8>` with the file's raw label values.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume<T = f32> {
    /// Sizes along x, y, z, t (t = 1 for a 3D image, z = 1 for a 2D one).
    pub dims: [usize; 4],
    /// Voxel to world (RAS+ mm).
    pub affine: Affine,
    pub data: Vec<T>,
}

impl<T: Copy> Volume<T> {
    pub fn new(dims: [usize; 4], affine: Affine, data: Vec<T>) -> Self {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        Volume { dims, affine, data }
    }

    /// Number of voxels in one 3D frame.
    pub fn frame_len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// The 3D frame `t` of a 4D image.
    pub fn frame(&self, t: usize) -> &[T] {
        let n = self.frame_len();
        &self.data[t * n..(t + 1) * n]
    }

    pub fn spatial_dims(&self) -> [usize; 3] {
        [self.dims[0], self.dims[1], self.dims[2]]
    }

    /// Linear index of voxel (x, y, z) in frame 0.
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.dims[0] * (y + self.dims[1] * z)
    }
}
