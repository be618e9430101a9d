//! Where everything lives inside a project directory: every file and folder
//! name, and every path built from a round, a member or a slice, written
//! once here. Imports nothing of the crate, so every layer may use it.
//!
//! ```text
//! DIR/project.toml        configuration (editable)
//! DIR/state.json          round state (atomic)
//! DIR/events.jsonl        event log (append-only)
//! DIR/worker.lock         held by the running worker
//! DIR/cancel              present: the running job is asked to stop
//! DIR/worker.log          a detached worker's stdout and stderr
//! DIR/store/              the slice store
//! DIR/models/             trained VAE and U-Nets, pool latents
//! DIR/checkpoints/        per-job training checkpoints
//! DIR/rounds/NNN/         suggestions, exports and evaluations of round NNN
//! DIR/masks/              accepted expert masks (copied in, never modified)
//! DIR/simulate/           a strategy comparison (`nextslice simulate`)
//! ```

use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "project.toml";
pub const STATE_FILE: &str = "state.json";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const LOCK_FILE: &str = "worker.lock";
/// A file whose existence asks the running job to stop.
pub const CANCEL_FILE: &str = "cancel";
/// Where a detached worker's stdout and stderr go.
pub const WORKER_LOG: &str = "worker.log";
pub const STORE_DIR: &str = "store";
pub const MODELS_DIR: &str = "models";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const ROUNDS_DIR: &str = "rounds";
pub const MASKS_DIR: &str = "masks";
/// The folders `init` creates.
pub const PROJECT_DIRS: [&str; 4] = [MODELS_DIR, CHECKPOINTS_DIR, ROUNDS_DIR, MASKS_DIR];

/// The trained VAE, relative to the project.
pub const VAE_FILE: &str = "models/vae.mpk";
/// The pool's latents, encoded by `VAE_FILE`.
pub const LATENTS_FILE: &str = "models/latents.bin";
/// The VAE's training checkpoints.
pub const VAE_CHECKPOINTS: &str = "checkpoints/vae";

/// `-mK` for member K of an ensemble of `members` > 1, else nothing.
fn member_suffix(members: usize, member: usize) -> String {
    if members > 1 {
        format!("-m{member}")
    } else {
        String::new()
    }
}

/// The U-Net of `round` (member `member` of an ensemble of `members`),
/// relative to the project.
pub fn unet_file(round: usize, members: usize, member: usize) -> PathBuf {
    PathBuf::from(format!(
        "{MODELS_DIR}/unet-round-{round:03}{}.mpk",
        member_suffix(members, member)
    ))
}

/// The learning-loss head trained with the U-Net of `round`.
pub fn loss_head_file(round: usize) -> PathBuf {
    PathBuf::from(format!("{MODELS_DIR}/loss-head-round-{round:03}.mpk"))
}

/// The checkpoints of one U-Net training, relative to the project.
pub fn unet_checkpoints(round: usize, members: usize, member: usize) -> PathBuf {
    PathBuf::from(format!(
        "{CHECKPOINTS_DIR}/unet-round-{round:03}{}",
        member_suffix(members, member)
    ))
}

/// `DIR/rounds/NNN`.
pub fn round_dir(project: &Path, round: usize) -> PathBuf {
    project.join(ROUNDS_DIR).join(format!("{round:03}"))
}

/// The suggestions of a round, with their provenance.
pub const SUGGESTIONS_FILE: &str = "suggestions.json";
/// Per round: how far the gradient step moved (α, median step, NN distance).
pub const GRADIENT_STEP_FILE: &str = "gradient-step.json";
/// Per-volume test scores of a round.
pub const EVALUATION_FILE: &str = "evaluation.csv";
/// The same for an ensemble's first member alone (DAL).
pub const EVALUATION_FIRST_MEMBER_FILE: &str = "evaluation-first-member.csv";
/// Where a round's suggestions are exported for the experts.
pub const EXPORT_DIR: &str = "export";

/// Where the masks accepted in `round` are copied.
pub fn imported_masks_dir(project: &Path, round: usize) -> PathBuf {
    project.join(MASKS_DIR).join(format!("round-{round:03}"))
}

/// A slice's class map file (`kind` is `derived` for accepted masks,
/// `predicted` for the U-Net's prediction).
fn class_map_path(project: &Path, kind: &str, case: &str, slice: u32) -> PathBuf {
    project
        .join(MASKS_DIR)
        .join(kind)
        .join(case)
        .join(format!("s{slice:03}.classes"))
}

/// The class map derived from an accepted mask (height × width class
/// indices on the store's grid).
pub fn derived_mask(project: &Path, case: &str, slice: u32) -> PathBuf {
    class_map_path(project, "derived", case, slice)
}

/// The U-Net's prediction for a suggested slice, same format.
pub fn predicted_mask(project: &Path, case: &str, slice: u32) -> PathBuf {
    class_map_path(project, "predicted", case, slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_ones_existing_projects_have() {
        assert_eq!(
            unet_file(3, 1, 0),
            PathBuf::from("models/unet-round-003.mpk")
        );
        assert_eq!(
            unet_file(3, 4, 2),
            PathBuf::from("models/unet-round-003-m2.mpk")
        );
        assert_eq!(
            unet_checkpoints(1, 4, 0),
            PathBuf::from("checkpoints/unet-round-001-m0")
        );
        assert_eq!(
            loss_head_file(2),
            PathBuf::from("models/loss-head-round-002.mpk")
        );
        assert_eq!(
            round_dir(Path::new("/p"), 7),
            PathBuf::from("/p/rounds/007")
        );
        assert_eq!(
            derived_mask(Path::new("/p"), "C1", 5),
            PathBuf::from("/p/masks/derived/C1/s005.classes")
        );
    }
}
