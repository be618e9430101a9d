//! A thread that watches the project's files and reports what changed: the
//! worker lock, new event-log lines, the state file, the slice store and the
//! VAE latents. Polling (four times a second, a few `stat`s) is simpler and
//! more portable than inotify, and works on network file systems.
//!
//! Imports the app's `Update`, `snapshot`'s loaders and the engine's file
//! names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

use super::app::Update;
use super::snapshot::{load_latents, load_pool, load_simulation, simulation_results};
use crate::journal::{Cursor, EventLog, running_worker};
use crate::layout::{LATENTS_FILE, STATE_FILE};
use crate::project::Project;
use crate::project::RoundState;
use crate::store::users::store_of;

const POLL: Duration = Duration::from_millis(250);

/// Size and modification time: enough to notice an atomic replace.
fn signature(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Watches `dir` until `stop` is set or the receiver is gone. The first
/// round reports only what differs from what the caller already loaded:
/// `cursor` is where in the event log the caller stopped reading.
pub fn spawn(
    dir: PathBuf,
    cursor: Cursor,
    tx: Sender<Update>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let log = EventLog::new(&dir);
        let mut cursor = cursor;
        let mut worker = running_worker(&dir);
        let mut state_sig = signature(&dir.join(STATE_FILE));
        // Where the stores live is read once (a probe every 250 ms must not
        // parse project.toml); which store is the project's, every probe.
        let root = Project::open(&dir).ok().map(|p| p.store_root());
        let current_store = || root.as_ref().and_then(|r| store_of(r, &dir));
        let mut store = current_store().and_then(|d| signature(&d));
        let mut latents_sig = signature(&dir.join(LATENTS_FILE));
        let mut results_sig = signature(&simulation_results(&dir));
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(POLL);
            let mut updates = Vec::new();
            // The lock before the log: a job that ends in between shows as
            // running for one more poll, never as dead.
            let now_worker = running_worker(&dir);
            if now_worker != worker {
                worker.clone_from(&now_worker);
                updates.push(Update::Worker(now_worker));
            }
            if let Ok((events, next)) = log.follow(cursor)
                && !events.is_empty()
            {
                cursor = next;
                updates.push(Update::Events(events));
            }
            let sig = signature(&dir.join(STATE_FILE));
            if sig != state_sig {
                state_sig = sig;
                updates.push(Update::State(Box::new(
                    RoundState::load(&dir).map_err(|e| e.to_string()),
                )));
            }
            let store_sig = current_store().and_then(|d| signature(&d));
            let lat_sig = signature(&dir.join(LATENTS_FILE));
            // The pool's index and latents change only with the store or
            // the VAE, not with every round transition.
            if store_sig != store || lat_sig != latents_sig {
                store = store_sig;
                latents_sig = lat_sig;
                let state = RoundState::load(&dir).ok();
                let pool = load_pool(&dir, state.as_ref()).map(Arc::new);
                let latents = pool
                    .as_ref()
                    .and_then(|p| load_latents(&dir, &p.key))
                    .map(Arc::new);
                updates.push(Update::Pool(pool, latents));
            }
            let sig = signature(&simulation_results(&dir));
            if sig != results_sig {
                results_sig = sig;
                updates.push(Update::Simulation(load_simulation(&dir)));
            }
            for u in updates {
                if tx.send(u).is_err() {
                    return;
                }
            }
        }
    })
}
