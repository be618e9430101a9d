//! Training the VAE on every pool slice (no labels needed) with the loss of
//! Eq. 1 and the paper's settings (Adam, lr 1e-4, batch 16, 50 epochs).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::{BatchSource, epoch_plan};
use super::checkpoint::Checkpoints;
use super::unet::Speed;
use super::{BatchProgress, Phase, TrainError, TrainEvent, TrainObserver, TrainOutcome, Trained};
use crate::config::VaeConfig;
use crate::model::loss::vae_loss;
use crate::model::{Mode, Vae};
use crate::rng::Rng;
use crate::store::SliceStore;

pub struct VaeTraining<'a> {
    pub store: &'a SliceStore,
    /// Store ids to learn the manifold from (normally the whole pool).
    pub slices: &'a [usize],
    pub config: &'a VaeConfig,
    pub seed: u64,
    pub checkpoints: &'a Path,
}

impl VaeTraining<'_> {
    fn fingerprint(&self) -> String {
        let text = format!(
            "vae {:?} {:?} {} {:?}",
            self.slices,
            self.config,
            self.seed,
            self.store.meta().key
        );
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }
}

/// Trains `model` for `config.epochs` epochs, resuming a matching checkpoint.
/// The reported loss is Eq. 1 per slice (summed squared error + weighted KL).
pub fn train_vae<B: AutodiffBackend>(
    job: &VaeTraining<'_>,
    model: Vae<B>,
    device: &B::Device,
    observer: &dyn TrainObserver,
    cancel: &AtomicBool,
) -> Result<Trained<Vae<B>>, TrainError> {
    if job.slices.is_empty() {
        return Err(TrainError::NoData("the slice pool is empty".into()));
    }
    let meta = job.store.meta();
    let (c, h, w) = (meta.channels(), meta.height, meta.width);
    let z = job.config.z_dim;
    let epochs = job.config.epochs;
    let fingerprint = job.fingerprint();
    let checkpoints = Checkpoints::new(job.checkpoints);

    let mut model = model;
    let mut optimizer = AdamConfig::new().init::<B, Vae<B>>();
    let mut rng = Rng::new(job.seed, 0x0076_6165);
    let mut losses = Vec::new();
    let mut resumed_from = None;
    match checkpoints.state()? {
        Some(state) if state.fingerprint == fingerprint && state.phase == Phase::Vae => {
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
        phase: Phase::Vae,
        from_epoch: start,
        epochs,
        slices: job.slices.len(),
    });

    let source = BatchSource {
        store: job.store,
        masks: None,
        augment: None,
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
            // Reparameterisation noise from the run's own generator, so a
            // resumed run draws exactly what an uninterrupted one would.
            let mut noise_rng = Rng::new(plan[index].1, 1);
            let noise: Vec<f32> = (0..n * z).map(|_| noise_rng.normal() as f32).collect();
            let x = Tensor::<B, 4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
            let noise = Tensor::<B, 2>::from_data(TensorData::new(noise, [n, z]), device);
            let out = model.forward(x.clone(), noise, Mode::Train);
            let loss =
                vae_loss(out.reconstruction, x, out.mean, out.log_var).total(job.config.kl_weight);
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
                phase: Phase::Vae,
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
            Phase::Vae,
            &fingerprint,
            epoch + 1,
            &rng,
            &losses,
            &model,
            &optimizer,
        )?;
        observer.event(&TrainEvent::EpochDone {
            phase: Phase::Vae,
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
