//! Building a store: cases are preprocessed on all cores and appended in case
//! order (so the files are deterministic), with progress per volume and
//! bounded memory — at most two prepared cases per thread are in flight,
//! whatever the pool size.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::config::Config;
use crate::fsutil::{sync_dir, write_atomic};
use crate::progress::{Progress, ProgressUpdate};
use crate::volume::dataset::Case;

use super::format::{FORMAT_VERSION, IMAGES_FILE, INDEX_FILE, LABELS_FILE, META_FILE, StoreMeta};
use super::preprocess::{PreparedCase, prepare_case};
use super::{SliceStore, StoreError};

/// Whether `open_or_build` reused a store or built one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildOutcome {
    Reused,
    Built,
}

/// The settings that change stored values (and nothing else), hashed with
/// the inputs.
#[derive(Serialize)]
struct KeyMaterial<'a> {
    format_version: u32,
    modalities: &'a [String],
    label_values: Vec<u8>,
    slicing: &'a crate::config::SlicingConfig,
    normalisation: &'a crate::config::NormalisationConfig,
    store: &'a crate::config::StoreConfig,
    cases: Vec<(&'a str, Vec<FileIdentity>)>,
}

/// A file's path, size and modification time — cheap to check, and changed
/// by any rewrite (hashing 50 GB of BraTS on every start would not be).
#[derive(Serialize)]
struct FileIdentity {
    path: String,
    len: u64,
    modified_ns: u128,
}

fn identity(path: &Path) -> Result<FileIdentity, StoreError> {
    let meta = fs::metadata(path).map_err(StoreError::io(path))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(FileIdentity {
        path: path.to_string_lossy().into_owned(),
        len: meta.len(),
        modified_ns,
    })
}

/// `key` names a store: settings plus every input file's identity.
/// `lineage` leaves out sizes and times: a new store supersedes older ones of
/// the same lineage (the same files, since rewritten), and leaves stores of
/// other datasets or settings sharing the root alone.
struct StoreKeys {
    key: String,
    lineage: String,
}

fn store_keys(config: &Config, cases: &[Case]) -> Result<StoreKeys, StoreError> {
    let mut listed = Vec::with_capacity(cases.len());
    for case in cases {
        let files = case
            .images
            .iter()
            .chain(&case.label)
            .map(|p| identity(p))
            .collect::<Result<_, _>>()?;
        listed.push((case.id.as_str(), files));
    }
    let mut material = KeyMaterial {
        format_version: FORMAT_VERSION,
        modalities: &config.dataset.modalities,
        label_values: config.labels.values(),
        slicing: &config.slicing,
        normalisation: &config.normalisation,
        store: &config.store,
        cases: listed,
    };
    let hash = |m: &KeyMaterial| -> String {
        let json = serde_json::to_vec(m).unwrap_or_default();
        blake3::hash(&json).to_hex()[..16].to_string()
    };
    let key = hash(&material);
    for (_, files) in &mut material.cases {
        for f in files {
            f.len = 0;
            f.modified_ns = 0;
        }
    }
    let lineage = hash(&material);
    Ok(StoreKeys { key, lineage })
}

/// The store key for these cases and settings (16 hex digits): the name of
/// the directory `open_or_build` uses under its root.
pub fn store_key(config: &Config, cases: &[Case]) -> Result<String, StoreError> {
    Ok(store_keys(config, cases)?.key)
}

/// Opens the store for these inputs under `root`, building it first when the
/// inputs or settings changed since the last build. Builders of one root take
/// turns (a lock file), so concurrent processes never clobber each other.
pub fn open_or_build(
    root: &Path,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(SliceStore, BuildOutcome), StoreError> {
    let keys = store_keys(config, cases)?;
    fs::create_dir_all(root).map_err(StoreError::io(root))?;
    let lock_path = root.join(".lock");
    let lock = fs::File::create(&lock_path).map_err(StoreError::io(&lock_path))?;
    lock.lock().map_err(StoreError::io(&lock_path))?;
    let dir = root.join(&keys.key);
    if dir.join(META_FILE).exists() {
        match SliceStore::open(&dir) {
            Ok(store) => return Ok((store, BuildOutcome::Reused)),
            // Damaged (e.g. truncated by a full disk): rebuild from the sources.
            Err(StoreError::Corrupt { .. }) => {
                fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
            }
            Err(e) => return Err(e),
        }
    } else if dir.exists() {
        // Not made by us (we only ever rename complete stores into place).
        fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
    }
    let store = build_store(root, &keys, config, cases, progress, cancel)?;
    Ok((store, BuildOutcome::Built))
}

/// Builds `root/<key>`; the caller holds the root's lock.
fn build_store(
    root: &Path,
    keys: &StoreKeys,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<SliceStore, StoreError> {
    remove_abandoned_builds(root);
    let temp = root.join(format!(".build-{}", keys.key));
    fs::create_dir_all(&temp).map_err(StoreError::io(&temp))?;
    if let Err(e) = write_store(&temp, keys, config, cases, progress, cancel) {
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    let dir = root.join(&keys.key);
    fs::rename(&temp, &dir).map_err(StoreError::io(&dir))?;
    sync_dir(root).map_err(StoreError::io(root))?;
    remove_superseded_stores(root, keys);
    SliceStore::open(&dir)
}

fn write_store(
    dir: &Path,
    keys: &StoreKeys,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(), StoreError> {
    let has_labels = cases.iter().any(|c| c.label.is_some());
    let [h, w] = config.slicing.size;
    let images_path = dir.join(IMAGES_FILE);
    let labels_path = dir.join(LABELS_FILE);
    let mut images = BufFile::create(&images_path)?;
    let mut labels = if has_labels {
        Some(BufFile::create(&labels_path)?)
    } else {
        None
    };
    let mut index = Vec::new();
    let mut volumes = Vec::with_capacity(cases.len());
    let mut slices = 0usize;
    progress.update(&ProgressUpdate {
        stage: "slice store",
        done: 0,
        total: cases.len() as u64,
        unit: "volumes",
        detail: "",
    });

    for_each_prepared(config, cases, cancel, |i, prepared| {
        let PreparedCase {
            mut record,
            image_bytes,
            labels: case_labels,
            entries,
        } = prepared;
        images.write(&image_bytes)?;
        if let Some(out) = labels.as_mut() {
            match case_labels {
                Some(l) => out.write(&l)?,
                None => out.write(&vec![0u8; entries.len() * h * w])?,
            }
        }
        for mut e in entries {
            e.volume = i as u32;
            e.encode(&mut index);
        }
        record.first_slice = slices;
        slices += record.slice_count;
        progress.update(&ProgressUpdate {
            stage: "slice store",
            done: (i + 1) as u64,
            total: cases.len() as u64,
            unit: "volumes",
            detail: &record.case,
        });
        volumes.push(record);
        Ok(())
    })?;

    images.finish()?;
    if let Some(l) = labels {
        l.finish()?;
    }
    write_atomic(&dir.join(INDEX_FILE), &index).map_err(StoreError::io(dir.join(INDEX_FILE)))?;
    let meta = StoreMeta {
        format_version: FORMAT_VERSION,
        key: keys.key.clone(),
        lineage: keys.lineage.clone(),
        dtype: config.store.dtype,
        modalities: config.dataset.modalities.clone(),
        axis: config.slicing.axis,
        height: h,
        width: w,
        label_values: config.labels.values(),
        has_labels,
        slices,
        volumes,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::Corrupt {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join(META_FILE), &json).map_err(StoreError::io(dir.join(META_FILE)))?;
    sync_dir(dir).map_err(StoreError::io(dir))
}

/// Runs `prepare_case` on all cores and hands results to `sink` in case order.
/// Case `i` goes to thread `i % threads`, each with a one-slot channel, so the
/// sink can take them in order without buffering the pool.
fn for_each_prepared(
    config: &Config,
    cases: &[Case],
    cancel: &AtomicBool,
    mut sink: impl FnMut(usize, PreparedCase) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(cases.len().max(1));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let receivers: Vec<_> = (0..threads)
            .map(|t| {
                let (tx, rx) = mpsc::sync_channel::<Result<PreparedCase, StoreError>>(1);
                let stop = &stop;
                scope.spawn(move || {
                    for case in cases.iter().skip(t).step_by(threads) {
                        if stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                            return;
                        }
                        // A bug in preprocessing must surface as this case's
                        // error, not tear down the whole process.
                        let prepared = std::panic::catch_unwind(|| prepare_case(case, config))
                            .unwrap_or_else(|panic| {
                                let what = panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default();
                                Err(StoreError::Case {
                                    case: case.id.clone(),
                                    message: format!("internal error while preprocessing: {what}"),
                                })
                            });
                        if tx.send(prepared).is_err() {
                            return;
                        }
                    }
                });
                rx
            })
            .collect();
        let result = (|| {
            for i in 0..cases.len() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StoreError::Cancelled);
                }
                let prepared = receivers[i % threads]
                    .recv()
                    .map_err(|_| StoreError::Cancelled)??;
                sink(i, prepared)?;
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        drop(receivers);
        result
    })
}

/// A buffered output file that is fsynced when finished.
struct BufFile {
    path: PathBuf,
    writer: std::io::BufWriter<fs::File>,
}

impl BufFile {
    fn create(path: &Path) -> Result<BufFile, StoreError> {
        let file = fs::File::create(path).map_err(StoreError::io(path))?;
        Ok(BufFile {
            path: path.to_path_buf(),
            writer: std::io::BufWriter::with_capacity(1 << 22, file),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.writer
            .write_all(bytes)
            .map_err(StoreError::io(&self.path))
    }

    fn finish(self) -> Result<(), StoreError> {
        let file = self.writer.into_inner().map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(StoreError::io(&self.path))
    }
}

/// Removes `.build-*` directories: with the root's lock held, any that exist
/// were left by a builder that died (e.g. `kill -9`).
fn remove_abandoned_builds(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".build-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes older stores of the same lineage: the same dataset files and
/// settings, built before the files were rewritten.
fn remove_superseded_stores(root: &Path, keys: &StoreKeys) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy() == keys.key.as_str() {
            continue;
        }
        let meta = entry.path().join(META_FILE);
        let Ok(text) = fs::read(&meta) else { continue };
        let Ok(other) = serde_json::from_slice::<StoreMeta>(&text) else {
            continue;
        };
        if other.lineage == keys.lineage {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
