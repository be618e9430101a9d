//! Project subcommands: `init`, the round steps, mask exchange, and watching
//! the worker (`status`, `logs`, `cancel`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use nextslice::config::{DeviceSpec, Preset};
use nextslice::journal::{Event, EventLog, Job, Logged, running_worker};
use nextslice::layout::WORKER_LOG;
use nextslice::progress::{StderrProgress, format_duration};
use nextslice::project::actions::{check_import, confirm_import, export_pending, request_cancel};
use nextslice::project::{Phase, Project};
use nextslice::worker::{run_job, spawn};

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
}

pub fn init(args: InitArgs) -> Result<()> {
    let project = Project::init(&args.dir, &args.data, args.preset, &args.files)?;
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
    println!(
        "  config   {} (edit to taste)",
        project.path("project.toml").display()
    );
    println!("next: nextslice train-vae -p {}", args.dir.display());
    Ok(())
}

/// How a long step runs.
#[derive(Args, Debug)]
pub struct JobArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// auto | cpu | cuda | cuda:N (default: the project's device.kind).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Wait for the job to finish, showing its progress.
    #[arg(long, conflicts_with = "foreground")]
    wait: bool,
    /// Run in this process instead of a detached worker.
    #[arg(long)]
    foreground: bool,
}

pub fn job(job: Job, args: JobArgs) -> Result<()> {
    launch(job, &args, print_next)
}

/// Starts `job` as `args` ask (detached, waited for, or in this process);
/// `after` tells what to do next once it has finished here.
pub fn launch(job: Job, args: &JobArgs, after: fn(&Path) -> Result<()>) -> Result<()> {
    let dir = &args.project.project;
    let project = Project::open(dir)?;
    let device = args.device.unwrap_or(project.config.device.kind);
    if args.foreground {
        println!("{}", run_foreground(dir, job, device)?);
        return after(dir);
    }
    let log = EventLog::new(dir);
    let (_, offset) = log.read_from(0)?;
    let child = spawn(dir, job, device)?;
    if !args.wait {
        println!(
            "{} started in the background (worker pid {}); it keeps running if you log out.",
            job.name(),
            child.id()
        );
        println!(
            "watch: nextslice status -p {0}   ·   nextslice logs -f -p {0}   ·   stop: nextslice cancel -p {0}",
            dir.display()
        );
        return Ok(());
    }
    follow_job(dir, job, offset, child)?;
    after(dir)
}

/// Follows the event log from `offset` until the worker we started ends its
/// job and exits (so its lock is free for the next step); errors if the
/// job failed, was cancelled, or the worker died.
fn follow_job(
    dir: &Path,
    job: Job,
    mut offset: u64,
    mut worker: std::process::Child,
) -> Result<()> {
    let log = EventLog::new(dir);
    let pid = worker.id();
    let mut started = false;
    loop {
        let exited = worker.try_wait()?;
        let (events, next) = log.read_from(offset)?;
        offset = next;
        for e in &events {
            let outcome = match &e.event {
                Event::JobStarted { pid: p, .. } if *p == pid => {
                    started = true;
                    None
                }
                _ if !started => continue, // e.g. the report of an earlier, killed worker
                Event::JobFinished { job: j, summary } if *j == job => Some(Ok(summary.clone())),
                Event::JobFailed { job: j, error } if *j == job => {
                    Some(Err(format!("{job} failed: {error}")))
                }
                Event::JobCancelled { job: j } if *j == job => {
                    Some(Err(format!("{job} was cancelled; run it again to resume")))
                }
                _ => None,
            };
            if let Some(outcome) = outcome {
                // The worker logs its outcome, then releases the lock and exits.
                worker.wait()?;
                eprintln!();
                return match outcome {
                    Ok(summary) => {
                        println!("{summary}");
                        Ok(())
                    }
                    Err(message) => bail!(message),
                };
            }
            eprint!("\r\x1b[2K{}", describe(e));
        }
        if let Some(status) = exited {
            let tail = std::fs::read_to_string(dir.join(WORKER_LOG)).unwrap_or_default();
            let last: Vec<&str> = tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "the worker exited ({status}) without finishing {job}:\n{}",
                last.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `job` in this process, showing its progress from the event log.
pub fn run_foreground(dir: &Path, job: Job, device: DeviceSpec) -> Result<String> {
    let log = EventLog::new(dir);
    let (_, start) = log.read_from(0)?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut offset = start;
            let mut shown = false;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Relaxed);
                if let Ok((events, next)) = log.read_from(offset) {
                    offset = next;
                    for e in events.iter().filter(|e| {
                        matches!(e.event, Event::Progress { .. } | Event::Checkpoint { .. })
                    }) {
                        eprint!("\r\x1b[2K   {}", describe(e));
                        shown = true;
                    }
                }
                if finished {
                    if shown {
                        eprintln!();
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let result = run_job(dir, job, device);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    Ok(result?)
}

/// One line per event, as `logs` prints them.
fn describe(e: &Logged) -> String {
    match &e.event {
        Event::JobStarted { job, pid, device } => format!("{job}: started (pid {pid}, {device})"),
        Event::Progress {
            job,
            stage,
            epoch,
            epochs,
            done,
            total,
            loss,
            rate,
            eta_seconds,
            overall,
        } => {
            let mut s = match overall {
                Some(o) => format!("{job} [{}/{} trainings · {}]", o.done, o.total, o.what),
                None => job.to_string(),
            };
            if !stage.is_empty() {
                s += &format!(": {stage}");
            }
            if let (Some(e), Some(n)) = (epoch, epochs) {
                s += &format!(" epoch {e}/{n}");
            }
            if *total > 0 {
                s += &format!(" {done}/{total}");
            }
            if let Some(l) = loss {
                s += &format!(" loss {l:.4}");
            }
            if let Some(r) = rate {
                s += &format!(" {r:.1} slices/s");
            }
            if let Some(eta) = eta_seconds {
                s += &format!(
                    " ETA {}",
                    format_duration(Duration::from_secs_f64(eta.max(0.0)))
                );
            }
            s
        }
        Event::Checkpoint {
            job,
            epoch,
            epochs,
            loss,
        } => format!("{job}: epoch {epoch}/{epochs} done, mean loss {loss:.4} (checkpoint saved)"),
        Event::JobFinished { job, summary } => format!("{job}: finished — {summary}"),
        Event::JobFailed { job, error } => format!("{job}: FAILED — {error}"),
        Event::JobCancelled { job } => format!("{job}: cancelled"),
        Event::Transition {
            from,
            to,
            round,
            reason,
        } => format!("round {round}: {from} → {to} ({reason})"),
    }
}

fn print_next(dir: &Path) -> Result<()> {
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
    println!(
        "send the folder to the annotators; manifest.csv names the mask expected back for each slice."
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
    match running_worker(dir) {
        Some(holder) => {
            let events = EventLog::new(dir).read_all()?;
            let last = events
                .iter()
                .rev()
                .find(|e| matches!(e.event, Event::Progress { .. }));
            println!(
                "job      {} running (pid {}, {})",
                holder.job, holder.pid, holder.device
            );
            if let Some(e) = last {
                println!("         {}", describe(e));
            }
        }
        None => {
            let events = EventLog::new(dir).read_all()?;
            let last = events.iter().rev().find(|e| {
                matches!(
                    e.event,
                    Event::JobFinished { .. }
                        | Event::JobFailed { .. }
                        | Event::JobCancelled { .. }
                )
            });
            match last {
                Some(e) => println!("job      none running; last: {}", describe(e)),
                None => println!("job      none running"),
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
    let mut offset = 0;
    loop {
        let (events, next) = log.read_from(offset)?;
        offset = next;
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
            "cancel requested: {} (pid {}) stops after its current batch; its last checkpoint is kept.",
            holder.job, holder.pid
        ),
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    project: PathBuf,
    #[arg(long, value_enum)]
    job: Job,
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
}

/// The detached worker's entry point.
pub fn worker(args: WorkerArgs) -> Result<()> {
    let summary = run_job(&args.project, args.job, args.device)?;
    println!("{summary}");
    Ok(())
}
