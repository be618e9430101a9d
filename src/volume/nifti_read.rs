//! Reading NIfTI images of any scalar type: NIfTI-1 and NIfTI-2, single
//! files (`.nii`, `.nii.gz`) and `.hdr`/`.img` pairs.
//!
//! The `nifti` crate parses NIfTI-1 headers (both byte orders), `nifti2`
//! widens NIfTI-2 ones into the same type; voxel data is read here,
//! streaming straight from the (possibly gzip) file into one buffer, so
//! every malformed input becomes a `VolumeError` instead of a panic and
//! ingest does one pass over the bytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use nifti::NiftiHeader;

use super::datatype::{Scaling, VoxelType, decode_to_f32, unsupported_type_name};
use super::error::{VolumeError, VolumeProblem};
use super::nifti2::{NIFTI2_HEADER_LEN, parse_nifti2};
use super::orient::axis_codes;
use super::{Affine, Quatern, Volume};

const HEADER_LEN: usize = 348;
/// Refuse headers that claim more voxels than any brain MRI has (64 Gi voxels),
/// so a corrupt `dim` field cannot trigger a huge allocation.
const MAX_VOXELS: u64 = 1 << 36;

/// What `nextslice info` prints about a file, without reading its voxels.
#[derive(Clone, Debug)]
pub struct HeaderSummary {
    pub dims: [usize; 4],
    pub voxel_type: VoxelType,
    pub spacing: [f64; 3],
    pub affine: Affine,
    /// Which header field the affine came from: "sform", "qform" or "pixdim".
    pub affine_source: &'static str,
    /// Axis codes such as "LPS" (the direction each voxel axis increases towards).
    pub orientation: String,
    pub scaling: Option<Scaling>,
    pub big_endian: bool,
    pub compressed: bool,
    pub description: String,
}

/// Reads an image as `f32` with `scl_slope`/`scl_inter` applied.
pub fn read_volume(path: &Path) -> Result<Volume, VolumeError> {
    let path = &header_path(path);
    let fail = |problem| VolumeError::new(path, problem);
    let mut source = open(path)?;
    let (header, summary, voxels) = parse_header(&mut source, path).map_err(fail)?;
    let bytes = match voxels {
        Voxels::Inline { header_len } => {
            read_voxel_bytes(&mut source, header_len, &header, &summary).map_err(fail)?
        }
        Voxels::Pair(image) => {
            let mut data = open(&image)?;
            read_voxel_bytes(&mut data, 0, &header, &summary)
                .map_err(|p| VolumeError::new(&image, p))?
        }
    };
    let mut data = Vec::new();
    decode_to_f32(
        summary.voxel_type,
        &bytes,
        summary.big_endian,
        summary.scaling,
        &mut data,
    );
    Ok(Volume::new(summary.dims, summary.affine, data))
}

/// Reads a label map: every voxel must hold a whole number in 0..=255.
pub fn read_labels(path: &Path) -> Result<Volume<u8>, VolumeError> {
    let volume = read_volume(path)?;
    let mut labels = Vec::with_capacity(volume.data.len());
    for (i, &v) in volume.data.iter().enumerate() {
        if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
            let [nx, ny, nz, _] = volume.dims;
            let (x, y, z) = (i % nx, (i / nx) % ny, (i / (nx * ny)) % nz);
            return Err(VolumeError::new(
                path,
                VolumeProblem::Labels(format!(
                    "voxel ({x}, {y}, {z}) holds {v}, but a label map needs whole numbers from 0 to 255"
                )),
            ));
        }
        labels.push(v as u8);
    }
    Ok(Volume::new(volume.dims, volume.affine, labels))
}

/// Reads and checks only the header.
pub fn read_header(path: &Path) -> Result<HeaderSummary, VolumeError> {
    let path = &header_path(path);
    let mut source = open(path)?;
    parse_header(&mut source, path)
        .map(|(_, summary, _)| summary)
        .map_err(|p| VolumeError::new(path, p))
}

/// Where the voxels are.
enum Voxels {
    /// After the header, in the same file (`header_len` bytes read so far).
    Inline { header_len: u64 },
    /// In the `.img` file of a `.hdr`/`.img` pair, from its `vox_offset`.
    Pair(PathBuf),
}

/// The `.hdr` of a pair when given its `.img` (either may be gzipped).
fn header_path(path: &Path) -> PathBuf {
    let name = path.to_string_lossy();
    for (img, hdr) in [(".img", ".hdr"), (".img.gz", ".hdr.gz")] {
        if let Some(stem) = name.strip_suffix(img) {
            let header = PathBuf::from(format!("{stem}{hdr}"));
            if header.exists() {
                return header;
            }
        }
    }
    path.to_path_buf()
}

/// The `.img` beside a pair's `.hdr`.
fn image_path(header: &Path) -> Result<PathBuf, VolumeProblem> {
    let name = header.to_string_lossy();
    let stem = name
        .strip_suffix(".hdr.gz")
        .or_else(|| name.strip_suffix(".hdr"))
        .ok_or(VolumeProblem::HeaderPair(
            "its header says the voxels are in a separate .img file, but this file is not named .hdr".into(),
        ))?;
    [".img", ".img.gz"]
        .iter()
        .map(|ext| PathBuf::from(format!("{stem}{ext}")))
        .find(|p| p.exists())
        .ok_or_else(|| {
            VolumeProblem::HeaderPair(format!(
                "the header of a .hdr/.img pair, but {stem}.img is missing"
            ))
        })
}

/// A byte source that knows whether it is gzip-compressed.
struct Source {
    reader: Box<dyn Read>,
    compressed: bool,
    /// Size on disk (the data size too, when not compressed).
    file_len: u64,
}

fn open(path: &Path) -> Result<Source, VolumeError> {
    let fail = |problem| VolumeError::new(path, problem);
    let file = File::open(path).map_err(|e| fail(VolumeProblem::Io(e)))?;
    let file_len = file
        .metadata()
        .map_err(|e| fail(VolumeProblem::Io(e)))?
        .len();
    let mut buffered = BufReader::with_capacity(1 << 17, file);
    let head = buffered
        .fill_buf()
        .map_err(|e| fail(VolumeProblem::Io(e)))?;
    if head.is_empty() {
        return Err(fail(VolumeProblem::Empty));
    }
    let compressed = head.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if compressed {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok(Source {
        reader,
        compressed,
        file_len,
    })
}

fn io_problem(e: io::Error, compressed: bool) -> VolumeProblem {
    if compressed && e.kind() == io::ErrorKind::UnexpectedEof {
        VolumeProblem::CorruptGzip("the compressed stream ends early (truncated file?)".into())
    } else if compressed && e.kind() != io::ErrorKind::NotFound {
        VolumeProblem::CorruptGzip(e.to_string())
    } else {
        VolumeProblem::Io(e)
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn parse_header(
    source: &mut Source,
    path: &Path,
) -> Result<(NiftiHeader, HeaderSummary, Voxels), VolumeProblem> {
    let mut raw = [0u8; NIFTI2_HEADER_LEN];
    let found = read_full(&mut source.reader, &mut raw[..HEADER_LEN])
        .map_err(|e| io_problem(e, source.compressed))?;
    let sizeof_le = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let sizeof_be = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if found >= 4 && (sizeof_le == 540 || sizeof_be == 540) {
        let more = read_full(&mut source.reader, &mut raw[HEADER_LEN..])
            .map_err(|e| io_problem(e, source.compressed))?;
        let (header, pair) = parse_nifti2(&raw[..found + more], sizeof_le != 540)?;
        return finish_header(header, pair, NIFTI2_HEADER_LEN, source.compressed, path);
    }
    if found >= 4 && sizeof_le != 348 && sizeof_be != 348 {
        return Err(VolumeProblem::NotNifti(
            "the first four bytes are not a NIfTI header size (348)".into(),
        ));
    }
    if found < HEADER_LEN {
        return Err(VolumeProblem::TruncatedHeader { found });
    }
    let pair = match &raw[344..348] {
        b"n+1\0" => false,
        b"ni1\0" => true,
        [0, 0, 0, 0] => {
            return Err(VolumeProblem::NotNifti(
                "an Analyze 7.5 header (no NIfTI magic): its orientation is not recorded; convert it to NIfTI with the tool that made it, which knows the orientation".into(),
            ));
        }
        other => {
            return Err(VolumeProblem::NotNifti(format!(
                "magic bytes are {other:?}, expected \"n+1\\0\""
            )));
        }
    };
    let header = NiftiHeader::from_reader(&raw[..HEADER_LEN])
        .map_err(|e| VolumeProblem::BadHeader(e.to_string()))?;
    // The nifti crate infers byte order from dim[0]; sizeof_hdr must agree,
    // else dim[0] is corrupt and every other field would be misread.
    let big_by_size = sizeof_le != 348;
    if big_by_size != (header.endianness == nifti::Endianness::Big) {
        return Err(VolumeProblem::BadHeader(
            "dim[0] contradicts the byte order of sizeof_hdr (corrupt header)".into(),
        ));
    }
    finish_header(header, pair, HEADER_LEN, source.compressed, path)
}

/// The summary of a parsed header, and where its voxels are.
fn finish_header(
    header: NiftiHeader,
    pair: bool,
    header_len: usize,
    compressed: bool,
    path: &Path,
) -> Result<(NiftiHeader, HeaderSummary, Voxels), VolumeProblem> {
    let (voxels, least_offset) = if pair {
        (Voxels::Pair(image_path(path)?), 0)
    } else {
        let header_len = header_len as u64;
        (Voxels::Inline { header_len }, header_len)
    };
    let summary = summarise(&header, compressed, least_offset)?;
    Ok((header, summary, voxels))
}

fn summarise(
    h: &NiftiHeader,
    compressed: bool,
    least_offset: u64,
) -> Result<HeaderSummary, VolumeProblem> {
    let ndim = h.dim[0] as usize;
    if !(1..=7).contains(&ndim) {
        return Err(VolumeProblem::BadHeader(format!(
            "dim[0] = {ndim}, must be between 1 and 7"
        )));
    }
    let mut dims = [1usize; 4];
    for i in 1..=ndim {
        let d = h.dim[i] as i16;
        if d < 1 {
            return Err(VolumeProblem::BadHeader(format!(
                "dim[{i}] = {d}, every dimension must be at least 1"
            )));
        }
        if i <= 4 {
            dims[i - 1] = d as usize;
        } else if d != 1 {
            return Err(VolumeProblem::BadHeader(format!(
                "dim[{i}] = {d}: images with more than 4 dimensions are not supported"
            )));
        }
    }
    let voxel_type = VoxelType::from_code(h.datatype).ok_or_else(|| {
        VolumeProblem::UnsupportedType(
            unsupported_type_name(h.datatype)
                .map(str::to_string)
                .unwrap_or_else(|| format!("code {}", h.datatype)),
        )
    })?;
    let voxels: u64 = dims.iter().map(|&d| d as u64).product();
    if voxels > MAX_VOXELS {
        return Err(VolumeProblem::BadHeader(format!(
            "dimensions {dims:?} give {voxels} voxels, more than any MRI volume"
        )));
    }
    if !(h.vox_offset >= least_offset as f32 && h.vox_offset < 1e9 && h.vox_offset.fract() == 0.0) {
        return Err(VolumeProblem::BadHeader(format!(
            "vox_offset = {}, must be a whole number of bytes ≥ {least_offset}",
            h.vox_offset
        )));
    }
    let (affine, affine_source) = header_affine(h)?;
    Ok(HeaderSummary {
        dims,
        voxel_type,
        spacing: affine.spacing(),
        affine,
        affine_source,
        orientation: axis_codes(&affine).iter().collect(),
        scaling: Scaling::from_header(h.scl_slope, h.scl_inter),
        big_endian: h.endianness == nifti::Endianness::Big,
        compressed,
        description: String::from_utf8_lossy(&h.descrip)
            .trim_end_matches('\0')
            .trim()
            .to_string(),
    })
}

/// The voxel-to-world transform NIfTI readers agree on: sform when its code is
/// set, else qform, else the pixdim scaling of "method 1" in nifti1.h.
fn header_affine(h: &NiftiHeader) -> Result<(Affine, &'static str), VolumeProblem> {
    let f = |v: [f32; 4]| v.map(f64::from);
    let candidates = [
        (h.sform_code > 0).then(|| {
            (
                Affine::from_rows([f(h.srow_x), f(h.srow_y), f(h.srow_z)]),
                "sform",
            )
        }),
        (h.qform_code > 0).then(|| {
            let q = Quatern {
                b: h.quatern_b.into(),
                c: h.quatern_c.into(),
                d: h.quatern_d.into(),
                offset: [h.quatern_x.into(), h.quatern_y.into(), h.quatern_z.into()],
                // As nifti1_io: a non-positive spacing counts as 1 (qfac
                // carries the handedness, not the sign of pixdim).
                spacing: std::array::from_fn(|i| {
                    let d = f64::from(h.pixdim[i + 1]);
                    if d > 0.0 { d } else { 1.0 }
                }),
                qfac: h.pixdim[0].into(),
            };
            (Affine::from_quatern(&q), "qform")
        }),
    ];
    for (affine, source) in candidates.into_iter().flatten() {
        let usable =
            affine.0.iter().flatten().all(|v| v.is_finite()) && affine.determinant().abs() > 1e-12;
        if usable {
            return Ok((affine, source));
        }
    }
    let spacing: [f64; 3] = std::array::from_fn(|i| {
        let s = f64::from(h.pixdim[i + 1]).abs();
        if s.is_finite() && s > 0.0 { s } else { 1.0 }
    });
    Ok((Affine::diagonal(spacing, [0.0; 3]), "pixdim"))
}

/// The voxel bytes from `source`, of which `consumed` bytes (the header,
/// for a single file) were read already.
fn read_voxel_bytes(
    source: &mut Source,
    consumed: u64,
    header: &NiftiHeader,
    summary: &HeaderSummary,
) -> Result<Vec<u8>, VolumeProblem> {
    let compressed = source.compressed;
    let offset = header.vox_offset as u64;
    let skip = offset.saturating_sub(consumed);
    let skipped = io::copy(&mut (&mut source.reader).take(skip), &mut io::sink())
        .map_err(|e| io_problem(e, compressed))?;
    let voxels: u64 = summary.dims.iter().map(|&d| d as u64).product();
    let expected = voxels * summary.voxel_type.size() as u64;
    if skipped < skip {
        return Err(VolumeProblem::HeaderOnly { expected });
    }
    let len = usize::try_from(expected)
        .map_err(|_| VolumeProblem::BadHeader("volume too large for this machine".into()))?;
    if !compressed && offset + expected > source.file_len {
        let found = source.file_len.saturating_sub(offset);
        return Err(if found == 0 {
            VolumeProblem::HeaderOnly { expected }
        } else {
            VolumeProblem::Truncated {
                expected,
                found,
                offset,
            }
        });
    }
    // Grow with the data actually present, so a corrupt header claiming a
    // huge volume inside a small .gz cannot make us allocate for it.
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len.min(1 << 28))
        .map_err(|_| VolumeProblem::BadHeader(format!("cannot allocate {len} bytes")))?;
    let found = (&mut source.reader)
        .take(expected)
        .read_to_end(&mut bytes)
        .map_err(|e| io_problem(e, compressed))? as u64;
    if found == 0 && expected > 0 {
        return Err(VolumeProblem::HeaderOnly { expected });
    }
    if found < expected {
        return Err(VolumeProblem::Truncated {
            expected,
            found,
            offset,
        });
    }
    if compressed {
        // Drive the decoder to the end so the gzip CRC and length are checked.
        io::copy(&mut source.reader, &mut io::sink()).map_err(|e| io_problem(e, compressed))?;
    }
    Ok(bytes)
}
