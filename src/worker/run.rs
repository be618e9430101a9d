//! Running a job: in this process (`run_job`), or in a detached worker
//! process (`spawn`) that survives the terminal and SSH session.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burn::tensor::backend::AutodiffBackend;

use super::events::{Event, EventLog, Overall};
use super::lock::{Holder, LockError, WorkerLock, running_worker};
use crate::config::DeviceSpec;
use crate::device::{BackendTask, Device, with_backend};
use crate::progress::{Progress, ProgressUpdate};
use crate::project::Project;
use crate::project::engine::{
    EngineError, StepContext, evaluate_step, suggest_step, train_step, train_vae_step,
};
use crate::train::{TrainEvent, TrainObserver};

/// A file whose existence asks the running job to stop.
pub const CANCEL_FILE: &str = "cancel";
/// Where a detached worker's stdout and stderr go.
pub const WORKER_LOG: &str = "worker.log";

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Train the VAE on the pool and encode it.
    TrainVae,
    /// Suggest the next batch (random seed batch in round 0).
    Suggest,
    /// Train the U-Net on the labelled slices.
    Train,
    /// Dice per region on the test set.
    Evaluate,
    /// Replay the planned strategy comparison with ground-truth masks.
    Simulate,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::TrainVae => "train-vae",
            Job::Suggest => "suggest",
            Job::Train => "train",
            Job::Evaluate => "evaluate",
            Job::Simulate => "simulate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    #[error("cannot start the worker: {0}")]
    Spawn(std::io::Error),
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Forwards progress and training events to the event log, at most a few
/// per second (plus every epoch end), so the log stays small.
struct LogReporter<'a> {
    log: &'a EventLog,
    job: Job,
    last: Mutex<Option<Instant>>,
    /// The job's overall position, carried on every progress event.
    overall: Mutex<Option<Overall>>,
}

impl LogReporter<'_> {
    fn overall_now(&self) -> Option<Overall> {
        self.overall.lock().ok().and_then(|o| o.clone())
    }

    fn due(&self, force: bool) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = Instant::now();
        if force || last.is_none_or(|t| now - t >= Duration::from_millis(500)) {
            *last = Some(now);
            true
        } else {
            false
        }
    }
}

impl Progress for LogReporter<'_> {
    fn update(&self, u: &ProgressUpdate<'_>) {
        if self.due(u.done >= u.total) {
            let _ = self.log.append(Event::Progress {
                job: self.job.name().into(),
                stage: u.stage.into(),
                epoch: None,
                epochs: None,
                done: u.done,
                total: u.total,
                loss: None,
                rate: None,
                eta_seconds: None,
                overall: self.overall_now(),
            });
        }
    }

    fn overall(&self, done: u64, total: u64, what: &str) {
        let overall = Overall {
            done,
            total,
            what: what.to_string(),
        };
        if let Ok(mut slot) = self.overall.lock() {
            *slot = Some(overall.clone());
        }
        let _ = self.log.append(Event::Progress {
            job: self.job.name().into(),
            stage: String::new(),
            epoch: None,
            epochs: None,
            done: 0,
            total: 0,
            loss: None,
            rate: None,
            eta_seconds: None,
            overall: Some(overall),
        });
    }
}

impl TrainObserver for LogReporter<'_> {
    fn event(&self, event: &TrainEvent) {
        match event {
            TrainEvent::Batch(b) if self.due(b.batch == b.batches) => {
                let _ = self.log.append(Event::Progress {
                    job: self.job.name().into(),
                    stage: format!("{} training", b.phase.name()),
                    epoch: Some(b.epoch),
                    epochs: Some(b.epochs),
                    done: b.batch as u64,
                    total: b.batches as u64,
                    loss: Some(b.loss),
                    rate: Some(b.slices_per_second),
                    eta_seconds: Some(b.eta_seconds),
                    overall: self.overall_now(),
                });
            }
            TrainEvent::EpochDone {
                epoch,
                epochs,
                mean_loss,
                ..
            } => {
                let _ = self.log.append(Event::Checkpoint {
                    job: self.job.name().into(),
                    epoch: *epoch,
                    epochs: *epochs,
                    loss: *mean_loss,
                });
            }
            _ => {}
        }
    }
}

struct StepTask<'a> {
    job: Job,
    project: &'a Project,
    ctx: StepContext<'a>,
}

impl BackendTask for StepTask<'_> {
    type Output = Result<String, EngineError>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        match self.job {
            Job::TrainVae => train_vae_step::<B>(self.project, &self.ctx, &device),
            Job::Suggest => suggest_step::<B>(self.project, &self.ctx, &device),
            Job::Train => train_step::<B>(self.project, &self.ctx, &device),
            Job::Simulate => crate::simulate::simulate::<B>(self.project, &self.ctx, &device)
                .map_err(EngineError::from),
            Job::Evaluate => evaluate_step::<B>(self.project, &self.ctx, &device).map(|e| {
                let dice: Vec<String> = e.dice.iter().map(|(r, d)| format!("{r} {d:.3}")).collect();
                let hd: Vec<String> = e.hd95.iter().map(|(r, d)| format!("{r} {d:.1}")).collect();
                format!(
                    "test-set Dice: {} · HD95 mm: {} ({} volumes)",
                    dice.join(", "),
                    hd.join(", "),
                    e.volumes
                )
            }),
        }
    }
}

/// Runs `job` in this process: takes the lock, logs start/progress/outcome,
/// and stops when a cancel request appears. Returns the job's summary.
pub fn run_job(dir: &Path, job: Job, device: DeviceSpec) -> Result<String, WorkerError> {
    let project = Project::open(dir)?;
    let log = EventLog::new(dir);
    let device = match Device::resolve(device) {
        Ok(d) => d,
        Err(e) => {
            let _ = log.append(Event::JobFailed {
                job: job.name().into(),
                error: e.to_string(),
            });
            return Err(e.into());
        }
    };
    let holder = Holder {
        pid: std::process::id(),
        job: job.name().into(),
        device: device.describe(),
        started: now(),
    };
    let lock = WorkerLock::acquire(dir, &holder)?;
    if let Some(stale) = &lock.stale {
        let _ = log.append(Event::JobFailed {
            job: stale.job.clone(),
            error: format!("worker (pid {}) stopped without finishing — killed or crashed; run the step again to resume", stale.pid),
        });
    }
    let _ = std::fs::remove_file(dir.join(CANCEL_FILE));
    let _ = log.append(Event::JobStarted {
        job: job.name().into(),
        pid: holder.pid,
        device: holder.device.clone(),
    });

    let cancel = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let reporter = LogReporter {
        log: &log,
        job,
        last: Mutex::new(None),
        overall: Mutex::new(None),
    };
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                if dir.join(CANCEL_FILE).exists() {
                    cancel.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let ctx = StepContext {
            progress: &reporter,
            observer: &reporter,
            cancel: &cancel,
            log: &log,
        };
        let result = with_backend(
            device,
            StepTask {
                job,
                project: &project,
                ctx,
            },
        );
        finished.store(true, Ordering::Relaxed);
        result
    });
    let _ = std::fs::remove_file(dir.join(CANCEL_FILE));
    let outcome = match result {
        Ok(Ok(summary)) => {
            let _ = log.append(Event::JobFinished {
                job: job.name().into(),
                summary: summary.clone(),
            });
            Ok(summary)
        }
        Ok(Err(EngineError::Cancelled)) => {
            let _ = log.append(Event::JobCancelled {
                job: job.name().into(),
            });
            Err(EngineError::Cancelled.into())
        }
        Ok(Err(e)) => {
            let _ = log.append(Event::JobFailed {
                job: job.name().into(),
                error: e.to_string(),
            });
            Err(e.into())
        }
        Err(e) => {
            let _ = log.append(Event::JobFailed {
                job: job.name().into(),
                error: e.to_string(),
            });
            Err(e.into())
        }
    };
    lock.release();
    outcome
}

/// Starts `nextslice worker` for `job` in a new session with its output in
/// `worker.log`. Refuses if a worker is running. The returned child is only
/// for waiting on; dropping it leaves the worker running.
pub fn spawn(dir: &Path, job: Job, device: DeviceSpec) -> Result<std::process::Child, WorkerError> {
    if let Some(holder) = running_worker(dir) {
        return Err(LockError::Busy(holder).into());
    }
    let exe = std::env::current_exe().map_err(WorkerError::Spawn)?;
    // Upgraded while running: Linux reports "<path> (deleted)"; the new
    // binary at the same path is the one to start.
    let exe = if exe.exists() {
        exe
    } else {
        PathBuf::from(exe.to_string_lossy().trim_end_matches(" (deleted)"))
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(WORKER_LOG))
        .map_err(WorkerError::Spawn)?;
    let err = log.try_clone().map_err(WorkerError::Spawn)?;
    let dir: PathBuf = std::fs::canonicalize(dir).map_err(WorkerError::Spawn)?;
    let mut command = Command::new(exe);
    command
        .args(["worker", "--project"])
        .arg(&dir)
        .args(["--job", job.name(), "--device", &device.to_string()])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the child from the
    // controlling terminal so a hang-up (closed SSH session) does not reach it.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(WorkerError::Spawn)
}
