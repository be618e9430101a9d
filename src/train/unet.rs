//! Training (and fine-tuning) the U-Net on the labelled slices with the
//! multi-class soft Dice loss (Eq. 2), Adam, and augmentation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::{BatchSource, MaskSource, epoch_plan};
use super::checkpoint::Checkpoints;
use super::{BatchProgress, Phase, TrainError, TrainEvent, TrainObserver, TrainOutcome, Trained};
use crate::config::{AugmentConfig, UnetConfig};
use crate::model::loss::{dice_loss_from_logits, one_hot};
use crate::model::{Mode, UNet};
use crate::rng::Rng;
use crate::store::SliceStore;

/// What to train on and how.
pub struct UnetTraining<'a> {
    pub store: &'a SliceStore,
    pub masks: &'a dyn MaskSource,
    /// Store ids of the labelled slices.
    pub slices: &'a [usize],
    pub config: &'a UnetConfig,
    pub augment: &'a AugmentConfig,
    pub seed: u64,
    /// Where this run's checkpoints live (one directory per run).
    pub checkpoints: &'a Path,
}

impl UnetTraining<'_> {
    /// Identifies the work, so that only a checkpoint of this very run resumes.
    fn fingerprint(&self) -> String {
        let text = format!(
            "unet {:?} {:?} {:?} {} {:?}",
            self.slices,
            self.config,
            self.augment,
            self.seed,
            self.store.meta().key
        );
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }
}

/// Smoothed throughput and the ETA it implies.
pub(super) struct Speed {
    started: Instant,
    rate: Option<f64>,
}

impl Speed {
    pub(super) fn new() -> Self {
        Speed {
            started: Instant::now(),
            rate: None,
        }
    }

    /// Records `slices` done since the last call; returns slices per second.
    pub(super) fn tick(&mut self, slices: usize) -> f64 {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.started = Instant::now();
        let now = slices as f64 / elapsed;
        let rate = match self.rate {
            Some(r) => 0.8 * r + 0.2 * now,
            None => now,
        };
        self.rate = Some(rate);
        rate
    }
}

/// Trains `model` for `config.epochs_per_round` epochs, resuming from the
/// checkpoint directory when it holds an unfinished run of the same work.
pub fn train_unet<B: AutodiffBackend>(
    job: &UnetTraining<'_>,
    model: UNet<B>,
    device: &B::Device,
    observer: &dyn TrainObserver,
    cancel: &AtomicBool,
) -> Result<Trained<UNet<B>>, TrainError> {
    if job.slices.is_empty() {
        return Err(TrainError::NoData("no labelled slices".into()));
    }
    let meta = job.store.meta();
    let (c, h, w) = (meta.channels(), meta.height, meta.width);
    let classes = meta.label_values.len();
    let epochs = job.config.epochs_per_round;
    let fingerprint = job.fingerprint();
    let checkpoints = Checkpoints::new(job.checkpoints);

    let mut model = model;
    let mut optimizer = AdamConfig::new().init::<B, UNet<B>>();
    let mut rng = Rng::new(job.seed, 0x756e_6574);
    let mut losses = Vec::new();
    let mut resumed_from = None;
    match checkpoints.state()? {
        Some(state) if state.fingerprint == fingerprint && state.phase == Phase::Unet => {
            (model, optimizer) = checkpoints.restore(&state, model, optimizer, device)?;
            rng = state.rng.clone();
            losses = state.epoch_losses.clone();
            resumed_from = Some(state.epochs_completed);
        }
        Some(_) => checkpoints.clear(),
        None => {}
    }
    let start = resumed_from.unwrap_or(0);
    observer.event(&TrainEvent::Started {
        phase: Phase::Unet,
        from_epoch: start,
        epochs,
        slices: job.slices.len(),
    });

    let source = BatchSource {
        store: job.store,
        masks: Some(job.masks),
        augment: Some(job.augment),
    };
    let mut speed = Speed::new();
    let mut cancelled = false;
    for epoch in start..epochs {
        let plan = epoch_plan(job.slices, job.config.batch_size, &mut rng);
        let batches = plan.len();
        let mut total = 0.0;
        source.stream(&plan, |index, batch| -> Result<bool, TrainError> {
            if cancel.load(Ordering::Relaxed) {
                cancelled = true;
                return Ok(false);
            }
            let n = batch.len;
            let x = Tensor::<B, 4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
            let labels: Vec<i64> = batch
                .masks
                .unwrap_or_default()
                .iter()
                .map(|&v| i64::from(v))
                .collect();
            let y = one_hot(
                Tensor::<B, 3, Int>::from_data(TensorData::new(labels, [n, h, w]), device),
                classes,
            );
            let loss = dice_loss_from_logits(model.forward(x, Mode::Train).logits, y);
            let value = f64::from(loss.clone().into_scalar().elem::<f32>());
            if !value.is_finite() {
                return Err(TrainError::Diverged(value));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(job.config.lr, model.clone(), grads);
            total += value;
            let rate = speed.tick(n);
            let remaining = (batches - index - 1) + (epochs - epoch - 1) * batches;
            observer.event(&TrainEvent::Batch(BatchProgress {
                phase: Phase::Unet,
                epoch: epoch + 1,
                epochs,
                batch: index + 1,
                batches,
                loss: value,
                slices_per_second: rate,
                eta_seconds: remaining as f64 * job.config.batch_size.min(job.slices.len()) as f64
                    / rate.max(1e-9),
            }));
            Ok(true)
        })?;
        if cancelled {
            break;
        }
        losses.push(total / batches as f64);
        let path = checkpoints.save(
            Phase::Unet,
            &fingerprint,
            epoch + 1,
            &rng,
            &losses,
            &model,
            &optimizer,
        )?;
        observer.event(&TrainEvent::EpochDone {
            phase: Phase::Unet,
            epoch: epoch + 1,
            epochs,
            mean_loss: *losses.last().unwrap_or(&f64::NAN),
            checkpoint: path,
        });
    }
    Ok(Trained {
        model,
        outcome: TrainOutcome {
            epochs_completed: losses.len(),
            resumed_from,
            cancelled,
            epoch_losses: losses,
        },
    })
}
