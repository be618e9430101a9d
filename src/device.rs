//! Choosing where models run: `--device auto|cpu|cuda[:N]`.
//!
//! The CPU backend is burn's Flex (pure Rust, SIMD, multi-threaded gemm);
//! CUDA is burn-cuda, compiled in with the `cuda` cargo feature. Everything
//! generic over `B: AutodiffBackend` runs through `with_backend`, so the
//! choice is made once, at the top.
//!
//! Whether there is a GPU is asked of the driver itself (`gpu::probe`),
//! which answers on every machine without panicking.
//!
//! Imports config and gpu.

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;

use crate::config::{AutotuneLevel, DeviceSpec};
use crate::gpu::{CudaDriver, CudaProbe, probe_cuda};

/// The CPU training backend.
pub type CpuBackend = Autodiff<burn::backend::Flex>;
/// The CUDA training backend.
#[cfg(feature = "cuda")]
pub type CudaBackend = Autodiff<burn::backend::Cuda>;

/// A resolved device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error(
        "this nextslice was built without CUDA support; rebuild with `cargo build --release --features cuda`, or use --device cpu"
    )]
    NotBuiltWithCuda,
    #[error("no NVIDIA GPU or driver found; use --device cpu")]
    NoCudaDriver,
    #[error("CUDA cannot run here: {0}; use --device cpu")]
    CudaUnusable(String),
    #[error("there is no GPU {index}: the driver reports {count} (cuda:0 to cuda:{last})", last = .count.saturating_sub(1))]
    NoSuchGpu { index: usize, count: usize },
    #[error("cannot configure the GPU runtime: {0}")]
    Runtime(String),
}

impl Device {
    /// Resolves `auto` to the first GPU where CUDA can run, else the CPU;
    /// refuses an explicit CUDA device that cannot work, with the reason.
    pub fn resolve(spec: DeviceSpec) -> Result<Device, DeviceError> {
        Device::resolve_with(spec, probe_cuda(), cfg!(feature = "cuda"))
    }

    fn resolve_with(
        spec: DeviceSpec,
        probe: &CudaProbe,
        built_with_cuda: bool,
    ) -> Result<Device, DeviceError> {
        match (spec, probe) {
            (DeviceSpec::Cpu, _) => Ok(Device::Cpu),
            (DeviceSpec::Auto, CudaProbe::Ready(driver))
                if built_with_cuda && driver.nvrtc.is_ok() =>
            {
                Ok(Device::Cuda(0))
            }
            (DeviceSpec::Auto, _) => Ok(Device::Cpu),
            (DeviceSpec::Cuda(_), _) if !built_with_cuda => Err(DeviceError::NotBuiltWithCuda),
            (DeviceSpec::Cuda(_), CudaProbe::NoDriver) => Err(DeviceError::NoCudaDriver),
            (DeviceSpec::Cuda(_), CudaProbe::Unusable { reason }) => {
                Err(DeviceError::CudaUnusable(reason.clone()))
            }
            (
                DeviceSpec::Cuda(_),
                CudaProbe::Ready(CudaDriver {
                    nvrtc: Err(reason), ..
                }),
            ) => Err(DeviceError::CudaUnusable(reason.clone())),
            (DeviceSpec::Cuda(n), CudaProbe::Ready(driver)) if n >= driver.gpus.len() => {
                Err(DeviceError::NoSuchGpu {
                    index: n,
                    count: driver.gpus.len(),
                })
            }
            (DeviceSpec::Cuda(n), CudaProbe::Ready(_)) => Ok(Device::Cuda(n)),
        }
    }

    /// How the UI names it, e.g. "CPU (2 threads)" or "CUDA:0 (NVIDIA H200)".
    pub fn describe(self) -> String {
        match self {
            Device::Cpu => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!("CPU ({threads} threads)")
            }
            Device::Cuda(n) => match probe_cuda()
                .driver()
                .and_then(|d| d.gpus.iter().find(|g| g.index == n))
            {
                Some(gpu) => format!("CUDA:{n} ({})", gpu.name),
                None => format!("CUDA:{n}"),
            },
        }
    }

    /// Why `auto` chose the CPU on a machine with an NVIDIA driver; `None`
    /// where that needs no explaining (no driver, or a GPU chosen).
    pub fn auto_fallback_reason(self, spec: DeviceSpec) -> Option<String> {
        fallback_reason(self, spec, probe_cuda(), cfg!(feature = "cuda"))
    }

    /// [`describe`](Self::describe), with the reason when `auto` left a GPU unused.
    pub fn describe_choice(self, spec: DeviceSpec) -> String {
        match self.auto_fallback_reason(spec) {
            Some(reason) => format!("{}; GPU unused: {reason}", self.describe()),
            None => self.describe(),
        }
    }

    /// Sets up the GPU runtime before the first GPU operation: cubecl's
    /// autotune level and the kernel caches for this GPU and driver. Does
    /// nothing on the CPU; only the first call in a process counts.
    pub fn prepare(self, autotune: AutotuneLevel) -> Result<(), DeviceError> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(n) => crate::gpu::configure(crate::gpu::kernel_cache_for(n), autotune)
                .map(|_| ())
                .map_err(|e| DeviceError::Runtime(e.to_string())),
        }
    }
}

fn fallback_reason(
    device: Device,
    spec: DeviceSpec,
    probe: &CudaProbe,
    built_with_cuda: bool,
) -> Option<String> {
    if spec != DeviceSpec::Auto || device != Device::Cpu {
        return None;
    }
    match probe {
        CudaProbe::NoDriver => None,
        CudaProbe::Unusable { reason } => Some(reason.clone()),
        CudaProbe::Ready(driver) if !built_with_cuda => Some(format!(
            "{} found, but this nextslice was built without CUDA (`cargo build --release --features cuda`)",
            driver.gpus.first().map_or("a GPU", |g| g.name.as_str())
        )),
        CudaProbe::Ready(CudaDriver {
            nvrtc: Err(reason), ..
        }) => Some(reason.clone()),
        CudaProbe::Ready(_) => None,
    }
}

/// Work that runs on whichever backend the device needs.
pub trait BackendTask {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs `task` on the backend for `device`.
pub fn with_backend<T: BackendTask>(device: Device, task: T) -> Result<T::Output, DeviceError> {
    match device {
        Device::Cpu => Ok(task.run::<CpuBackend>(Default::default())),
        #[cfg(feature = "cuda")]
        Device::Cuda(n) => {
            // A caller that did not `prepare` gets the default level.
            device.prepare(AutotuneLevel::default())?;
            Ok(task.run::<CudaBackend>(burn::backend::cuda::CudaDevice::new(n)))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(DeviceError::NotBuiltWithCuda),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{CudaDriver, Gpu};

    fn one_gpu() -> CudaProbe {
        CudaProbe::Ready(CudaDriver {
            version: "550.54.15".into(),
            gpus: vec![Gpu {
                index: 0,
                name: "NVIDIA H200".into(),
                memory_bytes: 150_000_000_000,
            }],
            nvrtc: Ok("libnvrtc.so.13 (NVRTC 13.0)".into()),
        })
    }

    /// A GPU box with the driver alone.
    fn one_gpu_without_nvrtc() -> CudaProbe {
        let CudaProbe::Ready(driver) = one_gpu() else {
            unreachable!()
        };
        CudaProbe::Ready(CudaDriver {
            nvrtc: Err("NVRTC, which compiles the GPU kernels, was not found".into()),
            ..driver
        })
    }

    #[test]
    fn a_driver_without_nvrtc_is_not_a_usable_gpu_and_says_so() {
        let probe = one_gpu_without_nvrtc();
        assert_eq!(
            Device::resolve_with(DeviceSpec::Auto, &probe, true),
            Ok(Device::Cpu)
        );
        let why = fallback_reason(Device::Cpu, DeviceSpec::Auto, &probe, true).unwrap();
        assert!(why.contains("NVRTC"), "{why}");
        assert!(matches!(
            Device::resolve_with(DeviceSpec::Cuda(0), &probe, true),
            Err(DeviceError::CudaUnusable(r)) if r.contains("NVRTC")
        ));
        // A build without CUDA says that first: NVRTC would not help it.
        let why = fallback_reason(Device::Cpu, DeviceSpec::Auto, &probe, false).unwrap();
        assert!(why.contains("--features cuda"), "{why}");
    }

    #[test]
    fn auto_takes_a_ready_gpu_only_when_built_with_cuda_and_says_why_not() {
        let resolve = |probe: &CudaProbe, cuda| Device::resolve_with(DeviceSpec::Auto, probe, cuda);
        assert_eq!(resolve(&one_gpu(), true), Ok(Device::Cuda(0)));
        assert_eq!(resolve(&one_gpu(), false), Ok(Device::Cpu));
        let broken = CudaProbe::Unusable {
            reason: "cuInit failed with CUDA_ERROR_NO_DEVICE (100)".into(),
        };
        assert_eq!(resolve(&broken, true), Ok(Device::Cpu));
        assert_eq!(resolve(&CudaProbe::NoDriver, true), Ok(Device::Cpu));

        let why =
            |probe: &CudaProbe, cuda| fallback_reason(Device::Cpu, DeviceSpec::Auto, probe, cuda);
        let without_cuda = why(&one_gpu(), false).unwrap();
        assert!(without_cuda.contains("NVIDIA H200") && without_cuda.contains("--features cuda"));
        assert!(why(&broken, true).unwrap().contains("CUDA_ERROR_NO_DEVICE"));
        assert_eq!(
            why(&CudaProbe::NoDriver, true),
            None,
            "a CPU machine needs no excuse"
        );
        assert_eq!(
            fallback_reason(Device::Cpu, DeviceSpec::Cpu, &broken, true),
            None,
            "the CPU was asked for"
        );
    }

    #[test]
    fn an_explicit_gpu_that_cannot_run_is_refused_with_the_reason() {
        let resolve = |spec, probe: &CudaProbe| Device::resolve_with(spec, probe, true);
        assert_eq!(
            resolve(DeviceSpec::Cuda(0), &one_gpu()),
            Ok(Device::Cuda(0))
        );
        let missing = resolve(DeviceSpec::Cuda(2), &one_gpu()).unwrap_err();
        assert_eq!(missing, DeviceError::NoSuchGpu { index: 2, count: 1 });
        assert!(missing.to_string().contains("cuda:0 to cuda:0"));
        assert_eq!(
            resolve(DeviceSpec::Cuda(0), &CudaProbe::NoDriver),
            Err(DeviceError::NoCudaDriver)
        );
        let broken = CudaProbe::Unusable {
            reason: "libcuda.so.1 could not be loaded".into(),
        };
        assert!(matches!(
            resolve(DeviceSpec::Cuda(0), &broken),
            Err(DeviceError::CudaUnusable(r)) if r.contains("libcuda")
        ));
        assert_eq!(
            Device::resolve_with(DeviceSpec::Cuda(0), &one_gpu(), false),
            Err(DeviceError::NotBuiltWithCuda)
        );
    }

    #[test]
    fn cpu_always_resolves_and_cuda_needs_the_feature() {
        assert_eq!(Device::resolve(DeviceSpec::Cpu), Ok(Device::Cpu));
        if !cfg!(feature = "cuda") {
            assert_eq!(Device::resolve(DeviceSpec::Auto), Ok(Device::Cpu));
            assert_eq!(
                Device::resolve(DeviceSpec::Cuda(0)),
                Err(DeviceError::NotBuiltWithCuda)
            );
        }
    }
}
