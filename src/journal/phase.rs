//! Where a project's round stands: the states of the round machine
//! NeedVae → Seeding → AwaitingMasks → Training → Suggesting → … → Done.
//! Here, below the project, because the event log records its transitions.

use serde::{Deserialize, Serialize};

/// Logs written before events were typed spelled phases as Rust names
/// (`AwaitingMasks`); the aliases read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The VAE has not been trained on the pool yet.
    #[serde(alias = "NeedVae")]
    NeedVae,
    /// Ready to draw the random seed batch.
    #[serde(alias = "Seeding")]
    Seeding,
    /// Suggestions are out with the experts; their masks are awaited.
    #[serde(alias = "AwaitingMasks")]
    AwaitingMasks,
    /// Masks are in; the U-Net is to be (fine-)trained.
    #[serde(alias = "Training")]
    Training,
    /// The U-Net is trained; the next batch is to be suggested.
    #[serde(alias = "Suggesting")]
    Suggesting,
    /// The configured number of rounds is complete.
    #[serde(alias = "Done")]
    Done,
}

impl Phase {
    /// What the project waits for, as an operator reads it.
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

    /// The name in `state.json` and the event log.
    pub fn name(self) -> &'static str {
        match self {
            Phase::NeedVae => "need-vae",
            Phase::Seeding => "seeding",
            Phase::AwaitingMasks => "awaiting-masks",
            Phase::Training => "training",
            Phase::Suggesting => "suggesting",
            Phase::Done => "done",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
