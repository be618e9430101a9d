//! The operator's `[notify] command`, run when a job ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::journal::Job;

/// How a job ended, for the `[notify]` command.
pub struct Ending<'a> {
    pub job: Job,
    pub status: &'static str,
    pub summary: &'a str,
    pub seconds: f64,
}

/// How long the worker waits for the `[notify] command` to end.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(30);

/// Runs the operator's `[notify] command` with the job's ending in its
/// environment, waiting at most `wait` for it (zero: not at all, for a
/// worker about to exit; the command runs on); a command that fails is
/// reported in the worker's log and changes nothing else.
pub fn notify(command: &str, dir: &Path, ending: &Ending<'_>, wait: Duration) {
    let child = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .env("NEXTSLICE_JOB", ending.job.name())
        .env("NEXTSLICE_STATUS", ending.status)
        .env("NEXTSLICE_SUMMARY", ending.summary)
        .env("NEXTSLICE_SECONDS", format!("{:.0}", ending.seconds))
        .env(
            "NEXTSLICE_PROJECT",
            std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        )
        .stdin(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("notify: cannot run `{command}`: {e}");
            return;
        }
    };
    if wait.is_zero() {
        return;
    }
    let deadline = Instant::now() + wait;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                eprintln!("notify: `{command}` exited with {status}");
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                eprintln!("notify: `{command}` still runs after {wait:?}; left running");
                return;
            }
            Err(e) => {
                eprintln!("notify: `{command}`: {e}");
                return;
            }
        }
    }
}
