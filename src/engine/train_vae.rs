//! The first step: train the VAE on the pool (every non-test slice), then
//! encode every store slice to the latent table the sampling searches.
//! NeedVae → Seeding.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, to_host};
use crate::layout::{LATENTS_FILE, VAE_CHECKPOINTS, VAE_FILE};
use crate::model::{Vae, VaeSpec};
use crate::project::{Phase, Project, latents};
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
    let latents = encode_pool::<B>(&trained.model.valid(), &store, ctx, device)?;
    let path = project.path(LATENTS_FILE);
    latents::save(&path, &store.meta().key, &latents).map_err(EngineError::io(path))?;
    state.vae = Some(VAE_FILE.into());
    project.commit(&mut state, Phase::Seeding, "VAE trained", ctx.log)?;
    clear_checkpoints(&project.path(VAE_CHECKPOINTS));
    let last = trained
        .outcome
        .epoch_losses
        .last()
        .copied()
        .unwrap_or(f64::NAN);
    Ok(format!(
        "VAE trained on {} slices ({} epochs, final loss {last:.1}); pool encoded",
        pool.len(),
        trained.outcome.epochs_completed
    ))
}

/// Posterior means of every store slice, in batches.
fn encode_pool<B: AutodiffBackend>(
    vae: &Vae<B::InnerBackend>,
    store: &SliceStore,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Latents, EngineError> {
    let mut values = Vec::new();
    let ids: Vec<usize> = (0..store.len()).collect();
    let pass = Pass::new("encode pool", "", 32);
    pass.run::<B::InnerBackend>(store, &ids, ctx, device, |_, x, _| {
        values.extend(to_host(vae.encode_mean(x))?);
        Ok(())
    })?;
    Ok(Latents {
        dim: values.len() / store.len().max(1),
        values,
    })
}
