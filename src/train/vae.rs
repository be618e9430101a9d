//! Training the VAE on every pool slice (no labels needed) with the loss of
//! Eq. 1 and the paper's settings (Adam, lr 1e-4, batch 16, 50 epochs).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::BatchSource;
use super::epochs::EpochLoop;
use super::{Network, TrainError, TrainObserver, Trained};
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
    let kl_weight = job.config.kl_weight;
    let fingerprint = format!(
        "vae {:?} {:?} {} {:?}",
        job.slices, job.config, job.seed, meta.key
    );
    let run = EpochLoop {
        network: Network::Vae,
        epochs: job.config.epochs,
        batch_size: job.config.batch_size,
        lr: job.config.lr,
        slices: job.slices,
        fingerprint: blake3::hash(fingerprint.as_bytes()).to_hex()[..16].to_string(),
        checkpoints: job.checkpoints,
        seed: (job.seed, 0x0076_6165),
        source: BatchSource {
            store: job.store,
            masks: None,
            augment: None,
        },
    };
    let optimizer = super::adam::<B, Vae<B>>();
    run.run(
        model,
        optimizer,
        device,
        observer,
        cancel,
        |model: &Vae<B>, batch, seed, _| {
            let n = batch.ids.len();
            // Reparameterisation noise from the run's own generator, so a
            // resumed run draws exactly what an uninterrupted one would.
            let mut noise_rng = Rng::new(seed, 1);
            let noise: Vec<f32> = (0..n * z).map(|_| noise_rng.normal() as f32).collect();
            let x = Tensor::<B, 4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
            let noise = Tensor::<B, 2>::from_data(TensorData::new(noise, [n, z]), device);
            let out = model.forward(x.clone(), noise, Mode::Train);
            vae_loss(out.reconstruction, x, out.mean, out.log_var).total(kl_weight)
        },
    )
}
