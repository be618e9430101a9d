//! The long jobs a worker runs, by the names the log and the CLI use.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Train the VAE on the pool and encode it.
    TrainVae,
    /// Suggest the next batch (random seed batch in round 0).
    Suggest,
    /// Train the U-Net on the labelled slices.
    Train,
    /// Dice per region on the test set.
    Evaluate,
    /// Replay the planned strategy comparison with ground-truth masks.
    Simulate,
    /// Writing accepted masks into the project: not a worker job, but it
    /// holds the project's lock while it writes, so no job starts under it.
    #[value(skip)]
    Import,
}

impl Job {
    /// The name in the log, on the command line and on screen.
    pub fn name(self) -> &'static str {
        match self {
            Job::TrainVae => "train-vae",
            Job::Suggest => "suggest",
            Job::Train => "train",
            Job::Evaluate => "evaluate",
            Job::Simulate => "simulate",
            Job::Import => "import",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
