//! When the store truly changed under a project (files rewritten with new
//! content, cases added), its latents and derived masks belong to the old
//! store. Rather than strand the project (the VAE can only be trained in
//! NeedVae), the pool is re-encoded with the existing VAE and every
//! labelled slice's class map is derived again from the mask file its
//! import kept; the step then says what changed.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::models::load_vae;
use super::train_vae::encode_pool;
use crate::layout::LATENTS_FILE;
use crate::masks::{derived_path, rederive};
use crate::project::{Project, RoundState, latents};
use crate::store::{SliceIndex, SliceStore};

/// Brings the latents and derived masks to the current store; `None` when
/// they already belong to it (or there is no VAE yet), else one line on
/// what changed.
pub fn reconcile_store<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    store: &SliceStore,
    index: &SliceIndex,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Option<String>, EngineError> {
    if state.vae.is_none() {
        return Ok(None);
    }
    let key = &store.meta().key;
    let path = project.path(LATENTS_FILE);
    let old = latents::key_of(&path);
    if old.as_ref() == Some(key) {
        return Ok(None);
    }
    // Masks first: re-encoding is the slow part, and a crash between the
    // two must leave the latents' key stale so that this runs again.
    let mut rederived = 0;
    let (mut absent, mut failed) = (Vec::new(), Vec::new());
    for labelled in &state.labelled {
        if index.id(&labelled.key).is_none() {
            absent.push(labelled.key.to_string());
            continue;
        }
        let target = derived_path(&project.dir, &labelled.key);
        match rederive(
            &project.config,
            store.meta(),
            &labelled.key,
            &project.path(&labelled.mask),
        ) {
            Ok(classes) => {
                crate::fsutil::write_atomic(&target, &classes).map_err(EngineError::io(&target))?;
                rederived += 1;
            }
            // The kept file no longer fits the new store (a mask drawn on
            // the old store's grid): kept, but never trained on stale.
            Err(e) => {
                let _ = std::fs::remove_file(&target);
                failed.push(format!("{} ({e})", labelled.key));
            }
        }
    }
    let vae = load_vae::<B>(project, state, device)?.valid();
    let encoded = encode_pool::<B>(&vae, store, ctx, device)?;
    latents::save(&path, key, &encoded).map_err(EngineError::io(&path))?;
    let what = match old {
        Some(old) => format!("the slice store changed ({old} → {key})"),
        None => "the pool's latents were missing".to_string(),
    };
    let mut line = format!(
        "{what}: {} slices re-encoded with the existing VAE, {rederived} labelled masks derived again from their files",
        store.len()
    );
    if !failed.is_empty() {
        line += &format!(
            "; {} masks no longer fit the store and are left out of training until imported again: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    if !absent.is_empty() {
        line += &format!(
            "; {} labelled slices are not in the new store (masks kept): {}",
            absent.len(),
            absent.join(", ")
        );
    }
    Ok(Some(line))
}
