//! Crash-safe file writing: every file we write appears whole or not at all,
//! even after `kill -9` or a power cut (temp file, fsync, rename, fsync dir).
//! And the walk of a directory tree that sizes what we keep.
//!
//! Imports nothing of the crate.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temp names unique within a process (two writers of one target).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written next to its final path; `commit` makes it appear
/// atomically. Dropping it without committing removes the temp file.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> io::Result<Self> {
        let dir = parent_dir(target);
        fs::create_dir_all(dir)?;
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy();
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes, fsyncs and renames over the target, then fsyncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let writer = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("already committed"))?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        sync_dir(parent_dir(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Makes a rename or file creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `target` through a temp file and a rename, without
/// fsync: for many small files made durable together by one
/// [`sync_filesystem`] before anything refers to them.
pub fn write_replace(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(target);
    fs::create_dir_all(dir)?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".replace-{}-{n}", std::process::id()));
    fs::write(&temp, bytes)?;
    fs::rename(&temp, target)
}

/// Flushes everything written to the file system holding `path` (one
/// `syncfs`, instead of an fsync per file).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes a valid open descriptor, which `dir` holds.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every plain file below `dir` (none if it does not exist); symbolic
/// links are not followed.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// Bytes of every plain file below `dir`.
pub fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|path| fs::metadata(path).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_file_leaves_nothing_and_commit_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        write_atomic(&target, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"half-written").unwrap();
        }
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn the_walk_finds_nested_files_and_sizes_them() {
        let dir = tempfile::tempdir().unwrap();
        assert!(files_under(&dir.path().join("missing")).is_empty());
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("top"), b"12").unwrap();
        fs::write(dir.path().join("a/b/deep"), b"345").unwrap();
        let mut names: Vec<_> = files_under(dir.path())
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
            .collect();
        names.sort();
        assert_eq!(names, [PathBuf::from("a/b/deep"), PathBuf::from("top")]);
        assert_eq!(bytes_under(dir.path()), 5);
    }
}
