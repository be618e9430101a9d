//! The first step: train the VAE on the pool (every non-test slice), then
//! encode every store slice to the latent table the sampling searches.
//! NeedVae → Seeding.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, VAE_BATCH, to_host};
use crate::layout::{LATENTS_FILE, VAE_CHECKPOINTS, VAE_FILE};
use crate::model::loss::{VaeLoss, vae_loss};
use crate::model::{Mode, Vae, VaeSpec};
use crate::project::{Phase, Project, VaeQuality, latents};
use crate::store::SliceStore;
use crate::strategy::Latents;
use crate::train::{VaeTraining, clear_checkpoints, save_model, train_vae};

/// Trains the VAE and encodes the pool; returns a one-line summary.
pub fn train_vae_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<String, EngineError> {
    let mut state = project.state()?;
    state.expect(Phase::NeedVae, "train the VAE")?;
    let (store, index) = ctx.open_store(project, &state)?;
    let pool = index.pool();
    let config = &project.config;
    B::seed(device, config.sampling.seed);
    let model = VaeSpec::from_config(config).init::<B>(device);
    let job = VaeTraining {
        store: &store,
        slices: &pool,
        config: &config.vae,
        seed: config.sampling.seed,
        checkpoints: &project.path(VAE_CHECKPOINTS),
    };
    let trained = train_vae(&job, model, device, ctx.observer, ctx.cancel)?;
    if trained.outcome.cancelled {
        return Err(EngineError::Cancelled);
    }
    save_model::<B, _>(&project.path(VAE_FILE), &trained.model)?;
    let vae = trained.model.valid();
    let latents = encode_pool::<B>(&vae, &store, ctx, device)?;
    let path = project.path(LATENTS_FILE);
    latents::save(&path, &store.meta().key, &latents).map_err(EngineError::io(path))?;
    let last = trained
        .outcome
        .epoch_losses
        .last()
        .copied()
        .unwrap_or(f64::NAN);
    let test: Vec<usize> = (0..index.len()).filter(|&i| index.is_test(i)).collect();
    let quality = measure::<B>(&vae, &store, &test, config.vae.kl_weight, last, ctx, device)?;
    state.vae = Some(VAE_FILE.into());
    state.vae_quality = quality.clone();
    project.commit(&mut state, Phase::Seeding, "VAE trained", ctx.log)?;
    clear_checkpoints(&project.path(VAE_CHECKPOINTS));
    let quality = quality
        .map(|q| format!("; {}", q.describe()))
        .unwrap_or_default();
    Ok(format!(
        "VAE trained on {} slices ({} epochs, final loss {last:.1}); pool encoded{quality}",
        pool.len(),
        trained.outcome.epochs_completed
    ))
}

/// Eq. 1 on the test volumes' slices, which the VAE never saw: how well
/// the manifold the suggestions search covers unseen anatomy. The
/// reconstruction is decoded from the posterior mean (no sampling), so
/// the figures are deterministic. `None` without test slices.
pub(super) fn measure<B: AutodiffBackend>(
    vae: &Vae<B::InnerBackend>,
    store: &SliceStore,
    test: &[usize],
    kl_weight: f64,
    train_loss: f64,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Option<VaeQuality>, EngineError> {
    if test.is_empty() {
        return Ok(None);
    }
    let (mut squared, mut kl) = (0f64, 0f64);
    let pass = Pass::new("VAE quality", "test slices", VAE_BATCH);
    pass.run::<B::InnerBackend>(store, test, ctx, device, |batch, x| {
        let n = batch.rows.len() as f64;
        let loss = quality_loss(vae, x, batch.weights(device));
        squared += n * f64::from(to_host(loss.reconstruction)?[0]);
        kl += n * f64::from(to_host(loss.kl)?[0]);
        Ok(())
    })?;
    let slices = test.len() as f64;
    let pixels = store.meta().pixels() * store.meta().channels();
    let (reconstruction, kl) = (squared / slices, kl / slices);
    Ok(Some(VaeQuality {
        slices: test.len(),
        mse_per_pixel: reconstruction / pixels as f64,
        reconstruction,
        kl,
        loss: reconstruction + kl_weight * kl,
        train_loss,
    }))
}

/// The VAE's loss terms on a batch, as `vae_loss` gives them (sums over
/// the rows, divided by their count), with the reconstruction decoded from
/// the posterior mean. Rows of weight 0 (a pass's padding) add nothing to
/// either sum: a zeroed row's KL term is 0 too. Weighted always, even by
/// ones, so a padded batch runs the very kernels of a whole one.
pub(super) fn quality_loss<Bk: Backend>(
    vae: &Vae<Bk>,
    x: Tensor<Bk, 4>,
    weights: Tensor<Bk, 1>,
) -> VaeLoss<Bk> {
    let n = weights.dims()[0];
    let (mean, log_var) = vae.encode(x.clone(), Mode::Eval);
    let reconstruction = vae.decode(mean.clone(), Mode::Eval);
    let (rows, images) = (
        weights.clone().reshape([n, 1]),
        weights.reshape([n, 1, 1, 1]),
    );
    vae_loss(
        reconstruction * images.clone(),
        x * images,
        mean * rows.clone(),
        log_var * rows,
    )
}

/// Posterior means of every store slice, in batches.
pub(super) fn encode_pool<B: AutodiffBackend>(
    vae: &Vae<B::InnerBackend>,
    store: &SliceStore,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Latents, EngineError> {
    let mut values = Vec::new();
    let ids: Vec<usize> = (0..store.len()).collect();
    let pass = Pass::new("encode pool", "", VAE_BATCH);
    pass.run::<B::InnerBackend>(store, &ids, ctx, device, |batch, x| {
        values.extend_from_slice(batch.real(&to_host(vae.encode_mean(x))?));
        Ok(())
    })?;
    Ok(Latents {
        dim: values.len() / store.len().max(1),
        values,
    })
}
