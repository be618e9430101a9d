//! Round trips through our writer and reader, cross-checked with the `nifti`
//! crate's own reader, and orientation handling.

use nextslice::volume::{
    Affine, NiftiWriter, Scaling, Volume, Voxel, axis_codes, read_header, read_labels, read_volume,
    to_canonical,
};
use nifti::NiftiObject;

fn affine() -> Affine {
    Affine::from_rows([
        [-1.2, 0.0, 0.0, 90.0],
        [0.0, -0.9, 0.0, 110.0],
        [0.0, 0.0, 2.5, -60.0],
    ])
}

/// Writes `raw` with scaling, reads it back and checks every voxel.
fn round_trip<T: Voxel + Into<f64>>(raw: Vec<T>, dims: [usize; 4], gz: bool) {
    let dir = tempfile::tempdir().unwrap();
    let name = if gz { "v.nii.gz" } else { "v.nii" };
    let path = dir.path().join(name);
    let scaling = Scaling {
        slope: 0.5,
        inter: -3.0,
    };
    NiftiWriter::new(dims, affine())
        .with_scaling(scaling)
        .write(&path, &raw)
        .unwrap();

    let v = read_volume(&path).unwrap();
    assert_eq!(v.dims, dims);
    assert!(v.affine.approx_eq(&affine(), 1e-5), "{:?}", v.affine);
    for (got, want) in v.data.iter().zip(&raw) {
        let want = ((*want).into() * 0.5 - 3.0) as f32;
        assert_eq!(*got, want, "{} voxel", T::TYPE.name());
    }

    // An independent reader (the nifti crate) agrees on header and bytes.
    let obj = nifti::ReaderOptions::new().read_file(&path).unwrap();
    let h = obj.header();
    assert_eq!(h.datatype, T::TYPE.code());
    assert_eq!((h.scl_slope, h.scl_inter), (0.5, -3.0));
    let ndim = if dims[3] > 1 { 4 } else { 3 };
    assert_eq!(h.dim[0] as usize, ndim);
    for (stored, want) in h.dim[1..=ndim].iter().zip(dims) {
        assert_eq!(*stored as usize, want);
    }
    let raw_len = obj.volume().raw_data().len();
    assert_eq!(raw_len, raw.len() * T::TYPE.size());
}

#[test]
fn every_datatype_round_trips_with_scaling() {
    let dims = [5, 4, 3, 1];
    let n = 60;
    round_trip::<u8>((0..n).map(|i| (i * 4) as u8).collect(), dims, true);
    round_trip::<i8>((0..n).map(|i| i as i8 - 30).collect(), dims, false);
    round_trip::<i16>((0..n).map(|i| (i as i16 - 30) * 1000).collect(), dims, true);
    round_trip::<u16>((0..n).map(|i| (i * 1000) as u16).collect(), dims, false);
    round_trip::<i32>((0..n).map(|i| (i - 30) * 100_000).collect(), dims, true);
    round_trip::<u32>((0..n).map(|i| (i * 70_000) as u32).collect(), dims, false);
    round_trip::<f32>((0..n).map(|i| i as f32 * 0.25 - 4.0).collect(), dims, true);
    round_trip::<f64>((0..n).map(|i| i as f64 * 0.125).collect(), dims, false);
}

#[test]
fn sixty_four_bit_integers_and_4d_images_read_back() {
    let dims = [3, 2, 2, 4];
    let dir = tempfile::tempdir().unwrap();
    for (name, values) in [
        (
            "i64.nii.gz",
            (0..48).map(|i| i as f64 - 7.0).collect::<Vec<f64>>(),
        ),
        ("u64.nii", (0..48).map(|i| i as f64 * 3.0).collect()),
    ] {
        let path = dir.path().join(name);
        if name.starts_with("i64") {
            let raw: Vec<i64> = values.iter().map(|v| *v as i64).collect();
            NiftiWriter::new(dims, affine()).write(&path, &raw).unwrap();
        } else {
            let raw: Vec<u64> = values.iter().map(|v| *v as u64).collect();
            NiftiWriter::new(dims, affine()).write(&path, &raw).unwrap();
        }
        let v = read_volume(&path).unwrap();
        assert_eq!(v.dims, dims);
        assert_eq!(v.data, values.iter().map(|v| *v as f32).collect::<Vec<_>>());
        assert_eq!(v.frame(3).len(), 12);
    }
}

#[test]
fn a_single_slice_is_written_as_a_placed_3d_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slice.nii.gz");
    // Slice 7 of a volume: the affine moves the origin to that slice.
    let slice_affine = affine().translated_voxels([0.0, 0.0, 7.0]);
    let pixels: Vec<u8> = (0..20).map(|i| (i % 3) as u8).collect();
    NiftiWriter::new([5, 4, 1, 1], slice_affine)
        .write(&path, &pixels)
        .unwrap();
    let h = read_header(&path).unwrap();
    assert_eq!(h.dims, [5, 4, 1, 1]);
    assert_eq!(h.affine.apply([0.0; 3]), affine().apply([0.0, 0.0, 7.0]));
    let labels = read_labels(&path).unwrap();
    assert_eq!(labels.data, pixels);
}

#[test]
fn qform_only_files_give_the_same_geometry() {
    // Files from some scanners carry only a qform: patch our output to drop the sform.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.nii");
    NiftiWriter::new([4, 4, 4, 1], affine())
        .write(&path, &[1i16; 64])
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code
    std::fs::write(&path, bytes).unwrap();
    let h = read_header(&path).unwrap();
    assert_eq!(h.affine_source, "qform");
    assert!(h.affine.approx_eq(&affine(), 1e-4));

    // qfac = -1 (a left-handed grid) and a negative pixdim, which nifti1_io
    // reads as spacing 1: the third axis points down, x keeps its sign.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[76..80].copy_from_slice(&(-1.0f32).to_le_bytes()); // pixdim[0] = qfac
    bytes[80..84].copy_from_slice(&(-3.0f32).to_le_bytes()); // pixdim[1]
    bytes[256..268].copy_from_slice(&[0u8; 12]); // identity rotation
    std::fs::write(&path, bytes).unwrap();
    let h = read_header(&path).unwrap();
    let [[a, ..], [_, b, ..], [.., c, _]] = h.affine.rows();
    assert_eq!((a, b, c), (1.0, 0.9f32 as f64, -2.5));
}

#[test]
fn big_endian_files_read_correctly() {
    // Build a big-endian int16 file by hand from a little-endian one.
    let dir = tempfile::tempdir().unwrap();
    let le = dir.path().join("le.nii");
    let raw: Vec<i16> = (0..24).map(|i| i * 300 - 2000).collect();
    NiftiWriter::new([4, 3, 2, 1], affine())
        .write(&le, &raw)
        .unwrap();
    let bytes = std::fs::read(&le).unwrap();
    let mut be = Vec::with_capacity(bytes.len());
    // Header fields: swap each field by its width.
    let widths: &[(usize, usize)] = &[
        (0, 4),
        (4, 10),
        (14, 18),
        (32, 4),
        (36, 2),
        (38, 1),
        (39, 1),
    ];
    let mut header = bytes[..348].to_vec();
    let swap = |h: &mut Vec<u8>, at: usize, n: usize| h[at..at + n].reverse();
    for (at, n) in widths {
        if *n > 1 && *n <= 4 {
            swap(&mut header, *at, *n);
        }
    }
    for i in 0..8 {
        swap(&mut header, 40 + 2 * i, 2); // dim
    }
    for at in (56..68).step_by(4) {
        swap(&mut header, at, 4); // intent_p1..3
    }
    for at in (68..76).step_by(2) {
        swap(&mut header, at, 2); // intent_code, datatype, bitpix, slice_start
    }
    for at in (76..112).step_by(4) {
        swap(&mut header, at, 4); // pixdim, vox_offset
    }
    for at in (112..120).step_by(4) {
        swap(&mut header, at, 4); // scl_slope, scl_inter
    }
    swap(&mut header, 120, 2); // slice_end
    for at in (124..148).step_by(4) {
        swap(&mut header, at, 4); // cal_max .. glmin
    }
    for at in (252..256).step_by(2) {
        swap(&mut header, at, 2); // qform_code, sform_code
    }
    for at in (256..328).step_by(4) {
        swap(&mut header, at, 4); // quatern, offsets, srow
    }
    be.extend_from_slice(&header);
    be.extend_from_slice(&bytes[348..352]);
    for c in bytes[352..].chunks(2) {
        be.extend([c[1], c[0]]);
    }
    let path = dir.path().join("be.nii");
    std::fs::write(&path, be).unwrap();
    let v = read_volume(&path).unwrap();
    assert!(read_header(&path).unwrap().big_endian);
    assert_eq!(v.data, raw.iter().map(|&r| r as f32).collect::<Vec<_>>());
    assert!(v.affine.approx_eq(&affine(), 1e-5));
}

/// Flips a volume's voxel data along x and y and adjusts the affine, as a
/// different tool would store the same scan.
fn flipped_copy(v: &Volume) -> Volume {
    let [nx, ny, nz, _] = v.dims;
    let mut data = vec![0.0; v.data.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                data[(nx - 1 - x) + nx * ((ny - 1 - y) + ny * z)] = v.data[v.index(x, y, z)];
            }
        }
    }
    let mut flip = Affine::identity();
    flip.0[0][0] = -1.0;
    flip.0[0][3] = (nx - 1) as f64;
    flip.0[1][1] = -1.0;
    flip.0[1][3] = (ny - 1) as f64;
    Volume::new(v.dims, v.affine.mul(&flip), data)
}

#[test]
fn a_volume_and_its_flipped_copy_give_identical_canonical_slices() {
    let dir = tempfile::tempdir().unwrap();
    let spec = super::common::tumour_phantoms(dir.path(), 1, 32, 5);
    let (images, _) = spec.paths(dir.path(), 0);
    let original = read_volume(&images[0]).unwrap();
    assert_eq!(axis_codes(&original.affine), ['L', 'P', 'S']);

    let flipped = flipped_copy(&original);
    assert_eq!(axis_codes(&flipped.affine), ['R', 'A', 'S']);
    let path = dir.path().join("flipped.nii.gz");
    let raw: Vec<i16> = flipped.data.iter().map(|v| *v as i16).collect();
    NiftiWriter::new(flipped.dims, flipped.affine)
        .write(&path, &raw)
        .unwrap();
    let reread = read_volume(&path).unwrap();
    assert_ne!(reread.data, original.data, "the stored voxel order differs");

    let a = to_canonical(original);
    let b = to_canonical(reread);
    assert_eq!(a.dims, b.dims);
    assert!(
        a.affine.approx_eq(&b.affine, 1e-4),
        "{:?} vs {:?}",
        a.affine,
        b.affine
    );
    assert_eq!(a.data, b.data);
}

#[test]
fn info_stats_reads_the_voxels_as_nibabel_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("values.nii.gz");
    let values: Vec<f32> = vec![1.5, -2.0, 0.0, f32::NAN, 4.0, 0.0, 3.0, 1.0];
    NiftiWriter::new([2, 2, 2, 1], affine())
        .write(&path, &values)
        .unwrap();
    let out = super::common::run_ok(&["info", "--stats", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("voxels       8 · sum 7.5 · mean 1.071429 · min -2 · max 4"),
        "{text}"
    );
    assert!(text.contains("5 non-zero · 1 NaN"), "{text}");
}
