//! The journal: what every process that runs or watches a job shares about
//! a project, below all of them — the event log (`events.jsonl`), the
//! worker lock and its holder record, the cancel request, and the names
//! they record (jobs, round phases). Imports only `layout`: `project`,
//! `engine`, `worker`, `simulate`, the TUI and the CLI all use it.

mod cancel;
mod compact;
mod events;
mod job;
mod lock;
mod phase;

pub use cancel::{cancel_requested, clear_cancel, request_cancel};
pub use compact::COMPACT_ABOVE;
pub use events::{Cursor, Event, EventLog, EventLogError, Logged, Overall, ProgressReport};
pub use job::Job;
pub use lock::{HANDOVER, Holder, LockError, WorkerLock, running_worker, wait_until_free};
pub use phase::Phase;

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch: the clock of every event and holder record.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
