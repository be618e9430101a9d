//! Crash-safe checkpoints. Each epoch writes the model and optimiser records
//! (files named by epoch, each written atomically and hashed), then commits
//! `checkpoint.json` — the only file a resume trusts — naming them with their
//! hashes, the completed epoch count and the random generator's state. A kill
//! at any moment leaves either the previous or the new checkpoint, whole.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::{Network, TrainError};
use crate::fsutil::write_atomic;
use crate::model::conv_weights_channels_last;
use crate::rng::Rng;

const COMMIT_FILE: &str = "checkpoint.json";
const MAGIC: &[u8; 8] = b"NSRECRD1";

type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// The committed state of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// `phase` in checkpoints written before it was renamed.
    #[serde(alias = "phase")]
    pub network: Network,
    /// Hash of what is being trained (data, settings); a checkpoint of other
    /// work is never resumed.
    pub fingerprint: String,
    pub epochs_completed: usize,
    pub rng: Rng,
    pub epoch_losses: Vec<f64>,
    model_file: String,
    optimizer_file: String,
}

fn error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes `payload` with a magic number and a hash, atomically.
fn write_record_file(path: &Path, payload: &[u8]) -> Result<(), TrainError> {
    let mut bytes = Vec::with_capacity(payload.len() + 40);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(blake3::hash(payload).as_bytes());
    bytes.extend_from_slice(payload);
    write_atomic(path, &bytes).map_err(|e| error(path, e.to_string()))
}

/// Reads a file written by `write_record_file`, verifying its hash, so that a
/// damaged file is an error here rather than a panic in a decoder.
fn read_record_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, e.to_string()))?;
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return Err(error(path, "not a nextslice model file"));
    }
    let payload = bytes[40..].to_vec();
    if blake3::hash(&payload).as_bytes() != &bytes[8..40] {
        return Err(error(path, "checksum mismatch: the file is damaged"));
    }
    Ok(payload)
}

/// Saves a model on its own (e.g. the round's trained U-Net), atomically.
pub fn save_model<B: burn::prelude::Backend, M: Module<B>>(
    path: &Path,
    model: &M,
) -> Result<(), TrainError> {
    let bytes = Bytes::default()
        .record(model.clone().into_record(), ())
        .map_err(|e| error(path, e.to_string()))?;
    write_record_file(path, &bytes)
}

/// Loads weights saved by `save_model` into `model` (built with the same
/// shape), its convolutions' weights laid out as `init` lays them.
pub fn load_model<B: burn::prelude::Backend, M: Module<B>>(
    path: &Path,
    model: M,
    device: &B::Device,
) -> Result<M, TrainError> {
    let bytes = read_record_file(path)?;
    let record = Recorder::<B>::load(&Bytes::default(), bytes, device)
        .map_err(|e| error(path, format!("does not fit this model: {e}")))?;
    Ok(conv_weights_channels_last(model.load_record(record)))
}

/// A run's checkpoint directory.
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(dir: &Path) -> Self {
        Checkpoints {
            dir: dir.to_path_buf(),
        }
    }

    /// The committed state, if any.
    pub fn state(&self) -> Result<Option<CheckpointState>, TrainError> {
        let path = self.dir.join(COMMIT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| error(&path, format!("unreadable: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(&path, e.to_string())),
        }
    }

    /// Restores model and optimiser from the committed state.
    pub fn restore<B, M, O>(
        &self,
        state: &CheckpointState,
        model: M,
        optimizer: O,
        device: &B::Device,
    ) -> Result<(M, O), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let model = load_model::<B, M>(&self.dir.join(&state.model_file), model, device)?;
        let path = self.dir.join(&state.optimizer_file);
        let bytes = read_record_file(&path)?;
        let record = Recorder::<B>::load(&Bytes::default(), bytes, device)
            .map_err(|e| error(&path, format!("unreadable optimiser state: {e}")))?;
        Ok((model, optimizer.load_record(record)))
    }

    /// Writes this epoch's files, then commits, then removes older files.
    #[allow(clippy::too_many_arguments)]
    pub fn save<B, M, O>(
        &self,
        network: Network,
        fingerprint: &str,
        epochs_completed: usize,
        rng: &Rng,
        epoch_losses: &[f64],
        model: &M,
        optimizer: &O,
    ) -> Result<PathBuf, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        std::fs::create_dir_all(&self.dir).map_err(|e| error(&self.dir, e.to_string()))?;
        let model_file = format!("epoch-{epochs_completed:04}.model.mpk");
        let optimizer_file = format!("epoch-{epochs_completed:04}.optim.mpk");
        save_model::<B, M>(&self.dir.join(&model_file), model)?;
        let optim_path = self.dir.join(&optimizer_file);
        let bytes = Recorder::<B>::record(&Bytes::default(), optimizer.to_record(), ())
            .map_err(|e| error(&optim_path, e.to_string()))?;
        write_record_file(&optim_path, &bytes)?;
        let state = CheckpointState {
            network,
            fingerprint: fingerprint.to_string(),
            epochs_completed,
            rng: rng.clone(),
            epoch_losses: epoch_losses.to_vec(),
            model_file: model_file.clone(),
            optimizer_file: optimizer_file.clone(),
        };
        let commit = self.dir.join(COMMIT_FILE);
        let json = serde_json::to_vec_pretty(&state).map_err(|e| error(&commit, e.to_string()))?;
        write_atomic(&commit, &json).map_err(|e| error(&commit, e.to_string()))?;
        self.remove_all_but(&[&model_file, &optimizer_file, COMMIT_FILE]);
        Ok(commit)
    }

    /// Deletes every checkpoint file (another run's, or a finished one).
    pub fn clear(&self) {
        self.remove_all_but(&[]);
    }

    fn remove_all_but(&self, keep: &[&str]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with("epoch-")
                || name == COMMIT_FILE
                || name.starts_with(".epoch-")
                || name.starts_with(".checkpoint.json.tmp");
            if ours && !keep.contains(&name.as_str()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
