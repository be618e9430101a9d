//! Broken inputs give an error naming the file and the problem — never a panic.

use std::path::Path;

use nextslice::volume::{Affine, NiftiWriter, read_labels, read_volume};

fn valid_file(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let raw: Vec<i16> = (0..8 * 8 * 6).map(|i| (i % 97) as i16).collect();
    NiftiWriter::new([8, 8, 6, 1], Affine::identity())
        .write(&path, &raw)
        .unwrap();
    path
}

/// Asserts reading `path` fails with a message containing the path and `needle`.
fn assert_error(path: &Path, needle: &str) {
    let err = read_volume(path).expect_err("reading should fail");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "no file name in: {text}"
    );
    assert!(
        text.to_lowercase().contains(&needle.to_lowercase()),
        "expected `{needle}` in: {text}"
    );
}

#[test]
fn each_kind_of_broken_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = std::fs::read(valid_file(d, "good.nii")).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.nii", vec![], "empty"),
        (
            "junk.nii",
            b"this is a text file, not an image at all".to_vec(),
            "not a NIfTI file",
        ),
        ("short.nii", good[..200].to_vec(), "truncated header"),
        ("header-only.nii", good[..352].to_vec(), "header only"),
        (
            "truncated.nii",
            good[..352 + 100].to_vec(),
            "truncated voxel data",
        ),
        (
            "nifti2.nii",
            {
                let mut b = good.clone();
                b[..4].copy_from_slice(&540i32.to_le_bytes());
                b
            },
            "NIfTI-2 magic",
        ),
        (
            "pair.hdr",
            {
                let mut b = good.clone();
                b[344..348].copy_from_slice(b"ni1\0");
                b
            },
            "pair.img is missing",
        ),
        (
            "badmagic.nii",
            {
                let mut b = good.clone();
                b[344..348].copy_from_slice(b"xyz\0");
                b
            },
            "magic",
        ),
        (
            "rgb.nii",
            {
                let mut b = good.clone();
                b[70..72].copy_from_slice(&128i16.to_le_bytes());
                b
            },
            "rgb24",
        ),
        (
            "dims.nii",
            {
                let mut b = good.clone();
                b[40..42].copy_from_slice(&0i16.to_le_bytes());
                b
            },
            "dim[0]",
        ),
        (
            "negdim.nii",
            {
                let mut b = good.clone();
                b[42..44].copy_from_slice(&(-4i16).to_le_bytes());
                b
            },
            "dim[1]",
        ),
        (
            "offset.nii",
            {
                let mut b = good.clone();
                b[108..112].copy_from_slice(&12.0f32.to_le_bytes());
                b
            },
            "vox_offset",
        ),
        (
            "huge.nii",
            {
                let mut b = good.clone();
                for i in 0..4 {
                    b[42 + 2 * i..44 + 2 * i].copy_from_slice(&32767i16.to_le_bytes());
                }
                b[40..42].copy_from_slice(&4i16.to_le_bytes());
                b
            },
            "voxels",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = d.join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_error(&path, needle);
    }
    assert_error(&d.join("missing.nii.gz"), "cannot read");
}

#[test]
fn corrupt_and_truncated_gzip_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gz = std::fs::read(valid_file(dir.path(), "good.nii.gz")).unwrap();

    let truncated = dir.path().join("truncated.nii.gz");
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    assert_error(&truncated, "gzip");

    // Damage the deflate stream in the middle.
    let mut damaged = gz.clone();
    let mid = damaged.len() / 2;
    for b in &mut damaged[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let corrupt = dir.path().join("corrupt.nii.gz");
    std::fs::write(&corrupt, damaged).unwrap();
    assert!(read_volume(&corrupt).is_err());

    // A wrong CRC in the trailer: the data decodes but the check catches it.
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let crc = dir.path().join("crc.nii.gz");
    std::fs::write(&crc, bad_crc).unwrap();
    assert_error(&crc, "gzip");
}

#[test]
fn label_maps_must_hold_whole_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.nii");
    let mut values = vec![0.0f32; 27];
    values[13] = 1.5;
    NiftiWriter::new([3, 3, 3, 1], Affine::identity())
        .write(&path, &values)
        .unwrap();
    let err = read_labels(&path).unwrap_err().to_string();
    assert!(err.contains("voxel (1, 1, 1) holds 1.5"), "{err}");
}

/// Every prefix and many random byte corruptions of a valid file: the reader
/// returns an error or a volume, and never panics.
#[test]
fn no_truncation_or_corruption_panics() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["fuzz.nii", "fuzz.nii.gz"] {
        let good = std::fs::read(valid_file(dir.path(), name)).unwrap();
        let path = dir.path().join(format!("case-{name}"));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut variants: Vec<Vec<u8>> = (0..good.len())
            .step_by(7)
            .map(|n| good[..n].to_vec())
            .collect();
        for _ in 0..300 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            variants.push(b);
        }
        if name.ends_with(".gz") {
            // Corrupt the decompressed header, then recompress, so header
            // fields are exercised behind a valid gzip stream too.
            let raw = std::fs::read(valid_file(dir.path(), "raw.nii")).unwrap();
            for _ in 0..300 {
                let mut b = raw.clone();
                let at = (next() % 352) as usize;
                b[at] = next() as u8;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut enc, &b).unwrap();
                variants.push(enc.finish().unwrap());
            }
        }
        for bytes in variants {
            std::fs::write(&path, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                let _ = read_volume(&path);
                let _ = read_labels(&path);
            });
            assert!(outcome.is_ok(), "reader panicked on a corrupted {name}");
        }
    }
}
