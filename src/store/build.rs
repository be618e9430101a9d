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
/// every input file's identity.
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

/// The store key for these cases and settings (16 hex digits).
pub fn store_key(config: &Config, cases: &[Case]) -> Result<String, StoreError> {
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
    let material = KeyMaterial {
        format_version: FORMAT_VERSION,
        modalities: &config.dataset.modalities,
        label_values: config.labels.values(),
        slicing: &config.slicing,
        normalisation: &config.normalisation,
        store: &config.store,
        cases: listed,
    };
    let json = serde_json::to_vec(&material).map_err(|e| StoreError::Corrupt {
        path: PathBuf::new(),
        message: e.to_string(),
    })?;
    Ok(blake3::hash(&json).to_hex()[..16].to_string())
}

/// Opens the store for these inputs under `root`, building it first when the
/// inputs or settings changed since the last build.
pub fn open_or_build(
    root: &Path,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(SliceStore, BuildOutcome), StoreError> {
    let key = store_key(config, cases)?;
    let dir = root.join(&key);
    if dir.join(META_FILE).exists() {
        if let Ok(store) = SliceStore::open(&dir) {
            return Ok((store, BuildOutcome::Reused));
        }
        // Unreadable (e.g. disk trouble): rebuild from the sources.
        fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
    }
    let store = build_store(root, &key, config, cases, progress, cancel)?;
    Ok((store, BuildOutcome::Built))
}

/// Builds the store `root/<key>` from `cases`, replacing older stores in `root`.
pub fn build_store(
    root: &Path,
    key: &str,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<SliceStore, StoreError> {
    fs::create_dir_all(root).map_err(StoreError::io(root))?;
    remove_abandoned_builds(root);
    let temp = root.join(format!(".build-{key}-{}", std::process::id()));
    if temp.exists() {
        fs::remove_dir_all(&temp).map_err(StoreError::io(&temp))?;
    }
    fs::create_dir_all(&temp).map_err(StoreError::io(&temp))?;
    let result = write_store(&temp, key, config, cases, progress, cancel);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    let dir = root.join(key);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
    }
    fs::rename(&temp, &dir).map_err(StoreError::io(&dir))?;
    sync_dir(root).map_err(StoreError::io(root))?;
    remove_other_stores(root, key);
    SliceStore::open(&dir)
}

fn write_store(
    dir: &Path,
    key: &str,
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
        key: key.to_string(),
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
                        if tx.send(prepare_case(case, config)).is_err() {
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

/// Removes `.build-*` directories left by processes that no longer run.
fn remove_abandoned_builds(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".build-") else {
            continue;
        };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid
            .is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Old stores of this root are stale once a new one is complete.
fn remove_other_stores(root: &Path, key: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_store = name.len() == 16 && name.chars().all(|c| c.is_ascii_hexdigit());
        if is_store && name != key && entry.path().join(META_FILE).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
