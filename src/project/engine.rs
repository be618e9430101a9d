//! The round engine: each step of a round as one function over a project.
//! Steps check the phase, do their work, make their outputs durable, and
//! only then commit the new state and log the transition — so a crash at any
//! point leaves the previous state, and re-running the step resumes it (model
//! training from its last epoch checkpoint).

use std::sync::atomic::AtomicBool;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::latents;
use super::slices::SliceIndex;
use super::state::{Pending, Phase, RoundRecord, RoundState};
use super::{Project, ProjectError};
use crate::config::Strategy;
use crate::eval;
use crate::masks::{self, ProjectMasks};
use crate::model::loss::one_hot;
use crate::model::{Mode, UNet, UNetSpec, UNetWithLossHead, Vae, VaeSpec, dice_gradient_wrt_input};
use crate::progress::{Progress, ProgressUpdate};
use crate::rng::Rng;
use crate::store::{SliceStore, StoreError, open_or_build};
use crate::strategy::oracle::oracle_score;
use crate::strategy::uncertainty::Measure;
use crate::strategy::{
    ClusterMaxCover, Dal, GradientGuided, GradientSource, Latents, RandomSampling, RankedByScore,
    Request, SamplingStrategy, StrategyError,
};
use crate::train::{
    LossHeadTraining, TrainError, TrainObserver, UnetTraining, VaeTraining, load_model, save_model,
    train_unet, train_unet_with_loss_head, train_vae,
};
use crate::worker::{Event, EventLog};

pub const VAE_FILE: &str = "models/vae.mpk";
pub const LATENTS_FILE: &str = "models/latents.bin";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Mask(#[from] masks::MaskError),
    #[error(transparent)]
    State(#[from] super::StateError),
    #[error("cancelled; run the step again to resume")]
    Cancelled,
    #[error(transparent)]
    Simulate(Box<crate::simulate::SimulateError>),
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::simulate::SimulateError> for EngineError {
    /// A step failing inside a simulation is that step's error (so a
    /// cancel stays a cancel).
    fn from(e: crate::simulate::SimulateError) -> EngineError {
        match e {
            crate::simulate::SimulateError::Engine(inner) => inner,
            other => EngineError::Simulate(Box::new(other)),
        }
    }
}

/// What a step needs besides the project: where to report, and when to stop.
pub struct StepContext<'a> {
    pub progress: &'a dyn Progress,
    pub observer: &'a dyn TrainObserver,
    pub cancel: &'a AtomicBool,
    pub log: &'a EventLog,
}

impl Project {
    /// The project's slice store, built on first use (or after the data changed).
    pub fn store(
        &self,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<SliceStore, EngineError> {
        let cases = self.discover()?.cases;
        Ok(open_or_build(&self.path("store"), &self.config, &cases, progress, cancel)?.0)
    }

    /// Moves the state to `to`, saves it (the commit point) and logs it.
    pub fn commit(
        &self,
        state: &mut RoundState,
        to: Phase,
        reason: &str,
        log: &EventLog,
    ) -> Result<(), EngineError> {
        let from = state.phase;
        state.phase = to;
        state.save(&self.dir)?;
        let _ = log.append(Event::Transition {
            from: format!("{from:?}"),
            to: format!("{to:?}"),
            round: state.round,
            reason: reason.to_string(),
        });
        Ok(())
    }

    /// The U-Net of `round`; member `member` of an ensemble of `members`.
    fn unet_file(round: usize, members: usize, member: usize) -> String {
        format!(
            "models/unet-round-{round:03}{}.mpk",
            member_suffix(members, member)
        )
    }
}

/// The seed of one U-Net training (initialisation, shuffling, augmentation,
/// bootstrap): hashed from the run's seed, the round and the member, so that
/// no two trainings of a simulation share a stream (with `seed + round`,
/// seed k's round r + 1 would repeat seed k + 1's round r).
fn training_seed(seed: u64, round: usize, member: usize) -> u64 {
    Rng::new(
        seed,
        0x7472_6169_6e00 ^ ((round as u64) << 8) ^ member as u64,
    )
    .next_u64()
}

fn member_suffix(members: usize, member: usize) -> String {
    if members > 1 {
        format!("-m{member}")
    } else {
        String::new()
    }
}

/// A trained U-Net, with its loss head for the learning-loss baseline.
struct TrainedMember<B: AutodiffBackend> {
    unet: UNet<B>,
    head: Option<crate::model::LossHead<B>>,
    epoch_losses: Vec<f64>,
}

/// Trains one U-Net (fine-tuning `previous` when there is one) — with its
/// loss head (fine-tuning `previous_head`) for the learning-loss baseline —
/// and fails on a cancel, so only finished models are saved.
fn train_member<B: AutodiffBackend>(
    project: &Project,
    previous: Option<&std::path::PathBuf>,
    previous_head: Option<&std::path::PathBuf>,
    job: &UnetTraining<'_>,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<TrainedMember<B>, EngineError> {
    let config = &project.config;
    let spec = UNetSpec::from_config(config);
    B::seed(device, job.seed);
    let unet = match previous {
        Some(previous) => {
            load_model::<B, _>(&project.path(previous), spec.init::<B>(device), device)?
        }
        None => spec.init::<B>(device),
    };
    if config.sampling.strategy != Strategy::LearningLoss {
        let trained = train_unet(job, unet, device, ctx.observer, ctx.cancel)?;
        if trained.outcome.cancelled {
            return Err(EngineError::Cancelled);
        }
        return Ok(TrainedMember {
            unet: trained.model,
            head: None,
            epoch_losses: trained.outcome.epoch_losses,
        });
    }
    let head = match previous_head {
        Some(path) => load_model::<B, _>(&project.path(path), spec.loss_head::<B>(device), device)?,
        None => spec.loss_head::<B>(device),
    };
    let settings = LossHeadTraining {
        margin: config.sampling.ll_margin,
        weight: config.sampling.ll_weight,
        detach_epoch: config.sampling.ll_detach_epoch,
    };
    let trained = train_unet_with_loss_head(
        job,
        UNetWithLossHead { unet, head },
        &settings,
        device,
        ctx.observer,
        ctx.cancel,
    )?;
    if trained.outcome.cancelled {
        return Err(EngineError::Cancelled);
    }
    Ok(TrainedMember {
        unet: trained.model.unet,
        head: Some(trained.model.head),
        epoch_losses: trained.outcome.epoch_losses,
    })
}

/// Train the VAE on the pool (every non-test slice), then encode every store
/// slice to the latent table the sampling searches. NeedVae → Seeding.
pub fn train_vae_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<String, EngineError> {
    let mut state = project.state()?;
    state.expect(Phase::NeedVae, "train the VAE")?;
    let store = project.store(ctx.progress, ctx.cancel)?;
    let index = SliceIndex::new(&store, &state.test_cases);
    let pool = index.pool();
    let config = &project.config;
    B::seed(device, config.sampling.seed);
    let model = VaeSpec::from_config(config).init::<B>(device);
    let job = VaeTraining {
        store: &store,
        slices: &pool,
        config: &config.vae,
        seed: config.sampling.seed,
        checkpoints: &project.path("checkpoints/vae"),
    };
    let trained = train_vae(&job, model, device, ctx.observer, ctx.cancel)?;
    if trained.outcome.cancelled {
        return Err(EngineError::Cancelled);
    }
    save_model::<B, _>(&project.path(VAE_FILE), &trained.model)?;
    let latents = encode_pool::<B>(&trained.model.valid(), &store, ctx, device)?;
    latents::save(&project.path(LATENTS_FILE), &store.meta().key, &latents)
        .map_err(|e| EngineError::Invalid(format!("cannot save latents: {e}")))?;
    state.vae = Some(VAE_FILE.into());
    project.commit(&mut state, Phase::Seeding, "VAE trained", ctx.log)?;
    crate::train::clear_checkpoints(&project.path("checkpoints/vae"));
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

/// The project's latest U-Net.
fn load_unet<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    device: &B::Device,
) -> Result<UNet<B>, EngineError> {
    let path = state
        .unet
        .as_ref()
        .ok_or_else(|| EngineError::Invalid("no trained U-Net yet; run train".into()))?;
    let fresh = UNetSpec::from_config(&project.config).init::<B>(device);
    Ok(load_model::<B, _>(&project.path(path), fresh, device)?)
}

/// The last round's U-Nets: DAL's bootstrap ensemble, else the one U-Net.
fn load_unets<B: AutodiffBackend>(
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

/// Class scores to take the argmax of: one U-Net's logits, or the mean of
/// an ensemble's softmax (DAL's prediction).
fn predict<Bk: Backend>(
    models: &[UNet<Bk>],
    x: Tensor<Bk, 4>,
) -> Result<Tensor<Bk, 4>, EngineError> {
    match models {
        [] => Err(EngineError::Invalid(
            "no trained U-Net to predict with".into(),
        )),
        [one] => Ok(one.forward(x, Mode::Eval).logits),
        many => {
            let mut sum: Option<Tensor<Bk, 4>> = None;
            for model in many {
                let p = model.probabilities(x.clone(), Mode::Eval);
                sum = Some(match sum {
                    Some(s) => s + p,
                    None => p,
                });
            }
            sum.map(|s| s.div_scalar(many.len() as f32))
                .ok_or_else(|| EngineError::Invalid("no trained U-Net to predict with".into()))
        }
    }
}

/// DAL's inputs for every candidate, by store id: the ensemble's
/// disagreement, and its members' bottleneck features (each averaged over
/// the bottleneck's pixels) side by side — concatenated, not averaged, as
/// members started from different weights and their channels do not
/// correspond. Returns (uncertainty, features, feature width).
fn dal_inputs<B: AutodiffBackend>(
    ensemble: &[UNet<B::InnerBackend>],
    store: &SliceStore,
    candidates: &[usize],
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<(Vec<f32>, Vec<f32>, usize), EngineError> {
    let meta = store.meta();
    let classes = meta.label_values.len();
    let per_slice = classes * meta.height * meta.width;
    let mut uncertainty = vec![f32::NAN; store.len()];
    let mut features: Vec<f32> = Vec::new();
    let mut dim = 0;
    let pass = Pass {
        stage: "ensemble disagreement",
        detail: "dal",
        batch: 16,
        labels: false,
    };
    pass.run::<B::InnerBackend>(store, candidates, ctx, device, |chunk, x, _| {
        let n = chunk.len();
        let mut probabilities = Vec::with_capacity(ensemble.len());
        let mut pooled_by_member = Vec::with_capacity(ensemble.len());
        let mut width = 0;
        for model in ensemble {
            let out = model.forward(x.clone(), Mode::Eval);
            probabilities.push(to_host(
                burn::tensor::activation::softmax(out.logits, 1).reshape([n, per_slice]),
            )?);
            let [_, c, _, _] = out.bottleneck.dims();
            pooled_by_member.push(to_host(
                out.bottleneck.mean_dim(3).mean_dim(2).reshape([n, c]),
            )?);
            width = c;
        }
        dim = width * ensemble.len();
        if features.is_empty() {
            features = vec![0.0; store.len() * dim];
        }
        for (j, &id) in chunk.iter().enumerate() {
            let slices: Vec<&[f32]> = probabilities
                .iter()
                .map(|p| &p[j * per_slice..(j + 1) * per_slice])
                .collect();
            uncertainty[id] = crate::strategy::dal::disagreement(&slices, classes);
            for (m, pooled) in pooled_by_member.iter().enumerate() {
                let at = id * dim + m * width;
                features[at..at + width].copy_from_slice(&pooled[j * width..(j + 1) * width]);
            }
        }
        Ok(())
    })?;
    Ok((uncertainty, features, dim))
}

/// The learning-loss head's predicted loss for every candidate, by store
/// id (NaN elsewhere): higher means the U-Net is expected to do worse.
fn predicted_losses<B: AutodiffBackend>(
    unet: &UNet<B::InnerBackend>,
    head: &crate::model::LossHead<B::InnerBackend>,
    store: &SliceStore,
    candidates: &[usize],
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Vec<f32>, EngineError> {
    let mut scores = vec![f32::NAN; store.len()];
    let pass = Pass {
        stage: "predict losses",
        detail: "learning-loss",
        batch: 16,
        labels: false,
    };
    pass.run::<B::InnerBackend>(store, candidates, ctx, device, |chunk, x, _| {
        let out = unet.forward(x, Mode::Eval);
        let mut features = vec![out.bottleneck];
        features.extend(out.decoder);
        for (&id, p) in chunk.iter().zip(to_host(head.forward(&features))?) {
            scores[id] = p;
        }
        Ok(())
    })?;
    Ok(scores)
}

/// The project's VAE.
fn load_vae<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    device: &B::Device,
) -> Result<Vae<B>, EngineError> {
    let path = state
        .vae
        .as_ref()
        .ok_or_else(|| EngineError::Invalid("no trained VAE yet; run train-vae".into()))?;
    let fresh = VaeSpec::from_config(&project.config).init::<B>(device);
    Ok(load_model::<B, _>(&project.path(path), fresh, device)?)
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
    let pass = Pass {
        stage: "encode pool",
        detail: "",
        batch: 32,
        labels: false,
    };
    pass.run::<B::InnerBackend>(store, &ids, ctx, device, |_, x, _| {
        values.extend(to_host(vae.encode_mean(x))?);
        Ok(())
    })?;
    Ok(Latents {
        dim: vae_dim(&values, store.len()),
        values,
    })
}

fn vae_dim(values: &[f32], n: usize) -> usize {
    values.len() / n.max(1)
}

/// Store slices `ids` as one model input [n, C, H, W] on `device`; their
/// ground-truth class maps go into `labels` when asked for. `images` is a
/// buffer reused across batches.
fn input_batch<Bk: Backend>(
    store: &SliceStore,
    ids: &[usize],
    images: &mut Vec<f32>,
    labels: Option<&mut Vec<u8>>,
    device: &Bk::Device,
) -> Result<Tensor<Bk, 4>, EngineError> {
    store.read_batch(ids, images, labels)?;
    let meta = store.meta();
    Ok(Tensor::from_data(
        TensorData::new(
            images.clone(),
            [ids.len(), meta.channels(), meta.height, meta.width],
        ),
        device,
    ))
}

/// A tensor's values on the host, as f32.
fn to_host<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Result<Vec<f32>, EngineError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| EngineError::Invalid(format!("{e:?}")))
}

/// One inference pass over store slices, the loop every scoring, encoding
/// and ensemble step shares: batches of `batch` as model inputs (with their
/// ground-truth class maps when `labels`), a stop on cancel, and progress
/// under `stage` after each batch.
struct Pass<'a> {
    stage: &'a str,
    detail: &'a str,
    batch: usize,
    labels: bool,
}

impl Pass<'_> {
    fn run<Bk: Backend>(
        &self,
        store: &SliceStore,
        ids: &[usize],
        ctx: &StepContext<'_>,
        device: &Bk::Device,
        mut each: impl FnMut(&[usize], Tensor<Bk, 4>, &[u8]) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for (k, chunk) in ids.chunks(self.batch.max(1)).enumerate() {
            if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let wanted = self.labels.then_some(&mut labels);
            let x = input_batch::<Bk>(store, chunk, &mut images, wanted, device)?;
            each(chunk, x, &labels)?;
            ctx.progress.update(&ProgressUpdate {
                stage: self.stage,
                done: ((k + 1) * self.batch).min(ids.len()) as u64,
                total: ids.len() as u64,
                unit: "slices",
                detail: self.detail,
            });
        }
        Ok(())
    }
}

/// The most likely class of every pixel of [n, K, H, W] class scores
/// (logits or probabilities), n·H·W values.
fn class_map<Bk: Backend>(scores: Tensor<Bk, 4>) -> Result<Vec<u8>, EngineError> {
    Ok(scores
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .map_err(|e| EngineError::Invalid(format!("{e:?}")))?
        .into_iter()
        .map(|k| k.clamp(0, 255) as u8)
        .collect())
}

/// The pool's VAE latents for the current store.
fn pool_latents(project: &Project, store: &SliceStore) -> Result<Latents, EngineError> {
    latents::load(&project.path(LATENTS_FILE), &store.meta().key).ok_or_else(|| {
        EngineError::Invalid("no VAE latents for the current slice store; run train-vae".into())
    })
}

/// Seeding: a random `initial_fraction` of the pool. Suggesting: the
/// configured strategy picks `round_fraction` of the pool. → AwaitingMasks.
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
        _ => {
            return Err(super::StateError::WrongPhase {
                action: "suggest slices",
                phase: state.phase,
            }
            .into());
        }
    };
    let store = project.store(ctx.progress, ctx.cancel)?;
    let index = SliceIndex::new(&store, &state.test_cases);
    let pool = index.pool().len();
    let candidates = index.candidates(&state);
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
    // Loaded once by the strategies that ask the U-Net trained last; it
    // then also predicts the suggested slices for the TUI.
    let mut unet = None;
    let mut ensemble = Vec::new();
    let mut latents = None;
    let mut sources = Vec::new();
    let scores: Vec<f32>;
    let (uncertainty, features): (Vec<f32>, Vec<f32>);
    let strategy: Box<dyn SamplingStrategy + '_> = match kind {
        Strategy::Random => Box::new(RandomSampling),
        // Representative annotation (Zheng et al. 2019) in the VAE latent
        // space: the paper runs it once for the whole budget; here it picks
        // each round's batch from the slices still unlabelled.
        Strategy::Clsmc => {
            latents = Some(pool_latents(project, &store)?);
            Box::new(ClusterMaxCover::default())
        }
        Strategy::Gradient | Strategy::GradientNoAngle => {
            let model = unet.insert(load_unet::<B>(project, &state, device)?);
            let pool = pool_latents(project, &store)?;
            sources = gradient_sources::<B>(project, &state, &store, &index, &pool, model, device)?;
            latents = Some(pool);
            Box::new(GradientGuided {
                max_angle_deg: (kind == Strategy::Gradient)
                    .then_some(config.sampling.max_angle_deg),
            })
        }
        Strategy::LearningLoss => {
            let Some(head) = &state.loss_head else {
                return Err(EngineError::Invalid(
                    "learning loss ranks slices by the loss head trained with the U-Net, and the last U-Net was trained without one; train a round with sampling.strategy = \"learning-loss\" first".into(),
                ));
            };
            let spec = UNetSpec::from_config(config);
            let head =
                load_model::<B, _>(&project.path(head), spec.loss_head::<B>(device), device)?
                    .valid();
            let model = unet.insert(load_unet::<B>(project, &state, device)?);
            scores =
                predicted_losses::<B>(&model.valid(), &head, &store, &candidates, ctx, device)?;
            Box::new(RankedByScore {
                name: "learning-loss",
                scores: &scores,
            })
        }
        Strategy::Dal => {
            if state.ensemble.len() < 2 {
                return Err(EngineError::Invalid(
                    "DAL suggests from the bootstrap ensemble its training makes, and the last U-Net was trained alone; train a round with sampling.strategy = \"dal\" first".into(),
                ));
            }
            ensemble = load_unets::<B>(project, &state, device)?;
            let dim;
            (uncertainty, features, dim) =
                dal_inputs::<B>(&ensemble, &store, &candidates, ctx, device)?;
            Box::new(Dal {
                uncertainty: &uncertainty,
                features: &features,
                dim,
                candidates: config.sampling.dal_candidates,
                picks: config.sampling.dal_picks,
            })
        }
        other => {
            let Some(scoring) = Scoring::of(other) else {
                return Err(EngineError::Invalid(format!(
                    "the {other:?} strategy has no suggestion step"
                )));
            };
            let model = unet.insert(load_unet::<B>(project, &state, device)?);
            scores =
                score_candidates::<B>(&model.valid(), &store, &candidates, scoring, ctx, device)?;
            Box::new(RankedByScore {
                name: scoring.name(),
                scores: &scores,
            })
        }
    };
    let name = strategy.name();
    let suggestions = strategy.suggest(Request {
        candidates: &candidates,
        count,
        latents: latents.as_ref(),
        sources: &sources,
        rng: &mut rng,
    })?;
    if suggestions.is_empty() {
        return Err(EngineError::Invalid(
            "no unlabelled slices are left to suggest".into(),
        ));
    }
    state.pending = suggestions
        .into_iter()
        .map(|s| Pending {
            key: index.key(s.slice).clone(),
            source: s.source.map(|i| index.key(i).clone()),
            detail: s,
        })
        .collect();
    if let Some(unet) = &unet {
        ensemble = vec![unet.valid()];
    }
    if !ensemble.is_empty() {
        let ids: Vec<usize> = state.pending.iter().map(|p| p.detail.slice).collect();
        write_predictions::<B>(project, &ensemble, &store, &index, &ids, device)?;
    }
    state.round = round;
    let log_path = project.round_dir(round).join("suggestions.json");
    let json = serde_json::to_vec_pretty(&state.pending)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    crate::fsutil::write_atomic(&log_path, &json)
        .map_err(|e| EngineError::Invalid(format!("{}: {e}", log_path.display())))?;
    let n = state.pending.len();
    project.commit(
        &mut state,
        Phase::AwaitingMasks,
        &format!("{n} slices suggested ({name})"),
        ctx.log,
    )?;
    Ok(format!(
        "round {round}: {n} slices suggested by {name} sampling ({:.1}% of the pool)",
        100.0 * n as f64 / pool as f64
    ))
}

/// Strategies that rank the candidates by a score from the U-Net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scoring {
    Uncertainty(Measure),
    Oracle,
}

impl Scoring {
    fn of(strategy: Strategy) -> Option<Scoring> {
        match strategy {
            Strategy::LeastConfidence => Some(Scoring::Uncertainty(Measure::LeastConfidence)),
            Strategy::Margin => Some(Scoring::Uncertainty(Measure::Margin)),
            Strategy::Entropy => Some(Scoring::Uncertainty(Measure::Entropy)),
            Strategy::Oracle => Some(Scoring::Oracle),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scoring::Uncertainty(m) => m.name(),
            Scoring::Oracle => "oracle",
        }
    }
}

/// Scores every candidate with the current U-Net (uncertainty of its
/// softmax, or for the oracle 1 − Dice against the ground truth); the
/// result is indexed by store id, NaN for slices that are not candidates.
fn score_candidates<B: AutodiffBackend>(
    model: &UNet<B::InnerBackend>,
    store: &SliceStore,
    candidates: &[usize],
    scoring: Scoring,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Vec<f32>, EngineError> {
    if scoring == Scoring::Oracle && candidates.iter().any(|&i| !store.has_label(i)) {
        return Err(EngineError::Invalid(
            "the oracle strategy needs ground truth for every unlabelled slice (it is for simulations on labelled datasets)".into(),
        ));
    }
    let meta = store.meta();
    let (k, plane) = (meta.label_values.len(), meta.height * meta.width);
    let mut scores = vec![f32::NAN; store.len()];
    let pass = Pass {
        stage: "score candidates",
        detail: scoring.name(),
        batch: 16,
        labels: scoring == Scoring::Oracle,
    };
    pass.run::<B::InnerBackend>(store, candidates, ctx, device, |chunk, x, labels| {
        let probabilities = model.probabilities(x, Mode::Eval);
        match scoring {
            Scoring::Uncertainty(measure) => {
                let p = to_host(probabilities)?;
                for (j, &id) in chunk.iter().enumerate() {
                    scores[id] = measure.slice_score(&p[j * k * plane..(j + 1) * k * plane], k);
                }
            }
            Scoring::Oracle => {
                let predicted = class_map(probabilities)?;
                for (j, &id) in chunk.iter().enumerate() {
                    let span = j * plane..(j + 1) * plane;
                    scores[id] = oracle_score(&predicted[span.clone()], &labels[span], k);
                }
            }
        }
        Ok(())
    })?;
    Ok(scores)
}

/// The current U-Net's class map for each of `ids`, written next to the
/// experts' masks so the TUI can overlay what the model thinks of a slice
/// before anyone draws it.
fn write_predictions<B: AutodiffBackend>(
    project: &Project,
    models: &[UNet<B::InnerBackend>],
    store: &SliceStore,
    index: &SliceIndex,
    ids: &[usize],
    device: &B::Device,
) -> Result<(), EngineError> {
    let plane = store.meta().height * store.meta().width;
    let mut images = Vec::new();
    for chunk in ids.chunks(16) {
        let x = input_batch::<B::InnerBackend>(store, chunk, &mut images, None, device)?;
        let classes = class_map(predict(models, x)?)?;
        for (j, &id) in chunk.iter().enumerate() {
            let map = &classes[j * plane..(j + 1) * plane];
            let path = crate::masks::predicted_path(&project.dir, index.key(id));
            crate::fsutil::write_atomic(&path, map)
                .map_err(|e| EngineError::Invalid(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// z and z' (Eq. 3–4) for every labelled slice, in batches.
fn gradient_sources<B: AutodiffBackend>(
    project: &Project,
    state: &RoundState,
    store: &SliceStore,
    index: &SliceIndex,
    latents: &Latents,
    unet: &UNet<B>,
    device: &B::Device,
) -> Result<Vec<GradientSource>, EngineError> {
    let config = &project.config;
    let vae = load_vae::<B>(project, state, device)?.valid();
    let meta = store.meta();
    let (c, h, w) = (meta.channels(), meta.height, meta.width);
    let classes = meta.label_values.len();
    let masks = ProjectMasks {
        project: &project.dir,
        index,
    };
    let ids: Vec<usize> = state
        .labelled
        .iter()
        .filter_map(|l| index.id(&l.key))
        .collect();
    let mut sources = Vec::with_capacity(ids.len());
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for chunk in ids.chunks(8) {
        let x = input_batch::<B::InnerBackend>(store, chunk, &mut images, None, device)?;
        labels.resize(chunk.len() * h * w, 0);
        for (k, &id) in chunk.iter().enumerate() {
            crate::train::MaskSource::mask(&masks, id, &mut labels[k * h * w..(k + 1) * h * w])?;
        }
        let n = chunk.len();
        let y: Vec<i64> = labels.iter().map(|&v| i64::from(v)).collect();
        let y = one_hot(
            Tensor::<B::InnerBackend, 3, Int>::from_data(TensorData::new(y, [n, h, w]), device),
            classes,
        );
        let g = dice_gradient_wrt_input::<B>(unet, x.clone(), y).gradient;
        let d = latents.dim;
        let alpha = config.sampling.alpha as f32;
        let values = to_host(g.clone())?;
        let per_slice = c * h * w;
        // Eq. 3–4: z' = g_φ(x + α·∂L/∂x). When the step α·∂L/∂x is below what
        // f32 activations resolve (typical: a Dice gradient of ~1e-4 per
        // pixel times α = 1e-3), g_φ(x + α∂L/∂x) − g_φ(x) is rounding noise.
        // Then z' is taken to first order, z' = z + α·J·∂L/∂x, with the
        // Jacobian-vector product from a central difference along the
        // gradient at a resolvable step (RMS 1e-2 per pixel).
        let mut steps = Vec::with_capacity(n);
        for k in 0..n {
            let slice = &values[k * per_slice..(k + 1) * per_slice];
            let rms = (slice.iter().map(|v| v * v).sum::<f32>() / per_slice as f32).sqrt();
            steps.push(rms);
        }
        let direct = steps.iter().all(|&rms| alpha * rms >= 1e-2);
        if direct {
            let z_prime = to_host(vae.encode_mean(x + g.mul_scalar(alpha)))?;
            for (k, &id) in chunk.iter().enumerate() {
                let z = latents.of(id).to_vec();
                let step = (0..d).map(|j| z_prime[k * d + j] - z[j]).collect();
                sources.push(GradientSource::new(id, z, step));
            }
        } else {
            // Scale each slice's gradient to RMS `probe` for the difference.
            let probe = 1e-2f32;
            let scales: Vec<f32> = steps
                .iter()
                .map(|&rms| if rms > 0.0 { probe / rms } else { 0.0 })
                .collect();
            let scale = Tensor::<B::InnerBackend, 1>::from_data(
                TensorData::new(scales.clone(), [n]),
                device,
            )
            .reshape([n, 1, 1, 1]);
            let delta = g * scale;
            let plus = to_host(vae.encode_mean(x.clone() + delta.clone()))?;
            let minus = to_host(vae.encode_mean(x - delta))?;
            for (k, &id) in chunk.iter().enumerate() {
                let z = latents.of(id).to_vec();
                // J·(s·g) ≈ (z₊ − z₋)/2, so α·J·g = α·(z₊ − z₋)/(2s).
                let factor = if scales[k] > 0.0 {
                    alpha / (2.0 * scales[k])
                } else {
                    0.0
                };
                let step = (0..d)
                    .map(|j| factor * (plus[k * d + j] - minus[k * d + j]))
                    .collect();
                sources.push(GradientSource::new(id, z, step));
            }
        }
    }
    Ok(sources)
}

/// (Fine-)train the U-Net on every labelled slice. Training → Suggesting,
/// or Done after the last configured round.
pub fn train_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<String, EngineError> {
    let mut state = project.state()?;
    state.expect(Phase::Training, "train the U-Net")?;
    let config = &project.config;
    let store = project.store(ctx.progress, ctx.cancel)?;
    let index = SliceIndex::new(&store, &state.test_cases);
    let slices: Vec<usize> = state
        .labelled
        .iter()
        .filter_map(|l| index.id(&l.key))
        .collect();
    if slices.len() != state.labelled.len() {
        return Err(EngineError::Invalid(
            "some labelled slices are no longer in the slice store (did the data change?)".into(),
        ));
    }
    let masks = ProjectMasks {
        project: &project.dir,
        index: &index,
    };
    // DAL trains a bootstrap ensemble; every other strategy one U-Net.
    let members = if config.sampling.strategy == Strategy::Dal {
        config.sampling.dal_models
    } else {
        1
    };
    let mut files = Vec::with_capacity(members);
    let mut losses: Vec<Vec<f64>> = Vec::with_capacity(members);
    let mut loss_head = None;
    for member in 0..members {
        let file = Project::unet_file(state.round, members, member);
        // A member finished before a crash or cancel is not trained again.
        if project.path(&file).exists() && members > 1 {
            files.push(std::path::PathBuf::from(&file));
            continue;
        }
        let previous = if members > 1 {
            state.ensemble.get(member)
        } else {
            state.unet.as_ref()
        };
        // Member m trains on its own resample, with replacement, of the
        // labelled slices (Yang et al. 2017's bootstrapping).
        let seed = training_seed(config.sampling.seed, state.round, member);
        let bootstrap: Vec<usize>;
        let training_set = if members > 1 {
            let mut rng = Rng::new(seed, 0x626f_6f74);
            bootstrap = (0..slices.len())
                .map(|_| slices[rng.below(slices.len())])
                .collect();
            &bootstrap
        } else {
            &slices
        };
        let trained = train_member::<B>(
            project,
            previous,
            state.loss_head.as_ref(),
            &UnetTraining {
                store: &store,
                masks: &masks,
                slices: training_set,
                config: &config.unet,
                augment: &config.augment,
                seed,
                checkpoints: &project.path(format!(
                    "checkpoints/unet-round-{:03}{}",
                    state.round,
                    member_suffix(members, member)
                )),
            },
            ctx,
            device,
        )?;
        save_model::<B, _>(&project.path(&file), &trained.unet)?;
        loss_head = match &trained.head {
            Some(head) => {
                let path = format!("models/loss-head-round-{:03}.mpk", state.round);
                save_model::<B, _>(&project.path(&path), head)?;
                Some(std::path::PathBuf::from(path))
            }
            None => None,
        };
        losses.push(trained.epoch_losses);
        files.push(std::path::PathBuf::from(&file));
    }
    state.unet = files.first().cloned();
    state.loss_head = loss_head;
    state.ensemble = if members > 1 { files } else { Vec::new() };
    // The members' mean loss per epoch (members resumed from a file report none).
    let epochs = losses.iter().map(Vec::len).max().unwrap_or(0);
    let train_losses: Vec<f64> = (0..epochs)
        .map(|e| {
            let v: Vec<f64> = losses.iter().filter_map(|l| l.get(e).copied()).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        })
        .collect();
    let pool = index.pool().len();
    state.history.retain(|r| r.round != state.round);
    state.history.push(RoundRecord {
        round: state.round,
        labelled: slices.len(),
        budget: slices.len() as f64 / pool.max(1) as f64,
        train_losses: train_losses.clone(),
        dice: Vec::new(),
        hd95: Vec::new(),
    });
    let next = if state.round >= config.sampling.rounds {
        Phase::Done
    } else {
        Phase::Suggesting
    };
    project.commit(&mut state, next, "U-Net trained", ctx.log)?;
    for member in 0..members {
        crate::train::clear_checkpoints(&project.path(format!(
            "checkpoints/unet-round-{:03}{}",
            state.round,
            member_suffix(members, member)
        )));
    }
    let last = train_losses.last().copied().unwrap_or(f64::NAN);
    let (what, loss) = match (members, config.sampling.strategy) {
        (1, Strategy::LearningLoss) => ("U-Net and loss head", "Dice + ranking loss"),
        (1, _) => ("U-Net", "Dice loss"),
        _ => ("bootstrap ensemble", "mean Dice loss"),
    };
    Ok(format!(
        "round {}: {what} trained on {} slices ({:.1}% of the pool), final {loss} {last:.3}",
        state.round,
        slices.len(),
        100.0 * slices.len() as f64 / pool as f64
    ))
}

/// Test-set scores: mean over the held-out volumes of each region's Dice
/// and HD95 (mm).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub dice: Vec<(String, f64)>,
    pub hd95: Vec<(String, f64)>,
    pub volumes: usize,
}

/// Predicts every stored slice of each held-out test volume, stacks the
/// slices back into 3D on the store's grid (slices not stored, having no
/// brain, are background in both), and scores each region with `eval`:
/// Dice, and HD95 in mm from the grid's spacing, with the BraTS conventions
/// for empty regions. Means are recorded on the last trained round (the
/// U-Net evaluated is the one trained last); the phase does not change.
pub fn evaluate_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Evaluation, EngineError> {
    let mut state = project.state()?;
    let config = &project.config;
    let store = project.store(ctx.progress, ctx.cancel)?;
    let index = SliceIndex::new(&store, &state.test_cases);
    let models = load_unets::<B>(project, &state, device)?;
    let meta = store.meta();
    let (h, w) = (meta.height, meta.width);
    let plane = h * w;
    let regions: Vec<eval::Region> = config
        .labels
        .evaluation_regions()
        .into_iter()
        .map(|r| {
            let values: Vec<i64> = r.values.iter().map(|&v| i64::from(v)).collect();
            eval::Region::new(r.name, &values)
        })
        .collect();
    let test_ids: Vec<usize> = (0..index.len()).filter(|&i| index.is_test(i)).collect();
    if test_ids.is_empty() {
        return Err(EngineError::Invalid(
            "the test set is empty (split.test_fraction = 0?)".into(),
        ));
    }
    if test_ids.iter().any(|&i| !store.has_label(i)) {
        return Err(EngineError::Invalid(
            "some test volumes have no label map; evaluation needs ground truth".into(),
        ));
    }
    let mut by_volume: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for &id in &test_ids {
        by_volume
            .entry(store.entries()[id].volume)
            .or_default()
            .push(id);
    }
    let label_value = |class: usize| meta.label_values.get(class).copied().unwrap_or(0);
    let depth_axis = config.slicing.axis.normal_axis();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut scores: Vec<Vec<eval::RegionScore>> = Vec::new();
    let mut cases: Vec<&str> = Vec::new();
    let mut done = 0;
    for (&volume, ids) in &by_volume {
        let record = meta.volumes.get(volume as usize).ok_or_else(|| {
            EngineError::Invalid(format!("slice store: no volume record {volume}"))
        })?;
        let depth = record.canonical_dims[depth_axis];
        let mut predicted_volume = vec![0u8; plane * depth];
        let mut true_volume = vec![0u8; plane * depth];
        for chunk in ids.chunks(16) {
            if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let x = input_batch::<B::InnerBackend>(
                &store,
                chunk,
                &mut images,
                Some(&mut labels),
                device,
            )?;
            let predicted = class_map(predict(&models, x)?)?;
            for (j, &id) in chunk.iter().enumerate() {
                let s = store.entries()[id].slice as usize;
                if s >= depth {
                    return Err(EngineError::Invalid(format!(
                        "slice store: slice {s} of {} is outside its {depth} slices",
                        record.case
                    )));
                }
                for p in 0..plane {
                    predicted_volume[s * plane + p] =
                        label_value(predicted[j * plane + p] as usize);
                    true_volume[s * plane + p] = label_value(labels[j * plane + p] as usize);
                }
            }
            done += chunk.len();
            ctx.progress.update(&ProgressUpdate {
                stage: "evaluate",
                done: done as u64,
                total: test_ids.len() as u64,
                unit: "slices",
                detail: &record.case,
            });
        }
        // Stored pixel (row, column) of slice s is voxel (column, row, s).
        let grid = eval::Grid::new([w, h, depth], record.grid_affine.spacing())
            .map_err(|e| EngineError::Invalid(format!("{}: {e}", record.case)))?;
        scores.push(
            eval::score_volume(&predicted_volume, &true_volume, &grid, &regions)
                .map_err(|e| EngineError::Invalid(format!("{}: {e}", record.case)))?,
        );
        cases.push(&record.case);
    }
    let mean = |r: usize, pick: fn(&eval::RegionScore) -> f64| {
        let values: Vec<f64> = scores.iter().map(|v| pick(&v[r])).collect();
        eval::summarize(&values).mean
    };
    let dice: Vec<(String, f64)> = regions
        .iter()
        .enumerate()
        .map(|(r, region)| (region.name.clone(), mean(r, |s| s.dice)))
        .collect();
    let hd95: Vec<(String, f64)> = regions
        .iter()
        .enumerate()
        .map(|(r, region)| (region.name.clone(), mean(r, |s| s.hd95)))
        .collect();
    // Per volume, for paired comparisons between runs (Wilcoxon by case).
    let mut csv = String::from("case,region,dice,hd95_mm\n");
    for (case, volume) in cases.iter().zip(&scores) {
        for score in volume {
            csv += &format!("{case},{},{},{}\n", score.region, score.dice, score.hd95);
        }
    }
    let scored_round = state.history.last().map_or(state.round, |r| r.round);
    let csv_path = project.round_dir(scored_round).join("evaluation.csv");
    crate::fsutil::write_atomic(&csv_path, csv.as_bytes())
        .map_err(|e| EngineError::Invalid(format!("{}: {e}", csv_path.display())))?;
    // After a suggestion `state.round` has already moved on to the next,
    // untrained round: the scores belong to the last trained one.
    if let Some(record) = state.history.last_mut() {
        record.dice = dice.clone();
        record.hd95 = hd95.clone();
    }
    state.save(&project.dir)?;
    Ok(Evaluation {
        dice,
        hd95,
        volumes: scores.len(),
    })
}
