//! Subcommands. Each is a thin layer over the library: it resolves paths and
//! configuration, runs the work with progress on stderr, and prints a summary
//! that says what to do next.
//!
//! The top of the crate: may import any module of the library; nothing
//! imports it.

mod demo;
mod events;
mod forecast;
mod gpu;
mod inspect;
mod jobs;
mod project;
mod show;
mod simulate;
mod store;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use nextslice::config::{Config, Preset};
use nextslice::journal::Job;
use nextslice::volume::phantom::PhantomKind;

#[derive(Parser, Debug)]
#[command(
    name = "nextslice",
    version,
    about = "Suggestive annotation of brain MRI with gradient-guided sampling"
)]
#[command(
    after_help = "Without a subcommand, inside a project directory: open the TUI (same as `nextslice tui`)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Phantom data → project → VAE → seed batch, on the CPU; then the TUI.
    Demo(demo::DemoArgs),
    /// The terminal UI on a project (default: the current directory).
    Tui(TuiArgs),
    /// Create a project for a dataset.
    Init(project::InitArgs),
    /// Train the VAE on the pool (detached worker).
    TrainVae(jobs::JobArgs),
    /// Suggest the next batch of slices (detached worker).
    Suggest(jobs::JobArgs),
    /// Write the suggested slices, previews and a manifest for the experts.
    Export(project::ProjectArg),
    /// Check and accept the experts' masks (NIfTI slices, 3D label volumes, PNG).
    Import(project::ImportArgs),
    /// Train the U-Net on the labelled slices (detached worker).
    Train(jobs::JobArgs),
    /// Dice per region on the held-out test set (detached worker).
    Evaluate(jobs::JobArgs),
    /// Round, phase, running job with progress and ETA, last metrics.
    Status(project::ProjectArg),
    /// Print (and follow) the project's event log.
    Logs(project::LogsArgs),
    /// Compare strategies with the ground truth as the annotator (detached worker).
    Simulate(simulate::SimulateArgs),
    /// Ask the running job to stop after its current batch (the worker
    /// ends it if that batch is still running 10 s later).
    Cancel(project::ProjectArg),
    /// Point the project at its data after the data moved (same content).
    Relink(project::RelinkArgs),
    /// Draw one slice with its mask in the terminal.
    Show(show::ShowArgs),
    /// Run one job in this process (started detached by the step commands).
    #[command(hide = true)]
    Worker(jobs::WorkerArgs),
    /// Write deterministic synthetic brain scans (BraTS or MALC layout).
    Phantom(PhantomArgs),
    /// Preprocess a dataset into a memory-mapped slice store (reused when unchanged).
    Store(store::StoreArgs),
    /// Print the header of NIfTI files: size, type, spacing, orientation, scaling.
    Info(inspect::InfoArgs),
    /// Print the resolved configuration (preset + user file + --config files).
    Config(ConfigArgs),
    /// The NVIDIA driver and GPUs, what `--device auto` picks, and the tuned-kernel caches.
    Gpu(gpu::GpuArgs),
    /// Tune the GPU kernels for a project's shapes now (once per GPU and driver).
    GpuWarmup(gpu::WarmupArgs),
}

/// How a command picks its configuration.
#[derive(Args, Debug, Clone)]
pub struct ConfigSelection {
    /// Built-in preset the configuration starts from.
    #[arg(long, value_enum, default_value_t = Preset::Demo)]
    preset: Preset,
    /// TOML files laid over the preset (and over ~/.config/nextslice/config.toml), in order.
    #[arg(long = "config", value_name = "FILE")]
    files: Vec<PathBuf>,
}

impl ConfigSelection {
    pub fn resolve(&self) -> Result<Config> {
        Ok(Config::resolve(self.preset, &self.files)?)
    }
}

#[derive(Args, Debug)]
pub struct PhantomArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 8)]
    subjects: usize,
    /// In-plane voxels; slices = size × 155/240.
    #[arg(long, default_value_t = 128)]
    size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = PhantomKind::Tumour)]
    kind: PhantomKind,
}

#[derive(Args, Debug)]
pub struct TuiArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    #[command(flatten)]
    selection: ConfigSelection,
}

pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        return tui(&PathBuf::from("."));
    };
    match command {
        Command::Demo(args) => demo::run(args),
        Command::Tui(args) => tui(&args.dir),
        Command::Init(args) => project::init(args),
        Command::TrainVae(args) => jobs::job(Job::TrainVae, args),
        Command::Suggest(args) => jobs::job(Job::Suggest, args),
        Command::Export(args) => project::export_cmd(args),
        Command::Import(args) => project::import_cmd(args),
        Command::Train(args) => jobs::job(Job::Train, args),
        Command::Evaluate(args) => jobs::job(Job::Evaluate, args),
        Command::Status(args) => project::status(args),
        Command::Logs(args) => project::logs(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Cancel(args) => project::cancel(args),
        Command::Relink(args) => project::relink(args),
        Command::Show(args) => show::run(args),
        Command::Worker(args) => jobs::worker(args),
        Command::Phantom(args) => phantom(args),
        Command::Store(args) => store::run(args),
        Command::Info(args) => inspect::run(args),
        Command::Gpu(args) => gpu::info(args),
        Command::GpuWarmup(args) => gpu::warmup(args),
        Command::Config(args) => {
            print!("{}", args.selection.resolve()?.to_toml());
            Ok(())
        }
    }
}

/// Opens the TUI; outside a project, says how to get one.
pub fn tui(dir: &std::path::Path) -> Result<()> {
    tui_with_import_prefill(dir, None)
}

pub fn tui_with_import_prefill(dir: &std::path::Path, prefill: Option<String>) -> Result<()> {
    if !dir.join(nextslice::layout::CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} is not a nextslice project. Open one with `nextslice tui DIR`, create one with \
             `nextslice init`, or try `nextslice demo`. All commands: `nextslice --help`.",
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .display()
        );
    }
    Ok(nextslice::tui::run_with_import_prefill(dir, prefill)?)
}

fn phantom(args: PhantomArgs) -> Result<()> {
    use nextslice::progress::StderrProgress;
    use nextslice::volume::phantom::{PhantomSpec, write_phantom};
    check_phantom_args(args.subjects, args.size)?;
    let spec = PhantomSpec {
        kind: args.kind,
        subjects: args.subjects,
        size: args.size,
        seed: args.seed,
    };
    let [x, y, z] = spec.dims();
    let ids = write_phantom(&args.out, &spec, &StderrProgress::default())?;
    println!(
        "wrote {} {} phantoms of {x}×{y}×{z} voxels to {}",
        ids.len(),
        match args.kind {
            PhantomKind::Tumour => "tumour (BraTS layout)",
            PhantomKind::Tissue => "tissue (MALC layout)",
        },
        args.out.display()
    );
    Ok(())
}

/// Refuses phantom sizes that cannot work, before any file is written.
pub fn check_phantom_args(subjects: usize, size: usize) -> Result<()> {
    use nextslice::volume::phantom::PhantomSpec;
    anyhow::ensure!(subjects > 0, "--subjects must be at least 1");
    let sizes = PhantomSpec::SIZES;
    anyhow::ensure!(
        sizes.contains(&size),
        "--size must be between {} and {} voxels",
        sizes.start(),
        sizes.end()
    );
    Ok(())
}
