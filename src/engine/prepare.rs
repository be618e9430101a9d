//! What each strategy needs before it can search, computed by one
//! `prepare` per strategy family and returned owned: the pool's latents
//! (ClsMC), latents and gradient sources (gradient-guided), per-slice
//! scores (uncertainty, oracle, learning loss), DAL's disagreement and
//! features — and the U-Nets loaded on the way, which then predict the
//! suggested slices for the TUI.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::gradient::{StepLength, gradient_sources};
use super::models::{load_loss_head, load_unet, load_unets, load_vae, pool_latents};
use super::scores::{DalInputs, Scoring, dal_inputs, predicted_losses, score_candidates};
use crate::config::{GradientStep, Strategy};
use crate::masks::ProjectMasks;
use crate::model::UNet;
use crate::project::{Project, RoundState, SliceIndex};
use crate::store::SliceStore;
use crate::strategy::step::{median_step, nn_median};
use crate::strategy::{
    ClusterMaxCover, Dal, GradientGuided, GradientSource, Latents, RandomSampling, RankedByScore,
    SamplingStrategy, StepReport,
};

/// The round a suggestion is prepared for.
pub struct Round<'a> {
    pub project: &'a Project,
    pub state: &'a RoundState,
    pub store: &'a SliceStore,
    pub index: &'a SliceIndex,
    /// Pool slices neither labelled nor awaiting a mask, by store id.
    pub candidates: &'a [usize],
}

/// What a strategy searches over.
pub enum Inputs {
    Random,
    Clsmc {
        latents: Latents,
    },
    Gradient {
        latents: Latents,
        sources: Vec<GradientSource>,
        /// Eq. 6's bound; `None` for the ablation without it.
        max_angle_deg: Option<f64>,
        /// The round's step length (its pick counts filled in by `suggest`).
        step: StepReport,
    },
    Ranked {
        name: &'static str,
        /// By store id; higher is asked first.
        scores: Vec<f32>,
    },
    Dal {
        inputs: DalInputs,
        candidates: usize,
        picks: usize,
    },
}

impl Inputs {
    /// The search, borrowing these inputs.
    pub fn strategy(&self) -> Box<dyn SamplingStrategy + '_> {
        match self {
            Inputs::Random => Box::new(RandomSampling),
            Inputs::Clsmc { .. } => Box::new(ClusterMaxCover::default()),
            Inputs::Gradient { max_angle_deg, .. } => Box::new(GradientGuided {
                max_angle_deg: *max_angle_deg,
            }),
            Inputs::Ranked { name, scores } => Box::new(RankedByScore { name, scores }),
            Inputs::Dal {
                inputs,
                candidates,
                picks,
            } => Box::new(Dal {
                uncertainty: &inputs.uncertainty,
                features: &inputs.features,
                dim: inputs.dim,
                candidates: *candidates,
                picks: *picks,
            }),
        }
    }

    pub fn latents(&self) -> Option<&Latents> {
        match self {
            Inputs::Clsmc { latents } | Inputs::Gradient { latents, .. } => Some(latents),
            _ => None,
        }
    }

    /// The gradient step taken this round, for gradient-guided sampling.
    pub fn step(&self) -> Option<&StepReport> {
        match self {
            Inputs::Gradient { step, .. } => Some(step),
            _ => None,
        }
    }

    pub fn sources(&self) -> &[GradientSource] {
        match self {
            Inputs::Gradient { sources, .. } => sources,
            _ => &[],
        }
    }
}

/// A strategy's inputs, and the U-Nets that predict the suggested slices
/// (none when the strategy loaded none).
pub struct Prepared<Bk: Backend> {
    pub inputs: Inputs,
    pub predictors: Vec<UNet<Bk>>,
}

impl<Bk: Backend> Prepared<Bk> {
    fn without_model(inputs: Inputs) -> Self {
        Prepared {
            inputs,
            predictors: Vec::new(),
        }
    }

    /// Candidates ranked by `scores` from `unet`, which then predicts.
    fn ranked(name: &'static str, scores: Vec<f32>, unet: UNet<Bk>) -> Self {
        Prepared {
            inputs: Inputs::Ranked { name, scores },
            predictors: vec![unet],
        }
    }
}

/// Prepares `kind`'s inputs for `round`.
pub fn prepare<B: AutodiffBackend>(
    kind: Strategy,
    round: &Round<'_>,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Prepared<B::InnerBackend>, EngineError> {
    match kind {
        Strategy::Random => Ok(Prepared::without_model(Inputs::Random)),
        // Representative annotation (Zheng et al. 2019) in the VAE latent
        // space: the paper runs it once for the whole budget; here it picks
        // each round's batch from the slices still unlabelled.
        Strategy::Clsmc => Ok(Prepared::without_model(Inputs::Clsmc {
            latents: pool_latents(round.project, round.store)?,
        })),
        Strategy::Gradient | Strategy::GradientNoAngle => {
            prepare_gradient::<B>(kind, round, ctx, device)
        }
        Strategy::LearningLoss => prepare_learning_loss::<B>(round, ctx, device),
        Strategy::Dal => prepare_dal::<B>(round, ctx, device),
        other => {
            let scoring = Scoring::of(other).ok_or(EngineError::NoSuggestionStep(other))?;
            let unet = load_unet::<B>(round.project, round.state, device)?.valid();
            let scores =
                score_candidates(&unet, round.store, round.candidates, scoring, ctx, device)?;
            Ok(Prepared::ranked(scoring.name(), scores, unet))
        }
    }
}

/// Gradient-guided sampling: the pool's latents and, for every labelled
/// slice, z and z' (Eq. 3–4).
fn prepare_gradient<B: AutodiffBackend>(
    kind: Strategy,
    round: &Round<'_>,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Prepared<B::InnerBackend>, EngineError> {
    let Round {
        project,
        state,
        store,
        index,
        candidates,
    } = *round;
    let unet = load_unet::<B>(project, state, device)?;
    let vae = load_vae::<B>(project, state, device)?.valid();
    let latents = pool_latents(project, store)?;
    let masks = ProjectMasks {
        project: &project.dir,
        index,
    };
    let labelled: Vec<usize> = state
        .labelled
        .iter()
        .filter_map(|l| index.id(&l.key))
        .filter(|&id| masks.has(id))
        .collect();
    let sampling = &project.config.sampling;
    let nn = nn_median(&latents, candidates);
    let length = match sampling.step {
        GradientStep::Literal => StepLength::Literal(sampling.alpha),
        GradientStep::Calibrated => StepLength::Calibrated {
            target: sampling.kappa * nn,
        },
    };
    let made = gradient_sources::<B>(
        &unet, &vae, store, &labelled, &masks, &latents, length, ctx, device,
    )?;
    let steps: Vec<Vec<f32>> = made.sources.iter().map(|s| s.step.clone()).collect();
    let step = StepReport {
        calibrated: sampling.step == GradientStep::Calibrated,
        alpha: made.alpha,
        median_step: median_step(&steps),
        nn_median: nn,
        sources: made.sources.len(),
        picks: 0,
        differ_from_zero_step: 0,
    };
    let max_angle_deg = (kind == Strategy::Gradient).then_some(sampling.max_angle_deg);
    Ok(Prepared {
        inputs: Inputs::Gradient {
            latents,
            sources: made.sources,
            max_angle_deg,
            step,
        },
        predictors: vec![unet.valid()],
    })
}

/// Learning loss: the loss head's predicted loss for every candidate.
fn prepare_learning_loss<B: AutodiffBackend>(
    round: &Round<'_>,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Prepared<B::InnerBackend>, EngineError> {
    let Some(head) = load_loss_head::<B>(round.project, round.state, device)? else {
        return Err(EngineError::TrainedWithout {
            strategy: Strategy::LearningLoss,
            needs: "ranks slices by the loss head trained with the U-Net",
        });
    };
    let unet = load_unet::<B>(round.project, round.state, device)?.valid();
    let scores = predicted_losses(&unet, &head, round.store, round.candidates, ctx, device)?;
    Ok(Prepared::ranked("learning-loss", scores, unet))
}

/// DAL: the bootstrap ensemble's disagreement and features.
fn prepare_dal<B: AutodiffBackend>(
    round: &Round<'_>,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Prepared<B::InnerBackend>, EngineError> {
    if round.state.ensemble.len() < 2 {
        return Err(EngineError::TrainedWithout {
            strategy: Strategy::Dal,
            needs: "suggests from the bootstrap ensemble its training makes",
        });
    }
    let ensemble = load_unets::<B>(round.project, round.state, device)?;
    let inputs = dal_inputs(&ensemble, round.store, round.candidates, ctx, device)?;
    let sampling = &round.project.config.sampling;
    Ok(Prepared {
        inputs: Inputs::Dal {
            inputs,
            candidates: sampling.dal_candidates,
            picks: sampling.dal_picks,
        },
        predictors: ensemble,
    })
}
