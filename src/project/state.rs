//! The persisted state of a project's active-learning rounds, and the state
//! machine that moves it: NeedVae → Seeding → AwaitingMasks → Training →
//! Suggesting → AwaitingMasks → … Every change is written atomically
//! (temp file, fsync, rename), so a crash leaves the last committed state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::strategy::Suggestion;

pub const STATE_FILE: &str = "state.json";

/// A slice, named durably: by case and canonical slice index (store indices
/// change whenever the store is rebuilt).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SliceKey {
    pub case: String,
    pub slice: u32,
}

impl std::fmt::Display for SliceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.case, self.slice)
    }
}

impl std::str::FromStr for SliceKey {
    type Err = String;

    /// `CASE:SLICE`, as printed.
    fn from_str(s: &str) -> Result<Self, String> {
        let (case, slice) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not CASE:SLICE"))?;
        let slice = slice
            .parse()
            .map_err(|_| format!("`{slice}` is not a slice number"))?;
        Ok(SliceKey {
            case: case.to_string(),
            slice,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The VAE has not been trained on the pool yet.
    NeedVae,
    /// Ready to draw the random seed batch.
    Seeding,
    /// Suggestions are out with the experts; their masks are awaited.
    AwaitingMasks,
    /// Masks are in; the U-Net is to be (fine-)trained.
    Training,
    /// The U-Net is trained; the next batch is to be suggested.
    Suggesting,
    /// The configured number of rounds is complete.
    Done,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::NeedVae => "train the VAE on the pool",
            Phase::Seeding => "draw the random seed batch",
            Phase::AwaitingMasks => "export the suggested slices, then import the experts' masks",
            Phase::Training => "train the U-Net on the labelled slices",
            Phase::Suggesting => "suggest the next batch",
            Phase::Done => "all rounds done; evaluate",
        }
    }
}

/// A slice with an accepted expert mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    pub key: SliceKey,
    /// The accepted mask, copied into the project (relative to its root).
    pub mask: PathBuf,
    /// Round in which it was suggested.
    pub round: usize,
}

/// A suggestion awaiting its mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub key: SliceKey,
    /// The labelled slice whose gradient led here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SliceKey>,
    pub detail: Suggestion,
}

/// Metrics recorded after a round's training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: usize,
    pub labelled: usize,
    /// Labelled slices as a fraction of the pool.
    pub budget: f64,
    pub train_losses: Vec<f64>,
    /// Mean Dice per evaluation region on the test set, if evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dice: Vec<(String, f64)>,
    /// Mean 95th-percentile Hausdorff distance (mm) per region, if evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hd95: Vec<(String, f64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundState {
    /// 0 = the seed round; incremented by each suggestion after training.
    pub round: usize,
    pub phase: Phase,
    pub labelled: Vec<Labelled>,
    pub pending: Vec<Pending>,
    /// Held-out cases, never suggested.
    pub test_cases: Vec<String>,
    /// Trained models, relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet: Option<PathBuf>,
    /// DAL's bootstrap ensemble of the last round (`unet` is its first
    /// member); predictions average the members' softmax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<PathBuf>,
    /// The learning-loss baseline's loss head, trained with `unet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_head: Option<PathBuf>,
    pub history: Vec<RoundRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("cannot {action} now: the project is waiting to {}", phase.describe())]
    WrongPhase { action: &'static str, phase: Phase },
}

impl RoundState {
    pub fn new(test_cases: Vec<String>) -> RoundState {
        RoundState {
            round: 0,
            phase: Phase::NeedVae,
            labelled: Vec::new(),
            pending: Vec::new(),
            test_cases,
            vae: None,
            unet: None,
            ensemble: Vec::new(),
            loss_head: None,
            history: Vec::new(),
        }
    }

    pub fn load(dir: &Path) -> Result<RoundState, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StateError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::File {
            path,
            message: format!("unreadable: {e}"),
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| StateError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &json).map_err(|e| StateError::File {
            path,
            message: e.to_string(),
        })
    }

    /// Errors unless the project is in `phase`.
    pub fn expect(&self, phase: Phase, action: &'static str) -> Result<(), StateError> {
        if self.phase == phase {
            Ok(())
        } else {
            Err(StateError::WrongPhase {
                action,
                phase: self.phase,
            })
        }
    }
}
