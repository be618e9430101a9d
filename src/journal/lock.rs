//! One worker per project: an exclusive `flock` on `worker.lock`, which the
//! kernel releases when the holder dies (even by `kill -9`), plus the
//! holder's pid and job written inside for `status`. A lock file naming a
//! process that no longer holds the lock is stale: its job died without
//! finishing.
//!
//! A lock changes hands in two moments that must not fail a caller: a
//! worker that has logged its outcome still holds the lock until it exits,
//! and a watcher's probe (`running_worker`) holds it for an instant. So a
//! starting worker waits up to `HANDOVER` before calling the project busy.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Job;
use crate::layout::LOCK_FILE;

/// How long a starting worker waits for one that is finishing.
pub const HANDOVER: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(25);

/// Who holds (or last held) the lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub job: Job,
    pub device: String,
    /// Seconds since the epoch.
    pub started: f64,
}

impl Holder {
    /// The event that says this holder died without finishing (found as a
    /// stale record by the next one to take the lock).
    pub fn ending(&self) -> super::Event {
        let error = match self.job {
            Job::Import => format!(
                "the import (pid {}) stopped before committing — killed or crashed; nothing was accepted: run the import again",
                self.pid
            ),
            _ => format!(
                "worker (pid {}) stopped without finishing — killed or crashed; run the step again to resume",
                self.pid
            ),
        };
        super::Event::JobFailed {
            job: self.job,
            error,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("a worker (pid {}) is already running job `{}` in this project; wait for it or `nextslice cancel`", .0.pid, .0.job)]
    Busy(Holder),
    #[error("a worker is already running in this project")]
    BusyUnknown,
    #[error("worker lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock. Dropping it releases the lock and clears the holder
/// record; a holder that dies without dropping it (kill -9, abort) leaves
/// its record behind, which the next holder reports as stale.
pub struct WorkerLock {
    /// `None` only after a simulated crash in tests.
    file: Option<File>,
    /// The holder found in the file when we took the lock: a worker that
    /// died without clearing it.
    pub stale: Option<Holder>,
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

impl WorkerLock {
    /// Takes the lock for `holder`, waiting up to `HANDOVER` for a worker
    /// that is finishing (or a probe), else says who has it.
    pub fn acquire(project: &Path, holder: &Holder) -> Result<WorkerLock, LockError> {
        let path = project.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let deadline = Instant::now() + HANDOVER;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(POLL)
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(
                        read_holder(&mut file).map_or(LockError::BusyUnknown, LockError::Busy)
                    );
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let stale = read_holder(&mut file);
        let json = serde_json::to_vec(holder).map_err(|e| io(e.into()))?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(WorkerLock {
            file: Some(file),
            stale,
        })
    }

    /// Releases the lock now (the same as dropping it).
    pub fn release(self) {}

    /// Clears the holder record, as dropping the lock does, for a process
    /// about to exit without dropping it (a job ended from its watcher
    /// thread); the flock goes with the process.
    pub fn clear(&self) {
        if let Some(file) = &self.file {
            let _ = file.set_len(0);
        }
    }

    /// Lets the lock go as a killed process does: the flock goes with the
    /// file, the holder record stays.
    #[cfg(test)]
    fn die(mut self) {
        self.file.take();
    }
}

impl Drop for WorkerLock {
    /// A clean exit, or an error returned through it: not a crash.
    fn drop(&mut self) {
        self.clear();
    }
}

/// The running worker, if any (without keeping the lock). A holder writes
/// its record just after taking the lock and clears it just before letting
/// go; a lock seen held without a record is looked at again for a moment,
/// so a worker that is starting is not taken for none.
pub fn running_worker(project: &Path) -> Option<Holder> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(project.join(LOCK_FILE))
        .ok()?;
    // A record follows the flock within milliseconds (one fsync); give a
    // slow disk the same grace a starting worker gets.
    let deadline = Instant::now() + HANDOVER;
    while Instant::now() < deadline {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return None;
            }
            Err(_) => {
                if let Some(holder) = read_holder(&mut file) {
                    return Some(holder);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Waits up to `HANDOVER` for the project's worker to exit; returns the
/// one still running after that.
pub fn wait_until_free(project: &Path) -> Option<Holder> {
    let deadline = Instant::now() + HANDOVER;
    loop {
        let holder = running_worker(project)?;
        if Instant::now() >= deadline {
            return Some(holder);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32) -> Holder {
        Holder {
            pid,
            job: Job::Train,
            device: "cpu".into(),
            started: 1.0,
        }
    }

    #[test]
    fn the_holder_record_says_who_runs_and_is_cleared_on_release() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_worker(dir.path()), None);
        let lock = WorkerLock::acquire(dir.path(), &holder(42)).unwrap();
        assert_eq!(lock.stale, None);
        // Another open file description sees the lock held, and by whom.
        assert_eq!(running_worker(dir.path()), Some(holder(42)));
        lock.release();
        assert_eq!(running_worker(dir.path()), None);
        let again = WorkerLock::acquire(dir.path(), &holder(43)).unwrap();
        assert_eq!(again.stale, None, "a clean release leaves no stale record");
        drop(again);
        let after_drop = WorkerLock::acquire(dir.path(), &holder(44)).unwrap();
        assert_eq!(after_drop.stale, None, "nor does a drop on an error path");
    }

    #[test]
    fn a_lock_held_before_its_record_is_written_is_a_running_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let file = File::create(&path).unwrap();
        file.lock().unwrap();
        // The holder's record lands late, as after a slow fsync.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let json = serde_json::to_vec(&holder(7)).unwrap();
            (&file).write_all(&json).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(file);
        });
        assert_eq!(running_worker(dir.path()).map(|h| h.pid), Some(7));
        writer.join().unwrap();
    }

    #[test]
    fn a_holder_that_died_is_reported_stale_by_the_next_worker() {
        let dir = tempfile::tempdir().unwrap();
        WorkerLock::acquire(dir.path(), &holder(42)).unwrap().die();
        assert_eq!(running_worker(dir.path()), None);
        let next = WorkerLock::acquire(dir.path(), &holder(43)).unwrap();
        assert_eq!(next.stale, Some(holder(42)));
    }

    #[test]
    fn a_starting_worker_waits_for_one_that_is_finishing() {
        let dir = tempfile::tempdir().unwrap();
        let finishing = WorkerLock::acquire(dir.path(), &holder(42)).unwrap();
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            finishing.release();
        });
        let next = WorkerLock::acquire(dir.path(), &holder(43));
        released.join().unwrap();
        assert!(next.is_ok(), "{:?}", next.err());
    }

    #[test]
    fn a_busy_project_is_refused_after_the_handover_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _running = WorkerLock::acquire(dir.path(), &holder(42)).unwrap();
        let started = Instant::now();
        match WorkerLock::acquire(dir.path(), &holder(43)) {
            Err(LockError::Busy(h)) => assert_eq!(h, holder(42)),
            other => panic!("expected busy, got {:?}", other.map(|l| l.stale.clone())),
        }
        assert!(started.elapsed() >= HANDOVER);
        assert_eq!(wait_until_free(dir.path()), Some(holder(42)));
    }
}
