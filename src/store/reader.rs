//! Reading slices from a store through memory maps. Reads copy into the
//! caller's buffers; every 64 MiB read, the mapped pages are handed back to
//! the kernel, so a process's resident memory stays bounded even when an
//! epoch walks the whole pool (the data stays in the page cache).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::{Mmap, UncheckedAdvice};

use crate::config::StoreDtype;

use super::StoreError;
use super::format::{
    FORMAT_VERSION, IMAGES_FILE, INDEX_FILE, LABELS_FILE, META_FILE, RECORD_LEN, SliceEntry,
    StoreMeta,
};

const RELEASE_EVERY: usize = 64 << 20;

pub struct SliceStore {
    dir: PathBuf,
    meta: StoreMeta,
    entries: Vec<SliceEntry>,
    images: Option<Mmap>,
    labels: Option<Mmap>,
    read_since_release: AtomicUsize,
}

fn corrupt(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Maps a file read-only, checking its length. Zero-length files are not
/// mapped (mmap rejects them).
fn map(path: &Path, expected: usize) -> Result<Option<Mmap>, StoreError> {
    let file = File::open(path).map_err(StoreError::io(path))?;
    let len = file.metadata().map_err(StoreError::io(path))?.len();
    if len != expected as u64 {
        return Err(corrupt(path, format!("{len} bytes, expected {expected}")));
    }
    if expected == 0 {
        return Ok(None);
    }
    // SAFETY: the store's files are written once, before `meta.json` makes the
    // store visible, and never modified afterwards.
    let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io(path))?;
    Ok(Some(map))
}

/// Byte sizes of the image and label files, if the dimensions are sane.
fn checked_sizes(meta: &StoreMeta) -> Option<(usize, usize)> {
    if meta.channels() == 0 || meta.height == 0 || meta.width == 0 {
        return None;
    }
    let pixels = meta.height.checked_mul(meta.width)?;
    let images = pixels
        .checked_mul(meta.channels())?
        .checked_mul(meta.bytes_per_value())?
        .checked_mul(meta.slices)?;
    let labels = pixels.checked_mul(meta.slices)?;
    Some((images, labels))
}

/// Volume records and index entries must describe the same slices.
fn check_records(meta: &StoreMeta, entries: &[SliceEntry]) -> Result<(), String> {
    let mut next = 0usize;
    for (v, record) in meta.volumes.iter().enumerate() {
        let end = record.first_slice.checked_add(record.slice_count);
        if record.first_slice != next || end.is_none_or(|e| e > entries.len()) {
            return Err(format!("volume {v} claims slices outside the index"));
        }
        let depth = record.canonical_dims[meta.axis.normal_axis()];
        for e in &entries[record.first_slice..record.first_slice + record.slice_count] {
            if e.volume as usize != v || e.slice as usize >= depth {
                return Err(format!(
                    "slice record for volume {v} does not match the volume"
                ));
            }
        }
        next += record.slice_count;
    }
    if next != entries.len() {
        return Err(format!(
            "{} slices indexed, volumes account for {next}",
            entries.len()
        ));
    }
    Ok(())
}

impl SliceStore {
    /// Opens a complete store directory, checking its files against `meta.json`.
    pub fn open(dir: &Path) -> Result<SliceStore, StoreError> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read(&meta_path).map_err(StoreError::io(&meta_path))?;
        let meta: StoreMeta =
            serde_json::from_slice(&text).map_err(|e| corrupt(&meta_path, e.to_string()))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(corrupt(
                &meta_path,
                format!(
                    "format version {}, expected {FORMAT_VERSION}",
                    meta.format_version
                ),
            ));
        }
        let sizes = checked_sizes(&meta)
            .ok_or_else(|| corrupt(&meta_path, "slice dimensions are zero or too large"))?;
        let index_path = dir.join(INDEX_FILE);
        let index = std::fs::read(&index_path).map_err(StoreError::io(&index_path))?;
        if index.len() != meta.slices * RECORD_LEN {
            return Err(corrupt(
                &index_path,
                format!("{} bytes for {} slices", index.len(), meta.slices),
            ));
        }
        let entries: Vec<SliceEntry> = index
            .chunks_exact(RECORD_LEN)
            .map(|r| SliceEntry::decode(r.try_into().unwrap_or(&[0; RECORD_LEN])))
            .collect();
        check_records(&meta, &entries).map_err(|m| corrupt(&index_path, m))?;
        let images = map(&dir.join(IMAGES_FILE), sizes.0)?;
        let labels = if meta.has_labels {
            map(&dir.join(LABELS_FILE), sizes.1)?
        } else {
            None
        };
        Ok(SliceStore {
            dir: dir.to_path_buf(),
            meta,
            entries,
            images,
            labels,
            read_since_release: AtomicUsize::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    pub fn entries(&self) -> &[SliceEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when slice `i` comes from a volume with a label map.
    pub fn has_label(&self, i: usize) -> bool {
        self.entries[i].foreground_fraction.is_some()
    }

    /// Copies slice `i` (channels × height × width) into `out` as f32.
    pub fn read_image(&self, i: usize, out: &mut [f32]) {
        let n = self.meta.slice_values();
        assert_eq!(out.len(), n, "output buffer must hold one slice");
        let Some(images) = &self.images else { return };
        let bytes = n * self.meta.bytes_per_value();
        let src = &images[i * bytes..(i + 1) * bytes];
        match self.meta.dtype {
            StoreDtype::F32 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            StoreDtype::F16 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
        }
        self.note_read(bytes);
    }

    /// Copies the class indices of slice `i` into `out`; false (and zeros)
    /// when its volume has no label map.
    pub fn read_label(&self, i: usize, out: &mut [u8]) -> bool {
        let n = self.meta.pixels();
        assert_eq!(out.len(), n, "output buffer must hold one slice");
        match (&self.labels, self.has_label(i)) {
            (Some(labels), true) => {
                out.copy_from_slice(&labels[i * n..(i + 1) * n]);
                self.note_read(n);
                true
            }
            _ => {
                out.fill(0);
                false
            }
        }
    }

    /// Reads the slices `ids` into `images` (ids × channels × h × w) and,
    /// when asked, their labels (ids × h × w). Buffers are resized to fit.
    pub fn read_batch(&self, ids: &[usize], images: &mut Vec<f32>, labels: Option<&mut Vec<u8>>) {
        let n = self.meta.slice_values();
        images.resize(ids.len() * n, 0.0);
        for (chunk, &i) in images.chunks_exact_mut(n).zip(ids) {
            self.read_image(i, chunk);
        }
        if let Some(labels) = labels {
            let p = self.meta.pixels();
            labels.resize(ids.len() * p, 0);
            for (chunk, &i) in labels.chunks_exact_mut(p).zip(ids) {
                self.read_label(i, chunk);
            }
        }
    }

    fn note_read(&self, bytes: usize) {
        let total = self.read_since_release.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= RELEASE_EVERY {
            self.read_since_release.store(0, Ordering::Relaxed);
            for map in self.images.iter().chain(&self.labels) {
                // SAFETY: the maps are read-only views of files that never
                // change; dropped pages are re-read from the page cache with
                // identical contents on the next access.
                let _ = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) };
            }
        }
    }
}
