//! Long jobs run in a detached worker process (`nextslice worker`), in its
//! own session, so closing the terminal or losing SSH does not stop them.
//! The worker holds the project's lock, appends events to `events.jsonl`,
//! and stops cleanly when `nextslice cancel` leaves a cancel request.

pub mod events;
pub mod lock;
mod run;

pub use events::{Event, EventLog, Logged, Overall};
pub use lock::{Holder, LockError, WorkerLock, running_worker};
pub use run::{CANCEL_FILE, Job, WORKER_LOG, WorkerError, run_job, spawn};
