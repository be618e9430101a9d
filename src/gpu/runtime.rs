//! cubecl's process-wide configuration, set from our code before the first
//! GPU operation (cubecl reads it once, at its first use, and refuses to
//! change it after): autotune level and both caches in our [`KernelCache`],
//! autotune results routed to [`super::tuning`]. Without this, cubecl would
//! look for a `cubecl.toml` above the working directory and keep its caches
//! in a `target/` beside the nearest `Cargo.toml`.
//!
//! `$NEXTSLICE_GPU_PROFILE=FILE` also turns on cubecl's kernel profiler:
//! at every device sync it appends a table of the kernels run since the
//! last one (name, count, time, share) to FILE. Profiling times each kernel
//! on its own, so it slows the run; it is for finding what dominates a step.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use super::cache::KernelCache;
use crate::config::AutotuneLevel;

/// What [`configure`] settled on for this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuRuntime {
    pub cache: Option<KernelCache>,
    pub level: AutotuneLevel,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuRuntimeError {
    #[error("cubecl refused its configuration: {0}")]
    Rejected(String),
}

static CONFIGURED: OnceLock<GpuRuntime> = OnceLock::new();

/// Where cubecl's kernel profiler writes, when set.
pub const PROFILE_ENV: &str = "NEXTSLICE_GPU_PROFILE";

/// Where cubecl notes each kernel it compiles (a line with the kernel's
/// name; none for kernels found in the compiled-kernel cache), when set:
/// what a cold first step spends its time compiling.
pub const COMPILE_LOG_ENV: &str = "NEXTSLICE_GPU_COMPILE_LOG";

/// The settings [`configure`] made in this process, if it ran.
pub fn configured() -> Option<&'static GpuRuntime> {
    CONFIGURED.get()
}

/// Whether each new tensor shape costs a kernel tuning in this process:
/// cubecl was configured for a GPU, whose autotuner tunes every shape on
/// first use (minutes for a model's layers). Then every batch a job runs
/// has the size the warm-up tuned: training batches are filled, and an
/// inference pass's last batch is padded (`engine::infer::Pass`).
pub fn tunes_each_shape() -> bool {
    configured().is_some() || pretend::tuning()
}

/// Tests of the CPU backend run the GPU's batch rules on their own thread.
#[cfg(test)]
pub mod pretend {
    use std::cell::Cell;

    thread_local! {
        static TUNING: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn tuning() -> bool {
        TUNING.with(Cell::get)
    }

    /// Runs `f` as if this process tuned each shape.
    pub fn each_shape_tuned<R>(f: impl FnOnce() -> R) -> R {
        /// Puts the flag back however `f` ends.
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                TUNING.with(|t| t.set(self.0));
            }
        }
        let _restore = Restore(TUNING.with(|t| t.replace(true)));
        f()
    }
}

#[cfg(not(test))]
mod pretend {
    pub(super) fn tuning() -> bool {
        false
    }
}

/// Sets cubecl's configuration once per process; later calls return the
/// first one's settings (one process runs one project's jobs).
/// `cache` is `None` where no cache directory can be found (no home): then
/// tuning results last for the process only.
pub fn configure(
    cache: Option<KernelCache>,
    level: AutotuneLevel,
) -> Result<&'static GpuRuntime, GpuRuntimeError> {
    if let Some(done) = CONFIGURED.get() {
        return Ok(done);
    }
    // Two threads configuring at once: the second waits, then sees the first's.
    static CONFIGURING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CONFIGURING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(done) = CONFIGURED.get() {
        return Ok(done);
    }
    super::tuning::install_log();
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        let file = |name| std::env::var_os(name).filter(|f| !f.is_empty());
        let (profile, compiled) = (file(PROFILE_ENV), file(COMPILE_LOG_ENV));
        let settings = super::cache::cubecl_settings(cache.as_ref(), level);
        let settings = with_logger(settings, "profiling", profile.as_deref().map(Path::new));
        let settings = with_logger(settings, "compilation", compiled.as_deref().map(Path::new));
        let config: CubeClRuntimeConfig = serde_json::from_value(settings)
            .map_err(|e| GpuRuntimeError::Rejected(e.to_string()))?;
        // `set` panics if cubecl already read its configuration (GPU work
        // before this call): a bug of ours, reported as an error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            CubeClRuntimeConfig::set(config)
        }))
        .map_err(|_| {
            GpuRuntimeError::Rejected(
                "it was already read; configure it before the first GPU operation".into(),
            )
        })?;
    }
    Ok(CONFIGURED.get_or_init(|| GpuRuntime { cache, level }))
}

/// `settings` with cubecl's logger of `section` (`profiling`: each
/// kernel's time; `compilation`: each kernel compiled) writing to `file`,
/// if any, beside that section's other settings.
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
fn with_logger(
    mut settings: serde_json::Value,
    section: &str,
    file: Option<&Path>,
) -> serde_json::Value {
    if let Some(file) = file {
        settings[section]["logger"] =
            serde_json::json!({ "level": "basic", "file": file, "append": true });
    }
    settings
}

#[cfg(test)]
mod logger_tests {
    use super::*;

    #[test]
    fn a_logger_is_on_only_when_a_file_is_named_and_keeps_its_section() {
        let base = serde_json::json!({
            "autotune": { "level": "minimal" },
            "compilation": { "cache": { "file": "/c/kernels" } },
        });
        assert_eq!(with_logger(base.clone(), "profiling", None), base);
        let on = with_logger(base, "profiling", Some(Path::new("/tmp/kernels.txt")));
        assert_eq!(on["profiling"]["logger"]["level"], "basic");
        assert_eq!(on["profiling"]["logger"]["file"], "/tmp/kernels.txt");
        let both = with_logger(on, "compilation", Some(Path::new("/tmp/compiled.txt")));
        assert_eq!(both["compilation"]["logger"]["file"], "/tmp/compiled.txt");
        assert_eq!(both["compilation"]["cache"]["file"], "/c/kernels");
        assert_eq!(both["profiling"]["logger"]["file"], "/tmp/kernels.txt");
        assert_eq!(both["autotune"]["level"], "minimal");
    }
}

#[cfg(all(test, any(feature = "cuda", feature = "wgpu")))]
mod tests {
    use super::*;

    #[test]
    fn our_settings_are_a_valid_cubecl_configuration() {
        use burn::cubecl::config::CubeClRuntimeConfig;
        let cache = KernelCache::for_gpu(std::path::Path::new("/c"), "GPU", "1");
        let settings = with_logger(
            cache.cubecl_settings(AutotuneLevel::Balanced),
            "profiling",
            Some(Path::new("/p/kernels.txt")),
        );
        let settings = with_logger(settings, "compilation", Some(Path::new("/p/compiled.txt")));
        let config: CubeClRuntimeConfig = serde_json::from_value(settings).unwrap();
        let text = format!("{config:?}");
        assert!(text.contains("Balanced"), "{text}");
        assert!(
            text.contains("kernels.txt") && text.contains("Basic"),
            "{text}"
        );
        assert!(text.contains("compiled.txt"), "{text}");
        assert_eq!(config.autotune.cache.root(), cache.autotune_dir());
        assert_eq!(
            config.compilation.cache.as_ref().map(|c| c.root()),
            Some(cache.kernels_dir())
        );
    }
}
