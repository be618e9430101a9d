//! (Fine-)train the U-Net on every labelled slice — DAL's bootstrap
//! ensemble member by member, the learning-loss head alongside the U-Net —
//! and record the round. Training → Suggesting, or Done after the last
//! configured round.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::evaluate::evaluation_regions;
use super::models::load_unets;
use super::reconcile::reconcile_store;
use super::validate::{held_out, score_held_out};
use crate::config::Strategy;
use crate::layout::{loss_head_file, unet_checkpoints, unet_file};
use crate::masks::ProjectMasks;
use crate::model::{LossHead, UNet, UNetSpec, UNetWithLossHead};
use crate::project::{Phase, Project, RoundRecord};
use crate::rng::Rng;
use crate::train::{
    LossHeadTraining, UnetTraining, clear_checkpoints, load_model, save_model, train_unet,
    train_unet_with_loss_head,
};

/// Trains the round's U-Net(s); returns a one-line summary.
pub fn train_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<String, EngineError> {
    let mut state = project.state()?;
    state.expect(Phase::Training, "train the U-Net")?;
    let config = &project.config;
    let (store, index) = ctx.open_store(project, &state)?;
    let changed = reconcile_store::<B>(project, &state, &store, &index, ctx, device)?;
    let all: Vec<usize> = state
        .labelled
        .iter()
        .filter_map(|l| index.id(&l.key))
        .collect();
    if all.len() != state.labelled.len() {
        return Err(EngineError::StoreChanged {
            missing: state.labelled.len() - all.len(),
        });
    }
    let validation = held_out(
        &state.labelled,
        &state.validation,
        state.round,
        config.unet.validation_fraction,
        config.sampling.seed,
    );
    if validation != state.validation {
        // Settled before any epoch: a resumed round (even with the
        // settings changed meanwhile) never holds out what it trained on.
        state.validation = validation;
        state.save(&project.dir)?;
    }
    let masks = ProjectMasks {
        project: &project.dir,
        index: &index,
    };
    // Slices whose mask no longer fits the store (see `reconcile`) wait
    // for a new import.
    let unusable = all.iter().filter(|&&i| !masks.has(i)).count();
    let held: Vec<usize> = state
        .validation
        .iter()
        .filter_map(|k| index.id(k))
        .filter(|&i| masks.has(i))
        .collect();
    let slices: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| !held.contains(&i) && masks.has(i))
        .collect();
    if slices.is_empty() {
        return Err(EngineError::StoreMismatch(
            "no labelled slice has a mask that fits the store; import the masks again".into(),
        ));
    }
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
        let file = unet_file(state.round, members, member);
        // A member finished before a crash or cancel is not trained again.
        if project.path(&file).exists() && members > 1 {
            files.push(file);
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
                checkpoints: &project.path(unet_checkpoints(state.round, members, member)),
            },
            ctx,
            device,
        )?;
        save_model::<B, _>(&project.path(&file), &trained.unet)?;
        loss_head = match &trained.head {
            Some(head) => {
                let path = loss_head_file(state.round);
                save_model::<B, _>(&project.path(&path), head)?;
                Some(path)
            }
            None => None,
        };
        losses.push(trained.epoch_losses);
        files.push(file);
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
    let validation = if held.is_empty() {
        None
    } else {
        let models = load_unets::<B>(project, &state, device)?;
        Some(score_held_out::<B::InnerBackend>(
            &models,
            &store,
            &masks,
            &held,
            &evaluation_regions(config),
            ctx,
            device,
        )?)
    };
    let pool = index.pool().len();
    state.history.retain(|r| r.round != state.round);
    state.history.push(RoundRecord {
        round: state.round,
        labelled: all.len(),
        budget: all.len() as f64 / pool.max(1) as f64,
        train_losses: train_losses.clone(),
        dice: Vec::new(),
        hd95: Vec::new(),
        validation: validation.clone(),
    });
    let next = if state.round >= config.sampling.rounds {
        Phase::Done
    } else {
        Phase::Suggesting
    };
    project.commit(&mut state, next, "U-Net trained", ctx.log)?;
    for member in 0..members {
        clear_checkpoints(&project.path(unet_checkpoints(state.round, members, member)));
    }
    let last = train_losses.last().copied().unwrap_or(f64::NAN);
    let (what, loss) = match (members, config.sampling.strategy) {
        (1, Strategy::LearningLoss) => ("U-Net and loss head", "Dice + ranking loss"),
        (1, _) => ("U-Net", "Dice loss"),
        _ => ("bootstrap ensemble", "mean Dice loss"),
    };
    let checked = validation
        .map(|v| format!("; Dice {}", v.short()))
        .unwrap_or_default();
    let changed = changed.map(|c| format!("{c}; ")).unwrap_or_default();
    let unusable = if unusable > 0 {
        format!(", {unusable} without a usable mask")
    } else {
        String::new()
    };
    Ok(format!(
        "{changed}round {}: {what} trained on {} slices ({} labelled, {:.1}% of the pool; {} held out{unusable}), final {loss} {last:.3}{checked}",
        state.round,
        slices.len(),
        all.len(),
        100.0 * all.len() as f64 / pool as f64,
        held.len()
    ))
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

/// A trained U-Net, with its loss head for the learning-loss baseline.
struct TrainedMember<B: AutodiffBackend> {
    unet: UNet<B>,
    head: Option<LossHead<B>>,
    epoch_losses: Vec<f64>,
}

/// Trains one U-Net (fine-tuning `previous` when there is one) — with its
/// loss head (fine-tuning `previous_head`) for the learning-loss baseline —
/// and fails on a cancel, so only finished models are saved.
fn train_member<B: AutodiffBackend>(
    project: &Project,
    previous: Option<&PathBuf>,
    previous_head: Option<&PathBuf>,
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
        detach_epoch: config
            .sampling
            .ll_detach_at(config.unet.epochs_for(job.slices.len())),
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

#[cfg(test)]
mod tests {
    use super::training_seed;

    #[test]
    fn training_seeds_differ_across_seeds_rounds_and_members() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..4 {
            for round in 0..6 {
                for member in 0..4 {
                    assert!(seen.insert(training_seed(seed, round, member)));
                }
            }
        }
        assert_eq!(training_seed(3, 2, 1), training_seed(3, 2, 1));
    }
}
