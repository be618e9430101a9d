//! Suggest the next batch. Seeding: a random `initial_fraction` of the
//! pool. Suggesting: the configured strategy, prepared by `prepare`, picks
//! `round_fraction` of the pool. The current U-Net's prediction of each
//! suggested slice is saved for the TUI. → AwaitingMasks.

use std::collections::{BTreeMap, HashSet};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, UNET_BATCH, class_map, predict};
use super::prepare::{Round, prepare};
use super::reconcile::reconcile_store;
use crate::config::{SamplingUnit, Strategy};
use crate::layout::{GRADIENT_STEP_FILE, SUGGESTIONS_FILE};
use crate::model::UNet;
use crate::project::{Pending, Phase, Project, SliceIndex, StateError};
use crate::rng::Rng;
use crate::store::SliceStore;
use crate::strategy::step::zero_step;
use crate::strategy::volume::volumes_by_vote;
use crate::strategy::{Request, StepReport, Suggestion};

/// Suggests a batch; returns a one-line summary.
pub fn suggest_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<String, EngineError> {
    let mut state = project.state()?;
    let config = &project.config;
    let seeding = match state.phase {
        Phase::Seeding => true,
        Phase::Suggesting => false,
        phase => {
            return Err(StateError::WrongPhase {
                action: "suggest slices",
                phase,
            }
            .into());
        }
    };
    let (store, index) = ctx.open_store(project, &state)?;
    let changed = reconcile_store::<B>(project, &state, &store, &index, ctx, device)?;
    let pool = index.pool().len();
    let candidates = index.candidates(state.taken());
    let fraction = if seeding {
        config.sampling.initial_fraction
    } else {
        config.sampling.round_fraction
    };
    let count = ((fraction * pool as f64).ceil() as usize).max(1);
    let round = if seeding { 0 } else { state.round + 1 };
    let mut rng = Rng::new(config.sampling.seed, 0x7375_6767 + round as u64);
    let kind = if seeding {
        Strategy::Random
    } else {
        config.sampling.strategy
    };

    let prepared = prepare::<B>(
        kind,
        &Round {
            project,
            state: &state,
            store: &store,
            index: &index,
            candidates: &candidates,
        },
        ctx,
        device,
    )?;
    let strategy = prepared.inputs.strategy();
    let name = strategy.name();
    let suggestions = strategy.suggest(Request {
        candidates: &candidates,
        count,
        latents: prepared.inputs.latents(),
        sources: prepared.inputs.sources(),
        rng: &mut rng,
    })?;
    if suggestions.is_empty() {
        return Err(EngineError::PoolExhausted);
    }
    let step = match prepared.inputs.step() {
        Some(step) => {
            // The same search with z′ put back on z: how much the step's
            // length, not only its direction, decides.
            let zero = strategy.suggest(Request {
                candidates: &candidates,
                count,
                latents: prepared.inputs.latents(),
                sources: &zero_step(prepared.inputs.sources()),
                rng: &mut Rng::new(config.sampling.seed, 0x7a65_726f + round as u64),
            })?;
            let zero: HashSet<usize> = zero.iter().map(|s| s.slice).collect();
            Some(StepReport {
                picks: suggestions.len(),
                differ_from_zero_step: suggestions
                    .iter()
                    .filter(|s| !zero.contains(&s.slice))
                    .count(),
                ..step.clone()
            })
        }
        None => None,
    };
    let (suggestions, volumes) = match config.sampling.unit {
        SamplingUnit::Slice => (suggestions, 0),
        SamplingUnit::Volume => whole_volumes(suggestions, &candidates, &index, count),
    };
    let pending: Vec<Pending> = suggestions
        .into_iter()
        .map(|s| Pending {
            key: index.key(s.slice).clone(),
            source: s.source.map(|i| index.key(i).clone()),
            detail: s,
        })
        .collect();
    if !prepared.predictors.is_empty() {
        let ids: Vec<usize> = pending.iter().map(|p| p.detail.slice).collect();
        write_predictions(
            project,
            &prepared.predictors,
            &store,
            &index,
            &ids,
            ctx,
            device,
        )?;
    }
    state.pending = pending;
    state.round = round;
    let log_path = project.round_dir(round).join(SUGGESTIONS_FILE);
    let json = serde_json::to_vec_pretty(&state.pending)
        .map_err(|e| EngineError::io(&log_path)(e.into()))?;
    crate::fsutil::write_atomic(&log_path, &json).map_err(EngineError::io(&log_path))?;
    if let Some(step) = &step {
        let path = project.round_dir(round).join(GRADIENT_STEP_FILE);
        let json = serde_json::to_vec_pretty(step).map_err(|e| EngineError::io(&path)(e.into()))?;
        crate::fsutil::write_atomic(&path, &json).map_err(EngineError::io(&path))?;
    }
    let step_line = step
        .as_ref()
        .map(|s| format!("; {}", s.describe()))
        .unwrap_or_default();
    state.gradient_step = step;
    let n = state.pending.len();
    let what = match config.sampling.unit {
        SamplingUnit::Slice => format!("{n} slices"),
        SamplingUnit::Volume if n > count => format!(
            "{n} slices in {volumes} whole volumes (over the round's {count}-slice budget: a volume is never split)"
        ),
        SamplingUnit::Volume => format!("{n} slices in {volumes} whole volumes"),
    };
    project.commit(
        &mut state,
        Phase::AwaitingMasks,
        &format!("{what} suggested ({name})"),
        ctx.log,
    )?;
    let changed = changed.map(|c| format!("{c}; ")).unwrap_or_default();
    Ok(format!(
        "{changed}round {round}: {what} suggested by {name} sampling ({:.1}% of the pool){step_line}",
        100.0 * n as f64 / pool as f64
    ))
}

/// Patient-wise suggestion: the slice picks vote for their volumes, and
/// every candidate slice of the chosen volumes is suggested (a pick keeps
/// its provenance, the rest are plain). Returns the suggestions, volume by
/// volume in slice order, and how many volumes they cover.
fn whole_volumes(
    picks: Vec<Suggestion>,
    candidates: &[usize],
    index: &SliceIndex,
    budget: usize,
) -> (Vec<Suggestion>, usize) {
    let mut by_case: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &id in candidates {
        by_case.entry(&index.key(id).case).or_default().push(id);
    }
    let ids: Vec<usize> = picks.iter().map(|s| s.slice).collect();
    let chosen = volumes_by_vote(
        &ids,
        |id| index.key(id).case.as_str(),
        |case| by_case.get(case).map_or(0, Vec::len),
        budget,
    );
    let mut picked: std::collections::HashMap<usize, Suggestion> =
        picks.into_iter().map(|s| (s.slice, s)).collect();
    let mut out = Vec::new();
    for case in &chosen {
        let mut slices = by_case.get(case).cloned().unwrap_or_default();
        slices.sort_by_key(|&id| index.key(id).slice);
        for id in slices {
            out.push(picked.remove(&id).unwrap_or_else(|| Suggestion::plain(id)));
        }
    }
    (out, chosen.len())
}

/// The current U-Net's class map for each of `ids`, written next to the
/// experts' masks so the TUI can overlay what the model thinks of a slice
/// before anyone draws it.
fn write_predictions<Bk: Backend>(
    project: &Project,
    models: &[UNet<Bk>],
    store: &SliceStore,
    index: &SliceIndex,
    ids: &[usize],
    ctx: &StepContext<'_>,
    device: &Bk::Device,
) -> Result<(), EngineError> {
    let plane = store.meta().height * store.meta().width;
    let pass = Pass::new("predict suggestions", "for the overlay", UNET_BATCH);
    pass.run::<Bk>(store, ids, ctx, device, |batch, x| {
        let classes = class_map(predict(models, x)?)?;
        for (j, &id) in batch.ids.iter().enumerate() {
            let map = &classes[j * plane..(j + 1) * plane];
            let path = crate::masks::predicted_path(&project.dir, index.key(id));
            crate::fsutil::write_atomic(&path, map).map_err(EngineError::io(&path))?;
        }
        Ok(())
    })
}
