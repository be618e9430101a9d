//! Training (and fine-tuning) the U-Net on the labelled slices with the
//! multi-class soft Dice loss (Eq. 2), Adam, and augmentation.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::{BatchSource, MaskSource};
use super::epochs::EpochLoop;
use super::{Phase, TrainError, TrainObserver, Trained};
use crate::config::{AugmentConfig, UnetConfig};
use crate::model::loss::{dice_loss_from_logits, one_hot};
use crate::model::{Mode, UNet};
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
    let fingerprint = format!(
        "unet {:?} {:?} {:?} {} {:?}",
        job.slices, job.config, job.augment, job.seed, meta.key
    );
    let run = EpochLoop {
        phase: Phase::Unet,
        epochs: job.config.epochs_per_round,
        batch_size: job.config.batch_size,
        lr: job.config.lr,
        slices: job.slices,
        fingerprint: blake3::hash(fingerprint.as_bytes()).to_hex()[..16].to_string(),
        checkpoints: job.checkpoints,
        seed: (job.seed, 0x756e_6574),
        source: BatchSource {
            store: job.store,
            masks: Some(job.masks),
            augment: Some(job.augment),
        },
    };
    let optimizer = AdamConfig::new().init::<B, UNet<B>>();
    run.run(
        model,
        optimizer,
        device,
        observer,
        cancel,
        |model: &UNet<B>, batch, _| {
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
            dice_loss_from_logits(model.forward(x, Mode::Train).logits, y)
        },
    )
}
