//! Where tuned GPU kernels live between processes: one directory per GPU
//! model and driver under the user's cache directory
//! (`~/.cache/nextslice/gpu/nvidia-h200-550.54.15/`), never cubecl's default
//! of a `target/` beside the nearest `Cargo.toml`. It holds cubecl's
//! autotune results (`autotune/`), its NVRTC-compiled kernels (`kernels/`),
//! and our record of which project shapes were already tuned (`warm/`).
//!
//! A new driver or GPU gets a fresh directory: tuning results measured on
//! one do not carry to the other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::AutotuneLevel;
use crate::fsutil::{bytes_under, files_under};

/// Overrides the cache root (tests, shared cluster caches).
pub const CACHE_ENV: &str = "NEXTSLICE_GPU_CACHE";

/// What a finished warm-up recorded about a project's shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmRecord {
    /// The workloads and shapes that were tuned, as `signature` spells them.
    pub signature: String,
    /// Kernels cubecl tuned during the warm-up.
    pub tuned: u64,
    pub seconds: f64,
}

/// One GPU model's kernel cache under one driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCache {
    pub dir: PathBuf,
}

impl KernelCache {
    /// The root all GPUs' caches live under: `$NEXTSLICE_GPU_CACHE`, else
    /// `~/.cache/nextslice/gpu` (the XDG cache directory).
    pub fn root() -> Option<PathBuf> {
        match std::env::var_os(CACHE_ENV) {
            Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
            _ => directories::ProjectDirs::from("", "", "nextslice")
                .map(|d| d.cache_dir().join("gpu")),
        }
    }

    /// The cache of `gpu_name` under driver `driver` below `root`.
    pub fn for_gpu(root: &Path, gpu_name: &str, driver: &str) -> KernelCache {
        KernelCache {
            dir: root.join(format!("{}-{}", slug(gpu_name), slug(driver))),
        }
    }

    pub fn autotune_dir(&self) -> PathBuf {
        self.dir.join("autotune")
    }

    pub fn kernels_dir(&self) -> PathBuf {
        self.dir.join("kernels")
    }

    fn warm_file(&self, signature: &str) -> PathBuf {
        let hash = blake3::hash(signature.as_bytes()).to_hex();
        self.dir.join("warm").join(format!("{}.json", &hash[..16]))
    }

    /// How many kernel shapes cubecl has tuned here. Its autotune files are
    /// JSON lines, appended one result at a time; a line cut short by a
    /// crash has no newline and is not counted (cubecl skips it too and
    /// tunes that shape again).
    pub fn tuned_entries(&self) -> usize {
        files_under(&self.autotune_dir())
            .iter()
            .filter(|path| path.to_string_lossy().ends_with(".json.log"))
            .filter_map(|path| std::fs::read(path).ok())
            .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
            .sum()
    }

    /// Bytes on disk, everything included.
    pub fn size_bytes(&self) -> u64 {
        bytes_under(&self.dir)
    }

    /// The warm-up's record for these shapes, if it finished here before.
    pub fn warm_record(&self, signature: &str) -> Option<WarmRecord> {
        let bytes = std::fs::read(self.warm_file(signature)).ok()?;
        let record: WarmRecord = serde_json::from_slice(&bytes).ok()?;
        (record.signature == signature).then_some(record)
    }

    /// Of the warm-ups recorded under the same root (for any GPU and
    /// driver, this one's included) that `wanted` accepts, the one that
    /// tuned the most kernels: a warm-up that started from an empty cache
    /// tunes every kernel its shapes need, one that found a cache partly
    /// filled fewer. How many a cold warm-up of these shapes takes, for an
    /// estimate of how long this one will. Unreadable records are passed
    /// over.
    pub fn earlier_warm_up(&self, wanted: impl Fn(&WarmRecord) -> bool) -> Option<WarmRecord> {
        let root = self.dir.parent()?;
        let gpus = std::fs::read_dir(root).ok()?;
        gpus.flatten()
            .filter_map(|gpu| std::fs::read_dir(gpu.path().join("warm")).ok())
            .flat_map(|records| records.flatten())
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<WarmRecord>(&bytes).ok())
            .filter(|record| wanted(record))
            .max_by_key(|record| record.tuned)
    }

    /// Records a finished warm-up (atomically: a crash leaves none, and the
    /// next job tunes again, which finds cubecl's cache mostly filled).
    pub fn mark_warm(&self, record: &WarmRecord) -> std::io::Result<()> {
        let path = self.warm_file(&record.signature);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&path, &bytes)
    }

    /// cubecl's runtime configuration for this cache, as the JSON its
    /// `CubeClRuntimeConfig` deserialises: autotune at `level` with results
    /// kept here, compiled kernels kept here, and autotune results reported
    /// through the `log` crate (where `gpu::tuning` counts them).
    /// Compilation logging stays off: with it on, cubecl runs every CUDA
    /// kernel's source through `clang-format` before compiling it.
    pub fn cubecl_settings(&self, level: AutotuneLevel) -> serde_json::Value {
        cubecl_settings(Some(self), level)
    }
}

/// [`KernelCache::cubecl_settings`], or without `cache` the same minus the
/// caches (tuning results then last for the process only).
pub fn cubecl_settings(cache: Option<&KernelCache>, level: AutotuneLevel) -> serde_json::Value {
    let mut settings = serde_json::json!({
        "autotune": {
            "level": level.name(),
            "logger": { "level": "minimal", "log": "info" },
        },
    });
    if let Some(cache) = cache {
        settings["autotune"]["cache"] = serde_json::json!({ "file": cache.autotune_dir() });
        settings["compilation"] = serde_json::json!({ "cache": { "file": cache.kernels_dir() } });
    }
    settings
}

/// "nvidia-h200" from "NVIDIA H200": lower case, one `-` between words, safe
/// as a directory name.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() || out.starts_with('.') {
        format!("gpu{out}")
    } else {
        out.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gpu_and_driver_gets_its_own_directory() {
        let root = Path::new("/cache");
        let h200 = KernelCache::for_gpu(root, "NVIDIA H200", "550.54.15");
        assert_eq!(h200.dir, Path::new("/cache/nvidia-h200-550.54.15"));
        let newer = KernelCache::for_gpu(root, "NVIDIA H200", "560.28.03");
        assert_ne!(h200.dir, newer.dir);
        let h100 = KernelCache::for_gpu(root, "NVIDIA H100 80GB HBM3", "550.54.15");
        assert_eq!(
            h100.dir,
            Path::new("/cache/nvidia-h100-80gb-hbm3-550.54.15")
        );
        assert_eq!(slug("../../etc"), "gpu..-..-etc", "no path escapes");
        assert_eq!(slug(".."), "gpu..");
        assert_eq!(slug("///"), "gpu");
    }

    #[test]
    fn tuned_entries_count_whole_lines_only() {
        let root = tempfile::tempdir().unwrap();
        let cache = KernelCache::for_gpu(root.path(), "Test GPU", "1.0");
        assert_eq!(cache.tuned_entries(), 0, "no directory yet");
        let dir = cache.autotune_dir().join("0.10.0/device-0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("matmul.json.log"), "{\"a\":1}\n{\"b\":2}\n").unwrap();
        // A crash mid-append leaves a line without its newline.
        std::fs::write(dir.join("conv.json.log"), "{\"c\":3}\n{\"d\":").unwrap();
        std::fs::write(dir.join("notes.txt"), "x\ny\n").unwrap();
        assert_eq!(cache.tuned_entries(), 3);
        assert!(cache.size_bytes() > 0);
    }

    #[test]
    fn a_warm_record_round_trips_and_belongs_to_its_signature() {
        let root = tempfile::tempdir().unwrap();
        let cache = KernelCache::for_gpu(root.path(), "Test GPU", "1.0");
        assert_eq!(cache.warm_record("unet 128 b8"), None);
        let record = WarmRecord {
            signature: "unet 128 b8".into(),
            tuned: 17,
            seconds: 42.5,
        };
        cache.mark_warm(&record).unwrap();
        assert_eq!(cache.warm_record("unet 128 b8"), Some(record));
        assert_eq!(cache.warm_record("unet 256 b8"), None);
        // A damaged record is no record: the shapes are tuned again.
        let file = cache.warm_file("unet 128 b8");
        std::fs::write(&file, b"{\"signature\":").unwrap();
        assert_eq!(cache.warm_record("unet 128 b8"), None);
    }

    #[test]
    fn an_earlier_warm_up_is_found_under_any_gpu_of_the_root() {
        let root = tempfile::tempdir().unwrap();
        let here = KernelCache::for_gpu(root.path(), "Test GPU", "2.0");
        assert_eq!(here.earlier_warm_up(|_| true), None, "nothing yet");
        let older_driver = KernelCache::for_gpu(root.path(), "Test GPU", "1.0");
        let record = |signature: &str, tuned| WarmRecord {
            signature: signature.into(),
            tuned,
            seconds: 60.0,
        };
        older_driver
            .mark_warm(&record("v1 · unet 128", 40))
            .unwrap();
        older_driver
            .mark_warm(&record("v1 · unet 256", 50))
            .unwrap();
        let wanted = |r: &WarmRecord| r.signature.ends_with("unet 128");
        assert_eq!(here.earlier_warm_up(wanted).map(|r| r.tuned), Some(40));
        // A damaged record beside it is passed over.
        let warm = older_driver.dir.join("warm");
        std::fs::write(warm.join("damaged.json"), b"{\"signature\":").unwrap();
        assert_eq!(here.earlier_warm_up(wanted).map(|r| r.tuned), Some(40));
        // Of two matching records, the one that tuned more: the other
        // found a cache partly filled (an upgrade on the same GPU).
        here.mark_warm(&record("v2 · unet 128", 3)).unwrap();
        assert_eq!(here.earlier_warm_up(wanted).map(|r| r.tuned), Some(40));
        assert_eq!(here.earlier_warm_up(|r| r.signature.ends_with("vae")), None);
    }

    #[test]
    fn cubecl_settings_name_both_caches_and_the_level() {
        let cache = KernelCache::for_gpu(Path::new("/c"), "GPU", "1");
        let settings = cache.cubecl_settings(AutotuneLevel::Balanced);
        assert_eq!(settings["autotune"]["level"], "balanced");
        assert_eq!(settings["autotune"]["cache"]["file"], "/c/gpu-1/autotune");
        assert_eq!(settings["compilation"]["cache"]["file"], "/c/gpu-1/kernels");
        assert_eq!(settings["autotune"]["logger"]["log"], "info");
    }
}
