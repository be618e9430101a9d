//! What every step needs besides the project (where to report, when to
//! stop, where to log), and how a step can fail: typed, so that a caller
//! (the worker, `simulate`, the TUI) can tell a cancel, a missing model or a
//! changed store from a broken file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Strategy;
use crate::journal::EventLog;
use crate::progress::Progress;
use crate::project::{Project, ProjectError, RoundState, StateError};
use crate::store::{SliceIndex, SliceStore, StoreError};
use crate::strategy::StrategyError;
use crate::train::{TrainError, TrainObserver};

/// What a step needs besides the project: where to report, and when to stop.
pub struct StepContext<'a> {
    pub progress: &'a dyn Progress,
    pub observer: &'a dyn TrainObserver,
    pub cancel: &'a AtomicBool,
    pub log: &'a EventLog,
}

impl StepContext<'_> {
    /// The project's slice store (built first if the data changed) and the
    /// index of its slices for `state`'s test split: what every step opens.
    pub fn open_store(
        &self,
        project: &Project,
        state: &RoundState,
    ) -> Result<(SliceStore, SliceIndex), EngineError> {
        let store = project.store(self.progress, self.cancel)?;
        let index = SliceIndex::new(&store, &state.test_cases);
        Ok((store, index))
    }

    /// `Err(Cancelled)` once a stop was asked for.
    pub fn check_cancel(&self) -> Result<(), EngineError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The models a step may find missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    Vae,
    Unet,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::Vae => "VAE",
            Model::Unet => "U-Net",
        }
    }

    fn step(self) -> &'static str {
        match self {
            Model::Vae => "train-vae",
            Model::Unet => "train",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Mask(#[from] crate::masks::MaskError),
    #[error("cancelled; run the step again to resume")]
    Cancelled,
    #[error("no trained {} yet; run {}", .0.name(), .0.step())]
    MissingModel(Model),
    #[error(
        "no VAE latents for the current slice store (the data changed, or the VAE was never trained); run train-vae"
    )]
    NoLatents,
    #[error("{missing} labelled slices are no longer in the slice store (did the data change?)")]
    StoreChanged { missing: usize },
    #[error("the slice store is inconsistent: {0}")]
    StoreMismatch(String),
    #[error("{strategy} {needs}, and the last U-Net was trained without it; train a round with sampling.strategy = \"{strategy}\" first", strategy = .strategy.name())]
    TrainedWithout {
        strategy: Strategy,
        needs: &'static str,
    },
    #[error("the {} strategy has no suggestion step", .0.name())]
    NoSuggestionStep(Strategy),
    #[error(
        "the oracle strategy needs ground truth for every unlabelled slice (it is for simulations on labelled datasets)"
    )]
    OracleWithoutTruth,
    #[error("no unlabelled slices are left to suggest")]
    PoolExhausted,
    #[error("the test set is empty (split.test_fraction = 0?)")]
    NoTestSet,
    #[error("some test volumes have no label map; evaluation needs ground truth")]
    TestWithoutTruth,
    #[error("cannot score {case}: {message}")]
    Score { case: String, message: String },
    #[error(
        "no gradient of the Dice loss reached the input slices; gradient-guided sampling cannot run (a backend error)"
    )]
    NoInputGradient,
    #[error("reading a tensor back from the device: {0}")]
    Tensor(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<StateError> for EngineError {
    fn from(e: StateError) -> EngineError {
        EngineError::Project(e.into())
    }
}

impl EngineError {
    /// `map_err` for a failed write of `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io { path, source }
    }
}
