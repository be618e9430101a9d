//! One worker per project: an exclusive `flock` on `worker.lock`, which the
//! kernel releases when the holder dies (even by `kill -9`), plus the holder's
//! pid and job written inside for `status`. A lock file naming a process that
//! no longer holds the lock is stale: its job died without finishing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "worker.lock";

/// Who holds (or last held) the lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub job: String,
    pub device: String,
    pub started: f64,
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

/// The held lock; dropping it (or dying) releases it.
pub struct WorkerLock {
    file: File,
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
    /// Takes the lock for `holder`, or says who has it.
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
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(read_holder(&mut file).map_or(LockError::BusyUnknown, LockError::Busy));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let stale = read_holder(&mut file);
        let json = serde_json::to_vec(holder).map_err(|e| io(e.into()))?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(WorkerLock { file, stale })
    }

    /// Clears the holder record (a clean exit); the flock goes with `self`.
    pub fn release(self) {
        let _ = self.file.set_len(0);
    }
}

/// The running worker, if any (without taking the lock).
pub fn running_worker(project: &Path) -> Option<Holder> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(project.join(LOCK_FILE))
        .ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(_) => read_holder(&mut file),
    }
}
