//! `nextslice simulate`: plan a strategy comparison with the ground truth as
//! the annotator, run it in the detached worker, and print its tables.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use nextslice::config::{ClsmcMode, Config, GradientStep, Strategy};
use nextslice::journal::Job;
use nextslice::project::Project;
use nextslice::simulate::{Arm, RESULTS_FILE, SIM_DIR, SUMMARY_FILE, Start, prepare, runs};

use super::jobs::{JobArgs, launch};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Strategies to compare, comma-separated (default: the project's simulate.strategies).
    /// Without any of these settings a started simulation resumes as planned.
    #[arg(long, value_enum, value_delimiter = ',')]
    strategies: Vec<Strategy>,
    /// Repetitions with seeds sampling.seed, sampling.seed + 1, … (default: simulate.seeds).
    #[arg(long)]
    seeds: Option<usize>,
    /// Leave out the full-data reference run.
    #[arg(long)]
    no_reference: bool,
    /// Run each gradient strategy once per step rule, comma-separated
    /// (rows `gradient-literal`, `gradient-calibrated`; default: sampling.step only).
    #[arg(long, value_enum, value_delimiter = ',')]
    steps: Vec<GradientStep>,
    /// ClsMC as the paper ran it (`one-shot`: each budget chosen at once) or round by round.
    #[arg(long, value_enum)]
    clsmc: Option<ClsmcMode>,
    /// Discard a previous simulation (runs and results) and start again.
    #[arg(long)]
    restart: bool,
    /// Print the tables of the simulation so far and exit.
    #[arg(long, conflicts_with_all = ["restart", "wait", "foreground"])]
    report: bool,
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let dir = &args.job.project.project;
    if args.report {
        return print_summary(dir);
    }
    let project = Project::open(dir)?;
    let mut plan = project.config.clone();
    if !args.strategies.is_empty() {
        plan.simulate.strategies = args.strategies.clone();
    }
    if let Some(seeds) = args.seeds {
        anyhow::ensure!(seeds > 0, "--seeds must be at least 1");
        plan.simulate.seeds = seeds;
    }
    if args.no_reference {
        plan.simulate.full_reference = false;
    }
    if !args.steps.is_empty() {
        plan.simulate.gradient_steps = args.steps.clone();
    }
    if let Some(mode) = args.clsmc {
        plan.simulate.clsmc = mode;
    }
    // Without settings on the command line, a started simulation resumes
    // as it was planned.
    let asked = !args.strategies.is_empty()
        || args.seeds.is_some()
        || args.no_reference
        || !args.steps.is_empty()
        || args.clsmc.is_some();
    let start = match (args.restart, asked) {
        (true, _) => Start::Restart,
        (false, true) => Start::Check,
        (false, false) => Start::ResumeStored,
    };
    prepare(&project, &plan, start)?;
    print_footprint(&nextslice::simulate::load_plan(&project)?.unwrap_or(plan));
    launch(Job::Simulate, &args.job, print_summary)
}

/// Above this, the models a simulation keeps are worth a warning.
const WARN_BYTES: u64 = 4 << 30;

/// What the planned simulation will run and keep on disk: every run keeps
/// its last round's networks (earlier ones are deleted as it goes).
fn print_footprint(plan: &Config) {
    let specs = runs(plan);
    let trainings: u64 = specs.iter().map(|s| s.trainings(plan)).sum();
    let (unet, _) = super::forecast::model_bytes(plan);
    let kept: u64 = specs
        .iter()
        .map(|s| match s.arm {
            Arm::Strategy(Strategy::Dal) => unet * plan.sampling.dal_models as u64,
            _ => unet,
        })
        .sum();
    let gb = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "plan: {} runs, {trainings} U-Net trainings; models kept ≈ {:.2} GB ({:.0} MB per U-Net, the last round's per run)",
        specs.len(),
        gb(kept),
        unet as f64 / 1e6
    );
    if kept > WARN_BYTES {
        println!(
            "warning: the simulation will keep {:.1} GB of models; check the free space under the project",
            gb(kept)
        );
    }
}

/// The summary tables written so far.
fn print_summary(dir: &Path) -> Result<()> {
    let path = dir.join(SIM_DIR).join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no simulation results in {} yet (start one with `nextslice simulate`)",
            dir.display()
        )
    })?;
    print!("{text}");
    println!(
        "\nevery value: {}",
        dir.join(SIM_DIR).join(RESULTS_FILE).display()
    );
    Ok(())
}
