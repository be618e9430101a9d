//! Project subcommands: `init`, mask exchange (`export`, `import`), and
//! watching the worker (`status`, `logs`, `cancel`). The long steps are in
//! `jobs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use nextslice::config::{Preset, SamplingUnit, shared_store_root};
use nextslice::journal::{Cursor, Event, EventLog, Logged, now, running_worker};
use nextslice::progress::{StderrProgress, format_duration};
use nextslice::project::actions::{check_import, confirm_import, export_pending, request_cancel};
use nextslice::project::{Phase, Project, StorePlace};
use nextslice::worker::CANCEL_GRACE;

use super::events::describe;

/// The project a command works on.
#[derive(Args, Debug, Clone)]
pub struct ProjectArg {
    /// Project directory (default: the current directory).
    #[arg(long, short = 'p', default_value = ".")]
    pub project: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory for the new project.
    dir: PathBuf,
    /// The dataset directory.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Preset::Brats2019)]
    preset: Preset,
    /// TOML files laid over the preset.
    #[arg(long = "config", value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreRootArgs,
}

/// Where a new project keeps its slice stores.
#[derive(Args, Debug, Clone)]
pub struct StoreRootArgs {
    /// Keep slice stores in this directory, shared with every project that
    /// uses it (default: $NEXTSLICE_STORE_ROOT, else the user's data dir).
    #[arg(long, value_name = "DIR", conflicts_with = "private_store")]
    store_root: Option<PathBuf>,
    /// Keep the slice store inside the project instead (not shared).
    #[arg(long)]
    private_store: bool,
}

impl StoreRootArgs {
    /// Where a new project keeps its stores: the flags win over the
    /// configuration files, which win over the shared default.
    pub fn resolve(&self) -> Result<StorePlace> {
        Ok(match (&self.store_root, self.private_store) {
            (_, true) => StorePlace::Private,
            (Some(root), false) => StorePlace::At(std::path::absolute(root)?),
            (None, false) => StorePlace::Configured {
                default: shared_store_root(),
            },
        })
    }
}

pub fn init(args: InitArgs) -> Result<()> {
    let root = args.store.resolve()?;
    let project = Project::init(&args.dir, &args.data, args.preset, &args.files, root)?;
    let state = project.state()?;
    let cases = project.discover()?.cases.len();
    println!(
        "project {} created from the {} preset",
        args.dir.display(),
        args.preset.name()
    );
    println!(
        "  data     {} ({cases} cases; {} held out for testing)",
        project.data_root()?.display(),
        state.test_cases.len()
    );
    if project.config.store.root.is_some() {
        println!(
            "  stores   {} (shared by projects on the same data; `nextslice store --gc` frees unused ones)",
            project.store_root().display()
        );
    } else {
        println!(
            "  stores   {} (inside the project)",
            project.store_root().display()
        );
    }
    println!(
        "  config   {} (edit to taste)",
        project.path("project.toml").display()
    );
    println!("next: nextslice train-vae -p {}", args.dir.display());
    Ok(())
}

pub fn print_next(dir: &Path) -> Result<()> {
    let project = Project::open(dir)?;
    let state = project.state()?;
    let command = match state.phase {
        Phase::NeedVae => "nextslice train-vae",
        Phase::Seeding | Phase::Suggesting => "nextslice suggest",
        Phase::AwaitingMasks => "nextslice export, then nextslice import MASKS…",
        Phase::Training => "nextslice train",
        Phase::Done => "nextslice evaluate",
    };
    println!(
        "next: {} — {command} -p {}",
        state.phase.describe(),
        dir.display()
    );
    Ok(())
}

pub fn export_cmd(args: ProjectArg) -> Result<()> {
    let project = Project::open(&args.project)?;
    let done = export_pending(&project, &StderrProgress::default())?;
    println!(
        "exported {} slices ({} files) to {}",
        done.slices,
        done.files,
        done.dir.display()
    );
    let each = match project.config.sampling.unit {
        SamplingUnit::Slice => "slice",
        SamplingUnit::Volume => "volume (a 3D mask)",
    };
    println!(
        "send the folder to the annotators; manifest.csv names the mask expected back for each {each}."
    );
    println!(
        "then: nextslice import -p {} MASKS…",
        args.project.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    project: ProjectArg,
    /// Mask files or directories of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Accept the valid masks even if some files are rejected.
    #[arg(long)]
    partial: bool,
}

pub fn import_cmd(args: ImportArgs) -> Result<()> {
    let dir = &args.project.project;
    let project = Project::open(dir)?;
    let plan = check_import(&project, &args.paths, &StderrProgress::default())?;
    print!("{}", plan.report());
    if !plan.problems.is_empty() && !args.partial {
        bail!(
            "{} file(s) rejected; nothing was imported (fix them, or use --partial to take the valid ones)",
            plan.problems.len()
        );
    }
    let done = confirm_import(&project, &plan)?;
    println!(
        "imported {} masks; {} still awaited",
        done.accepted, done.remaining
    );
    print_next(dir)
}

pub fn status(args: ProjectArg) -> Result<()> {
    let dir = &args.project;
    let project = Project::open(dir)?;
    let state = project.state()?;
    println!(
        "project  {}",
        std::fs::canonicalize(dir).unwrap_or(dir.clone()).display()
    );
    println!(
        "round    {} · {} — next: {}",
        state.round,
        state.phase,
        state.phase.describe()
    );
    println!(
        "slices   {} labelled · {} awaiting masks · {} test cases held out",
        state.labelled.len(),
        state.pending.len(),
        state.test_cases.len()
    );
    if let Some(quality) = &state.vae_quality {
        println!("vae      {}", quality.describe());
    }
    if let Some(step) = state
        .gradient_step
        .as_ref()
        .filter(|_| !state.pending.is_empty())
    {
        println!("step     {}", step.describe());
    }
    let events = EventLog::new(dir).read_all()?;
    match running_worker(dir) {
        Some(holder) => {
            let last = events
                .iter()
                .rev()
                .find(|e| matches!(e.event, Event::Progress(_)));
            let device = if holder.device.is_empty() {
                String::new()
            } else {
                format!(", {}", holder.device)
            };
            // How long it has run, and how old its last word is: a job
            // inside a slow batch (a GPU tuning kernels) says nothing for a
            // while, and the operator should see that it is a while.
            let ago = |time: f64| format_duration(Duration::from_secs_f64((now() - time).max(0.0)));
            println!(
                "job      {} running for {} (pid {}{device})",
                holder.job,
                ago(holder.started),
                holder.pid
            );
            if let Some(e) = last {
                let age = if now() - e.time >= 5.0 {
                    format!(" ({} ago)", ago(e.time))
                } else {
                    String::new()
                };
                println!("         {}{age}", describe(e));
            }
        }
        None => {
            let ended = |e: &&Logged| {
                matches!(
                    e.event,
                    Event::JobFinished { .. }
                        | Event::JobFailed { .. }
                        | Event::JobCancelled { .. }
                )
            };
            let last_start = events
                .iter()
                .rposition(|e| matches!(e.event, Event::JobStarted { .. }));
            let last_end = events.iter().rposition(|e| ended(&e));
            match (last_start, last_end) {
                // Started after the last outcome, and nobody holds the lock:
                // killed (kill -9, OOM killer, power) before it could say so.
                (Some(start), end) if end.is_none_or(|end| end < start) => {
                    let job = events[start].event.job().map_or("?", |j| j.name());
                    println!(
                        "job      none running; last: {job} stopped without finishing (killed or crashed) — run it again to resume"
                    );
                }
                (_, Some(end)) => {
                    println!("job      none running; last: {}", describe(&events[end]))
                }
                (_, None) => println!("job      none running"),
            }
        }
    }
    if let Some(record) = state.history.last() {
        let dice: Vec<String> = record
            .dice
            .iter()
            .map(|(r, d)| format!("{r} {d:.3}"))
            .collect();
        println!(
            "last     round {}: {} slices ({:.1}% of the pool){}",
            record.round,
            record.labelled,
            100.0 * record.budget,
            if dice.is_empty() {
                String::new()
            } else {
                format!(" · Dice {}", dice.join(" "))
            }
        );
        if let Some(validation) = &record.validation {
            println!("held out Dice {}", validation.short());
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    project: ProjectArg,
    /// Keep following new events.
    #[arg(long, short = 'f')]
    follow: bool,
}

pub fn logs(args: LogsArgs) -> Result<()> {
    let dir = &args.project.project;
    Project::open(dir)?;
    let log = EventLog::new(dir);
    let mut cursor = Cursor::default();
    loop {
        let (events, next) = log.follow(cursor)?;
        cursor = next;
        for e in &events {
            println!("{}", describe(e));
        }
        if !args.follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn cancel(args: ProjectArg) -> Result<()> {
    let dir = &args.project;
    Project::open(dir)?;
    match request_cancel(dir)? {
        None => println!("no job is running"),
        Some(holder) => println!(
            "cancel requested: {} (pid {}) stops after its current batch, or is ended in {} s if that batch goes on (a GPU kernel being tuned); a training keeps its last epoch's checkpoint.",
            holder.job,
            holder.pid,
            CANCEL_GRACE.as_secs()
        ),
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RelinkArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Where the project's dataset is now.
    #[arg(long)]
    pub data: PathBuf,
}

/// `relink`: checks the data at its new place is the data the store was
/// built from (by content), then points `dataset.root` there.
pub fn relink(args: RelinkArgs) -> Result<()> {
    let dir = &args.project.project;
    let project = Project::open(dir)?;
    if let Some(holder) = running_worker(dir) {
        anyhow::bail!(
            "a worker (pid {}) is running `{}` in this project; relink when it is done",
            holder.pid,
            holder.job
        );
    }
    let done = project.relink(
        &args.data,
        &nextslice::progress::StderrProgress::default(),
        &std::sync::atomic::AtomicBool::new(false),
    )?;
    println!(
        "relinked: {} → {} ({} cases, same content; store {} kept, with its latents, masks and rounds)",
        done.from
            .as_deref()
            .map_or("(none)".into(), |p| p.display().to_string()),
        done.to.display(),
        done.cases,
        done.store_key
    );
    Ok(())
}
