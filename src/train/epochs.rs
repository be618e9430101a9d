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

/// Smoothed seconds per batch.
struct Pace {
    last: Instant,
    seconds_per_batch: Option<f64>,
}

impl Pace {
    /// Records a batch done since the last call; returns the smoothed pace.
    fn tick(&mut self) -> f64 {
        let seconds = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        self.record(seconds)
    }

    fn record(&mut self, seconds: f64) -> f64 {
        let pace = self
            .seconds_per_batch
            .map_or(seconds, |p| 0.8 * p + 0.2 * seconds);
        self.seconds_per_batch = Some(pace);
        pace
    }
}

/// A batch event's slices/s and ETA (s). Slices/s counts the run's
/// slices, `slices` per `batches` an epoch, and not a filled batch's
/// copies (`epoch_plan`'s `whole`): it says how fast the run gets through
/// its data, and a forecast divides slices × epochs by it.
fn rate_and_eta(slices: usize, batches: usize, seconds_per_batch: f64, left: usize) -> (f64, f64) {
    let pace = seconds_per_batch.max(1e-9);
    let per_batch = slices as f64 / batches.max(1) as f64;
    (per_batch / pace, left as f64 * pace)
}

/// One training run's settings.
pub(super) struct EpochLoop<'a> {
    pub network: Network,
    pub epochs: usize,
    pub batch_size: usize,
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

        let mut pace = Pace {
            last: Instant::now(),
            seconds_per_batch: None,
        };
        let mut cancelled = false;
        // Where each shape is tuned (a GPU), every batch is whole.
        let whole = crate::gpu::runtime::tunes_each_shape();
        for epoch in start..epochs {
            let plan = epoch_plan(self.slices, self.batch_size, whole, &mut rng);
            let batches = plan.len();
            let mut total = 0.0;
            self.source
                .stream(&plan, |index, batch| -> Result<bool, TrainError> {
                    if cancel.load(Ordering::Relaxed) {
                        cancelled = true;
                        return Ok(false);
                    }
                    let value = loss(&model, batch, plan[index].1, epoch);
                    let scalar = f64::from(value.clone().into_scalar().elem::<f32>());
                    if !scalar.is_finite() {
                        return Err(TrainError::Diverged(scalar));
                    }
                    let grads = GradientsParams::from_grads(value.backward(), &model);
                    model = optimizer.step(self.lr, model.clone(), grads);
                    total += scalar;
                    let left = (batches - index - 1) + (epochs - epoch - 1) * batches;
                    let (rate, eta) = rate_and_eta(self.slices.len(), batches, pace.tick(), left);
                    observer.event(&TrainEvent::Batch(BatchProgress {
                        network,
                        epoch: epoch + 1,
                        epochs,
                        batch: index + 1,
                        batches,
                        loss: scalar,
                        slices_per_second: rate,
                        eta_seconds: eta,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_per_second_leaves_out_a_filled_batchs_copies() {
        // 7 slices in one whole batch of 8: 7 slices per batch, not 8.
        assert_eq!(rate_and_eta(7, 1, 2.0, 3), (3.5, 6.0));
        // 20 slices in 3 batches (filled to 24, or 8 + 8 + 4).
        let (rate, eta) = rate_and_eta(20, 3, 0.5, 0);
        assert!((rate - 40.0 / 3.0).abs() < 1e-12, "{rate}");
        assert_eq!(eta, 0.0);
    }

    #[test]
    fn the_pace_is_smoothed_from_the_first_batch() {
        let mut pace = Pace {
            last: Instant::now(),
            seconds_per_batch: None,
        };
        assert_eq!(pace.record(1.0), 1.0);
        assert!((pace.record(2.0) - 1.2).abs() < 1e-12);
    }
}
