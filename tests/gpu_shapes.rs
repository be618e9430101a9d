//! After its warm-up, a whole simulated round on the GPU tunes no kernel:
//! every batch a job runs has a shape the warm-up tuned. On burn's wgpu
//! backend over Mesa's lavapipe (a CPU Vulkan driver), whose autotuner is
//! burn-cuda's, on tiny phantoms sized so that no pass and no epoch divides
//! into whole batches (the last batches are where new shapes came from).
//!
//! `cargo test --features wgpu --test gpu_shapes` (`.ci/run` installs
//! `mesa-vulkan-drivers`).

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use burn::backend::{Autodiff, Wgpu};

use nextslice::config::AutotuneLevel;
use nextslice::engine::{StepContext, ensure_warm_in};
use nextslice::gpu::{KernelCache, configure, monitor};
use nextslice::journal::EventLog;
use nextslice::progress::{Progress, ProgressUpdate};
use nextslice::project::Project;
use nextslice::simulate::{Start, prepare, simulate};
use nextslice::train::{TrainEvent, TrainObserver};
use nextslice::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

/// Tiny networks at the batch sizes a real project uses, a pool whose
/// passes and epochs all end in a partial batch, and every strategy whose
/// models run other shapes (DAL's ensemble, learning-loss's head) or
/// passes (uncertainty, oracle, ClsMC).
const CONFIG: &str = "\
[slicing]\nsize = [32, 32]\nmin_brain_fraction = 0.05\n\
[split]\ntest_fraction = 0.25\nseed = 1\n\
[vae]\nwidths = [4, 8]\nz_dim = 3\nepochs = 1\nbatch_size = 16\n\
[unet]\nwidths = [4, 8]\nbottleneck = 16\nepochs_per_round = 1\nmin_steps_per_round = 0\nbatch_size = 8\n\
[sampling]\ninitial_fraction = 0.05\nround_fraction = 0.05\nrounds = 1\n\
[simulate]\nstrategies = [\"gradient\", \"entropy\", \"oracle\", \"dal\", \"learning-loss\", \"clsmc\"]\nseeds = 1\nfull_reference = false\n";

/// The kernels tuned after the warm-up, each with the batch it was tuned
/// in: progress and training events come after each batch, so what was
/// tuned since the last one belongs to the batch just reported.
#[derive(Default)]
struct TunedByStage {
    seen: Mutex<u64>,
    tuned: Mutex<Vec<(String, String)>>,
}

impl TunedByStage {
    fn collect(&self, stage: String) {
        let mut seen = self.seen.lock().unwrap();
        let keys = monitor().keys_after(*seen);
        *seen += keys.len() as u64;
        for key in keys {
            self.tuned.lock().unwrap().push((stage.clone(), key));
        }
    }
}

impl Progress for TunedByStage {
    fn update(&self, u: &ProgressUpdate<'_>) {
        self.collect(format!("{} {} of {}", u.stage, u.done, u.total));
    }
}

impl TrainObserver for TunedByStage {
    fn event(&self, event: &TrainEvent) {
        if let TrainEvent::Batch(b) = event {
            let (network, batch, batches) = (b.network.name(), b.batch, b.batches);
            self.collect(format!("{network} training batch {batch} of {batches}"));
        }
    }
}

fn init_project(dir: &Path) -> Project {
    let data = dir.join("data");
    let spec = PhantomSpec {
        kind: PhantomKind::Tumour,
        subjects: 5,
        size: 32,
        seed: 5,
    };
    write_phantom(&data, &spec, &nextslice::progress::Silent).unwrap();
    let config = dir.join("tiny.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let project = dir.join("project");
    let out = Command::new(env!("CARGO_BIN_EXE_nextslice"))
        .args(["init", "--preset", "demo", "--config"])
        .args([&config, &project])
        .arg("--data")
        .arg(&data)
        .arg("--store-root")
        .arg(dir.join("stores"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Project::open(&project).unwrap()
}

#[test]
fn after_its_warm_up_a_round_on_the_gpu_tunes_no_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let project = init_project(dir.path());
    let config = project.config.clone();

    // Every kind of pass and training the strategies run.
    assert_eq!(config.simulate.strategies.len(), 6);
    prepare(&project, &config, Start::Restart).unwrap();

    let cache = KernelCache {
        dir: dir.path().join("kernels"),
    };
    let level = AutotuneLevel::Minimal;
    configure(Some(cache.clone()), level).unwrap();
    let device = Default::default();
    let cancel = AtomicBool::new(false);
    let tuned = TunedByStage::default();
    let warm =
        ensure_warm_in::<Autodiff<Wgpu>>(&cache, level, &config, &device, &tuned, &cancel).unwrap();
    assert!(warm.tuned > 0, "the warm-up tuned nothing: {warm:?}");

    *tuned.seen.lock().unwrap() = monitor().snapshot().started;
    tuned.tuned.lock().unwrap().clear();
    let log = EventLog::new(&project.dir);
    let ctx = StepContext {
        progress: &tuned,
        observer: &tuned,
        cancel: &cancel,
        log: &log,
    };
    simulate::<Autodiff<Wgpu>>(&project, &ctx, &device).unwrap();
    tuned.collect("after the simulation".into());
    let tuned = tuned.tuned.lock().unwrap();
    let listed: Vec<String> = tuned.iter().map(|(s, k)| format!("{s}: {k}")).collect();
    assert!(
        tuned.is_empty(),
        "{} kernels tuned after the warm-up ({} in it):\n{}",
        tuned.len(),
        warm.tuned,
        listed.join("\n")
    );
}
