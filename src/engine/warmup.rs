//! Tuning the GPU's kernels for a project's shapes before the real work:
//! each kind of step a round runs (VAE and U-Net training steps, encoding,
//! inference, the Eq. 3 input gradient) once, at the project's slice size,
//! channels, widths and batch sizes, on random inputs. cubecl autotunes and
//! compiles every kernel shape on first use and keeps the results in the
//! GPU's kernel cache, so the later steps (and later processes) start at
//! once. A finished warm-up is recorded there; the next job that finds the
//! record skips it.
//!
//! On the CPU nothing needs tuning, and `ensure_warm` does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{GRADIENT_BATCH, UNET_BATCH, VAE_BATCH};
use super::train_vae::quality_loss;
use crate::config::{AutotuneLevel, Config, Strategy};
use crate::gpu::{KernelCache, WarmRecord};
use crate::model::loss::{dice_loss_from_logits, one_hot, vae_loss};
use crate::model::{Mode, UNetSpec, UNetWithLossHead, VaeSpec, dice_gradient_wrt_input};
use crate::progress::{Progress, ProgressUpdate};
use crate::train::{LossHeadTraining, adam};

/// The stage name in the job view, `status` and `logs`.
pub const TUNING_STAGE: &str = "tuning GPU kernels";

/// Raised whenever the workloads change what they run, so that an older
/// warm-up's record no longer stands for this one (the crate's version
/// rarely changes). 2: class maps, DAL's pooling, the quality pass, the
/// loss head.
const WARM_UP_REVISION: u32 = 2;

/// One kind of work a round runs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    VaeTrain,
    VaeEncode,
    UnetTrain,
    UnetInfer,
    GradientEncode,
    /// The learning-loss baseline's U-Net and loss head: a training step
    /// and the predicted losses.
    LossHead,
}

impl Workload {
    /// What every project runs.
    pub const ALL: [Workload; 5] = [
        Workload::VaeTrain,
        Workload::VaeEncode,
        Workload::UnetTrain,
        Workload::UnetInfer,
        Workload::GradientEncode,
    ];

    /// What `config`'s rounds and simulations run: every project's
    /// workloads, and the loss head's where a strategy uses it.
    pub fn of(config: &Config) -> Vec<Workload> {
        let mut workloads = Workload::ALL.to_vec();
        let strategies = std::iter::once(&config.sampling.strategy);
        if strategies
            .chain(&config.simulate.strategies)
            .any(|s| *s == Strategy::LearningLoss)
        {
            workloads.push(Workload::LossHead);
        }
        workloads
    }

    /// "U-Net training step, batch 8".
    pub fn describe(self, config: &Config) -> String {
        let (what, batch) = match self {
            Workload::VaeTrain => ("VAE training step", config.vae.batch_size),
            Workload::VaeEncode => ("VAE encoding + reconstruction", VAE_BATCH),
            Workload::UnetTrain => ("U-Net training step", config.unet.batch_size),
            Workload::UnetInfer => ("U-Net inference", UNET_BATCH),
            Workload::GradientEncode => ("input gradient + encoding", GRADIENT_BATCH),
            Workload::LossHead => ("U-Net + loss head training step", config.unet.batch_size),
        };
        format!("{what}, batch {batch}")
    }

    /// Runs it once on random inputs of the project's shapes, and waits
    /// for the GPU to finish (reading a scalar back).
    fn run<B: AutodiffBackend>(self, config: &Config, device: &B::Device) {
        let unet = UNetSpec::from_config(config);
        let vae = VaeSpec::from_config(config);
        let [h, w] = config.slicing.size;
        let (c, k, z) = (unet.in_channels, unet.classes, vae.z_dim);
        let image = |n: usize| Tensor::random([n, c, h, w], Distribution::Normal(0.0, 1.0), device);
        let mask = |n: usize| {
            let labels =
                Tensor::<B, 3>::random([n, h, w], Distribution::Uniform(0.0, k as f64), device);
            one_hot(labels.int(), k)
        };
        let scalar = |t: Tensor<B, 1>| -> f32 { t.into_scalar().elem() };
        match self {
            Workload::VaeTrain => {
                let n = config.vae.batch_size.max(1);
                let model = vae.init::<B>(device);
                let mut optim = adam::<B, _>();
                let x = image(n);
                let noise = Tensor::random([n, z], Distribution::Normal(0.0, 1.0), device);
                let out = model.forward(x.clone(), noise, Mode::Train);
                let loss = vae_loss(out.reconstruction, x, out.mean, out.log_var).total(1.0);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let _ = optim.step(config.vae.lr, model, grads);
                scalar(loss);
            }
            Workload::VaeEncode => {
                let model = vae.init::<B>(device).valid();
                let x = image(VAE_BATCH).inner();
                // The pool's encoding, and the quality pass's reconstruction.
                let _ = model.encode_mean(x.clone()).into_data();
                let every_row = Tensor::ones([VAE_BATCH], device);
                let loss = quality_loss(&model, x, every_row);
                let _ = (loss.reconstruction.into_data(), loss.kl.into_data());
            }
            Workload::UnetTrain => {
                let n = config.unet.batch_size.max(1);
                let model = unet.init::<B>(device);
                let mut optim = adam::<B, _>();
                let loss =
                    dice_loss_from_logits(model.forward(image(n), Mode::Train).logits, mask(n));
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let _ = optim.step(config.unet.lr, model, grads);
                scalar(loss);
            }
            Workload::UnetInfer => {
                let model = unet.init::<B>(device).valid();
                let out = model.forward(image(UNET_BATCH).inner(), Mode::Eval);
                // Class maps are the argmax over classes (`infer::class_map`),
                // scores read probabilities, DAL pools the bottleneck.
                let _ = out.pooled_bottleneck().into_data();
                let _ = out.logits.clone().argmax(1).into_data();
                let _ = burn::tensor::activation::softmax(out.logits, 1).into_data();
            }
            Workload::GradientEncode => {
                let model = unet.init::<B>(device);
                let encoder = vae.init::<B>(device).valid();
                let x = image(GRADIENT_BATCH).inner();
                let y = mask(GRADIENT_BATCH).inner();
                // A fresh U-Net's loss always reaches its input.
                if let Some(g) = dice_gradient_wrt_input::<B>(&model, x.clone(), y) {
                    let moved = x + g.gradient.clone().mul_scalar(1e-3);
                    let _ = (
                        g.gradient.into_data(),
                        encoder.encode_mean(moved).into_data(),
                    );
                }
            }
            Workload::LossHead => {
                let n = config.unet.batch_size.max(1);
                let mut model = UNetWithLossHead {
                    unet: unet.init::<B>(device),
                    head: unet.loss_head::<B>(device),
                };
                let settings = LossHeadTraining {
                    margin: config.sampling.ll_margin,
                    weight: config.sampling.ll_weight,
                    detach_epoch: 1,
                };
                let mut optim = adam::<B, _>();
                let slices: Vec<usize> = (0..n).collect();
                // Epoch 0, and a later one whose head no longer trains the U-Net.
                for epoch in 0..2 {
                    let loss = settings.loss(&model, image(n), mask(n), &slices, epoch);
                    let grads = GradientsParams::from_grads(loss.clone().backward(), &model);
                    model = optim.step(config.unet.lr, model, grads);
                    scalar(loss);
                }
                let model = model.valid();
                let out = model.unet.forward(image(UNET_BATCH).inner(), Mode::Eval);
                let _ = model.head.forward(&out.loss_head_features()).into_data();
            }
        }
    }
}

/// What identifies a project's tuned shapes: the workloads with every
/// dimension that picks a kernel, the autotune level, whether burn's fused
/// backend runs them, how convolutions and matmuls are chosen (steered ones
/// tune none of their candidates), the warm-up's revision, and our
/// version (a new nextslice may run other kernels).
pub fn signature(config: &Config, level: AutotuneLevel) -> String {
    let [h, w] = config.slicing.size;
    let convolutions = crate::model::convolution_choice();
    let matmuls = crate::model::matmul_choice();
    // burn's fused backend tunes its own kernels, and nothing is steered there.
    let backend = if cfg!(feature = "cuda-fusion") {
        "fused"
    } else {
        "plain"
    };
    format!(
        "nextslice {} · autotune {} · {backend} · convolutions {convolutions} · matmuls {matmuls} · {} channels {h}×{w} → {} classes · U-Net {:?}+{} b{} · VAE {:?} z{} b{} · inference b{VAE_BATCH}/{UNET_BATCH}/{GRADIENT_BATCH}{head} · warm-up r{WARM_UP_REVISION}",
        env!("CARGO_PKG_VERSION"),
        level.name(),
        config.dataset.modalities.len(),
        config.labels.classes.len(),
        config.unet.widths,
        config.unet.bottleneck,
        config.unet.batch_size,
        config.vae.widths,
        config.vae.z_dim,
        config.vae.batch_size,
        head = if Workload::of(config).contains(&Workload::LossHead) {
            " · loss head"
        } else {
            ""
        },
    )
}

/// A signature without the version that made it: the same shapes, tuned
/// by another nextslice, tune about as many kernels (an estimate, not a
/// cache key).
pub fn shapes_of(signature: &str) -> &str {
    signature
        .split_once(" · ")
        .map_or(signature, |(_, shapes)| shapes)
}

/// How a warm-up went.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmUp {
    /// Kernel shapes cubecl benchmarked to a winner.
    pub tuned: u64,
    pub seconds: f64,
    /// Whether a record from an earlier warm-up made it unnecessary.
    pub skipped: bool,
    /// Each workload this run tuned, in order (none when skipped): where a
    /// slow first step spends its time.
    pub workloads: Vec<WorkloadTuned>,
}

/// One workload's share of a warm-up.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadTuned {
    /// As [`Workload::describe`] says it.
    pub what: String,
    pub seconds: f64,
    /// Kernel shapes tuned while it ran.
    pub tuned: u64,
}

/// Runs every workload once with "tuning GPU kernels" progress, refreshed
/// twice a second: how many kernels cubecl has tuned and which it is on.
/// With `expected` (what an earlier cold warm-up of the same shapes tuned)
/// the progress counts kernels of that many, so the job's ETA is the
/// kernels left at this run's pace; without, or once the count passes it,
/// it counts workloads (the first, which tunes most, makes that ETA long).
/// Stops between workloads on a cancel.
pub fn warm_up<B: AutodiffBackend>(
    config: &Config,
    device: &B::Device,
    progress: &dyn Progress,
    cancel: &AtomicBool,
    expected: Option<u64>,
) -> Result<WarmUp, EngineError> {
    let before = crate::gpu::monitor().snapshot();
    let started = Instant::now();
    let all = Workload::of(config);
    let count = all.len() as u64;
    let mut workloads = Vec::with_capacity(all.len());
    for (index, workload) in all.into_iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        let what = workload.describe(config);
        let (began, tuned_before) = (Instant::now(), crate::gpu::monitor().snapshot().finished);
        let running = AtomicBool::new(true);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while running.load(Ordering::Relaxed) {
                    let now = crate::gpu::monitor().snapshot();
                    let position = Position {
                        workload: index as u64,
                        workloads: count,
                        tuned: now.finished.saturating_sub(before.finished),
                        expected,
                    };
                    let detail = match position.note() {
                        Some(note) => format!("{what}, {note}"),
                        None => what.clone(),
                    };
                    let tuning = now.describe(&before);
                    let detail = if tuning.is_empty() {
                        detail
                    } else {
                        format!("{detail}; {tuning}")
                    };
                    let (done, total, unit) = position.progress();
                    progress.update(&ProgressUpdate {
                        stage: TUNING_STAGE,
                        done,
                        total,
                        unit,
                        detail: &detail,
                    });
                    sleep_unless(&running, Duration::from_millis(500));
                }
            });
            workload.run::<B>(config, device);
            running.store(false, Ordering::Relaxed);
        });
        workloads.push(WorkloadTuned {
            what,
            seconds: began.elapsed().as_secs_f64(),
            tuned: crate::gpu::monitor().snapshot().finished - tuned_before,
        });
    }
    let tuned = crate::gpu::monitor().snapshot().finished - before.finished;
    let detail = format!("{tuned} kernels tuned");
    progress.update(&ProgressUpdate {
        stage: TUNING_STAGE,
        done: count,
        total: count,
        unit: "workloads",
        detail: &detail,
    });
    Ok(WarmUp {
        tuned,
        seconds: started.elapsed().as_secs_f64(),
        skipped: false,
        workloads,
    })
}

/// Where a running warm-up stands: workload `workload` (from 0) of
/// `workloads`, `tuned` kernels so far of `expected`, if known.
struct Position {
    workload: u64,
    workloads: u64,
    tuned: u64,
    expected: Option<u64>,
}

impl Position {
    /// (done, total, unit) for the progress: kernels of the expected count
    /// while the count is below it (so never all done while a workload
    /// runs), workloads otherwise.
    fn progress(&self) -> (u64, u64, &'static str) {
        match self.expected {
            Some(expected) if self.tuned < expected => (self.tuned, expected, "kernels"),
            _ => (self.workload, self.workloads, "workloads"),
        }
    }

    /// Which workload this is, where the progress counts kernels, and that
    /// the estimate was passed, once it is.
    fn note(&self) -> Option<String> {
        let expected = self.expected?;
        let which = format!("workload {} of {}", self.workload + 1, self.workloads);
        Some(if self.tuned < expected {
            which
        } else {
            format!("{which}, more kernels than the {expected} an earlier warm-up tuned")
        })
    }
}

/// Sleeps up to `limit`, waking early once `flag` clears.
fn sleep_unless(flag: &AtomicBool, limit: Duration) {
    let until = Instant::now() + limit;
    while flag.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Before a GPU job: warms up the project's shapes unless this GPU's
/// kernel cache records that it already did. Does nothing where cubecl's
/// runtime was not configured for a GPU (the CPU) or has no cache.
pub fn ensure_warm<B: AutodiffBackend>(
    config: &Config,
    device: &B::Device,
    ctx: &StepContext<'_>,
) -> Result<Option<WarmUp>, EngineError> {
    let Some(runtime) = crate::gpu::runtime::configured() else {
        return Ok(None);
    };
    let Some(cache) = &runtime.cache else {
        return Ok(None);
    };
    ensure_warm_in::<B>(
        cache,
        runtime.level,
        config,
        device,
        ctx.progress,
        ctx.cancel,
    )
    .map(Some)
}

/// [`ensure_warm`] with the cache and level named (tests, `gpu-warmup`).
pub fn ensure_warm_in<B: AutodiffBackend>(
    cache: &KernelCache,
    level: AutotuneLevel,
    config: &Config,
    device: &B::Device,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<WarmUp, EngineError> {
    let signature = signature(config, level);
    if let Some(record) = cache.warm_record(&signature) {
        return Ok(WarmUp {
            tuned: 0,
            seconds: record.seconds,
            skipped: true,
            workloads: Vec::new(),
        });
    }
    let done = warm_up::<B>(
        config,
        device,
        progress,
        cancel,
        expected_tuning(cache, &signature),
    )?;
    let record = WarmRecord {
        signature,
        tuned: done.tuned,
        seconds: done.seconds,
    };
    // A record that cannot be written costs a warm-up next time, nothing more.
    if let Err(e) = cache.mark_warm(&record) {
        eprintln!(
            "warning: cannot record the GPU warm-up in {}: {e}",
            cache.dir.display()
        );
    }
    Ok(done)
}

/// How many kernels a cold warm-up of `signature`'s shapes tuned before,
/// on any GPU or driver under the cache's root or by an earlier nextslice
/// (the keys cubecl tunes depend on the shapes, hardly on the GPU); `None`
/// where none that tuned any finished.
pub fn expected_tuning(cache: &KernelCache, signature: &str) -> Option<u64> {
    let shapes = shapes_of(signature);
    cache
        .earlier_warm_up(|other| other.tuned > 0 && shapes_of(&other.signature) == shapes)
        .map(|record| record.tuned)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::device::CpuBackend;

    struct Recorder(Mutex<Vec<(String, u64, u64, String)>>);

    impl Progress for Recorder {
        fn update(&self, u: &ProgressUpdate<'_>) {
            let mut seen = self.0.lock().unwrap();
            seen.push((u.stage.into(), u.done, u.total, u.detail.into()));
        }
    }

    fn tiny_config() -> Config {
        let mut config = Config::preset(crate::config::Preset::Demo);
        config.slicing.size = [16, 16];
        config.unet.widths = vec![2, 4];
        config.unet.bottleneck = 4;
        config.vae.widths = vec![2, 4];
        config.unet.batch_size = 2;
        config.vae.batch_size = 2;
        config
    }

    #[test]
    fn a_project_whose_strategies_use_the_loss_head_warms_it_up_too() {
        let mut config = tiny_config();
        assert_eq!(Workload::of(&config), Workload::ALL);
        let level = AutotuneLevel::Minimal;
        let without = signature(&config, level);
        config.simulate.strategies.push(Strategy::LearningLoss);
        assert_eq!(Workload::of(&config).last(), Some(&Workload::LossHead));
        assert_ne!(signature(&config, level), without);
        let device = Default::default();
        let cancel = AtomicBool::new(false);
        let progress = crate::progress::Silent;
        let done = warm_up::<CpuBackend>(&config, &device, &progress, &cancel, None).unwrap();
        let said: Vec<&str> = done.workloads.iter().map(|w| w.what.as_str()).collect();
        assert_eq!(said.len(), 6, "{said:?}");
        assert_eq!(said[5], Workload::LossHead.describe(&config));
    }

    #[test]
    fn a_warm_up_runs_every_workload_once_then_the_record_skips_it() {
        let config = tiny_config();
        let root = tempfile::tempdir().unwrap();
        let cache = KernelCache::for_gpu(root.path(), "Test GPU", "1.0");
        let progress = Recorder(Mutex::new(Vec::new()));
        let cancel = AtomicBool::new(false);
        let device = Default::default();
        let level = AutotuneLevel::Minimal;
        let first =
            ensure_warm_in::<CpuBackend>(&cache, level, &config, &device, &progress, &cancel)
                .unwrap();
        assert!(!first.skipped);
        let seen = progress.0.lock().unwrap().clone();
        assert!(
            seen.iter()
                .all(|(stage, _, total, _)| stage == TUNING_STAGE && *total == 5)
        );
        let last = seen.last().unwrap();
        assert_eq!((last.1, last.2), (5, 5), "ends at 5 of 5: {seen:?}");
        for workload in Workload::ALL {
            let what = workload.describe(&config);
            assert!(
                seen.iter().any(|s| s.3.starts_with(&what)),
                "{what} reported: {seen:?}"
            );
        }
        let said: Vec<String> = first.workloads.iter().map(|w| w.what.clone()).collect();
        let expected: Vec<String> = Workload::ALL.map(|w| w.describe(&config)).into();
        assert_eq!(said, expected, "each workload's share, in order");
        assert!(
            first
                .workloads
                .iter()
                .all(|w| w.seconds > 0.0 && w.tuned == 0)
        );
        let record = cache.warm_record(&signature(&config, level)).unwrap();
        assert_eq!(record.tuned, first.tuned);

        let again =
            ensure_warm_in::<CpuBackend>(&cache, level, &config, &device, &progress, &cancel)
                .unwrap();
        assert!(
            again.skipped,
            "the record makes a second warm-up unnecessary"
        );
        assert!(again.workloads.is_empty(), "nothing ran: {again:?}");

        let mut wider = config.clone();
        wider.unet.batch_size = 4;
        assert_ne!(signature(&wider, level), signature(&config, level));
        assert_ne!(
            signature(&config, AutotuneLevel::Balanced),
            signature(&config, level)
        );
    }

    #[test]
    fn an_earlier_warm_up_of_the_same_shapes_makes_the_progress_count_kernels() {
        let config = tiny_config();
        let level = AutotuneLevel::Minimal;
        let root = tempfile::tempdir().unwrap();
        let cache = KernelCache::for_gpu(root.path(), "Test GPU", "2.0");
        let signature = signature(&config, level);
        assert_eq!(expected_tuning(&cache, &signature), None, "first here");
        // Another driver's warm-up of the same shapes, by an older nextslice.
        let elsewhere = KernelCache::for_gpu(root.path(), "Test GPU", "1.0");
        let older = format!("nextslice 0.0.1 · {}", shapes_of(&signature));
        let record = |signature: String, tuned| WarmRecord {
            signature,
            tuned,
            seconds: 90.0,
        };
        elsewhere.mark_warm(&record(older, 12)).unwrap();
        let mut wider = config.clone();
        wider.unet.batch_size = 4;
        let other_shapes = super::signature(&wider, level);
        elsewhere.mark_warm(&record(other_shapes, 99)).unwrap();
        assert_eq!(expected_tuning(&cache, &signature), Some(12));

        let progress = Recorder(Mutex::new(Vec::new()));
        let cancel = AtomicBool::new(false);
        ensure_warm_in::<CpuBackend>(
            &cache,
            level,
            &config,
            &Default::default(),
            &progress,
            &cancel,
        )
        .unwrap();
        let seen = progress.0.lock().unwrap().clone();
        let (last, running) = seen.split_last().unwrap();
        assert_eq!((last.1, last.2), (5, 5), "ends with the workloads");
        // The CPU tunes nothing: 0 of the 12 kernels expected, workload by
        // workload.
        assert!(
            running
                .iter()
                .all(|(_, done, total, _)| (*done, *total) == (0, 12)),
            "{seen:?}"
        );
        for n in 1..=5 {
            assert!(
                running
                    .iter()
                    .any(|s| s.3.contains(&format!("workload {n} of 5"))),
                "workload {n} said: {seen:?}"
            );
        }
        // What this warm-up tuned (none) is no estimate for the next one.
        let cache = KernelCache::for_gpu(root.path(), "Test GPU", "3.0");
        assert_eq!(expected_tuning(&cache, &signature), Some(12));
    }

    #[test]
    fn past_the_estimate_the_progress_counts_workloads_again() {
        let at = |tuned| Position {
            workload: 1,
            workloads: 5,
            tuned,
            expected: Some(40),
        };
        assert_eq!(at(39).progress(), (39, 40, "kernels"));
        assert_eq!(at(39).note().as_deref(), Some("workload 2 of 5"));
        assert_eq!(at(40).progress(), (1, 5, "workloads"));
        assert!(at(41).note().unwrap().contains("more kernels than the 40"));
        let first_here = Position {
            expected: None,
            ..at(7)
        };
        assert_eq!(first_here.progress(), (1, 5, "workloads"));
        assert_eq!(first_here.note(), None);
    }

    #[test]
    fn a_cancel_stops_the_warm_up_before_the_next_workload() {
        let cancel = AtomicBool::new(true);
        let result = warm_up::<CpuBackend>(
            &tiny_config(),
            &Default::default(),
            &crate::progress::Silent,
            &cancel,
            None,
        );
        assert!(matches!(result, Err(EngineError::Cancelled)));
    }
}
