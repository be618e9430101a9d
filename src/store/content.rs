//! What a store is built from, named by content: each input file by its
//! path relative to the dataset root and the blake3 hash of its bytes. So
//! copying the data to another disk, or `touch`, keeps the same store (and
//! the pool latents and masks keyed to it), while a file whose bytes change
//! gets a new one.
//!
//! Hashing BraTS (tens of GB) on every start would be slow, so hashes are
//! cached in the store root beside the stores, keyed by absolute path, size
//! and modification time: a file is read again only when one of those
//! changed (a copy, a rewrite). The cache is advisory — lost or corrupt, it
//! is rebuilt — and written atomically under the root's lock.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::progress::{Progress, ProgressUpdate};

/// The hash cache's file name in a store root.
pub const HASH_CACHE: &str = ".content-hashes.json";

/// A file as cheap metadata says it is: what the cache is keyed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    /// Nanoseconds since 1970 (u64 lasts until 2554; JSON holds it).
    modified_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cached {
    stamp: Stamp,
    blake3: String,
}

fn stamp(path: &Path) -> Result<Stamp, StoreError> {
    let meta = fs::metadata(path).map_err(StoreError::io(path))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Ok(Stamp {
        len: meta.len(),
        modified_ns,
    })
}

/// Hashes of input files, from the cache in `root` where still valid.
pub struct ContentHashes {
    cache_path: PathBuf,
    cache: BTreeMap<String, Cached>,
    changed: bool,
}

impl ContentHashes {
    /// Loads the cache of the store root `root` (empty if missing or
    /// unreadable).
    pub fn open(root: &Path) -> ContentHashes {
        let cache_path = root.join(HASH_CACHE);
        let cache = fs::read(&cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        ContentHashes {
            cache_path,
            cache,
            changed: false,
        }
    }

    /// The blake3 hex digest of each of `files`, reading only those the
    /// cache cannot vouch for, with progress in bytes.
    pub fn hash_all(
        &mut self,
        files: &[&Path],
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<Vec<String>, StoreError> {
        let mut stamps = Vec::with_capacity(files.len());
        let mut to_read = 0u64;
        for path in files {
            let s = stamp(path)?;
            if self.cached(path, &s).is_none() {
                to_read += s.len;
            }
            stamps.push(s);
        }
        let mut done = 0u64;
        let mut out = Vec::with_capacity(files.len());
        for (path, s) in files.iter().zip(stamps) {
            if let Some(hash) = self.cached(path, &s) {
                out.push(hash.to_string());
                continue;
            }
            let hash = hash_file(path, cancel, |n| {
                done += n;
                progress.update(&ProgressUpdate {
                    stage: "hashing inputs",
                    done,
                    total: to_read,
                    unit: "bytes",
                    detail: "",
                });
            })?;
            self.cache.insert(
                absolute(path),
                Cached {
                    stamp: s,
                    blake3: hash.clone(),
                },
            );
            self.changed = true;
            out.push(hash);
        }
        Ok(out)
    }

    fn cached(&self, path: &Path, s: &Stamp) -> Option<&str> {
        self.cache
            .get(&absolute(path))
            .filter(|c| &c.stamp == s)
            .map(|c| c.blake3.as_str())
    }

    /// Writes the cache back if it learnt anything (atomically; a failure
    /// only costs a re-hash next time).
    pub fn save(&self) {
        if self.changed
            && let Ok(json) = serde_json::to_vec(&self.cache)
        {
            let _ = crate::fsutil::write_atomic(&self.cache_path, &json);
        }
    }
}

fn absolute(path: &Path) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Streams `path` through blake3, calling `read(n)` after each chunk.
fn hash_file(
    path: &Path,
    cancel: &AtomicBool,
    mut read: impl FnMut(u64),
) -> Result<String, StoreError> {
    let mut file = fs::File::open(path).map_err(StoreError::io(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(StoreError::Cancelled);
        }
        let n = file.read(&mut buffer).map_err(StoreError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        read(n as u64);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// `path` relative to the dataset root `root`, with `/` separators; the
/// absolute path when it lies outside (a glob may reach out of the root).
pub fn relative_to(path: &Path, root: Option<&Path>) -> String {
    let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = root.map(|r| fs::canonicalize(r).unwrap_or_else(|_| r.to_path_buf()));
    match root.as_deref().and_then(|r| canonical.strip_prefix(r).ok()) {
        Some(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        None => canonical.to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn hashes_are_cached_by_stamp_and_redone_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.nii");
        fs::write(&a, b"first").unwrap();
        let never = AtomicBool::new(false);
        let mut hashes = ContentHashes::open(dir.path());
        let first = hashes.hash_all(&[&a], &Silent, &never).unwrap();
        assert_eq!(first[0], blake3::hash(b"first").to_hex().to_string());
        hashes.save();
        // Read back from the cache file.
        let reopened = ContentHashes::open(dir.path());
        assert_eq!(reopened.cached(&a, &stamp(&a).unwrap()), Some(&*first[0]));
        // Rewritten: new stamp, new hash.
        fs::write(&a, b"second, longer").unwrap();
        let mut hashes = ContentHashes::open(dir.path());
        let second = hashes.hash_all(&[&a], &Silent, &never).unwrap();
        assert_eq!(
            second[0],
            blake3::hash(b"second, longer").to_hex().to_string()
        );
    }

    #[test]
    fn paths_are_named_relative_to_the_dataset_root() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("HGG/case_1");
        fs::create_dir_all(&nested).unwrap();
        let file = nested.join("case_1_t1.nii.gz");
        fs::write(&file, b"x").unwrap();
        assert_eq!(
            relative_to(&file, Some(dir.path())),
            "HGG/case_1/case_1_t1.nii.gz"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let abs = relative_to(&file, Some(elsewhere.path()));
        assert!(abs.starts_with('/'), "{abs}");
    }
}
