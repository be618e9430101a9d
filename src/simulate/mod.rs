//! `nextslice simulate`: the paper's experimental protocol on a labelled
//! dataset. Every planned (strategy, seed) replays the active-learning
//! rounds with the ground truth as the annotator, each round's U-Net scored
//! on the test volumes; a full-data run gives the upper reference. Results:
//! `simulate/results.csv` (every strategy, seed, round, volume, region),
//! `summary.md` (the paper's tables) and `curves.png`.
//!
//! Runs are ordinary projects driven by the round engine, so a simulation
//! killed at any point resumes where each run's state says it was. Imports
//! the engine, the project and the journal; the worker runs it.

mod plan;
pub mod plot;
pub mod results;
mod runs;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use burn::tensor::backend::AutodiffBackend;

use crate::config::Config;
use crate::engine::{
    EngineError, StepContext, evaluate_step, suggest_step, train_step, train_vae_step,
};
use crate::journal::{EventLog, running_worker};
use crate::layout::{LATENTS_FILE, STATE_FILE, VAE_FILE};
use crate::project::{Phase, Project, RoundState, VaeQuality, latents};
use crate::store::SliceStore;

pub use plan::{Arm, DAL_FIRST_MEMBER, FULL_DATA, PLAN_FILE, RunSpec, load as load_plan, runs};
pub use plot::CURVES_FILE;
pub use results::{RESULTS_FILE, Row};

/// The simulation's folder inside a project.
pub const SIM_DIR: &str = "simulate";
pub const SUMMARY_FILE: &str = "summary.md";

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    #[error(transparent)]
    State(#[from] crate::project::StateError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw the learning curves: {0}")]
    Plot(String),
    #[error("{0}")]
    Invalid(String),
}

/// How `prepare` treats a simulation already planned in the project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Resume the stored plan whatever the project's settings now say (the
    /// operator asked for nothing different); start `plan` if none.
    ResumeStored,
    /// Resume only if the stored plan is `plan`; start it if none.
    Check,
    /// Discard a previous simulation, runs and results included.
    Restart,
}

/// Freezes `plan` as the project's simulation plan, or keeps the one a
/// started simulation froze, as `start` says.
pub fn prepare(project: &Project, plan: &Config, start: Start) -> Result<(), SimulateError> {
    if let Some(holder) = running_worker(&project.dir) {
        return Err(SimulateError::Invalid(format!(
            "a worker (pid {}) is running `{}` in this project; wait for it or `nextslice cancel` first",
            holder.pid, holder.job
        )));
    }
    plan.check("the command line")?;
    let dir = project.path(SIM_DIR);
    if start == Start::Restart && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| SimulateError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&dir).map_err(|source| SimulateError::Io {
        path: dir.clone(),
        source,
    })?;
    let cases = project.discover()?.cases;
    if let Some(unlabelled) = cases.iter().find(|c| c.label.is_none()) {
        return Err(SimulateError::Invalid(format!(
            "case `{}` has no label map; a simulation uses the ground truth as the annotator, so every case needs one",
            unlabelled.id
        )));
    }
    if start == Start::ResumeStored && plan::load(project)?.is_some() {
        return Ok(());
    }
    plan::store_or_check(project, plan)
}

/// Runs (or resumes) the planned simulation; returns a one-line summary.
pub fn simulate<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<String, SimulateError> {
    let plan = plan::load(project)?.ok_or_else(|| {
        SimulateError::Invalid(
            "no simulation is planned here; start one with `nextslice simulate`".into(),
        )
    })?;
    let sim_dir = project.path(SIM_DIR);
    let test_cases = project.state()?.test_cases;
    let store = project.store(ctx.progress, ctx.cancel)?;
    let specs = runs(&plan);
    let total: u64 = specs.iter().map(|s| s.trainings(&plan)).sum();
    // A resumed simulation starts from what earlier workers finished.
    let already: u64 = specs
        .iter()
        .map(|s| {
            let dir = sim_dir.join(runs::RUNS_DIR).join(s.dir_name());
            Project::open(&dir).map_or(0, |run| evaluated(&run).min(s.trainings(&plan)))
        })
        .sum();
    ctx.progress
        .overall(already, total, "the VAE shared by all runs");
    let vae = shared_vae::<B>(project, &plan, &test_cases, &store, ctx, device)?;
    let quality = vae_quality(project, &vae);
    let mut rows = Vec::new();
    for (k, spec) in specs.iter().enumerate() {
        let run = runs::open_or_create(&sim_dir, spec, &plan, &vae, &test_cases, &store)?;
        let before: u64 = specs[..k].iter().map(|s| s.trainings(&plan)).sum();
        drive::<B>(&sim_dir, &run, spec, &store, ctx, device, |round, step| {
            let what = format!(
                "run {}/{}: {} · seed {} · round {round} · {step}",
                k + 1,
                specs.len(),
                spec.arm.name(),
                spec.seed
            );
            let done = before + evaluated(&run).min(spec.trainings(&plan));
            ctx.progress.overall(done, total, &what);
        })?;
        rows.extend(results::of_run(&run, spec)?);
        write_outputs(&sim_dir, &rows, quality.as_ref())?;
    }
    Ok(format!(
        "{} runs ({} × {} seed(s){}) done; tables in {SIM_DIR}/{SUMMARY_FILE}, curves in {SIM_DIR}/{CURVES_FILE}, every value in {SIM_DIR}/{RESULTS_FILE}",
        specs.len(),
        plan.simulate
            .strategies
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        plan.simulate.seeds,
        if plan.simulate.full_reference {
            " + full data"
        } else {
            ""
        }
    ))
}

/// Rounds of a run whose U-Net has been evaluated.
fn evaluated(run: &Project) -> u64 {
    run.state().map_or(0, |s| {
        s.history.iter().filter(|r| !r.dice.is_empty()).count() as u64
    })
}

/// Results so far, rewritten after every run so a long simulation can be
/// read (and its curves looked at) before it ends. A plot that cannot be
/// drawn is reported in the worker's log and does not stop the simulation:
/// the numbers are already written.
fn write_outputs(
    sim_dir: &Path,
    rows: &[Row],
    vae: Option<&VaeQuality>,
) -> Result<(), SimulateError> {
    results::write(&sim_dir.join(RESULTS_FILE), rows)?;
    let mut summary = summary::markdown(rows);
    match vae {
        Some(q) => summary += &format!("\nThe shared VAE: {}.\n", q.describe()),
        None => summary += "\nThe shared VAE was trained before its quality was measured.\n",
    }
    let path = sim_dir.join(SUMMARY_FILE);
    crate::fsutil::write_atomic(&path, summary.as_bytes())
        .map_err(|source| SimulateError::Io { path, source })?;
    if let Err(e) = plot::write(&sim_dir.join(CURVES_FILE), rows) {
        eprintln!("simulate: {e}; results.csv and summary.md are written");
    }
    Ok(())
}

/// The shared VAE's test-slice quality: in the state of `simulate/vae/`
/// when it was trained there, else in the project's, whose VAE it links.
fn vae_quality(project: &Project, vae_dir: &Path) -> Option<VaeQuality> {
    match vae_dir.join(STATE_FILE).exists() {
        true => Project::open(vae_dir).ok()?.state().ok()?.vae_quality,
        false => project.state().ok()?.vae_quality,
    }
}

/// The directory whose `models/` holds the VAE and pool latents every run
/// shares: `simulate/vae/`, fixed on first use so that one simulation never
/// mixes two VAEs — hard links to the project's own VAE when it has one for
/// the current store, else one trained there for the simulation.
fn shared_vae<B: AutodiffBackend>(
    project: &Project,
    plan: &Config,
    test_cases: &[String],
    store: &SliceStore,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<PathBuf, SimulateError> {
    let key = &store.meta().key;
    let has_vae = |dir: &Path| {
        latents::load(&dir.join(LATENTS_FILE), key).is_some() && dir.join(VAE_FILE).exists()
    };
    let dir = project.path(SIM_DIR).join(runs::VAE_DIR);
    if has_vae(&dir) {
        return Ok(dir);
    }
    let training = dir.join(STATE_FILE).exists();
    if !training && project.state()?.vae.is_some() && has_vae(&project.dir) {
        let models = dir.join(crate::layout::MODELS_DIR);
        std::fs::create_dir_all(&models).map_err(|source| SimulateError::Io {
            path: models.clone(),
            source,
        })?;
        runs::share_vae(&project.dir, &dir)?;
        return Ok(dir);
    }
    let sub = if training {
        Project::open(&dir)?
    } else {
        runs::create_sub_project(&dir, 2, plan, &RoundState::new(test_cases.to_vec()))?
    };
    if sub.state()?.phase == Phase::NeedVae {
        let log = EventLog::new(&sub.dir);
        let sub_ctx = StepContext { log: &log, ..*ctx };
        train_vae_step::<B>(&sub, &sub_ctx, device)?;
    }
    Ok(dir)
}

/// Steps one run until it has done all its rounds, each trained U-Net
/// evaluated before the run moves on. `report(round, step)` is called
/// before each step.
fn drive<B: AutodiffBackend>(
    sim_dir: &Path,
    run: &Project,
    spec: &RunSpec,
    store: &SliceStore,
    ctx: &StepContext<'_>,
    device: &B::Device,
    report: impl Fn(usize, &str),
) -> Result<(), SimulateError> {
    let log = EventLog::new(&run.dir);
    let sub = StepContext { log: &log, ..*ctx };
    loop {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled.into());
        }
        let state = run.state()?;
        if state.history.last().is_some_and(|r| r.dice.is_empty()) {
            report(state.round, "evaluate");
            evaluate_step::<B>(run, &sub, device)?;
            runs::prune_models(run)?;
            continue;
        }
        let reference_done = spec.arm.trains_once() && !state.history.is_empty();
        match state.phase {
            _ if reference_done => return Ok(()),
            Phase::Done => return Ok(()),
            Phase::Seeding | Phase::Suggesting => {
                report(state.round, "suggest");
                suggest_step::<B>(run, &sub, device)?;
            }
            Phase::AwaitingMasks => {
                runs::annotate_with_truth(sim_dir, run, store)?;
                crate::failpoint::hit("simulate-after-annotate");
            }
            Phase::Training => {
                report(state.round, "train");
                train_step::<B>(run, &sub, device)?;
            }
            Phase::NeedVae => {
                return Err(SimulateError::Invalid(format!(
                    "{} has no VAE",
                    run.dir.display()
                )));
            }
        }
    }
}
