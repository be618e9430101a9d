//! How a job ends: its last event, the `[notify] command`, and the forced
//! end of a job that does not reach a cancel check in time.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::WorkerError;
use super::notify::{Ending, notify};
use crate::engine::EngineError;
use crate::journal::{Event, EventLog, Job, WorkerLock, clear_cancel};
use crate::project::Project;

/// How long a job may take to reach its next cancel check (the end of a
/// batch) after a cancel before the worker ends it: a batch seldom takes
/// this long, but a GPU kernel's first tuning can take minutes.
/// `NEXTSLICE_CANCEL_GRACE` (seconds) changes it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

pub(super) fn cancel_grace() -> Duration {
    let value = std::env::var("NEXTSLICE_CANCEL_GRACE").ok();
    let parse = |text: &str| {
        let seconds = text.trim().parse::<f64>().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
    };
    let meaning = ["a number of seconds", "a cancel waits 10 s"];
    crate::switch::setting(
        "NEXTSLICE_CANCEL_GRACE",
        value.as_deref(),
        parse,
        CANCEL_GRACE,
        meaning,
    )
}

/// Ends a job that did not reach a cancel check within `grace` of the
/// cancel, from the watcher thread, and the process with it. Safe at any
/// moment, as a `kill -9` is: every file a job writes is replaced
/// atomically, and a training keeps its last epoch's checkpoint either way
/// (a cancelled epoch is never saved).
pub(super) fn end_unresponsive_job(
    job: Job,
    dir: &Path,
    log: &EventLog,
    lock: &WorkerLock,
    project: &Project,
    started: Instant,
    grace: Duration,
) -> ! {
    // Nothing here may keep the process alive: a panic (stderr gone) is
    // caught, and the notify command is started, not waited for.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut stderr = std::io::stderr();
        let _ = writeln!(
            stderr,
            "worker: {job} did not stop within {:.0} s of the cancel (a GPU kernel being tuned, or a long batch); ending it here",
            grace.as_secs_f64()
        );
        let outcome = Err(WorkerError::Engine(EngineError::Cancelled));
        clear_cancel(dir);
        log_ending(log, job, &outcome);
        lock.clear();
        notify_ending(project, dir, job, started, &outcome, Duration::ZERO);
        if let Err(e) = outcome {
            let _ = writeln!(stderr, "Error: {e}");
        }
        let _ = std::io::stdout().flush();
    }));
    exit_now()
}

/// Ends the process at once, as a `kill -9` would: no exit handlers or
/// destructors, which the job's thread (inside a GPU driver, say) may be
/// using.
pub(super) fn exit_now() -> ! {
    // SAFETY: _exit takes no pointers and does not return.
    unsafe { libc::_exit(1) }
}

/// The job's last event: finished, cancelled or failed.
pub(super) fn log_ending(log: &EventLog, job: Job, outcome: &Result<String, WorkerError>) {
    let event = match outcome {
        Ok(summary) => Event::JobFinished {
            job,
            summary: summary.clone(),
        },
        Err(e) if e.is_cancelled() => Event::JobCancelled { job },
        Err(e) => Event::JobFailed {
            job,
            error: e.to_string(),
        },
    };
    let _ = log.append(event);
}

/// Runs the project's `[notify] command`, if it has one.
pub(super) fn notify_ending(
    project: &Project,
    dir: &Path,
    job: Job,
    started: Instant,
    outcome: &Result<String, WorkerError>,
    wait: Duration,
) {
    let Some(command) = &project.config.notify.command else {
        return;
    };
    let (status, summary) = match outcome {
        Ok(summary) => ("finished", summary.clone()),
        Err(e) if e.is_cancelled() => ("cancelled", e.to_string()),
        Err(e) => ("failed", e.to_string()),
    };
    let ending = Ending {
        job,
        status,
        summary: &summary,
        seconds: started.elapsed().as_secs_f64(),
    };
    notify(command, dir, &ending, wait);
}
