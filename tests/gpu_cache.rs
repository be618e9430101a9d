//! The GPU kernel caches, end to end through cubecl, on a machine without a
//! GPU: burn's wgpu backend on Mesa's lavapipe (a CPU Vulkan driver) runs
//! the same autotuner as burn-cuda. Two processes warm up the same project
//! shapes with `gpu::configure` pointing at one cache directory: the first
//! tunes (and the tuning is counted from cubecl's own log), the second finds
//! every shape in the cache and tunes nothing.
//!
//! `cargo test --features wgpu --test gpu_cache` (`.ci/run` installs
//! `mesa-vulkan-drivers`). Each process configures cubecl once, so each run
//! is this test binary started again on the ignored `child` test.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use burn::backend::{Autodiff, Wgpu};

use nextslice::config::{AutotuneLevel, Config, Preset};
use nextslice::engine::{TUNING_STAGE, expected_tuning, shapes_of, signature, warm_up};
use nextslice::gpu::{KernelCache, WarmRecord, configure, monitor};
use nextslice::progress::{Progress, ProgressUpdate};

const CHILD_DIR: &str = "NEXTSLICE_TEST_GPU_CACHE_DIR";

/// Small shapes: the point is the caches, not the speed of lavapipe.
fn tiny_config() -> Config {
    let mut config = Config::preset(Preset::Demo);
    config.slicing.size = [16, 16];
    config.unet.widths = vec![4, 8];
    config.unet.bottleneck = 8;
    config.vae.widths = vec![4, 8];
    config.unet.batch_size = 2;
    config.vae.batch_size = 2;
    config
}

/// What the warm-up reported: (done, total, unit, detail).
struct Details(Mutex<Vec<(u64, u64, String, String)>>);

impl Progress for Details {
    fn update(&self, u: &ProgressUpdate<'_>) {
        assert_eq!(u.stage, TUNING_STAGE);
        let update = (u.done, u.total, u.unit.to_string(), u.detail.to_string());
        self.0.lock().unwrap().push(update);
    }
}

/// The kernels a warm-up of the test's shapes tuned "on another GPU", as
/// the parent plants it beside the child's cache: fewer than lavapipe
/// tunes (about 160), so the child's count overtakes the estimate.
const PLANTED_ESTIMATE: u64 = 20;

/// The child's cache, below the root the parent plants the estimate in.
fn child_cache(root: &Path) -> KernelCache {
    KernelCache {
        dir: root.join("lavapipe"),
    }
}

/// What one process saw, parsed from its output.
#[derive(Debug)]
struct Run {
    started: u64,
    finished: u64,
    tuned: u64,
    entries: usize,
    /// The warm-up's last detail gave the count the log showed.
    count_reported: bool,
    /// A detail named the shape being tuned while it was.
    live_reported: bool,
    /// The warm-up's per-workload counts covered all five and added up.
    split_reported: bool,
    /// The progress counted kernels of the planted estimate, never all of
    /// them, and workloads once the count passed it.
    estimate_reported: bool,
}

fn run_child(dir: &Path) -> Run {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RUN ").map(|(_, run)| run))
        .unwrap_or_else(|| panic!("no RUN line:\n{stdout}\n{stderr}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    Run {
        started: field("started"),
        finished: field("finished"),
        tuned: field("tuned"),
        entries: field("entries") as usize,
        count_reported: field("count") == 1,
        live_reported: field("live") == 1,
        split_reported: field("split") == 1,
        estimate_reported: field("estimate") == 1,
    }
}

#[test]
fn tuned_kernels_are_kept_for_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    // An earlier warm-up of the same shapes, by another nextslice on
    // another GPU: the child's progress counts kernels against it.
    let shapes = shapes_of(&signature(&tiny_config(), AutotuneLevel::Minimal)).to_string();
    let elsewhere = KernelCache::for_gpu(dir.path(), "Another GPU", "1.0");
    elsewhere
        .mark_warm(&WarmRecord {
            signature: format!("nextslice 0.0.1 · {shapes}"),
            tuned: PLANTED_ESTIMATE,
            seconds: 60.0,
        })
        .unwrap();
    let started = std::time::Instant::now();
    let first = run_child(dir.path());
    let cold = started.elapsed().as_secs_f64();
    assert!(first.started > 0, "the first process tunes: {first:?}");
    assert!(
        first.finished > 0 && first.tuned == first.finished,
        "{first:?}"
    );
    assert!(
        first.count_reported,
        "the count reached the progress: {first:?}"
    );
    assert!(
        first.live_reported,
        "so did the shape being tuned: {first:?}"
    );
    assert!(
        first.split_reported,
        "each workload's kernels were counted: {first:?}"
    );
    assert!(
        first.estimate_reported,
        "the progress counted kernels of the earlier warm-up's {PLANTED_ESTIMATE}: {first:?}"
    );
    assert!(
        first.entries >= first.finished as usize,
        "every benchmarked shape is in the cache: {first:?}"
    );
    let autotune = child_cache(dir.path()).dir.join("autotune");
    assert!(autotune.is_dir(), "cubecl wrote under our directory");

    let started = std::time::Instant::now();
    let second = run_child(dir.path());
    eprintln!(
        "cold process {cold:.1}s: {first:?}; warm process {:.1}s: {second:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        second.started, 0,
        "the second process tunes nothing: {second:?}"
    );
    assert_eq!(second.entries, first.entries, "{second:?}");
}

/// A warm-up recorded with autotuned convolutions or matmuls must not stand
/// for one with steered ones: those run other kernels, tuned apart.
#[test]
fn steered_and_autotuned_kernels_are_warmed_up_apart() {
    use nextslice::model::{Steer, with_conv_steering, with_matmul_steering};
    let config = tiny_config();
    let level = AutotuneLevel::Minimal;
    let signed = |steer: Option<Steer>, fixed: bool| {
        with_conv_steering(steer, || {
            with_matmul_steering(fixed, || signature(&config, level))
        })
    };
    let autotuned = signed(None, false);
    let steered = signed(Some(Steer::ImplicitGemm), false);
    let direct = signed(Some(Steer::Direct), false);
    let fixed = signed(None, true);
    assert!(autotuned.contains("convolutions autotune"), "{autotuned}");
    assert!(autotuned.contains("matmuls autotune"), "{autotuned}");
    assert!(steered.contains("convolutions implicit-gemm"), "{steered}");
    assert!(fixed.contains("matmuls fixed"), "{fixed}");
    assert_ne!(steered, direct);
    assert_ne!(fixed, autotuned);
}

#[test]
#[ignore = "one process of `tuned_kernels_are_kept_for_the_next_process`"]
fn child() {
    let dir = std::env::var_os(CHILD_DIR).expect("started by the parent test");
    let cache = child_cache(Path::new(&dir));
    let level = AutotuneLevel::Minimal;
    configure(Some(cache.clone()), level).unwrap();
    let details = Details(Mutex::new(Vec::new()));
    let before = monitor().snapshot();
    let expected = expected_tuning(&cache, &signature(&tiny_config(), level));
    let done = warm_up::<Autodiff<Wgpu>>(
        &tiny_config(),
        &Default::default(),
        &details,
        &AtomicBool::new(false),
        expected,
    )
    .unwrap();
    let after = monitor().snapshot();
    let finished = after.finished - before.finished;
    let details = details.0.lock().unwrap();
    let count = details.last().map(|d| &d.3) == Some(&format!("{finished} kernels tuned"));
    let live = details.iter().any(|d| d.3.contains(" tuned · latest "));
    let (_, running) = details.split_last().expect("the warm-up reported");
    // Kernels of the estimate, never all of them, until the count passed
    // it; then workloads, saying so.
    let kernels: Vec<_> = running.iter().filter(|d| d.2 == "kernels").collect();
    let estimate = expected == Some(PLANTED_ESTIMATE)
        && !kernels.is_empty()
        && kernels
            .iter()
            .all(|(done, total, _, _)| *total == PLANTED_ESTIMATE && done < total)
        && running.iter().any(|(_, _, unit, detail)| {
            unit == "workloads"
                && detail.contains(&format!("more kernels than the {PLANTED_ESTIMATE}"))
        });
    let split = done.workloads.len() == 5
        && done.workloads.iter().map(|w| w.tuned).sum::<u64>() == done.tuned
        && done.workloads.iter().any(|w| w.tuned > 0);
    println!(
        "RUN started={} finished={finished} tuned={} entries={} count={} live={} split={} estimate={}",
        after.started - before.started,
        done.tuned,
        cache.tuned_entries(),
        u8::from(count),
        u8::from(live),
        u8::from(split),
        u8::from(estimate)
    );
}
