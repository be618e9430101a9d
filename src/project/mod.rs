//! A project: one directory holding the resolved configuration, the round
//! state, the event log, the slice store, models and masks (the layout is
//! in `crate::layout`). The CLI, the worker and the TUI all read and write
//! the same files. Imports the journal and everything below it (store,
//! masks, strategy's latents); never the engine, the worker or the TUI.

pub mod actions;
pub mod forecast;
pub mod latents;
mod relink;
pub mod state;

use std::path::{Path, PathBuf};

use std::sync::atomic::AtomicBool;

use crate::config::{Config, ConfigError, Preset};
use crate::fsutil::write_atomic;
use crate::journal::{Event, EventLog};
use crate::layout::{self, CONFIG_FILE, PROJECT_DIRS, STORE_DIR};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::store::{SliceStore, StoreError, open_or_build_for};
use crate::volume::dataset::{Discovery, discover};

pub use crate::store::{SliceIndex, SliceKey};
pub use relink::Relinked;
pub use state::{
    Labelled, Pending, Phase, RoundRecord, RoundState, StateError, VaeQuality, ValidationScore,
    per_region,
};

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{} is not a nextslice project (no {CONFIG_FILE}); create one with `nextslice init`", .0.display())]
    NotAProject(PathBuf),
    #[error("{} already holds a project; pick another directory", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Dataset(#[from] crate::volume::dataset::DatasetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub struct Project {
    pub dir: PathBuf,
    pub config: Config,
}

impl Project {
    /// Creates a project for the dataset at `data`, writing the resolved
    /// configuration (preset + user file + `extra` files) and the initial
    /// state with its held-out test cases.
    /// `stores`: where the project keeps its slice stores.
    pub fn init(
        dir: &Path,
        data: &Path,
        preset: Preset,
        extra: &[PathBuf],
        stores: StorePlace,
    ) -> Result<Project, ProjectError> {
        if dir.join(CONFIG_FILE).exists() {
            return Err(ProjectError::Exists(dir.to_path_buf()));
        }
        let mut config = Config::resolve(preset, extra)?;
        config.store.root = match stores {
            StorePlace::Configured { default } => config.store.root.or(default),
            StorePlace::Private => None,
            StorePlace::At(root) => Some(root),
        };
        let data = std::fs::canonicalize(data).map_err(|source| ProjectError::Io {
            path: data.to_path_buf(),
            source,
        })?;
        config.dataset.root = Some(data.clone());
        let discovery = discover(&config.dataset, &data)?;
        let test_cases = choose_test_cases(&config, &discovery)?;
        for sub in PROJECT_DIRS {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| ProjectError::Io { path, source })?;
        }
        let header = format!(
            "# nextslice project, from the {} preset. Edit freely; `nextslice` checks it on every start.\n\n",
            preset.name()
        );
        let path = dir.join(CONFIG_FILE);
        write_atomic(&path, format!("{header}{}", config.to_toml()).as_bytes())
            .map_err(|source| ProjectError::Io { path, source })?;
        RoundState::new(test_cases).save(dir)?;
        Ok(Project {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// Opens the project in `dir`.
    pub fn open(dir: &Path) -> Result<Project, ProjectError> {
        let path = dir.join(CONFIG_FILE);
        if !path.exists() {
            return Err(ProjectError::NotAProject(dir.to_path_buf()));
        }
        let config = Config::from_file(&path)?;
        Ok(Project {
            dir: dir.to_path_buf(),
            config,
        })
    }

    pub fn state(&self) -> Result<RoundState, ProjectError> {
        Ok(RoundState::load(&self.dir)?)
    }

    pub fn data_root(&self) -> Result<PathBuf, ProjectError> {
        self.config
            .dataset
            .root
            .clone()
            .ok_or_else(|| ProjectError::Invalid(format!("{CONFIG_FILE} has no dataset.root")))
    }

    pub fn discover(&self) -> Result<Discovery, ProjectError> {
        Ok(discover(&self.config.dataset, &self.data_root()?)?)
    }

    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.join(relative)
    }

    pub fn round_dir(&self, round: usize) -> PathBuf {
        layout::round_dir(&self.dir, round)
    }

    /// Where this project's slice stores live: `store.root` (shared with
    /// other projects), else its own `store/`.
    pub fn store_root(&self) -> PathBuf {
        store_root(&self.dir, &self.config)
    }

    /// The store this project last opened, without building or hashing
    /// anything (for views that must stay instant).
    pub fn current_store_dir(&self) -> Option<PathBuf> {
        crate::store::users::store_of(&self.store_root(), &self.dir)
    }

    /// The project's slice store, built on first use (or after the data
    /// changed), with the project registered as its user.
    pub fn store(
        &self,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<SliceStore, ProjectError> {
        let cases = self.discover()?.cases;
        let root = self.store_root();
        let (store, _) = open_or_build_for(
            &root,
            &self.config,
            &cases,
            Some(&self.dir),
            progress,
            cancel,
        )?;
        Ok(store)
    }

    /// Moves the state to `to`, saves it (the commit point) and logs the
    /// transition.
    pub fn commit(
        &self,
        state: &mut RoundState,
        to: Phase,
        reason: &str,
        log: &EventLog,
    ) -> Result<(), ProjectError> {
        let from = state.phase;
        state.phase = to;
        state.save(&self.dir)?;
        let _ = log.append(Event::Transition {
            from,
            to,
            round: state.round,
            reason: reason.to_string(),
        });
        Ok(())
    }
}

/// Where a new project keeps its slice stores.
#[derive(Clone, Debug, PartialEq)]
pub enum StorePlace {
    /// `store.root` from the configuration files, else `default` (None:
    /// inside the project).
    Configured { default: Option<PathBuf> },
    /// Inside the project, whatever the configuration says.
    Private,
    /// This root, whatever the configuration says.
    At(PathBuf),
}

/// Where the stores of the project in `dir` with `config` live.
pub fn store_root(dir: &Path, config: &Config) -> PathBuf {
    config
        .store
        .root
        .clone()
        .unwrap_or_else(|| dir.join(STORE_DIR))
}

/// The held-out test cases: those listed in `split.file`, or a seeded random
/// `split.test_fraction` of the cases that have a label map (at least one
/// when the fraction is > 0 and two or more have one). Evaluation needs
/// ground truth, so unlabelled cases (BraTS validation cases) stay in the
/// pool.
fn choose_test_cases(config: &Config, discovery: &Discovery) -> Result<Vec<String>, ProjectError> {
    let ids: Vec<String> = discovery.cases.iter().map(|c| c.id.clone()).collect();
    let labelled: Vec<String> = discovery
        .cases
        .iter()
        .filter(|c| c.label.is_some())
        .map(|c| c.id.clone())
        .collect();
    if let Some(file) = &config.split.file {
        let text = std::fs::read_to_string(file).map_err(|source| ProjectError::Io {
            path: file.clone(),
            source,
        })?;
        let listed: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if let Some(unknown) = listed.iter().find(|l| !ids.contains(l)) {
            return Err(ProjectError::Invalid(format!(
                "{}: test case `{unknown}` is not in the dataset",
                file.display()
            )));
        }
        if let Some(unlabelled) = listed.iter().find(|l| !labelled.contains(l)) {
            return Err(ProjectError::Invalid(format!(
                "{}: test case `{unlabelled}` has no label map; evaluation needs ground truth",
                file.display()
            )));
        }
        return Ok(listed);
    }
    let fraction = config.split.test_fraction;
    let mut count = (fraction * labelled.len() as f64).round() as usize;
    if fraction > 0.0 && labelled.len() >= 2 {
        count = count.clamp(1, labelled.len() - 1);
    }
    let mut shuffled = labelled;
    Rng::new(config.split.seed, 0x7465_7374).shuffle(&mut shuffled);
    let mut test: Vec<String> = shuffled.into_iter().take(count).collect();
    test.sort();
    Ok(test)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::dataset::Case;

    fn cases(labelled: &[bool]) -> Discovery {
        Discovery {
            cases: labelled
                .iter()
                .enumerate()
                .map(|(i, &has)| Case {
                    id: format!("C{i:02}"),
                    images: Vec::new(),
                    label: has.then(|| PathBuf::from(format!("C{i:02}_seg.nii.gz"))),
                })
                .collect(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn the_test_split_draws_only_cases_with_ground_truth() {
        let config =
            Config::preset_with(Preset::Demo, "<test>", "[split]\ntest_fraction = 0.5\n").unwrap();
        let mixed = cases(&[true, false, true, false, true, false, true, false]);
        let test = choose_test_cases(&config, &mixed).unwrap();
        assert_eq!(test.len(), 2, "half of the four labelled cases");
        for id in &test {
            let case = mixed.cases.iter().find(|c| &c.id == id).unwrap();
            assert!(case.label.is_some(), "{id} has no label map");
        }
        // A dataset labelled throughout splits as it always did.
        let all = cases(&[true; 8]);
        assert_eq!(choose_test_cases(&config, &all).unwrap().len(), 4);
    }

    #[test]
    fn a_split_file_naming_an_unlabelled_case_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test.txt");
        std::fs::write(&file, "C00\nC01\n").unwrap();
        let config = Config::preset_with(
            Preset::Demo,
            "<test>",
            &format!("[split]\nfile = {:?}\n", file.display().to_string()),
        )
        .unwrap();
        let error = choose_test_cases(&config, &cases(&[true, false])).unwrap_err();
        assert!(
            error.to_string().contains("`C01` has no label map"),
            "{error}"
        );
    }
}
