//! Long jobs run in a detached worker process (`nextslice worker`), in its
//! own session, so closing the terminal or losing SSH does not stop them.
//! The worker holds the project's lock, appends events to the journal, and
//! stops cleanly when `nextslice cancel` leaves a cancel request. Imports
//! the engine, `simulate` and the journal; the TUI and the CLI start it.

mod crash;
mod ending;
mod notify;
mod reporter;
mod run;

pub use crash::{PanicWatch, ThreadPanic};
pub use ending::CANCEL_GRACE;
pub use run::{WorkerError, run_job, spawn};
