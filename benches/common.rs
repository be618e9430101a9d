//! Helpers shared by the bench binaries (included with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where benchmarks keep generated data between runs.
pub fn bench_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data")
}

/// Median wall time of `repeat` runs of `f`, after one warm-up run.
pub fn median_seconds(repeat: usize, f: impl FnMut()) -> f64 {
    median_seconds_after(1, repeat, f)
}

/// Median wall time of `repeat` runs of `f`, after `warmup` untimed runs
/// (GPU backends compile and autotune kernels on first use).
pub fn median_seconds_after(warmup: usize, repeat: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A Python with nibabel: $NEXTSLICE_PYTHON, then .venv-bench, then python3.
pub fn python_with_nibabel() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = std::env::var_os("NEXTSLICE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root.join(".venv-bench/bin/python"),
            PathBuf::from("python3"),
        ]);
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import nibabel, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Peak resident memory of this process so far, in MiB (Linux).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
