//! The long steps from the command line: started detached (the default),
//! waited for (`--wait`, following the event log until the worker exits),
//! or run in this process (`--foreground`); and the worker's own entry.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;

use nextslice::config::DeviceSpec;
use nextslice::journal::{Cursor, Event, EventLog, Job, Logged};
use nextslice::layout::WORKER_LOG;
use nextslice::project::Project;
use nextslice::worker::{run_job, spawn};

use super::events::describe;
use super::project::{ProjectArg, print_next};

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
    if let Some(line) = super::forecast::line(&project, job) {
        println!("{line}");
    }
    if args.foreground {
        println!("{}", run_foreground(dir, job, device)?);
        return after(dir);
    }
    let log = EventLog::new(dir);
    let (_, cursor) = log.follow(Cursor::default())?;
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
    follow_job(dir, job, cursor, child)?;
    after(dir)
}

/// A job's progress on stderr: one line redrawn in place on a terminal; in
/// a pipe or a log file, a plain line at most every few seconds (and every
/// checkpoint), never carriage returns and escape codes.
struct LiveLine {
    terminal: bool,
    last: Option<Instant>,
    shown: bool,
}

impl LiveLine {
    const PLAIN_EVERY: Duration = Duration::from_secs(5);

    fn new() -> LiveLine {
        LiveLine {
            terminal: std::io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    fn show(&mut self, e: &Logged, indent: &str) {
        let line = describe(e);
        if self.terminal {
            eprint!("\r\x1b[2K{indent}{line}");
            self.shown = true;
            return;
        }
        let checkpoint = matches!(e.event, Event::Checkpoint { .. });
        if checkpoint || self.last.is_none_or(|t| t.elapsed() >= Self::PLAIN_EVERY) {
            eprintln!("{indent}{line}");
            self.last = Some(Instant::now());
        }
    }

    /// Ends the redrawn line, so what follows starts on its own.
    fn finish(&mut self) {
        if self.terminal && self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}

/// Follows the event log from `cursor` until the worker we started ends its
/// job and exits (so its lock is free for the next step); errors if the
/// job failed, was cancelled, or the worker died.
fn follow_job(
    dir: &Path,
    job: Job,
    mut cursor: Cursor,
    mut worker: std::process::Child,
) -> Result<()> {
    let log = EventLog::new(dir);
    let pid = worker.id();
    let mut started = false;
    let mut live = LiveLine::new();
    loop {
        let exited = worker.try_wait()?;
        let (events, next) = log.follow(cursor)?;
        cursor = next;
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
                live.finish();
                return match outcome {
                    Ok(summary) => {
                        println!("{summary}");
                        Ok(())
                    }
                    Err(message) => bail!(message),
                };
            }
            live.show(e, "");
        }
        if let Some(status) = exited {
            live.finish();
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
    let (_, start) = log.follow(Cursor::default())?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut cursor = start;
            let mut live = LiveLine::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Relaxed);
                if let Ok((events, next)) = log.follow(cursor) {
                    cursor = next;
                    for e in events.iter().filter(|e| {
                        matches!(e.event, Event::Progress(_) | Event::Checkpoint { .. })
                    }) {
                        live.show(e, "   ");
                    }
                }
                if finished {
                    live.finish();
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

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    project: std::path::PathBuf,
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
