//! The project as the TUI sees it: plain data read from the project's files
//! (config, state, worker lock, slice store, VAE latents). Built by the
//! watcher thread or, in tests, by hand.
//!
//! A leaf of the TUI: imports only the engine (config, project, store,
//! worker lock, simulation results).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::journal::Holder;
use crate::layout::LATENTS_FILE;
use crate::project::{Project, RoundState, SliceIndex, SliceKey, latents};
use crate::store::SliceStore;
use crate::strategy::Latents;

/// The slice pool's shape, from the store's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolInfo {
    pub store_dir: PathBuf,
    pub key: String,
    /// Every stored slice, test cases' included.
    pub slices: usize,
    /// Slices outside the test set: what the budget is a fraction of.
    pub pool: usize,
    pub modalities: Vec<String>,
    pub height: usize,
    pub width: usize,
    /// Store id of each slice key, for placing labelled slices on the map.
    pub ids: HashMap<SliceKey, usize>,
    /// By store id: whether the slice is in the pool (not a test case's).
    pub in_pool: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub config: Config,
    pub state: Result<RoundState, String>,
    pub worker: Option<Holder>,
    pub pool: Option<Arc<PoolInfo>>,
    pub latents: Option<Arc<Latents>>,
    /// Every row of `simulate/results.csv`, once a simulation wrote one.
    pub simulation: Option<Arc<Vec<crate::simulate::Row>>>,
}

impl Snapshot {
    /// Reads what is there now; missing parts (no store yet) are `None`.
    pub fn load(project: &Project) -> Snapshot {
        let pool = load_pool(&project.dir, project.state().ok().as_ref()).map(Arc::new);
        let latents = pool
            .as_ref()
            .and_then(|p| load_latents(&project.dir, &p.key))
            .map(Arc::new);
        Snapshot {
            dir: project.dir.clone(),
            config: project.config.clone(),
            state: project.state().map_err(|e| e.to_string()),
            worker: crate::journal::running_worker(&project.dir),
            pool,
            latents,
            simulation: load_simulation(&project.dir),
        }
    }

    /// The project's name: its directory's.
    pub fn name(&self) -> String {
        std::fs::canonicalize(&self.dir)
            .unwrap_or_else(|_| self.dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }
}

/// The slice store the project last opened (its root may be shared with
/// other projects, so "the newest store there" could be someone else's).
pub fn newest_store(project: &Path) -> Option<PathBuf> {
    Project::open(project).ok()?.current_store_dir()
}

pub fn load_pool(project: &Path, state: Option<&RoundState>) -> Option<PoolInfo> {
    let dir = newest_store(project)?;
    let store = SliceStore::open(&dir).ok()?;
    let tests = state.map(|s| s.test_cases.clone()).unwrap_or_default();
    let index = SliceIndex::new(&store, &tests);
    let ids = (0..index.len())
        .map(|i| (index.key(i).clone(), i))
        .collect();
    let in_pool = (0..index.len()).map(|i| !index.is_test(i)).collect();
    let meta = store.meta();
    Some(PoolInfo {
        store_dir: dir.clone(),
        key: meta.key.clone(),
        slices: meta.slices,
        pool: index.pool().len(),
        modalities: meta.modalities.clone(),
        height: meta.height,
        width: meta.width,
        ids,
        in_pool,
    })
}

pub fn load_latents(project: &Path, store_key: &str) -> Option<Latents> {
    latents::load(&project.join(LATENTS_FILE), store_key)
}

/// Where a simulation's results are, relative to the project.
pub fn simulation_results(project: &Path) -> PathBuf {
    project
        .join(crate::simulate::SIM_DIR)
        .join(crate::simulate::RESULTS_FILE)
}

/// The simulation's results, if there are any rows.
pub fn load_simulation(project: &Path) -> Option<Arc<Vec<crate::simulate::Row>>> {
    crate::simulate::results::read(&simulation_results(project))
        .ok()
        .filter(|rows| !rows.is_empty())
        .map(Arc::new)
}
