//! Choosing where models run: `--device auto|cpu|cuda[:N]`.
//!
//! The CPU backend is burn's Flex (pure Rust, SIMD, multi-threaded gemm);
//! CUDA is burn-cuda, compiled in with the `cuda` cargo feature. Everything
//! generic over `B: AutodiffBackend` runs through `with_backend`, so the
//! choice is made once, at the top.
//!
//! Imports only config.

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;

use crate::config::DeviceSpec;

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
    #[error("no NVIDIA GPU or driver found (no /proc/driver/nvidia/version); use --device cpu")]
    NoCudaDriver,
}

impl Device {
    /// Resolves `auto` by looking for an NVIDIA driver; refuses CUDA when it
    /// cannot work, with the reason.
    pub fn resolve(spec: DeviceSpec) -> Result<Device, DeviceError> {
        let driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
        match spec {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto if cfg!(feature = "cuda") && driver => Ok(Device::Cuda(0)),
            DeviceSpec::Auto => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => Err(DeviceError::NotBuiltWithCuda),
            DeviceSpec::Cuda(_) if !driver => Err(DeviceError::NoCudaDriver),
            DeviceSpec::Cuda(n) => Ok(Device::Cuda(n)),
        }
    }

    /// How the UI names it, e.g. "CPU (2 threads)" or "CUDA:0".
    pub fn describe(self) -> String {
        match self {
            Device::Cpu => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!("CPU ({threads} threads)")
            }
            Device::Cuda(n) => format!("CUDA:{n}"),
        }
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
        Device::Cuda(n) => Ok(task.run::<CudaBackend>(burn::backend::cuda::CudaDevice::new(n))),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(DeviceError::NotBuiltWithCuda),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
