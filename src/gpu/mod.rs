//! The GPU around the models: is there one ([`probe`]), where its tuned
//! kernels are kept between processes ([`cache`]), cubecl's configuration
//! ([`runtime`]), what its autotuner is doing ([`tuning`]), our own
//! kernels ([`adam`]), and how they meet burn's tensors where they lie
//! (`cube` and `channels`, in GPU builds), and the per-group sums that
//! batch norm's and the Dice loss's kernels share (`sums`).
//!
//! Imports only config (and fsutil for atomic writes).

pub mod adam;
pub mod cache;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod channels;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cube;
pub mod probe;
pub mod runtime;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod sums;
pub mod tuning;

pub use cache::{KernelCache, WarmRecord};
pub use probe::{CudaDriver, CudaProbe, Gpu, probe_cuda};
pub use runtime::{GpuRuntime, GpuRuntimeError, configure};
pub use tuning::{TuningSnapshot, monitor};

/// The kernel cache for GPU `index` as the probe found it, if there is a
/// GPU and a cache root.
pub fn kernel_cache_for(index: usize) -> Option<KernelCache> {
    let driver = probe_cuda().driver()?;
    let gpu = driver.gpus.iter().find(|g| g.index == index)?;
    Some(KernelCache::for_gpu(
        &KernelCache::root()?,
        &gpu.name,
        &driver.version,
    ))
}
