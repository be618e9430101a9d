//! The persisted state of a project's active-learning rounds, and the state
//! machine that moves it: NeedVae → Seeding → AwaitingMasks → Training →
//! Suggesting → AwaitingMasks → … Every change is written atomically
//! (temp file, fsync, rename), so a crash leaves the last committed state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
pub use crate::journal::Phase;
use crate::layout::STATE_FILE;
pub use crate::store::SliceKey;
use crate::strategy::{StepReport, Suggestion};

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
    /// The round's U-Net on labelled slices it never trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationScore>,
}

/// Dice per evaluation region on the held-out labelled slices, pooled
/// over their pixels (a region absent from both prediction and masks
/// scores 1, the BraTS convention).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationScore {
    pub slices: usize,
    pub dice: Vec<(String, f64)>,
}

impl ValidationScore {
    /// `WT 0.612, TC 0.401 on 3 held-out slices`.
    pub fn short(&self) -> String {
        let s = if self.slices == 1 { "" } else { "s" };
        format!(
            "{} on {} held-out slice{s}",
            per_region(&self.dice, 3),
            self.slices
        )
    }
}

/// `WT 0.612, TC 0.401`: a score per region, to `decimals` places.
pub fn per_region(scores: &[(String, f64)], decimals: usize) -> String {
    let parts: Vec<String> = scores
        .iter()
        .map(|(r, v)| format!("{r} {v:.decimals$}"))
        .collect();
    parts.join(", ")
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
    /// How far the gradient step of the current suggestions moved (gradient
    /// strategies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_step: Option<StepReport>,
    /// The VAE measured on the test volumes' slices after training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae_quality: Option<VaeQuality>,
    /// Labelled slices held out of U-Net training to measure it
    /// (`unet.validation_fraction`); once held out, always held out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<SliceKey>,
}

/// Eq. 1 on slices the VAE never trained on (the test volumes'): a weak
/// manifold shows here before anyone trusts its suggestions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeQuality {
    pub slices: usize,
    /// Mean squared error per pixel and channel (z-score units²; 1 is
    /// what predicting the mean intensity everywhere would give).
    pub mse_per_pixel: f64,
    /// Per slice: squared error summed over pixels and channels …
    pub reconstruction: f64,
    /// … and KL(q(z|x) ‖ N(0, I)).
    pub kl: f64,
    /// Eq. 1 per slice (−ELBO up to constants, at the posterior mean)…
    pub loss: f64,
    /// … beside the last training epoch's, on the pool: a test loss far
    /// above it means the VAE learnt the pool, not anatomy.
    pub train_loss: f64,
}

impl VaeQuality {
    /// For the TUI's one-line slot.
    pub fn short(&self) -> String {
        format!(
            "VAE on test slices: MSE {:.3}/pixel · −ELBO {:.0} per slice vs {:.0} in training",
            self.mse_per_pixel, self.loss, self.train_loss
        )
    }

    pub fn describe(&self) -> String {
        format!(
            "VAE on {} test slices: MSE {:.3}/pixel, −ELBO {:.1} per slice (reconstruction {:.1} + KL {:.1}) vs {:.1} in training",
            self.slices,
            self.mse_per_pixel,
            self.loss,
            self.reconstruction,
            self.kl,
            self.train_loss
        )
    }
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
            gradient_step: None,
            vae_quality: None,
            validation: Vec::new(),
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

    /// Slices labelled or awaiting a mask: never suggested again.
    pub fn taken(&self) -> impl Iterator<Item = &SliceKey> {
        self.labelled
            .iter()
            .map(|l| &l.key)
            .chain(self.pending.iter().map(|p| &p.key))
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
