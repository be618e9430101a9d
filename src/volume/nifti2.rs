//! NIfTI-2 headers (540 bytes: 64-bit sizes, double-precision geometry),
//! read into the NIfTI-1 header type the rest of the reader understands.
//! Sizes beyond NIfTI-1's 16-bit dimensions are refused (no MRI has them).

use nifti::{Endianness, NiftiHeader};

use super::error::VolumeProblem;

/// Bytes in a NIfTI-2 header.
pub const NIFTI2_HEADER_LEN: usize = 540;

/// The header, and whether its magic says the data is in a separate
/// `.img` file (`ni2`) rather than after the header (`n+2`).
pub fn parse_nifti2(raw: &[u8], big: bool) -> Result<(NiftiHeader, bool), VolumeProblem> {
    if raw.len() < NIFTI2_HEADER_LEN {
        return Err(VolumeProblem::BadHeader(format!(
            "NIfTI-2 header: {} of its 540 bytes are present",
            raw.len()
        )));
    }
    let pair = match &raw[4..8] {
        b"n+2\0" => false,
        b"ni2\0" => true,
        other => {
            return Err(VolumeProblem::NotNifti(format!(
                "NIfTI-2 magic bytes are {other:?}, expected \"n+2\\0\" or \"ni2\\0\""
            )));
        }
    };
    let at = |o: usize, n: usize| -> &[u8] { &raw[o..o + n] };
    let i16_at = |o: usize| {
        let b = [raw[o], raw[o + 1]];
        if big {
            i16::from_be_bytes(b)
        } else {
            i16::from_le_bytes(b)
        }
    };
    let i32_at = |o: usize| {
        let b: [u8; 4] = at(o, 4).try_into().unwrap_or_default();
        if big {
            i32::from_be_bytes(b)
        } else {
            i32::from_le_bytes(b)
        }
    };
    let i64_at = |o: usize| {
        let b: [u8; 8] = at(o, 8).try_into().unwrap_or_default();
        if big {
            i64::from_be_bytes(b)
        } else {
            i64::from_le_bytes(b)
        }
    };
    let f64_at = |o: usize| {
        let b: [u8; 8] = at(o, 8).try_into().unwrap_or_default();
        if big {
            f64::from_be_bytes(b)
        } else {
            f64::from_le_bytes(b)
        }
    };
    let mut dim = [0u16; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        let value = i64_at(16 + 8 * i);
        *d = u16::try_from(value).map_err(|_| {
            VolumeProblem::BadHeader(format!(
                "dim[{i}] = {value}: outside 0..=65535, larger than any MRI volume"
            ))
        })?;
    }
    let vox_offset = i64_at(168);
    if !(0..1 << 30).contains(&vox_offset) {
        return Err(VolumeProblem::BadHeader(format!(
            "vox_offset = {vox_offset}, must be a whole number of bytes"
        )));
    }
    let row = |o: usize| std::array::from_fn(|k| f64_at(o + 8 * k) as f32);
    let header = NiftiHeader {
        sizeof_hdr: NIFTI2_HEADER_LEN as i32,
        dim_info: raw[524],
        dim,
        intent_p1: f64_at(80) as f32,
        intent_p2: f64_at(88) as f32,
        intent_p3: f64_at(96) as f32,
        intent_code: i32_at(504) as i16,
        datatype: i16_at(12),
        bitpix: i16_at(14),
        slice_start: i64_at(224) as i16,
        pixdim: std::array::from_fn(|k| f64_at(104 + 8 * k) as f32),
        vox_offset: vox_offset as f32,
        scl_slope: f64_at(176) as f32,
        scl_inter: f64_at(184) as f32,
        slice_end: i64_at(232) as i16,
        slice_code: i32_at(496) as u8,
        xyzt_units: i32_at(500) as u8,
        cal_max: f64_at(192) as f32,
        cal_min: f64_at(200) as f32,
        slice_duration: f64_at(208) as f32,
        toffset: f64_at(216) as f32,
        descrip: at(240, 80).to_vec(),
        aux_file: at(320, 24).try_into().unwrap_or_default(),
        qform_code: i32_at(344) as i16,
        sform_code: i32_at(348) as i16,
        quatern_b: f64_at(352) as f32,
        quatern_c: f64_at(360) as f32,
        quatern_d: f64_at(368) as f32,
        quatern_x: f64_at(376) as f32,
        quatern_y: f64_at(384) as f32,
        quatern_z: f64_at(392) as f32,
        srow_x: row(400),
        srow_y: row(432),
        srow_z: row(464),
        intent_name: at(508, 16).try_into().unwrap_or_default(),
        magic: *b"n+1\0",
        endianness: if big {
            Endianness::Big
        } else {
            Endianness::Little
        },
        ..NiftiHeader::default()
    };
    Ok((header, pair))
}

/// NIfTI-2 bytes for a NIfTI-1 header, for tests: every field widened.
#[cfg(test)]
pub fn nifti2_bytes(h: &NiftiHeader, pair: bool) -> Vec<u8> {
    let mut b = vec![0u8; NIFTI2_HEADER_LEN];
    let mut put = |o: usize, bytes: &[u8]| b[o..o + bytes.len()].copy_from_slice(bytes);
    put(0, &540i32.to_le_bytes());
    put(
        4,
        if pair {
            b"ni2\0\r\n\x1a\n"
        } else {
            b"n+2\0\r\n\x1a\n"
        },
    );
    put(12, &h.datatype.to_le_bytes());
    put(14, &h.bitpix.to_le_bytes());
    for (i, d) in h.dim.iter().enumerate() {
        put(16 + 8 * i, &i64::from(*d).to_le_bytes());
    }
    for (i, p) in h.pixdim.iter().enumerate() {
        put(104 + 8 * i, &f64::from(*p).to_le_bytes());
    }
    let offset: i64 = if pair { 0 } else { 544 };
    put(168, &offset.to_le_bytes());
    put(176, &f64::from(h.scl_slope).to_le_bytes());
    put(184, &f64::from(h.scl_inter).to_le_bytes());
    put(344, &i32::from(h.qform_code).to_le_bytes());
    put(348, &i32::from(h.sform_code).to_le_bytes());
    for (o, v) in [
        (352, h.quatern_b),
        (360, h.quatern_c),
        (368, h.quatern_d),
        (376, h.quatern_x),
        (384, h.quatern_y),
        (392, h.quatern_z),
    ] {
        put(o, &f64::from(v).to_le_bytes());
    }
    for (o, row) in [(400, h.srow_x), (432, h.srow_y), (464, h.srow_z)] {
        for (k, v) in row.iter().enumerate() {
            put(o + 8 * k, &f64::from(*v).to_le_bytes());
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Affine, NiftiWriter, read_header, read_volume};

    /// A NIfTI-1 image with an oblique affine and scaling, its header and
    /// its voxel bytes.
    fn nifti1(dir: &std::path::Path) -> (std::path::PathBuf, NiftiHeader, Vec<u8>) {
        let path = dir.join("one.nii");
        let raw: Vec<i16> = (0..5 * 4 * 3).map(|i| (i * 7 % 23) as i16 - 5).collect();
        let affine = Affine::from_rows([
            [-0.9, 0.1, 0.0, 90.0],
            [0.1, 1.1, 0.0, -120.5],
            [0.0, 0.0, 2.5, -60.0],
        ]);
        NiftiWriter::new([5, 4, 3, 1], affine)
            .write(&path, &raw)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = NiftiHeader::from_reader(&bytes[..348]).unwrap();
        let data = bytes[header.vox_offset as usize..].to_vec();
        (path, header, data)
    }

    #[test]
    fn nifti2_files_and_pairs_read_like_their_nifti1_twin() {
        let dir = tempfile::tempdir().unwrap();
        let (one, header, data) = nifti1(dir.path());
        let want = read_volume(&one).unwrap();

        let single = dir.path().join("two.nii");
        let mut bytes = nifti2_bytes(&header, false);
        bytes.extend_from_slice(&[0; 4]); // the extension flag
        bytes.extend_from_slice(&data);
        std::fs::write(&single, &bytes).unwrap();

        let hdr = dir.path().join("two-pair.hdr");
        std::fs::write(&hdr, nifti2_bytes(&header, true)).unwrap();
        std::fs::write(dir.path().join("two-pair.img"), &data).unwrap();

        // A NIfTI-1 pair: the header with magic ni1 and offset 0.
        let mut one_hdr = std::fs::read(&one).unwrap()[..348].to_vec();
        one_hdr[344..348].copy_from_slice(b"ni1\0");
        one_hdr[108..112].copy_from_slice(&0f32.to_le_bytes());
        let one_pair = dir.path().join("one-pair.hdr");
        std::fs::write(&one_pair, &one_hdr).unwrap();
        std::fs::write(dir.path().join("one-pair.img"), &data).unwrap();

        for path in [&single, &hdr, &one_pair, &dir.path().join("two-pair.img")] {
            let got = read_volume(path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.dims, want.dims, "{}", path.display());
            assert_eq!(got.data, want.data, "{}", path.display());
            for (a, b) in got
                .affine
                .0
                .iter()
                .flatten()
                .zip(want.affine.0.iter().flatten())
            {
                assert!((a - b).abs() < 1e-5, "{}: {a} vs {b}", path.display());
            }
            assert_eq!(
                read_header(path).unwrap().orientation,
                read_header(&one).unwrap().orientation
            );
        }
    }

    #[test]
    fn a_pair_without_its_image_and_huge_nifti2_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, header, _) = nifti1(dir.path());
        let lonely = dir.path().join("lonely.hdr");
        std::fs::write(&lonely, nifti2_bytes(&header, true)).unwrap();
        let error = read_volume(&lonely).unwrap_err().to_string();
        assert!(error.contains("lonely.img is missing"), "{error}");

        let mut huge = nifti2_bytes(&header, false);
        huge[24..32].copy_from_slice(&100_000i64.to_le_bytes());
        let problem = parse_nifti2(&huge, false).unwrap_err();
        assert!(problem.to_string().contains("dim[1] = 100000"), "{problem}");
    }
}
