//! NIfTI ingest of a BraTS-sized (240×240×155 int16 .nii.gz) volume:
//! nextslice vs nibabel + numpy, measured side by side in one run.
//!
//! `cargo bench --bench ingest` (set up Python first: `bench/setup-python.sh`).

#[path = "common.rs"]
mod common;

use std::process::Command;

use nextslice::volume::phantom::{PhantomKind, PhantomSpec};
use nextslice::volume::{NiftiWriter, read_volume, to_canonical};

fn main() {
    let dir = common::bench_data().join("ingest");
    let path = dir.join("brats_sized_t1.nii.gz");
    if !path.exists() {
        eprintln!("generating a 240×240×155 phantom volume …");
        let spec = PhantomSpec {
            kind: PhantomKind::Tumour,
            subjects: 1,
            size: 240,
            seed: 0,
        };
        let subject = spec.subject(0);
        let [x, y, z] = subject.dims;
        NiftiWriter::new([x, y, z, 1], subject.affine)
            .write(&path, &subject.images[1])
            .expect("write volume");
    }
    let repeat = 7;
    let volume = read_volume(&path).expect("read volume");
    let checksum: f64 = volume.data.iter().map(|&v| f64::from(v)).sum();
    let ours_load = common::median_seconds(repeat, || {
        std::hint::black_box(read_volume(&path).expect("read"));
    });
    let ours_canonical = common::median_seconds(repeat, || {
        std::hint::black_box(to_canonical(read_volume(&path).expect("read")));
    });
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "NIfTI ingest, {:?} int16, {:.1} MB gzip, median of {repeat}",
        volume.dims,
        bytes as f64 / 1e6
    );
    println!("{:<34} {:>10} {:>10}", "", "load", "canonical");
    println!(
        "{:<34} {:>8.1}ms {:>8.1}ms",
        "nextslice",
        ours_load * 1e3,
        ours_canonical * 1e3
    );

    let Some(python) = common::python_with_nibabel() else {
        println!("nibabel: not available (run bench/setup-python.sh); no ratio");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/ingest_nibabel.py");
    let out = Command::new(&python)
        .args([
            script,
            path.to_str().expect("utf-8 path"),
            &repeat.to_string(),
        ])
        .output()
        .expect("run python");
    if !out.status.success() {
        println!(
            "nibabel run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from python");
    let (theirs_load, theirs_canonical) = (
        result["load"].as_f64().unwrap_or(f64::NAN),
        result["canonical"].as_f64().unwrap_or(f64::NAN),
    );
    let label = format!(
        "nibabel {} + numpy {}",
        result["nibabel"].as_str().unwrap_or("?"),
        result["numpy"].as_str().unwrap_or("?")
    );
    println!(
        "{label:<34} {:>8.1}ms {:>8.1}ms",
        theirs_load * 1e3,
        theirs_canonical * 1e3
    );
    println!(
        "{:<34} {:>9.2}× {:>9.2}×",
        "speed-up (nibabel time / ours)",
        theirs_load / ours_load,
        theirs_canonical / ours_canonical
    );
    let their_sum = result["checksum"].as_f64().unwrap_or(f64::NAN);
    let agree = (their_sum - checksum).abs() <= 1e-6 * checksum.abs().max(1.0);
    println!("voxel sums agree: {agree} ({checksum} vs {their_sum})");
}
