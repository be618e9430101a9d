//! Is there a usable NVIDIA GPU? Asked of the driver itself (`libcuda.so.1`,
//! opened with `dlopen`), so the answer comes back as a value on every
//! machine: one without the library, one whose driver is broken, one with no
//! GPU. burn-cuda's loader panics where the library is missing, and
//! `--device auto` must never do that.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::path::Path;
use std::sync::OnceLock;

/// Where Linux's NVIDIA kernel module says it is loaded, with its version.
const DRIVER_PROC_FILE: &str = "/proc/driver/nvidia/version";

/// One GPU as the driver names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    pub index: usize,
    /// E.g. "NVIDIA H200".
    pub name: String,
    pub memory_bytes: u64,
}

/// A working driver and its GPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaDriver {
    /// The kernel module's version ("550.54.15") where `/proc` has it, else
    /// the CUDA version the driver supports ("CUDA 12.4").
    pub version: String,
    pub gpus: Vec<Gpu>,
    /// NVRTC, which compiles every GPU kernel at run time: the library
    /// found ("libnvrtc.so.13 (NVRTC 13.0)"), or why it cannot be used.
    /// A machine with only the driver has none, and cubecl would panic at
    /// the first kernel.
    pub nvrtc: Result<String, String>,
}

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CudaProbe {
    /// A driver that initialised and at least one GPU.
    Ready(CudaDriver),
    /// No sign of an NVIDIA driver: an ordinary CPU machine.
    NoDriver,
    /// An NVIDIA driver is installed but CUDA cannot run; `reason` says why.
    Unusable { reason: String },
}

impl CudaProbe {
    /// The driver's GPUs, where it is ready.
    pub fn driver(&self) -> Option<&CudaDriver> {
        match self {
            CudaProbe::Ready(driver) => Some(driver),
            _ => None,
        }
    }

    /// Whether this machine has an NVIDIA driver at all (working or not):
    /// where it does, running on the CPU deserves a word of explanation.
    pub fn has_nvidia_driver(&self) -> bool {
        !matches!(self, CudaProbe::NoDriver)
    }
}

/// The probe, run once per process (initialising the driver takes a moment).
pub fn probe_cuda() -> &'static CudaProbe {
    static PROBE: OnceLock<CudaProbe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let proc_version = std::fs::read_to_string(DRIVER_PROC_FILE).ok();
        probe_with(
            "libcuda.so.1",
            proc_version.as_deref().and_then(kernel_module_version),
            Path::new(DRIVER_PROC_FILE).exists(),
            &NVRTC_LIBRARIES,
        )
    })
}

/// The names cudarc (built for CUDA 13) loads NVRTC by on Linux, in its order.
const NVRTC_LIBRARIES: [&str; 4] = [
    "libnvrtc.so",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so.11",
];

/// The probe with its inputs named, so a test can point it at a library
/// that does not exist.
fn probe_with(
    library: &str,
    module_version: Option<String>,
    module_loaded: bool,
    nvrtc_libraries: &[&str],
) -> CudaProbe {
    let api = match DriverApi::open(library) {
        Ok(api) => api,
        Err(reason) if module_loaded => {
            return CudaProbe::Unusable {
                reason: format!("the NVIDIA kernel module is loaded but {reason}"),
            };
        }
        Err(_) => return CudaProbe::NoDriver,
    };
    match api.gpus() {
        Ok(gpus) if gpus.is_empty() => CudaProbe::Unusable {
            reason: "the NVIDIA driver reports no GPU".into(),
        },
        Ok(gpus) => CudaProbe::Ready(CudaDriver {
            version: module_version.unwrap_or_else(|| api.cuda_version()),
            gpus,
            nvrtc: find_nvrtc(nvrtc_libraries),
        }),
        Err(reason) => CudaProbe::Unusable { reason },
    }
}

type NvrtcVersion = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;

/// The first of `libraries` that loads and answers `nvrtcVersion`, named
/// with its version; else what to install.
fn find_nvrtc(libraries: &[&str]) -> Result<String, String> {
    let mut refused = Vec::new();
    for &library in libraries {
        let Ok(name) = std::ffi::CString::new(library) else {
            continue;
        };
        // SAFETY: dlopen takes a NUL-terminated path; a null return is an
        // error. The library stays loaded: cubecl loads it again anyway.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            continue;
        }
        // SAFETY: nvrtcVersion(int *major, int *minor) is NVRTC's C signature.
        match unsafe { symbol::<NvrtcVersion>(handle, library, c"nvrtcVersion") } {
            Ok(version) => {
                let (mut major, mut minor) = (0, 0);
                // SAFETY: writes two ints.
                return Ok(match unsafe { version(&mut major, &mut minor) } {
                    0 => format!("{library} (NVRTC {major}.{minor})"),
                    _ => library.to_string(),
                });
            }
            Err(reason) => refused.push(reason),
        }
    }
    let mut reason = format!(
        "NVRTC, which compiles the GPU kernels, was not found (tried {})",
        libraries.join(", ")
    );
    if !refused.is_empty() {
        reason += &format!("; {}", refused.join("; "));
    }
    reason += ": install the CUDA toolkit's NVRTC (the cuda-nvrtc package, or pip's nvidia-cuda-nvrtc), or add the directory that holds libnvrtc.so to LD_LIBRARY_PATH";
    Err(reason)
}

/// "550.54.15" from `/proc/driver/nvidia/version`'s first line,
/// "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 …"
/// (the open module says "… Open Kernel Module for x86_64  570.86.15 …").
pub(crate) fn kernel_module_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let after = line.split("Kernel Module").nth(1)?;
    after
        .split_whitespace()
        .find(|v| v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

/// "CUDA 12.4" from the driver API's 12040.
pub(crate) fn cuda_version_name(encoded: c_int) -> String {
    format!("CUDA {}.{}", encoded / 1000, (encoded % 1000) / 10)
}

type CuResult = c_int;
type CuInit = unsafe extern "C" fn(c_uint) -> CuResult;
type CuIntOut = unsafe extern "C" fn(*mut c_int) -> CuResult;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> CuResult;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> CuResult;
type CuGetErrorName = unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult;

/// The few driver entry points the probe needs. The library stays loaded
/// for the life of the process (burn-cuda loads it again anyway).
struct DriverApi {
    init: CuInit,
    driver_get_version: CuIntOut,
    device_get_count: CuIntOut,
    device_get: CuDeviceGet,
    device_get_name: CuDeviceGetName,
    device_total_mem: CuDeviceTotalMem,
    get_error_name: CuGetErrorName,
}

impl DriverApi {
    fn open(library: &str) -> Result<DriverApi, String> {
        let name = std::ffi::CString::new(library).map_err(|e| e.to_string())?;
        // SAFETY: dlopen takes a NUL-terminated path; a null return is an error.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("{library} could not be loaded ({})", dl_error()));
        }
        // SAFETY (of every `symbol` below): each is the CUDA driver API
        // function of that name, whose C signature the field's type spells out.
        unsafe {
            Ok(DriverApi {
                init: symbol(handle, library, c"cuInit")?,
                driver_get_version: symbol(handle, library, c"cuDriverGetVersion")?,
                device_get_count: symbol(handle, library, c"cuDeviceGetCount")?,
                device_get: symbol(handle, library, c"cuDeviceGet")?,
                device_get_name: symbol(handle, library, c"cuDeviceGetName")?,
                device_total_mem: symbol(handle, library, c"cuDeviceTotalMem_v2")?,
                get_error_name: symbol(handle, library, c"cuGetErrorName")?,
            })
        }
    }

    /// "CUDA_ERROR_NO_DEVICE (100)" for a failed call.
    fn error(&self, code: CuResult, call: &str) -> String {
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static string or fails.
        let known = unsafe { (self.get_error_name)(code, &mut name) } == 0 && !name.is_null();
        let name = if known {
            // SAFETY: the driver returned a NUL-terminated static string.
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        } else {
            "an unknown error".into()
        };
        format!("{call} failed with {name} ({code})")
    }

    fn cuda_version(&self) -> String {
        let mut version = 0;
        // SAFETY: writes one int.
        match unsafe { (self.driver_get_version)(&mut version) } {
            0 => cuda_version_name(version),
            _ => "CUDA (version unknown)".into(),
        }
    }

    fn gpus(&self) -> Result<Vec<Gpu>, String> {
        // SAFETY: plain driver calls writing into locals of the declared types.
        unsafe {
            let code = (self.init)(0);
            if code != 0 {
                return Err(self.error(code, "cuInit"));
            }
            let mut count = 0;
            let code = (self.device_get_count)(&mut count);
            if code != 0 {
                return Err(self.error(code, "cuDeviceGetCount"));
            }
            let mut gpus = Vec::new();
            for index in 0..count.max(0) {
                let mut device = 0;
                let code = (self.device_get)(&mut device, index);
                if code != 0 {
                    return Err(self.error(code, "cuDeviceGet"));
                }
                let mut name = [0 as c_char; 256];
                let code = (self.device_get_name)(name.as_mut_ptr(), name.len() as c_int, device);
                let name = if code == 0 {
                    CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned()
                } else {
                    format!("GPU {index}")
                };
                let mut memory = 0usize;
                let memory_bytes = match (self.device_total_mem)(&mut memory, device) {
                    0 => memory as u64,
                    _ => 0,
                };
                gpus.push(Gpu {
                    index: index as usize,
                    name,
                    memory_bytes,
                });
            }
            Ok(gpus)
        }
    }
}

/// The function `name` of the library at `handle`, as the function pointer
/// type `F`.
///
/// # Safety
/// `F` must be an `extern "C"` function pointer type matching the symbol's
/// C signature, and `handle` a live `dlopen` handle.
unsafe fn symbol<F: Copy>(handle: *mut c_void, library: &str, name: &CStr) -> Result<F, String> {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
    // SAFETY: `handle` is live and `name` NUL-terminated (the caller's promise).
    let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if address.is_null() {
        return Err(format!("{library} has no {}", name.to_string_lossy()));
    }
    // SAFETY: a non-null symbol address as the matching function pointer
    // type (the caller's promise); sizes are equal (checked above).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated, thread-local message.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_modules_version_is_read_from_proc() {
        let text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n";
        assert_eq!(kernel_module_version(text).as_deref(), Some("550.54.15"));
        let open =
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build";
        assert_eq!(kernel_module_version(open).as_deref(), Some("570.86.15"));
        assert_eq!(kernel_module_version(""), None);
    }

    #[test]
    fn the_cuda_version_is_decoded() {
        assert_eq!(cuda_version_name(12040), "CUDA 12.4");
        assert_eq!(cuda_version_name(11080), "CUDA 11.8");
    }

    #[test]
    fn a_missing_library_is_no_driver_or_an_explained_unusable_one() {
        let missing = "libnextslice-no-such-cuda.so.1";
        assert_eq!(probe_with(missing, None, false, &[]), CudaProbe::NoDriver);
        match probe_with(missing, Some("550.54.15".into()), true, &[]) {
            CudaProbe::Unusable { reason } => {
                assert!(reason.contains("kernel module is loaded"), "{reason}");
                assert!(reason.contains(missing), "{reason}");
            }
            other => panic!("expected Unusable, got {other:?}"),
        }
    }

    #[test]
    fn a_library_without_the_driver_api_is_refused_by_name() {
        // libc is loaded in every process and has no cuInit.
        match DriverApi::open("libc.so.6") {
            Err(reason) => assert!(reason.contains("has no cuInit"), "{reason}"),
            Ok(_) => panic!("libc is not a CUDA driver"),
        }
    }

    /// A stand-in `libcuda.so.1` with the probe's entry points: `GPUS`
    /// devices, or `cuInit` failing with `INIT` when it is not 0.
    fn fake_driver(dir: &Path, gpus: i32, init: i32) -> String {
        let source = format!(
            r#"
            #include <string.h>
            #include <stddef.h>
            int cuInit(unsigned int flags) {{ return {init}; }}
            int cuDriverGetVersion(int *v) {{ *v = 12040; return 0; }}
            int cuDeviceGetCount(int *n) {{ *n = {gpus}; return 0; }}
            int cuDeviceGet(int *d, int i) {{ *d = i; return 0; }}
            int cuDeviceGetName(char *name, int len, int d) {{
                strncpy(name, d == 0 ? "Fake GPU A" : "Fake GPU B", len); return 0; }}
            int cuDeviceTotalMem_v2(size_t *bytes, int d) {{ *bytes = (size_t)(d + 1) << 30; return 0; }}
            int cuGetErrorName(int code, const char **s) {{
                *s = code == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN"; return 0; }}
            "#
        );
        shared_library(dir, &format!("fakecuda{gpus}{init}"), &source)
    }

    /// `source` compiled into `dir/lib{name}.so`; its path.
    fn shared_library(dir: &Path, name: &str, source: &str) -> String {
        let c = dir.join(format!("{name}.c"));
        let lib = dir.join(format!("lib{name}.so"));
        std::fs::write(&c, source).unwrap();
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&c)
            .status()
            .expect("a C compiler (cc), which Rust's linking needs anyway");
        assert!(status.success());
        lib.to_string_lossy().into_owned()
    }

    /// A stand-in NVRTC answering `nvrtcVersion` with 13.0.
    fn fake_nvrtc(dir: &Path) -> String {
        shared_library(
            dir,
            "fakenvrtc",
            "int nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 0; return 0; }\n",
        )
    }

    #[test]
    fn nvrtc_is_found_by_its_version_call_or_its_absence_explained() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_nvrtc(dir.path());
        let missing = "libnextslice-no-such-nvrtc.so";
        assert_eq!(
            find_nvrtc(&[missing, &fake]),
            Ok(format!("{fake} (NVRTC 13.0)")),
            "the first library that loads"
        );
        let absent = find_nvrtc(&[missing]).unwrap_err();
        assert!(
            absent.contains(missing) && absent.contains("LD_LIBRARY_PATH"),
            "{absent}"
        );
        // libc loads, but is not NVRTC.
        let wrong = find_nvrtc(&["libc.so.6"]).unwrap_err();
        assert!(wrong.contains("has no nvrtcVersion"), "{wrong}");
    }

    #[test]
    fn a_driver_is_asked_for_its_gpus_through_the_real_calls() {
        let dir = tempfile::tempdir().unwrap();
        let two = fake_driver(dir.path(), 2, 0);
        let nvrtc = fake_nvrtc(dir.path());
        let probe = probe_with(&two, Some("550.54.15".into()), true, &[&nvrtc]);
        let expected = CudaDriver {
            version: "550.54.15".into(),
            gpus: vec![
                Gpu {
                    index: 0,
                    name: "Fake GPU A".into(),
                    memory_bytes: 1 << 30,
                },
                Gpu {
                    index: 1,
                    name: "Fake GPU B".into(),
                    memory_bytes: 2 << 30,
                },
            ],
            nvrtc: Ok(format!("{nvrtc} (NVRTC 13.0)")),
        };
        assert_eq!(probe, CudaProbe::Ready(expected));
        // Without /proc's module version, the driver's CUDA version names it.
        let probe = probe_with(&two, None, false, &[]);
        assert_eq!(probe.driver().unwrap().version, "CUDA 12.4");
        assert!(
            probe.driver().unwrap().nvrtc.is_err(),
            "a driver without NVRTC is still a driver, with NVRTC's absence noted"
        );

        let none = fake_driver(dir.path(), 0, 0);
        assert!(matches!(
            probe_with(&none, None, true, &[]),
            CudaProbe::Unusable { reason } if reason.contains("no GPU")
        ));
        let failing = fake_driver(dir.path(), 1, 100);
        match probe_with(&failing, None, true, &[]) {
            CudaProbe::Unusable { reason } => {
                assert_eq!(reason, "cuInit failed with CUDA_ERROR_NO_DEVICE (100)")
            }
            other => panic!("expected Unusable, got {other:?}"),
        }
    }

    #[test]
    fn the_probe_on_this_machine_answers_without_panicking() {
        let probe = probe_cuda();
        if let CudaProbe::Ready(driver) = probe {
            assert!(!driver.gpus.is_empty());
        }
    }
}
