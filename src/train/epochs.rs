//! The epoch loop both trainers share: resume from a matching checkpoint,
//! shuffle and stream batches, step Adam, report progress, honour cancel,
//! and checkpoint after every epoch. Only the loss differs between models.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::{BatchSource, HostBatch, epoch_plan};
use super::checkpoint::Checkpoints;
use super::{BatchProgress, Network, TrainError, TrainEvent, TrainObserver, TrainOutcome, Trained};
use crate::rng::Rng;

/// Smoothed throughput.
struct Speed {
    started: Instant,
    rate: Option<f64>,
}

impl Speed {
    /// Records `slices` done since the last call; returns slices per second.
    fn tick(&mut self, slices: usize) -> f64 {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.started = Instant::now();
        let now = slices as f64 / elapsed;
        let rate = self.rate.map_or(now, |r| 0.8 * r + 0.2 * now);
        self.rate = Some(rate);
        rate
    }
}

/// One training run's settings.
pub(super) struct EpochLoop<'a> {
    pub network: Network,
    pub epochs: usize,
    pub batch_size: usize,
    /// Every batch of `batch_size` slices (`epoch_plan`'s `whole`).
    pub whole_batches: bool,
    pub lr: f64,
    pub slices: &'a [usize],
    /// Identifies the work, so only a checkpoint of this very run resumes.
    pub fingerprint: String,
    pub checkpoints: &'a Path,
    /// Seed and stream of the run's generator (shuffles, augmentation, noise).
    pub seed: (u64, u64),
    pub source: BatchSource<'a>,
}

impl EpochLoop<'_> {
    /// Trains `model`; `loss(model, batch, batch_seed, epoch)` gives a
    /// batch's loss (epoch counted from 0).
    pub fn run<B, M, O>(
        &self,
        model: M,
        optimizer: O,
        device: &B::Device,
        observer: &dyn TrainObserver,
        cancel: &AtomicBool,
        mut loss: impl FnMut(&M, HostBatch, u64, usize) -> Tensor<B, 1>,
    ) -> Result<Trained<M>, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let (network, epochs) = (self.network, self.epochs);
        let checkpoints = Checkpoints::new(self.checkpoints);
        let (mut model, mut optimizer) = (model, optimizer);
        let mut rng = Rng::new(self.seed.0, self.seed.1);
        let mut losses = Vec::new();
        let mut resumed_from = None;
        match checkpoints.state()? {
            Some(state) if state.fingerprint == self.fingerprint && state.network == network => {
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
            network,
            from_epoch: start,
            epochs,
            slices: self.slices.len(),
        });

        let mut speed = Speed {
            started: Instant::now(),
            rate: None,
        };
        let mut cancelled = false;
        let per_batch = if self.whole_batches {
            self.batch_size
        } else {
            self.batch_size.min(self.slices.len())
        } as f64;
        for epoch in start..epochs {
            let plan = epoch_plan(self.slices, self.batch_size, self.whole_batches, &mut rng);
            let batches = plan.len();
            let mut total = 0.0;
            self.source
                .stream(&plan, |index, batch| -> Result<bool, TrainError> {
                    if cancel.load(Ordering::Relaxed) {
                        cancelled = true;
                        return Ok(false);
                    }
                    let n = batch.ids.len();
                    let value = loss(&model, batch, plan[index].1, epoch);
                    let scalar = f64::from(value.clone().into_scalar().elem::<f32>());
                    if !scalar.is_finite() {
                        return Err(TrainError::Diverged(scalar));
                    }
                    let grads = GradientsParams::from_grads(value.backward(), &model);
                    model = optimizer.step(self.lr, model.clone(), grads);
                    total += scalar;
                    let rate = speed.tick(n);
                    let remaining = (batches - index - 1) + (epochs - epoch - 1) * batches;
                    observer.event(&TrainEvent::Batch(BatchProgress {
                        network,
                        epoch: epoch + 1,
                        epochs,
                        batch: index + 1,
                        batches,
                        loss: scalar,
                        slices_per_second: rate,
                        eta_seconds: remaining as f64 * per_batch / rate.max(1e-9),
                    }));
                    Ok(true)
                })?;
            if cancelled {
                break;
            }
            losses.push(total / batches as f64);
            let path = checkpoints.save(
                network,
                &self.fingerprint,
                epoch + 1,
                &rng,
                &losses,
                &model,
                &optimizer,
            )?;
            observer.event(&TrainEvent::EpochDone {
                network,
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
}
