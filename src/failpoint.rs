//! Crash injection for the crash-safety tests: `NEXTSLICE_FAILPOINT=<name>`
//! makes the process abort (as abruptly as `kill -9`) when it reaches the
//! point of that name. Unset, a failpoint costs one environment lookup.
//!
//! Imports nothing of the crate.

/// Aborts the process here if `NEXTSLICE_FAILPOINT` names this point.
pub fn hit(name: &str) {
    if std::env::var("NEXTSLICE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint `{name}`: aborting");
        std::process::abort();
    }
}
