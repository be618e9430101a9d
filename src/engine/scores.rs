//! Passes of the last round's U-Net(s) over the candidates, for the
//! strategies that rank by what the model thinks of a slice: uncertainty
//! and the oracle's per-slice error, the learning-loss head's predicted
//! loss, and DAL's ensemble disagreement with its members' features. Every
//! result is indexed by store id, NaN for slices that are not candidates.

use burn::prelude::*;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, UNET_BATCH, class_map, to_host};
use crate::config::Strategy;
use crate::model::{LossHead, Mode, UNet};
use crate::store::SliceStore;
use crate::strategy::dal::disagreement;
use crate::strategy::oracle::oracle_score;
use crate::strategy::uncertainty::Measure;

/// Strategies that rank the candidates by a score from the U-Net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    Uncertainty(Measure),
    Oracle,
}

impl Scoring {
    pub fn of(strategy: Strategy) -> Option<Scoring> {
        match strategy {
            Strategy::LeastConfidence => Some(Scoring::Uncertainty(Measure::LeastConfidence)),
            Strategy::Margin => Some(Scoring::Uncertainty(Measure::Margin)),
            Strategy::Entropy => Some(Scoring::Uncertainty(Measure::Entropy)),
            Strategy::Oracle => Some(Scoring::Oracle),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scoring::Uncertainty(m) => m.name(),
            Scoring::Oracle => "oracle",
        }
    }
}

/// Scores every candidate with the U-Net: the uncertainty of its softmax,
/// or for the oracle 1 − Dice against the ground truth.
pub fn score_candidates<Bk: Backend>(
    model: &UNet<Bk>,
    store: &SliceStore,
    candidates: &[usize],
    scoring: Scoring,
    ctx: &StepContext<'_>,
    device: &Bk::Device,
) -> Result<Vec<f32>, EngineError> {
    if scoring == Scoring::Oracle && candidates.iter().any(|&i| !store.has_label(i)) {
        return Err(EngineError::OracleWithoutTruth);
    }
    let meta = store.meta();
    let (k, plane) = (meta.label_values.len(), meta.height * meta.width);
    let mut scores = vec![f32::NAN; store.len()];
    let pass = Pass::new("score candidates", scoring.name(), UNET_BATCH)
        .with_labels(scoring == Scoring::Oracle);
    pass.run::<Bk>(store, candidates, ctx, device, |batch, x| {
        let probabilities = model.probabilities(x, Mode::Eval);
        match scoring {
            Scoring::Uncertainty(measure) => {
                let p = to_host(probabilities)?;
                for (j, &id) in batch.ids.iter().enumerate() {
                    scores[id] = measure.slice_score(&p[j * k * plane..(j + 1) * k * plane], k);
                }
            }
            Scoring::Oracle => {
                let predicted = class_map(probabilities)?;
                for (j, &id) in batch.ids.iter().enumerate() {
                    let span = j * plane..(j + 1) * plane;
                    scores[id] = oracle_score(&predicted[span.clone()], &batch.labels[span], k);
                }
            }
        }
        Ok(())
    })?;
    Ok(scores)
}

/// The learning-loss head's predicted loss for every candidate: higher
/// means the U-Net is expected to do worse.
pub fn predicted_losses<Bk: Backend>(
    unet: &UNet<Bk>,
    head: &LossHead<Bk>,
    store: &SliceStore,
    candidates: &[usize],
    ctx: &StepContext<'_>,
    device: &Bk::Device,
) -> Result<Vec<f32>, EngineError> {
    let mut scores = vec![f32::NAN; store.len()];
    let pass = Pass::new("predict losses", "learning-loss", UNET_BATCH);
    pass.run::<Bk>(store, candidates, ctx, device, |batch, x| {
        let features = unet.forward(x, Mode::Eval).loss_head_features();
        for (&id, p) in batch.ids.iter().zip(to_host(head.forward(&features))?) {
            scores[id] = p;
        }
        Ok(())
    })?;
    Ok(scores)
}

/// DAL's inputs for every candidate: the ensemble's disagreement, and its
/// members' bottleneck features (each averaged over the bottleneck's
/// pixels) side by side — concatenated, not averaged, as members started
/// from different weights and their channels do not correspond.
pub struct DalInputs {
    pub uncertainty: Vec<f32>,
    /// `dim` values per store slice.
    pub features: Vec<f32>,
    pub dim: usize,
}

pub fn dal_inputs<Bk: Backend>(
    ensemble: &[UNet<Bk>],
    store: &SliceStore,
    candidates: &[usize],
    ctx: &StepContext<'_>,
    device: &Bk::Device,
) -> Result<DalInputs, EngineError> {
    let meta = store.meta();
    let classes = meta.label_values.len();
    let per_slice = classes * meta.height * meta.width;
    let mut uncertainty = vec![f32::NAN; store.len()];
    let mut features: Vec<f32> = Vec::new();
    let mut dim = 0;
    let pass = Pass::new("ensemble disagreement", "dal", UNET_BATCH);
    pass.run::<Bk>(store, candidates, ctx, device, |batch, x| {
        let n = batch.rows.len();
        let mut probabilities = Vec::with_capacity(ensemble.len());
        let mut pooled_by_member = Vec::with_capacity(ensemble.len());
        let mut width = 0;
        for model in ensemble {
            let out = model.forward(x.clone(), Mode::Eval);
            let pooled = out.pooled_bottleneck();
            width = pooled.dims()[1];
            pooled_by_member.push(to_host(pooled)?);
            probabilities.push(to_host(
                burn::tensor::activation::softmax(out.logits, 1).reshape([n, per_slice]),
            )?);
        }
        dim = width * ensemble.len();
        if features.is_empty() {
            features = vec![0.0; store.len() * dim];
        }
        for (j, &id) in batch.ids.iter().enumerate() {
            let slices: Vec<&[f32]> = probabilities
                .iter()
                .map(|p| &p[j * per_slice..(j + 1) * per_slice])
                .collect();
            uncertainty[id] = disagreement(&slices, classes);
            for (m, pooled) in pooled_by_member.iter().enumerate() {
                let at = id * dim + m * width;
                features[at..at + width].copy_from_slice(&pooled[j * width..(j + 1) * width]);
            }
        }
        Ok(())
    })?;
    Ok(DalInputs {
        uncertainty,
        features,
        dim,
    })
}
