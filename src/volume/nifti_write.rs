//! Writing NIfTI-1 images (`.nii`, or gzip when the name ends in `.gz`) with a
//! correct sform and qform, atomically. Output is byte-for-byte deterministic
//! (the gzip header carries no time stamp), so equal inputs give equal files.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::Affine;
use super::datatype::{Scaling, Voxel, VoxelType};
use super::error::{VolumeError, VolumeProblem};
use crate::fsutil::AtomicFile;

/// Describes an image to write; voxels in NIfTI order (x fastest).
#[derive(Clone, Debug)]
pub struct NiftiWriter {
    /// Sizes along x, y, z, t; trailing 1s are dropped from `dim[0]` (but a
    /// single slice is still written as a 3D image, so viewers place it in
    /// the volume it came from).
    pub dims: [usize; 4],
    pub affine: Affine,
    /// Stored `scl_slope`/`scl_inter`; readers compute `raw * slope + inter`.
    pub scaling: Option<Scaling>,
    pub description: String,
    /// gzip level used for `.gz` names.
    pub compression: u32,
}

impl NiftiWriter {
    pub fn new(dims: [usize; 4], affine: Affine) -> Self {
        NiftiWriter {
            dims,
            affine,
            scaling: None,
            description: "nextslice".into(),
            compression: 6,
        }
    }

    pub fn with_scaling(mut self, scaling: Scaling) -> Self {
        self.scaling = Some(scaling);
        self
    }

    /// Writes `data` (one value per voxel) to `path`, replacing it atomically.
    pub fn write<T: Voxel>(&self, path: &Path, data: &[T]) -> Result<(), VolumeError> {
        let fail = |e| VolumeError::new(path, VolumeProblem::Write(e));
        if self.dims.contains(&0) {
            return Err(VolumeError::new(
                path,
                VolumeProblem::BadHeader(format!("dimensions {:?} include a zero", self.dims)),
            ));
        }
        let finite = self.affine.0.iter().flatten().all(|v| v.is_finite());
        if !finite || self.affine.determinant().abs() < 1e-12 {
            return Err(VolumeError::new(
                path,
                VolumeProblem::BadHeader("the affine is singular or not finite".into()),
            ));
        }
        let expected: usize = self.dims.iter().product();
        if data.len() != expected {
            return Err(VolumeError::new(
                path,
                VolumeProblem::BadHeader(format!(
                    "{} voxels given for dimensions {:?}",
                    data.len(),
                    self.dims
                )),
            ));
        }
        let mut header = self
            .header_bytes(T::TYPE)
            .map_err(|p| VolumeError::new(path, p))?;
        header.extend_from_slice(&[0, 0, 0, 0]); // no extensions
        let file = AtomicFile::create(path).map_err(fail)?;
        let gz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        if gz {
            let mut encoder = GzEncoder::new(file, Compression::new(self.compression.min(9)));
            write_body(&mut encoder, &header, data).map_err(fail)?;
            encoder.finish().map_err(fail)?.commit().map_err(fail)
        } else {
            let mut file = file;
            write_body(&mut file, &header, data).map_err(fail)?;
            file.commit().map_err(fail)
        }
    }

    /// The 348-byte little-endian NIfTI-1 header.
    fn header_bytes(&self, ty: VoxelType) -> Result<Vec<u8>, VolumeProblem> {
        let ndim = if self.dims[3] > 1 { 4 } else { 3 };
        let mut dim = [1i16; 8];
        dim[0] = ndim;
        for (i, &d) in self.dims.iter().enumerate() {
            dim[i + 1] = i16::try_from(d).map_err(|_| {
                VolumeProblem::BadHeader(format!("dimension {d} exceeds NIfTI-1's 32767"))
            })?;
        }
        let q = self.affine.to_quatern();
        let mut pixdim = [1.0f32; 8];
        pixdim[0] = q.qfac as f32;
        for i in 0..3 {
            pixdim[i + 1] = q.spacing[i] as f32;
        }
        let (slope, inter) = self.scaling.map_or((1.0, 0.0), |s| (s.slope, s.inter));
        let rows = self.affine.rows();

        let mut h = Vec::with_capacity(352);
        let i16s = |h: &mut Vec<u8>, v: &[i16]| v.iter().for_each(|x| h.extend(x.to_le_bytes()));
        let f32s = |h: &mut Vec<u8>, v: &[f32]| v.iter().for_each(|x| h.extend(x.to_le_bytes()));
        h.extend(348i32.to_le_bytes()); // sizeof_hdr
        h.extend([0u8; 10 + 18]); // data_type, db_name
        h.extend(0i32.to_le_bytes()); // extents
        h.extend(0i16.to_le_bytes()); // session_error
        h.extend([b'r', 0]); // regular, dim_info
        i16s(&mut h, &dim);
        f32s(&mut h, &[0.0; 3]); // intent_p1..3
        i16s(&mut h, &[0, ty.code(), (ty.size() * 8) as i16, 0]); // intent, datatype, bitpix, slice_start
        f32s(&mut h, &pixdim);
        f32s(&mut h, &[352.0, slope, inter]); // vox_offset, scl_slope, scl_inter
        i16s(&mut h, &[0]); // slice_end
        let units = if ndim == 4 { 2 | 8 } else { 2 }; // mm (and seconds)
        h.extend([0u8, units]); // slice_code, xyzt_units
        f32s(&mut h, &[0.0; 4]); // cal_max, cal_min, slice_duration, toffset
        h.extend([0u8; 8]); // glmax, glmin
        let mut descrip = [0u8; 80];
        let text = self.description.as_bytes();
        let n = text.len().min(79);
        descrip[..n].copy_from_slice(&text[..n]);
        h.extend(descrip);
        h.extend([0u8; 24]); // aux_file
        i16s(&mut h, &[1, 1]); // qform_code, sform_code: scanner anatomical
        let quat = [q.b, q.c, q.d, q.offset[0], q.offset[1], q.offset[2]];
        f32s(&mut h, &quat.map(|v| v as f32));
        for row in rows {
            f32s(&mut h, &row.map(|v| v as f32));
        }
        h.extend([0u8; 16]); // intent_name
        h.extend(*b"n+1\0");
        debug_assert_eq!(h.len(), 348);
        Ok(h)
    }
}

fn write_body<W: Write, T: Voxel>(out: &mut W, header: &[u8], data: &[T]) -> std::io::Result<()> {
    out.write_all(header)?;
    let mut buf = Vec::with_capacity(1 << 20);
    for chunk in data.chunks((1 << 20) / std::mem::size_of::<T>().max(1)) {
        buf.clear();
        T::extend_le(chunk, &mut buf);
        out.write_all(&buf)?;
    }
    Ok(())
}

/// Writes a `Volume`-shaped buffer with the given geometry (shorthand).
pub fn write_nifti<T: Voxel>(
    path: &Path,
    dims: [usize; 4],
    affine: &Affine,
    data: &[T],
) -> Result<(), VolumeError> {
    NiftiWriter::new(dims, *affine).write(path, data)
}
