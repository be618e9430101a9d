//! `nextslice phantom` writes deterministic BraTS/MALC-layout files that our
//! reader (and an independent NIfTI reader) open.

use super::common::{files_under, run_ok};
use nextslice::volume::{axis_codes, read_labels, read_volume};
use nifti::NiftiObject;

#[test]
fn same_seed_gives_identical_bytes_and_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for (out, seed) in [(&a, "3"), (&b, "3"), (&c, "4")] {
        run_ok(&[
            "phantom",
            "--out",
            out.to_str().unwrap(),
            "--subjects",
            "3",
            "--size",
            "32",
            "--seed",
            seed,
        ]);
    }
    let files = files_under(&a);
    assert_eq!(files.len(), 3 * 5, "{files:?}");
    assert_eq!(files, files_under(&b));
    for f in &files {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f:?} differs"
        );
    }
    let differs = files
        .iter()
        .any(|f| std::fs::read(a.join(f)).unwrap() != std::fs::read(c.join(f)).unwrap());
    assert!(differs, "another seed must give other images");

    let case = a.join("phantom_001");
    let flair = read_volume(&case.join("phantom_001_flair.nii.gz")).unwrap();
    assert_eq!(flair.dims, [32, 32, 21, 1]);
    assert_eq!(
        axis_codes(&flair.affine),
        ['L', 'P', 'S'],
        "BraTS voxel order"
    );
    assert!((flair.affine.spacing()[0] - 7.5).abs() < 1e-6);
    let seg = read_labels(&case.join("phantom_001_seg.nii.gz")).unwrap();
    assert!(seg.data.iter().all(|v| [0, 1, 2, 4].contains(v)));
    assert!(seg.data.contains(&4) || seg.data.contains(&1));
    // Background is exactly zero (skull-stripped), brain voxels are positive.
    let brain = flair.data.iter().filter(|&&v| v > 0.0).count();
    assert!(brain > 0 && flair.data.iter().all(|&v| v >= 0.0));

    // The nifti crate reads the same header.
    let obj = nifti::ReaderOptions::new()
        .read_file(case.join("phantom_001_t1ce.nii.gz"))
        .unwrap();
    assert_eq!(&obj.header().dim[..4], &[3, 32, 32, 21]);
    assert_eq!(obj.header().datatype, 4, "int16 like BraTS");
}

#[test]
fn tissue_phantoms_use_the_malc_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    run_ok(&[
        "phantom",
        "--out",
        out.to_str().unwrap(),
        "--subjects",
        "2",
        "--size",
        "24",
        "--kind",
        "tissue",
    ]);
    let files = files_under(&out);
    assert!(
        files.contains(&"training-images/phantom_002_3.nii.gz".into()),
        "{files:?}"
    );
    let labels = read_labels(&out.join("training-labels/phantom_001_3_glm.nii.gz")).unwrap();
    assert!(labels.data.iter().all(|v| *v <= 3));
}

#[test]
fn bad_arguments_are_refused() {
    let out = super::common::nextslice()
        .args(["phantom", "--out", "/tmp/x", "--subjects", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--subjects"));
}
