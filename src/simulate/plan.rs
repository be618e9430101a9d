//! The simulation's plan: the project's configuration (with its `simulate`
//! section) frozen when the simulation starts, in `simulate/plan.toml`. Runs
//! are made from the plan, not from the live `project.toml`, so editing the
//! project mid-simulation cannot mix settings inside one comparison.

use std::path::Path;

use crate::config::{ClsmcMode, Config, GradientStep, Strategy};
use crate::fsutil::write_atomic;
use crate::project::Project;
use crate::project::forecast::unet_passes;

use super::{SIM_DIR, SimulateError};

pub const PLAN_FILE: &str = "plan.toml";

/// One arm of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    Strategy(Strategy),
    /// A gradient strategy under a named step rule, when the plan compares
    /// rules (`simulate.gradient_steps`).
    Gradient(Strategy, GradientStep),
    /// ClsMC as the paper ran it: the labelled set of budget `round` (0 =
    /// the seed budget) chosen at once from the initial pool, then one
    /// U-Net trained on it.
    ClsmcOneShot {
        round: usize,
    },
    /// Every pool slice labelled: the upper reference.
    FullData,
}

impl Arm {
    /// The arm's name in the results' `strategy` column.
    pub fn name(self) -> String {
        match self {
            Arm::Strategy(Strategy::Clsmc) => "clsmc-per-round".into(),
            Arm::Strategy(s) => s.name().into(),
            Arm::Gradient(s, step) => format!("{}-{}", s.name(), step.name()),
            Arm::ClsmcOneShot { .. } => Strategy::Clsmc.name().into(),
            Arm::FullData => FULL_DATA.into(),
        }
    }

    /// Arms whose run is labelled when created and trained once.
    pub fn trains_once(self) -> bool {
        matches!(self, Arm::FullData | Arm::ClsmcOneShot { .. })
    }
}

/// The reference arm's name in the results.
pub const FULL_DATA: &str = "full-data";
/// DAL's first ensemble member scored alone, beside the ensemble's row.
pub const DAL_FIRST_MEMBER: &str = "dal-first-member";

/// One (arm, seed) run of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub arm: Arm,
    pub seed: usize,
}

impl RunSpec {
    /// The run's directory name under `simulate/runs/`.
    pub fn dir_name(&self) -> String {
        match self.arm {
            Arm::ClsmcOneShot { round } => format!("clsmc-b{round}-s{}", self.seed),
            arm => format!("{}-s{}", arm.name(), self.seed),
        }
    }

    /// U-Net trainings (each followed by an evaluation) the run makes.
    pub fn trainings(&self, plan: &Config) -> u64 {
        if self.arm.trains_once() {
            1
        } else {
            plan.sampling.rounds as u64 + 1
        }
    }

    /// Slice passes (slices × epochs × members) its U-Net trainings make
    /// over a pool of `pool` slices, for the forecast before it starts.
    pub fn slice_passes(&self, plan: &Config, pool: usize) -> u64 {
        let count = |fraction: f64| ((fraction * pool as f64).ceil() as usize).max(1);
        let (seed, step) = (
            count(plan.sampling.initial_fraction),
            count(plan.sampling.round_fraction),
        );
        let config = self.config(plan);
        let labelled = |round: usize| (seed + round * step).min(pool);
        match self.arm {
            Arm::FullData => (plan.unet.epochs_per_round * pool) as u64,
            Arm::ClsmcOneShot { round } => unet_passes(&config, labelled(round)),
            _ => (0..=plan.sampling.rounds)
                .map(|round| unet_passes(&config, labelled(round)))
                .sum(),
        }
    }

    /// The round its results are reported at: its own rounds, or for a
    /// one-shot ClsMC run the budget it stands for.
    pub fn reported_round(&self, round: usize) -> usize {
        match self.arm {
            Arm::ClsmcOneShot { round: budget } => budget,
            _ => round,
        }
    }

    /// The run's own configuration: the plan with its strategy and seed.
    /// The reference trains one plain U-Net (no DAL ensemble, no loss
    /// head) once, `epochs_per_round` epochs over the whole pool: already
    /// many more gradient steps than an active-learning run's U-Net takes
    /// over all its rounds.
    pub fn config(&self, plan: &Config) -> Config {
        let mut config = plan.clone();
        config.sampling.seed = plan.sampling.seed + self.seed as u64;
        // Every mask trains, as in the paper: a simulation measures its
        // U-Nets on the test volumes, so a held-out split would only cost
        // it labels.
        config.unet.validation_fraction = 0.0;
        config.sampling.strategy = match self.arm {
            Arm::Strategy(s) => s,
            Arm::Gradient(s, step) => {
                config.sampling.step = step;
                s
            }
            Arm::ClsmcOneShot { .. } => Strategy::Clsmc,
            Arm::FullData => Strategy::Random,
        };
        config
    }
}

/// The arms one listed strategy expands to under the plan.
fn arms(plan: &Config, strategy: Strategy) -> Vec<Arm> {
    let steps = &plan.simulate.gradient_steps;
    match strategy {
        Strategy::Gradient | Strategy::GradientNoAngle if !steps.is_empty() => steps
            .iter()
            .map(|&step| Arm::Gradient(strategy, step))
            .collect(),
        Strategy::Clsmc if plan.simulate.clsmc == ClsmcMode::OneShot => (0..=plan.sampling.rounds)
            .map(|round| Arm::ClsmcOneShot { round })
            .collect(),
        s => vec![Arm::Strategy(s)],
    }
}

/// Every run, seed by seed, so that a partial simulation already compares
/// all arms on its first seeds.
pub fn runs(plan: &Config) -> Vec<RunSpec> {
    let mut specs = Vec::new();
    for seed in 0..plan.simulate.seeds {
        for &s in &plan.simulate.strategies {
            for arm in arms(plan, s) {
                specs.push(RunSpec { arm, seed });
            }
        }
        if plan.simulate.full_reference {
            specs.push(RunSpec {
                arm: Arm::FullData,
                seed,
            });
        }
    }
    specs
}

/// The plan stored in `project`, if a simulation was started.
pub fn load(project: &Project) -> Result<Option<Config>, SimulateError> {
    let path = project.path(SIM_DIR).join(PLAN_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Config::from_file(&path)?))
}

/// Stores `plan`, or checks it against the one stored: a simulation resumes
/// only with the settings it started with.
pub fn store_or_check(project: &Project, plan: &Config) -> Result<(), SimulateError> {
    // The device may change between sessions (a GPU box, then a laptop),
    // and so may who is told when it ends.
    let same = |stored: &Config| {
        let mut stored = stored.clone();
        stored.device = plan.device.clone();
        stored.notify = plan.notify.clone();
        &stored == plan
    };
    match load(project)? {
        Some(stored) if same(&stored) => Ok(()),
        Some(_) => Err(SimulateError::Invalid(format!(
            "{}/ holds a simulation started with other settings; run with the same settings to resume it, or pass --restart to discard it",
            project.path(SIM_DIR).display()
        ))),
        None => write_plan(&project.path(SIM_DIR), plan),
    }
}

fn write_plan(dir: &Path, plan: &Config) -> Result<(), SimulateError> {
    let path = dir.join(PLAN_FILE);
    let header = "# The settings `nextslice simulate` runs with, frozen when it started.\n\n";
    write_atomic(&path, format!("{header}{}", plan.to_toml()).as_bytes())
        .map_err(|source| SimulateError::Io { path, source })
}
