//! The cancel request: a file in the project whose existence asks the
//! running job to stop after its current batch. A file, not a signal, so a
//! TUI or CLI on another SSH session (or after a re-login) can ask.

use std::path::Path;

use crate::layout::CANCEL_FILE;

/// Asks the running job to stop.
pub fn request_cancel(project: &Path) -> std::io::Result<()> {
    std::fs::write(project.join(CANCEL_FILE), b"")
}

/// Whether a stop has been asked for.
pub fn cancel_requested(project: &Path) -> bool {
    project.join(CANCEL_FILE).exists()
}

/// Forgets a request (a job starts, or has ended).
pub fn clear_cancel(project: &Path) {
    let _ = std::fs::remove_file(project.join(CANCEL_FILE));
}
