//! A GPU that runs out of memory, on burn's wgpu backend over Mesa's
//! lavapipe (a CPU Vulkan driver): cubecl's device thread is where the
//! allocation fails, as on CUDA, and the job's own thread only sees a
//! consequence. The failed job must still name the cause and the remedy.
//!
//! `cargo test --features wgpu --test gpu_errors` (`.ci/run` installs
//! `mesa-vulkan-drivers`).

use burn::backend::Wgpu;
use burn::prelude::*;

use nextslice::worker::{PanicWatch, WorkerError};

/// More than lavapipe's largest buffer, far less than this machine's
/// memory: 1 GiB of f32, refused before anything is allocated.
const TOO_LARGE: usize = 1 << 28;

/// Mesa's lavapipe, whose largest buffer is known; a machine's real GPU
/// may allocate [`TOO_LARGE`] and pass nothing.
const LAVAPIPE: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

#[test]
fn an_allocation_the_gpu_refuses_fails_the_job_with_its_size_and_the_batch_size_hint() {
    if std::path::Path::new(LAVAPIPE).exists() {
        // SAFETY: the only test in this binary, before any thread reads the
        // environment (wgpu has not started).
        unsafe { std::env::set_var("VK_ICD_FILENAMES", LAVAPIPE) };
    }
    let watch = PanicWatch::start();
    let device = Default::default();
    let crashed = std::panic::catch_unwind(|| {
        let x = Tensor::<Wgpu, 1>::zeros([TOO_LARGE], &device);
        (x + 1.0).into_data()
    });
    let payload = match crashed {
        Ok(_) => panic!("lavapipe allocated {TOO_LARGE} f32; the test needs a larger tensor"),
        Err(payload) => payload,
    };
    let alone = WorkerError::from_panic(payload.as_ref()).to_string();
    assert!(
        !alone.contains("batch_size"),
        "the job's own panic was expected to miss the cause (cubecl may have changed): {alone}"
    );
    let blamed = WorkerError::from_panic(payload.as_ref())
        .blamed_on(&watch)
        .to_string();
    assert!(
        blamed.starts_with(
            "the job crashed: can't allocate buffer of size: 1073741824 (1.1 GB), in thread "
        ),
        "{blamed}"
    );
    assert!(blamed.contains("lower unet.batch_size"), "{blamed}");
    assert!(
        blamed.contains("The job's own error followed: "),
        "{blamed}"
    );
    assert!(
        !blamed.contains('\n'),
        "one line for the job view: {blamed}"
    );
}
