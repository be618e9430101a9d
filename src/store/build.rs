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
use crate::progress::{Progress, ProgressUpdate, Silent};
use crate::volume::dataset::Case;

use super::content::{ContentHashes, relative_to};
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
struct KeyMaterial<'a, F: Serialize> {
    format_version: u32,
    modalities: &'a [String],
    label_values: Vec<u8>,
    slicing: &'a crate::config::SlicingConfig,
    normalisation: &'a crate::config::NormalisationConfig,
    store: StoreSettings,
    cases: Vec<(&'a str, Vec<F>)>,
}

/// The `[store]` settings that change stored values: not where the store
/// lives. (Serialised as `[store]` was before it had a root, so keys made
/// then still match.)
#[derive(Serialize)]
struct StoreSettings {
    dtype: crate::config::StoreDtype,
}

/// An input file by content: where it is under the dataset root, and its
/// bytes' blake3 hash.
#[derive(Serialize)]
struct FileContent {
    path: String,
    blake3: String,
}

/// How stores were keyed before content keys: absolute path, size and
/// modification time. Only computed to adopt a store built that way.
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

/// `key` names a store: settings plus every input file's content.
/// `lineage` leaves out the contents: a new store supersedes older ones of
/// the same lineage (the same files, since rewritten), and leaves stores of
/// other datasets or settings sharing the root alone. `legacy` is the key
/// the same inputs had before stores were keyed by content.
struct StoreKeys {
    key: String,
    lineage: String,
    legacy: Option<String>,
}

fn material<'a, F: Serialize>(
    config: &'a Config,
    cases: Vec<(&'a str, Vec<F>)>,
) -> KeyMaterial<'a, F> {
    KeyMaterial {
        format_version: FORMAT_VERSION,
        modalities: &config.dataset.modalities,
        label_values: config.labels.values(),
        slicing: &config.slicing,
        normalisation: &config.normalisation,
        store: StoreSettings {
            dtype: config.store.dtype,
        },
        cases,
    }
}

fn hash_of<F: Serialize>(m: &KeyMaterial<'_, F>) -> String {
    let json = serde_json::to_vec(m).unwrap_or_default();
    blake3::hash(&json).to_hex()[..16].to_string()
}

fn case_files(case: &Case) -> impl Iterator<Item = &PathBuf> {
    case.images.iter().chain(&case.label)
}

fn store_keys(
    root: &Path,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<StoreKeys, StoreError> {
    let files: Vec<&Path> = cases
        .iter()
        .flat_map(case_files)
        .map(PathBuf::as_path)
        .collect();
    let mut hashes = ContentHashes::open(root);
    let digests = hashes.hash_all(&files, progress, cancel)?;
    hashes.save();
    let data_root = config.dataset.root.as_deref();
    let mut digests = digests.into_iter();
    let mut listed = Vec::with_capacity(cases.len());
    for case in cases {
        let files: Vec<FileContent> = case_files(case)
            .map(|p| FileContent {
                path: relative_to(p, data_root),
                blake3: digests.next().unwrap_or_default(),
            })
            .collect();
        listed.push((case.id.as_str(), files));
    }
    let mut content = material(config, listed);
    let key = hash_of(&content);
    for (_, files) in &mut content.cases {
        for f in files {
            f.blake3.clear();
        }
    }
    let lineage = hash_of(&content);
    let legacy = cases
        .iter()
        .map(|case| {
            let files = case_files(case)
                .map(|p| identity(p))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((case.id.as_str(), files))
        })
        .collect::<Result<Vec<_>, StoreError>>()
        .ok()
        .map(|listed| hash_of(&material(config, listed)));
    Ok(StoreKeys {
        key,
        lineage,
        legacy,
    })
}

/// The store key for these cases and settings (16 hex digits): the name of
/// the directory `open_or_build` uses under `root`.
pub fn store_key(root: &Path, config: &Config, cases: &[Case]) -> Result<String, StoreError> {
    store_key_with(root, config, cases, &Silent, &AtomicBool::new(false))
}

/// `store_key`, reporting the hashing of files the cache cannot vouch for.
pub fn store_key_with(
    root: &Path,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<String, StoreError> {
    Ok(store_keys(root, config, cases, progress, cancel)?.key)
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
    open_or_build_for(root, config, cases, None, progress, cancel)
}

/// `open_or_build`, registering `user` (a project directory) as a user of
/// the store before the root's lock is let go.
pub fn open_or_build_for(
    root: &Path,
    config: &Config,
    cases: &[Case],
    user: Option<&Path>,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(SliceStore, BuildOutcome), StoreError> {
    let _lock = lock_root(root)?;
    let (store, outcome) = open_or_build_locked(root, config, cases, progress, cancel)?;
    if let Some(user) = user {
        super::users::register_locked(root, &store.meta().key, user)?;
    }
    Ok((store, outcome))
}

fn open_or_build_locked(
    root: &Path,
    config: &Config,
    cases: &[Case],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(SliceStore, BuildOutcome), StoreError> {
    let keys = store_keys(root, config, cases, progress, cancel)?;
    let dir = root.join(&keys.key);
    adopt_legacy_store(root, &keys);
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

/// Takes the root's lock (created with the root if need be), held until the
/// returned file is dropped: builders, and whoever removes stores, take turns.
pub(super) fn lock_root(root: &Path) -> Result<fs::File, StoreError> {
    fs::create_dir_all(root).map_err(StoreError::io(root))?;
    let lock_path = root.join(".lock");
    let lock = fs::File::create(&lock_path).map_err(StoreError::io(&lock_path))?;
    lock.lock().map_err(StoreError::io(&lock_path))?;
    Ok(lock)
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

/// A store built before stores were keyed by content, for these same
/// inputs, is renamed to its content key: projects keep their store (its
/// recorded key, which latents refer to, is unchanged) instead of
/// rebuilding it.
fn adopt_legacy_store(root: &Path, keys: &StoreKeys) {
    let Some(legacy) = &keys.legacy else { return };
    let (old, new) = (root.join(legacy), root.join(&keys.key));
    if legacy != &keys.key && old.join(META_FILE).exists() && !new.exists() {
        let _ = fs::rename(&old, &new).and_then(|()| sync_dir(root));
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
        // In a shared root, a project still on the old store keeps it.
        if other.lineage == keys.lineage && !super::users::in_use(&entry.path()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::volume::dataset::discover;
    use crate::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

    #[test]
    fn a_store_keyed_the_old_way_is_adopted_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let spec = PhantomSpec {
            kind: PhantomKind::Tumour,
            subjects: 1,
            size: 32,
            seed: 2,
        };
        write_phantom(&data, &spec, &Silent).unwrap();
        let mut config =
            Config::preset_with(Preset::Demo, "<test>", "[slicing]\nsize = [32, 32]\n").unwrap();
        config.dataset.root = Some(data.clone());
        let cases = discover(&config.dataset, &data).unwrap().cases;
        let root = dir.path().join("stores");
        let never = AtomicBool::new(false);
        let (store, _) = open_or_build(&root, &config, &cases, &Silent, &never).unwrap();
        let built_key = store.meta().key.clone();
        drop(store);
        // What an older nextslice left: the same store under its old key.
        let keys = store_keys(&root, &config, &cases, &Silent, &never).unwrap();
        let legacy = keys.legacy.expect("a legacy key");
        assert_ne!(legacy, keys.key);
        fs::rename(root.join(&keys.key), root.join(&legacy)).unwrap();
        let (store, outcome) = open_or_build(&root, &config, &cases, &Silent, &never).unwrap();
        assert_eq!(outcome, BuildOutcome::Reused);
        assert_eq!(store.meta().key, built_key);
        assert!(root.join(&keys.key).exists() && !root.join(&legacy).exists());
    }
}
