//! Each (arm, seed) of a simulation is an ordinary project under
//! `simulate/runs/`, driven by the same round engine an operator uses, with
//! the ground truth standing in for the expert. Runs share the parent's
//! slice store (a symbolic link) and one VAE (hard links), and can be opened
//! in the TUI or with `nextslice status -p` like any project.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::fsutil::write_atomic;
use crate::journal::EventLog;
use crate::layout::{
    CHECKPOINTS_DIR, CONFIG_FILE, LATENTS_FILE, MASKS_DIR, MODELS_DIR, ROUNDS_DIR, STATE_FILE,
    STORE_DIR, VAE_FILE,
};
use crate::masks::derived_path;
use crate::project::{Labelled, Phase, Project, RoundState, StateError};
use crate::rng::Rng;
use crate::store::{SliceIndex, SliceKey, SliceStore};
use crate::strategy::{ClusterMaxCover, Request, SamplingStrategy};

use super::SimulateError;
use super::plan::{Arm, RunSpec};

/// Where runs live, under the project's `simulate/`.
pub const RUNS_DIR: &str = "runs";
/// The VAE trained for the simulation when the project has none.
pub const VAE_DIR: &str = "vae";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimulateError + '_ {
    move |source| SimulateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a project skeleton at `dir` that reads the store of the project
/// `depth` directories above it, with `state` as its
/// first state. The state is written last: a directory without one is an
/// unfinished creation and is made again.
pub fn create_sub_project(
    dir: &Path,
    depth: usize,
    config: &Config,
    state: &RoundState,
) -> Result<Project, SimulateError> {
    for sub in [MODELS_DIR, CHECKPOINTS_DIR, ROUNDS_DIR, MASKS_DIR] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io(&path))?;
    }
    // A private store root is reached through the project's; a shared one
    // is named in the run's configuration.
    let store = dir.join(STORE_DIR);
    if config.store.root.is_none() && std::fs::symlink_metadata(&store).is_err() {
        let target: PathBuf = std::iter::repeat_n("..", depth)
            .collect::<PathBuf>()
            .join(STORE_DIR);
        std::os::unix::fs::symlink(&target, &store).map_err(io(&store))?;
    }
    let path = dir.join(CONFIG_FILE);
    let header =
        "# A simulation run made by `nextslice simulate`; edit the project's plan instead.\n\n";
    write_atomic(&path, format!("{header}{}", config.to_toml()).as_bytes()).map_err(io(&path))?;
    state.save(dir)?;
    Project::open(dir).map_err(SimulateError::from)
}

/// `source/models/{vae,latents}` into `run/models/`: hard links (the files
/// are never modified in place), copies where links are not possible.
pub fn share_vae(source: &Path, run: &Path) -> Result<(), SimulateError> {
    for file in [VAE_FILE, LATENTS_FILE] {
        let (from, to) = (source.join(file), run.join(file));
        let _ = std::fs::remove_file(&to);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io(&from))?;
        }
    }
    Ok(())
}

/// Opens the run `spec`, creating it first if needed: a strategy run starts
/// at the seed batch; the reference starts with every pool slice labelled,
/// a one-shot ClsMC run with its budget's set.
pub fn open_or_create(
    sim_dir: &Path,
    spec: &RunSpec,
    plan: &Config,
    vae_source: &Path,
    test_cases: &[String],
    store: &SliceStore,
) -> Result<Project, SimulateError> {
    let dir = sim_dir.join(RUNS_DIR).join(spec.dir_name());
    if dir.join(STATE_FILE).exists() {
        return Ok(Project::open(&dir)?);
    }
    std::fs::create_dir_all(dir.join(MODELS_DIR)).map_err(io(&dir))?;
    share_vae(vae_source, &dir)?;
    let mut state = RoundState::new(test_cases.to_vec());
    state.vae = Some(VAE_FILE.into());
    state.phase = Phase::Seeding;
    let labelled = match spec.arm {
        Arm::FullData => Some(SliceIndex::new(store, test_cases).pool()),
        Arm::ClsmcOneShot { round } => {
            Some(one_shot_clsmc(plan, round, vae_source, test_cases, store)?)
        }
        _ => None,
    };
    if let Some(ids) = labelled {
        let index = SliceIndex::new(store, test_cases);
        place_truth(sim_dir, &dir, store, &index, &ids)?;
        state.labelled = ids
            .iter()
            .map(|&id| Labelled {
                key: index.key(id).clone(),
                mask: relative_mask(&dir, index.key(id)),
                round: 0,
            })
            .collect();
        state.phase = Phase::Training;
    }
    create_sub_project(&dir, 3, &spec.config(plan), &state)
}

/// ClsMC's labelled set for budget `round` chosen at once from the whole
/// pool, as Zheng et al. and the paper ran it: as many slices as the seed
/// batch plus `round` suggestion rounds label. ClsMC reads only the VAE
/// latents, so every seed gets the same set (seeds differ in the U-Net).
fn one_shot_clsmc(
    plan: &Config,
    round: usize,
    vae_source: &Path,
    test_cases: &[String],
    store: &SliceStore,
) -> Result<Vec<usize>, SimulateError> {
    let index = SliceIndex::new(store, test_cases);
    let pool = index.pool();
    let count = |fraction: f64| ((fraction * pool.len() as f64).ceil() as usize).max(1);
    let budget =
        count(plan.sampling.initial_fraction) + round * count(plan.sampling.round_fraction);
    let path = vae_source.join(LATENTS_FILE);
    let latents = crate::project::latents::load(&path, &store.meta().key).ok_or_else(|| {
        SimulateError::Invalid(format!(
            "{}: no pool latents for this store; ClsMC needs the VAE's",
            path.display()
        ))
    })?;
    let picks = ClusterMaxCover::default()
        .suggest(Request {
            candidates: &pool,
            count: budget.min(pool.len()),
            latents: Some(&latents),
            sources: &[],
            rng: &mut Rng::new(plan.sampling.seed, 0x636c_736d),
        })
        .map_err(|e| SimulateError::Invalid(e.to_string()))?;
    Ok(picks.into_iter().map(|s| s.slice).collect())
}

fn relative_mask(dir: &Path, key: &SliceKey) -> PathBuf {
    let path = derived_path(dir, key);
    path.strip_prefix(dir)
        .map_or(path.clone(), Path::to_path_buf)
}

/// Where the simulation keeps one copy of a slice's ground-truth class map.
fn truth_path(sim_dir: &Path, key: &SliceKey) -> PathBuf {
    sim_dir
        .join("truth")
        .join(&key.case)
        .join(format!("s{:03}.classes", key.slice))
}

/// Puts the ground-truth class map of each of `ids` where an accepted
/// expert mask would go: a hard link to the simulation's single copy, so
/// the full-data runs of a 50 000-slice pool cost no space per seed. One
/// `syncfs` makes them durable before the caller's state refers to them.
fn place_truth(
    sim_dir: &Path,
    dir: &Path,
    store: &SliceStore,
    index: &SliceIndex,
    ids: &[usize],
) -> Result<(), SimulateError> {
    let mut classes = vec![0u8; store.meta().pixels()];
    for &id in ids {
        let key = index.key(id);
        let truth = truth_path(sim_dir, key);
        if !truth.exists() {
            if !store.read_label(id, &mut classes)? {
                return Err(SimulateError::Invalid(format!(
                    "slice {key} has no ground truth; a simulation needs a label map for every case"
                )));
            }
            crate::fsutil::write_replace(&truth, &classes).map_err(io(&truth))?;
        }
        let derived = derived_path(dir, key);
        if let Some(parent) = derived.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let _ = std::fs::remove_file(&derived);
        if std::fs::hard_link(&truth, &derived).is_err() {
            std::fs::copy(&truth, &derived).map_err(io(&derived))?;
        }
    }
    crate::fsutil::sync_filesystem(dir).map_err(io(dir))
}

/// The annotator of a simulation: every pending suggestion gets its
/// ground-truth mask, and the run moves on to training.
pub fn annotate_with_truth(
    sim_dir: &Path,
    run: &Project,
    store: &SliceStore,
) -> Result<usize, SimulateError> {
    let mut state = run.state()?;
    if state.phase != Phase::AwaitingMasks {
        return Err(StateError::WrongPhase {
            action: "annotate",
            phase: state.phase,
        }
        .into());
    }
    let index = SliceIndex::new(store, &state.test_cases);
    let ids = state
        .pending
        .iter()
        .map(|p| {
            index.id(&p.key).ok_or_else(|| {
                SimulateError::Invalid(format!("{} is not in the slice store", p.key))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    place_truth(sim_dir, &run.dir, store, &index, &ids)?;
    let n = ids.len();
    let round = state.round;
    for pending in std::mem::take(&mut state.pending) {
        state.labelled.push(Labelled {
            mask: relative_mask(&run.dir, &pending.key),
            key: pending.key,
            round,
        });
    }
    run.commit(
        &mut state,
        Phase::Training,
        &format!("{n} ground-truth masks (simulated annotator)"),
        &EventLog::new(&run.dir),
    )?;
    Ok(n)
}

/// Deletes the run's earlier rounds' networks once nothing refers to them:
/// resuming needs only the U-Net(s) and loss head the state names (the
/// next round starts from them), so a simulation keeps one round's models
/// per run, not every round's. Only files the committed state does not
/// name are removed, so a crash at any point leaves a resumable run.
pub fn prune_models(run: &Project) -> Result<u64, SimulateError> {
    let state = run.state()?;
    let keep: Vec<PathBuf> = state
        .unet
        .iter()
        .chain(&state.ensemble)
        .chain(&state.loss_head)
        .chain(&state.vae)
        .map(|p| run.path(p))
        .collect();
    let dir = run.path(MODELS_DIR);
    let mut freed = 0;
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let path = entry.path();
        let network = path.extension().is_some_and(|e| e == "mpk")
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("unet-round-") || n.starts_with("loss-head-round-"));
        if network && !keep.contains(&path) {
            freed += entry.metadata().map_or(0, |m| m.len());
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(freed)
}
