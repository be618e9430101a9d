//! Reading slices from a store with positional reads (`pread`) into the
//! caller's buffers. Any number of threads may read at once.
//!
//! Why not a memory map: on current kernels the page cache holds files in
//! large folios, and touching one byte of a mapped folio maps all of it into
//! the process. Measured on a 770 MiB store: randomly reading 25 MiB through a
//! map raised resident memory by 272 MiB, and an epoch grew it with the pool
//! (see `cargo bench --bench store_memory`). A positional read copies exactly
//! the slice out of the page cache and leaves resident memory at the size of
//! the caller's buffers, whatever the pool size.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::StoreDtype;

use super::StoreError;
use super::format::{
    FORMAT_VERSION, IMAGES_FILE, INDEX_FILE, LABELS_FILE, META_FILE, RECORD_LEN, SliceEntry,
    StoreMeta,
};

pub struct SliceStore {
    dir: PathBuf,
    meta: StoreMeta,
    entries: Vec<SliceEntry>,
    images: File,
    labels: Option<File>,
}

thread_local! {
    /// Raw bytes of one f16 slice, reused between reads on each thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn corrupt(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Opens a data file, checking its length against the metadata.
fn open_sized(path: &Path, expected: usize) -> Result<File, StoreError> {
    let file = File::open(path).map_err(StoreError::io(path))?;
    let len = file.metadata().map_err(StoreError::io(path))?.len();
    if len != expected as u64 {
        return Err(corrupt(path, format!("{len} bytes, expected {expected}")));
    }
    Ok(file)
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
        let images = open_sized(&dir.join(IMAGES_FILE), sizes.0)?;
        let labels = if meta.has_labels {
            Some(open_sized(&dir.join(LABELS_FILE), sizes.1)?)
        } else {
            None
        };
        Ok(SliceStore {
            dir: dir.to_path_buf(),
            meta,
            entries,
            images,
            labels,
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

    fn read_error(&self, file: &str, e: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.dir.join(file),
            source: e,
        }
    }

    /// Copies slice `i` (channels × height × width) into `out` as f32.
    pub fn read_image(&self, i: usize, out: &mut [f32]) -> Result<(), StoreError> {
        let n = self.meta.slice_values();
        assert_eq!(out.len(), n, "output buffer must hold one slice");
        let bytes = n * self.meta.bytes_per_value();
        let offset = (i * bytes) as u64;
        match self.meta.dtype {
            StoreDtype::F32 => {
                let raw: &mut [u8] = bytemuck::cast_slice_mut(out);
                self.images
                    .read_exact_at(raw, offset)
                    .map_err(|e| self.read_error(IMAGES_FILE, e))?;
                if cfg!(target_endian = "big") {
                    out.iter_mut()
                        .for_each(|v| *v = f32::from_bits(v.to_bits().swap_bytes()));
                }
            }
            StoreDtype::F16 => SCRATCH.with(|scratch| {
                let mut raw = scratch.borrow_mut();
                raw.resize(bytes, 0);
                self.images
                    .read_exact_at(&mut raw, offset)
                    .map_err(|e| self.read_error(IMAGES_FILE, e))?;
                for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
                Ok::<(), StoreError>(())
            })?,
        }
        Ok(())
    }

    /// Copies the class indices of slice `i` into `out`; `Ok(false)` (and
    /// zeros) when its volume has no label map.
    pub fn read_label(&self, i: usize, out: &mut [u8]) -> Result<bool, StoreError> {
        let n = self.meta.pixels();
        assert_eq!(out.len(), n, "output buffer must hold one slice");
        match (&self.labels, self.has_label(i)) {
            (Some(labels), true) => {
                labels
                    .read_exact_at(out, (i * n) as u64)
                    .map_err(|e| self.read_error(LABELS_FILE, e))?;
                Ok(true)
            }
            _ => {
                out.fill(0);
                Ok(false)
            }
        }
    }

    /// Reads the slices `ids` into `images` (ids × channels × h × w) and,
    /// when asked, their labels (ids × h × w). Buffers are resized to fit.
    pub fn read_batch(
        &self,
        ids: &[usize],
        images: &mut Vec<f32>,
        labels: Option<&mut Vec<u8>>,
    ) -> Result<(), StoreError> {
        let n = self.meta.slice_values();
        images.resize(ids.len() * n, 0.0);
        for (chunk, &i) in images.chunks_exact_mut(n).zip(ids) {
            self.read_image(i, chunk)?;
        }
        if let Some(labels) = labels {
            let p = self.meta.pixels();
            labels.resize(ids.len() * p, 0);
            for (chunk, &i) in labels.chunks_exact_mut(p).zip(ids) {
                self.read_label(i, chunk)?;
            }
        }
        Ok(())
    }
}
