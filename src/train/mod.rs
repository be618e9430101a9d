//! Training loops for the VAE and the U-Net: Adam with the paper's settings,
//! batches streamed from the slice store (prefetched on a second thread),
//! progress events for the worker and the UI, a cancel flag checked between
//! batches, and an atomic checkpoint every epoch from which an interrupted
//! run resumes exactly.
//!
//! Imports config, fsutil, gpu (the Adam kernel), model, rng and store.

mod adam;
mod batches;
mod checkpoint;
mod epochs;
mod unet;
mod vae;

pub use adam::{Adam, adam};
pub use batches::{MaskSource, StoreMasks};
pub use checkpoint::{load_model, save_model};

/// Deletes a finished run's checkpoints.
pub fn clear_checkpoints(dir: &std::path::Path) {
    checkpoint::Checkpoints::new(dir).clear();
}
pub use unet::{LossHeadTraining, UnetTraining, train_unet, train_unet_with_loss_head};
pub use vae::{VaeTraining, train_vae};

use std::path::PathBuf;

use crate::store::StoreError;

/// Which network is training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    Vae,
    Unet,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Network::Vae => "VAE",
            Network::Unet => "U-Net",
        }
    }
}

/// What a training loop reports.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    /// Training (re)starts; `from_epoch` > 0 when resuming a checkpoint.
    Started {
        network: Network,
        from_epoch: usize,
        epochs: usize,
        slices: usize,
    },
    /// After every batch.
    Batch(BatchProgress),
    /// After every epoch, once its checkpoint is on disk.
    EpochDone {
        network: Network,
        epoch: usize,
        epochs: usize,
        mean_loss: f64,
        checkpoint: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchProgress {
    pub network: Network,
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// 1-based within the epoch.
    pub batch: usize,
    pub batches: usize,
    pub loss: f64,
    /// Smoothed throughput in the run's slices (a filled batch's copies
    /// left out).
    pub slices_per_second: f64,
    /// Estimated seconds to the end of the last epoch.
    pub eta_seconds: f64,
}

/// Receives training events (the worker writes them to its event log).
pub trait TrainObserver: Sync {
    fn event(&self, event: &TrainEvent);
}

/// Ignores events.
pub struct NoObserver;

impl TrainObserver for NoObserver {
    fn event(&self, _: &TrainEvent) {}
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    /// Epochs completed in total (including those before a resume).
    pub epochs_completed: usize,
    /// The epoch count found in the checkpoint, if the run resumed.
    pub resumed_from: Option<usize>,
    pub cancelled: bool,
    /// Mean training loss of every completed epoch.
    pub epoch_losses: Vec<f64>,
}

/// A trained model and how training went.
pub struct Trained<M> {
    pub model: M,
    pub outcome: TrainOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("nothing to train on: {0}")]
    NoData(String),
    #[error("the loss became {0} — training diverged; lower the learning rate")]
    Diverged(f64),
}
