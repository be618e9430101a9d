//! Training (and fine-tuning) the U-Net on the labelled slices with the
//! multi-class soft Dice loss (Eq. 2), Adam, and augmentation.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::{BatchSource, MaskSource};
use super::epochs::EpochLoop;
use super::{Network, TrainError, TrainObserver, Trained};
use crate::config::{AugmentConfig, UnetConfig};
use burn::module::AutodiffModule;

use crate::model::loss::{dice_loss_from_logits, dice_loss_per_slice_from_logits, one_hot};
use crate::model::{Mode, UNet, UNetWithLossHead, ranking_loss};
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

/// Trains `model` for `config.epochs_for(slices)` epochs, resuming from the
/// checkpoint directory when it holds an unfinished run of the same work.
pub fn train_unet<B: AutodiffBackend>(
    job: &UnetTraining<'_>,
    model: UNet<B>,
    device: &B::Device,
    observer: &dyn TrainObserver,
    cancel: &AtomicBool,
) -> Result<Trained<UNet<B>>, TrainError> {
    run_segmentation(
        job,
        model,
        "unet",
        device,
        observer,
        cancel,
        |model, x, y, _, _| dice_loss_from_logits(model.forward(x, Mode::Train).logits, y),
    )
}

/// The learning-loss baseline's training (Yoo & Kweon 2019): the U-Net's
/// Dice loss plus `weight` × the ranking loss of its loss head, which reads
/// the U-Net's features; from epoch `detach_epoch` on, the head's gradient
/// no longer reaches the U-Net.
pub struct LossHeadTraining {
    pub margin: f64,
    pub weight: f64,
    pub detach_epoch: usize,
}

pub fn train_unet_with_loss_head<B: AutodiffBackend>(
    job: &UnetTraining<'_>,
    model: UNetWithLossHead<B>,
    head: &LossHeadTraining,
    device: &B::Device,
    observer: &dyn TrainObserver,
    cancel: &AtomicBool,
) -> Result<Trained<UNetWithLossHead<B>>, TrainError> {
    let kind = format!(
        "unet+loss-head {} {} {}",
        head.margin, head.weight, head.detach_epoch
    );
    run_segmentation(
        job,
        model,
        &kind,
        device,
        observer,
        cancel,
        |model, x, y, slices, epoch| head.loss(model, x, y, slices, epoch),
    )
}

impl LossHeadTraining {
    /// A batch's loss in `epoch` (from 0): the mean Dice loss plus the
    /// weighted ranking loss of the head's predictions; `slices` holds the
    /// slice of each row.
    pub fn loss<B: AutodiffBackend>(
        &self,
        model: &UNetWithLossHead<B>,
        x: Tensor<B, 4>,
        y: Tensor<B, 4>,
        slices: &[usize],
        epoch: usize,
    ) -> Tensor<B, 1> {
        let out = model.unet.forward(x, Mode::Train);
        let per_slice = dice_loss_per_slice_from_logits(out.logits.clone(), y);
        let mut features = out.loss_head_features();
        if epoch >= self.detach_epoch {
            features = features.into_iter().map(Tensor::detach).collect();
        }
        let predicted = model.head.forward(&features);
        let ranking = ranking_loss(predicted, per_slice.clone().detach(), self.margin, slices);
        per_slice.mean() + ranking.mul_scalar(self.weight)
    }
}

/// The epoch loop over labelled slices shared by both: batches as image
/// tensors and one-hot masks, `loss(model, x, y, slices, epoch)`.
fn run_segmentation<B: AutodiffBackend, M: AutodiffModule<B>>(
    job: &UnetTraining<'_>,
    model: M,
    kind: &str,
    device: &B::Device,
    observer: &dyn TrainObserver,
    cancel: &AtomicBool,
    loss: impl Fn(&M, Tensor<B, 4>, Tensor<B, 4>, &[usize], usize) -> Tensor<B, 1>,
) -> Result<Trained<M>, TrainError> {
    if job.slices.is_empty() {
        return Err(TrainError::NoData("no labelled slices".into()));
    }
    let meta = job.store.meta();
    let (c, h, w) = (meta.channels(), meta.height, meta.width);
    let classes = meta.label_values.len();
    let fingerprint = format!(
        "{kind} {:?} {:?} {:?} {} {:?}",
        job.slices, job.config, job.augment, job.seed, meta.key
    );
    let run = EpochLoop {
        network: Network::Unet,
        epochs: job.config.epochs_for(job.slices.len()),
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
    let optimizer = super::adam::<B, M>();
    run.run(
        model,
        optimizer,
        device,
        observer,
        cancel,
        |model: &M, batch, _, epoch| {
            let n = batch.ids.len();
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
            loss(model, x, y, &batch.ids, epoch)
        },
    )
}
