//! How the process's heap treats the large, short-lived buffers of training.
//!
//! glibc's malloc serves allocations above a (dynamic, up to 32 MiB)
//! threshold with a fresh `mmap` and returns them with `munmap` on free, and
//! trims the heap top above 128 KiB free. A training step allocates and
//! frees activation-sized buffers (megabytes) hundreds of times, so each one
//! came back as new zero pages: page faults, page clearing and TLB
//! shootdowns across cores. Measured with `cargo bench --bench models`: the
//! U-Net train step 1.19× and the VAE train step 1.7× faster with a 32 MiB
//! threshold and no trimming (PyTorch gains 8–27 % from the same, per the
//! perf baseline). 32 MiB is glibc's ceiling for the threshold, and a
//! 256² U-Net's activations are larger (4 × 32 × 256² floats = 34 MB), so
//! mmap is turned off altogether: that step 1.12× faster again, with the same
//! peak resident size (826 MB). The cost is that freed memory stays with the
//! process, so its resident size sits at its peak rather than falling
//! between steps.

/// glibc's ceiling for the mmap threshold (moot with mmap off, but it also
/// stops glibc moving the threshold on its own).
const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;

/// What [`keep_freed_memory`] sets, as `GLIBC_TUNABLES` gives it to another
/// process (the models bench runs PyTorch with it, for a like-for-like ratio).
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

/// Serves every allocation from the heap (no mmap), keeps freed buffers
/// there for reuse, and stops trimming it. Call once, early in `main`,
/// before threads start. Does nothing off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = MMAP_THRESHOLD_BYTES;
        // SAFETY: mallopt only sets allocator parameters; both values are in
        // range (it returns 0, changing nothing, when one is not).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunables_string_says_what_mallopt_sets() {
        let settings: Vec<(&str, &str)> = GLIBC_TUNABLES
            .split(':')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(
            settings,
            [
                (
                    "glibc.malloc.mmap_threshold",
                    MMAP_THRESHOLD_BYTES.to_string().as_str()
                ),
                ("glibc.malloc.mmap_max", "0"),
                ("glibc.malloc.trim_threshold", i32::MAX.to_string().as_str()),
            ]
        );
    }
}
