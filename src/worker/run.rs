//! Running a job: in this process (`run_job`), or in a detached worker
//! process (`spawn`) that survives the terminal and SSH session.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;

use super::crash::{PanicWatch, crash_hint, headline, is_out_of_memory, panic_message};
use super::ending::{cancel_grace, end_unresponsive_job, exit_now, log_ending, notify_ending};
use super::notify::NOTIFY_WAIT;
use super::reporter::LogReporter;

use crate::config::DeviceSpec;
use crate::device::{BackendTask, Device, with_backend};
use crate::engine::{
    EngineError, StepContext, evaluate_step, suggest_step, train_step, train_vae_step,
};
use crate::gpu::tuning::{TuningMonitor, TuningSnapshot};
use crate::journal::{
    COMPACT_ABOVE, Event, EventLog, Holder, Job, LockError, WorkerLock, cancel_requested,
    clear_cancel, now, wait_until_free,
};
use crate::layout::WORKER_LOG;
use crate::project::{Project, ProjectError};
use crate::simulate::SimulateError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("cannot start the worker: {0}")]
    Spawn(std::io::Error),
    #[error("`{0}` is not a job the worker runs")]
    NotAWorkerJob(Job),
    #[error("the job crashed: {}; {hint}", headline(.message), hint = crash_hint(.message))]
    Panicked { message: String },
    /// Another thread panicked first: cubecl's device thread, where a GPU
    /// allocation fails (`worker::crash`), or a CPU kernel's worker thread.
    #[error(
        "the job crashed: {}, in thread {thread}; {hint}. The job's own error followed: {then}",
        headline(.message),
        hint = crash_hint(.message)
    )]
    ThreadPanicked {
        thread: String,
        message: String,
        then: String,
    },
}

impl WorkerError {
    /// A panic in the job's thread, caught.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        WorkerError::Panicked {
            message: panic_message(payload),
        }
    }

    /// `f`'s value, or its panic as an error blamed on its cause in
    /// another thread (see [`WorkerError::blamed_on`]).
    pub fn caught<T>(f: impl FnOnce() -> T) -> Result<T, WorkerError> {
        let watch = PanicWatch::start();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|payload| WorkerError::from_panic(payload.as_ref()).blamed_on(&watch))
    }

    /// What a foreground command (`gpu-warmup`) says of this error. A
    /// crash's panic went to the terminal, printed above this line, not
    /// into `worker.log`, which the worker's hint names. Out of memory
    /// keeps its hint (a smaller batch).
    pub fn in_foreground(&self) -> String {
        let crashed = |message: &str, thread: Option<&str>| {
            let in_thread = thread
                .map(|t| format!(", in thread {t}"))
                .unwrap_or_default();
            format!(
                "crashed: {}{in_thread}; the panic printed above has the details",
                headline(message)
            )
        };
        match self {
            WorkerError::Panicked { message } if !is_out_of_memory(message) => {
                crashed(message, None)
            }
            WorkerError::ThreadPanicked {
                thread, message, ..
            } if !is_out_of_memory(message) => crashed(message, Some(thread)),
            _ => self.to_string(),
        }
    }

    /// A panic in the job's thread, blamed on its cause in another thread
    /// since `watch` started, if there was one (`PanicWatch::cause`): the
    /// job's own panic is then a consequence (a GPU read after the device
    /// thread died). Other errors say what they are.
    pub fn blamed_on(self, watch: &PanicWatch) -> Self {
        let WorkerError::Panicked { message } = &self else {
            return self;
        };
        let Some(cause) = watch.cause() else {
            return self;
        };
        let then = headline(message);
        // A panic re-raised from a worker thread (rayon) is not a cause.
        if headline(&cause.message) == then {
            return self;
        }
        WorkerError::ThreadPanicked {
            thread: cause.thread,
            message: cause.message,
            then,
        }
    }

    /// The job stopped because a cancel was asked for (in a model loop or
    /// while the slice store was being built).
    pub fn is_cancelled(&self) -> bool {
        let store_cancelled =
            |e: &ProjectError| matches!(e, ProjectError::Store(StoreError::Cancelled));
        let engine_cancelled = |e: &EngineError| match e {
            EngineError::Cancelled | EngineError::Store(StoreError::Cancelled) => true,
            EngineError::Project(p) => store_cancelled(p),
            _ => false,
        };
        match self {
            WorkerError::Engine(e) | WorkerError::Simulate(SimulateError::Engine(e)) => {
                engine_cancelled(e)
            }
            WorkerError::Simulate(SimulateError::Project(p)) | WorkerError::Project(p) => {
                store_cancelled(p)
            }
            WorkerError::Simulate(SimulateError::Store(StoreError::Cancelled)) => true,
            _ => false,
        }
    }
}

struct StepTask<'a> {
    job: Job,
    project: &'a Project,
    ctx: StepContext<'a>,
}

impl BackendTask for StepTask<'_> {
    type Output = Result<String, WorkerError>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let (project, ctx) = (self.project, &self.ctx);
        // On a GPU, tune the project's kernel shapes first (once per GPU,
        // driver and shapes), with its own progress stage.
        // A simulation runs its plan's strategies, not the project's.
        let plan = match self.job {
            Job::Simulate => crate::simulate::load_plan(project).ok().flatten(),
            _ => None,
        };
        let shapes = plan.as_ref().unwrap_or(&project.config);
        let warm = crate::engine::ensure_warm::<B>(shapes, &device, ctx)?;
        let warmed = crate::gpu::monitor().snapshot();
        let summary = match self.job {
            Job::TrainVae => train_vae_step::<B>(project, ctx, &device)?,
            Job::Suggest => suggest_step::<B>(project, ctx, &device)?,
            Job::Train => train_step::<B>(project, ctx, &device)?,
            Job::Evaluate => evaluate_step::<B>(project, ctx, &device)?.summary(),
            Job::Simulate => crate::simulate::simulate::<B>(project, ctx, &device)?,
            Job::Import => return Err(WorkerError::NotAWorkerJob(Job::Import)),
        };
        let summary = match warm {
            Some(w) if !w.skipped => format!(
                "{summary} (first, {} GPU kernels tuned in {})",
                w.tuned,
                crate::progress::format_duration(Duration::from_secs_f64(w.seconds))
            ),
            _ => summary,
        };
        Ok(match tuned_during_job(crate::gpu::monitor(), &warmed) {
            Some(late) => format!("{summary}; {late}"),
            None => summary,
        })
    }
}

/// After a GPU job: the kernels tuned since its warm-up, which should be
/// none (every batch has a shape the warm-up tuned). Each goes to
/// worker.log; the job's summary says how many.
fn tuned_during_job(monitor: &TuningMonitor, warmed: &TuningSnapshot) -> Option<String> {
    let late = monitor.keys_after(warmed.started);
    if late.is_empty() {
        return None;
    }
    for key in &late {
        eprintln!("gpu: tuned during the job, not in its warm-up: {key}");
    }
    let plural = if late.len() == 1 { "" } else { "s" };
    Some(format!(
        "{} GPU kernel{plural} tuned during the job, shapes its warm-up missed ({WORKER_LOG} lists them)",
        late.len()
    ))
}

/// Runs `job` in this process: takes the lock, logs start/progress/outcome,
/// and stops when a cancel request appears. Returns the job's summary.
pub fn run_job(dir: &Path, job: Job, device: DeviceSpec) -> Result<String, WorkerError> {
    let project = Project::open(dir)?;
    let log = EventLog::new(dir);
    let spec = device;
    let device = match Device::resolve(spec).and_then(|d| {
        d.prepare(project.config.device.autotune)?;
        Ok(d)
    }) {
        Ok(d) => d,
        Err(e) => {
            let _ = log.append(Event::JobFailed {
                job,
                error: e.to_string(),
            });
            return Err(e.into());
        }
    };
    if let Some(reason) = device.auto_fallback_reason(spec) {
        eprintln!("warning: the GPU is unused, running on the CPU: {reason}");
    }
    let holder = Holder {
        pid: std::process::id(),
        job,
        device: device.describe_choice(spec),
        started: now(),
    };
    let lock = WorkerLock::acquire(dir, &holder)?;
    if let Some(stale) = &lock.stale {
        let _ = log.append(stale.ending());
    }
    clear_cancel(dir);
    // Under the lock, before this job's own lines: keep the log small.
    if let Err(e) = log.compact_if_larger(COMPACT_ABOVE) {
        eprintln!("worker: {e}; the event log stays as it was");
    }
    let _ = log.append(Event::JobStarted {
        job,
        pid: holder.pid,
        device: holder.device.clone(),
    });

    let cancel = AtomicBool::new(false);
    let state = AtomicU8::new(RUNNING);
    let reporter = LogReporter::new(&log, job);
    let started = Instant::now();
    let tuned_before = crate::gpu::monitor().snapshot();
    let grace = cancel_grace();
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut asked: Option<Instant> = None;
            while state.load(Ordering::Relaxed) == RUNNING {
                if cancel_requested(dir) {
                    cancel.store(true, Ordering::Relaxed);
                    asked.get_or_insert_with(Instant::now);
                }
                if asked.is_some_and(|t| t.elapsed() >= grace)
                    && state
                        .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    end_unresponsive_job(job, dir, &log, &lock, &project, started, grace);
                }
                reporter.tuning_heartbeat(&tuned_before, &crate::gpu::monitor().snapshot());
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let ctx = StepContext {
            progress: &reporter,
            observer: &reporter,
            cancel: &cancel,
            log: &log,
        };
        // A panic in the job (a burn or CUDA error, a bug) becomes a failed
        // job with its message, never a worker that dies without a word.
        let result = WorkerError::caught(|| {
            with_backend(
                device,
                StepTask {
                    job,
                    project: &project,
                    ctx,
                },
            )
        });
        if state
            .compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // The watcher is ending this process for a cancel; should it
            // fail to within a minute, this thread does.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                std::thread::park_timeout(Duration::from_secs(1));
            }
            exit_now();
        }
        match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(device)) => Err(WorkerError::Device(device)),
            Err(crashed) => Err(crashed),
        }
    });
    clear_cancel(dir);
    log_ending(&log, job, &result);
    lock.release();
    // After the lock is free, so a command that starts the next step can.
    notify_ending(&project, dir, job, started, &result, NOTIFY_WAIT);
    result
}

/// The watcher's states: the job runs; it returned; the watcher ended it.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Starts `nextslice worker` for `job` in a new session with its output in
/// `worker.log`. Refuses if a worker is running (after waiting briefly for
/// one that is finishing). The returned child is only for waiting on;
/// dropping it leaves the worker running.
pub fn spawn(dir: &Path, job: Job, device: DeviceSpec) -> Result<std::process::Child, WorkerError> {
    if let Some(holder) = wait_until_free(dir) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreground_crash_points_at_its_panic_not_at_worker_log() {
        let crash = WorkerError::ThreadPanicked {
            thread: "cubecl-device".into(),
            message: "index out of bounds\nbacktrace".into(),
            then: "a read failed".into(),
        };
        assert!(crash.to_string().contains(WORKER_LOG));
        assert_eq!(
            crash.in_foreground(),
            "crashed: index out of bounds, in thread cubecl-device; the panic printed above has the details"
        );
        let oom = WorkerError::Panicked {
            message: "CUDA_ERROR_OUT_OF_MEMORY: out of memory".into(),
        };
        assert!(
            oom.in_foreground().contains("batch_size"),
            "{}",
            oom.in_foreground()
        );
        let cancelled = WorkerError::Engine(EngineError::Cancelled);
        assert_eq!(cancelled.in_foreground(), cancelled.to_string());
    }

    #[test]
    fn a_cancel_while_the_store_is_built_is_a_cancel() {
        let store = || StoreError::Cancelled;
        assert!(WorkerError::Engine(EngineError::Cancelled).is_cancelled());
        assert!(
            WorkerError::Engine(EngineError::Project(ProjectError::Store(store()))).is_cancelled()
        );
        assert!(
            WorkerError::Simulate(SimulateError::Project(ProjectError::Store(store())))
                .is_cancelled()
        );
        assert!(
            WorkerError::Simulate(SimulateError::Engine(EngineError::Cancelled)).is_cancelled()
        );
        assert!(!WorkerError::Engine(EngineError::PoolExhausted).is_cancelled());
    }

    #[test]
    fn kernels_tuned_after_the_warm_up_are_counted_in_the_summary() {
        let monitor = TuningMonitor::default();
        monitor.observe("Tuning ConvAutotuneKey { batch_size: 16 }");
        let warmed = monitor.snapshot();
        assert_eq!(tuned_during_job(&monitor, &warmed), None);
        monitor.observe("Tuning ConvAutotuneKey { batch_size: 7 }");
        monitor.observe("Fastest result direct-ConvAutotuneKey { batch_size: 7 }");
        monitor.observe("Tuning ReduceAutotuneKey { VectorCount: 100 }");
        assert_eq!(
            tuned_during_job(&monitor, &warmed).as_deref(),
            Some(
                "2 GPU kernels tuned during the job, shapes its warm-up missed (worker.log lists them)"
            )
        );
    }
}
