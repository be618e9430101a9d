//! The project's trained models and latents, loaded for a step: the VAE,
//! the last round's U-Net (or DAL's ensemble), the learning-loss head, and
//! the pool's latents for the current store.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, Model};
use crate::layout::LATENTS_FILE;
use crate::model::{LossHead, UNet, UNetSpec, Vae, VaeSpec};
use crate::project::{Project, RoundState, latents};
use crate::store::SliceStore;
use crate::strategy::Latents;
use crate::train::load_model;

/// The project's latest U-Net.
pub fn load_unet<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    device: &B::Device,
) -> Result<UNet<B>, EngineError> {
    let path = state
        .unet
        .as_ref()
        .ok_or(EngineError::MissingModel(Model::Unet))?;
    let fresh = UNetSpec::from_config(&project.config).init::<B>(device);
    Ok(load_model::<B, _>(&project.path(path), fresh, device)?)
}

/// The last round's U-Nets for inference: DAL's bootstrap ensemble, else
/// the one U-Net.
pub fn load_unets<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    device: &B::Device,
) -> Result<Vec<UNet<B::InnerBackend>>, EngineError> {
    if state.ensemble.is_empty() {
        return Ok(vec![load_unet::<B>(project, state, device)?.valid()]);
    }
    let spec = UNetSpec::from_config(&project.config);
    state
        .ensemble
        .iter()
        .map(|path| {
            Ok(load_model::<B, _>(&project.path(path), spec.init::<B>(device), device)?.valid())
        })
        .collect()
}

/// The learning-loss head trained with the last U-Net, if it was.
pub fn load_loss_head<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    device: &B::Device,
) -> Result<Option<LossHead<B::InnerBackend>>, EngineError> {
    let Some(path) = &state.loss_head else {
        return Ok(None);
    };
    let fresh = UNetSpec::from_config(&project.config).loss_head::<B>(device);
    Ok(Some(
        load_model::<B, _>(&project.path(path), fresh, device)?.valid(),
    ))
}

/// The project's VAE.
pub fn load_vae<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    device: &B::Device,
) -> Result<Vae<B>, EngineError> {
    let path = state
        .vae
        .as_ref()
        .ok_or(EngineError::MissingModel(Model::Vae))?;
    let fresh = VaeSpec::from_config(&project.config).init::<B>(device);
    Ok(load_model::<B, _>(&project.path(path), fresh, device)?)
}

/// The pool's VAE latents for the current store.
pub fn pool_latents(project: &Project, store: &SliceStore) -> Result<Latents, EngineError> {
    latents::load(&project.path(LATENTS_FILE), &store.meta().key).ok_or(EngineError::NoLatents)
}
