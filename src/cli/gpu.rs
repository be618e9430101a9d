//! `nextslice gpu`: what the driver reports, what `--device auto` would
//! pick, and each GPU's kernel cache. `nextslice gpu-warmup`: tune a
//! project's kernel shapes now, so its first steps start at once.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Result, bail};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use nextslice::config::{AutotuneLevel, Config, DeviceSpec};
use nextslice::device::{BackendTask, Device, with_backend};
use nextslice::engine::{WarmUp, ensure_warm_in, signature};
use nextslice::gpu::{CudaProbe, KernelCache, probe_cuda};
use nextslice::progress::{StderrProgress, format_duration};
use nextslice::project::Project;
use nextslice::worker::WorkerError;

#[derive(Args, Debug)]
pub struct GpuArgs {
    /// A project whose tuned shapes to report (default: none).
    #[arg(long, short = 'p')]
    project: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct WarmupArgs {
    #[command(flatten)]
    project: super::project::ProjectArg,
    /// cuda | cuda:N (default: the project's device.kind).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// minimal | balanced | extensive | full (default: the project's device.autotune).
    #[arg(long)]
    autotune: Option<AutotuneLevel>,
}

pub fn info(args: GpuArgs) -> Result<()> {
    let probe = probe_cuda();
    let built = if cfg!(feature = "cuda") {
        "with CUDA"
    } else {
        "without CUDA"
    };
    println!("build    {built}");
    match probe {
        CudaProbe::NoDriver => println!("driver   none (no NVIDIA driver found)"),
        CudaProbe::Unusable { reason } => println!("driver   unusable: {reason}"),
        CudaProbe::Ready(driver) => {
            println!("driver   {}", driver.version);
            match &driver.nvrtc {
                Ok(library) => println!("nvrtc    {library}"),
                Err(reason) => println!("nvrtc    unusable: {reason}"),
            }
            for gpu in &driver.gpus {
                println!(
                    "gpu {}    {} ({:.0} GiB)",
                    gpu.index,
                    gpu.name,
                    gpu.memory_bytes as f64 / (1u64 << 30) as f64
                );
            }
        }
    }
    let auto = Device::resolve(DeviceSpec::Auto)?;
    println!("auto     {}", auto.describe_choice(DeviceSpec::Auto));
    let project = match &args.project {
        Some(dir) => Some(Project::open(dir)?),
        None => None,
    };
    let Some(root) = KernelCache::root() else {
        println!("cache    none (no home directory; set NEXTSLICE_GPU_CACHE)");
        return Ok(());
    };
    println!("caches   {}", root.display());
    if let CudaProbe::Ready(driver) = probe {
        for gpu in &driver.gpus {
            let cache = KernelCache::for_gpu(&root, &gpu.name, &driver.version);
            println!(
                "  gpu {}  {}: {} tuned kernel shapes, {:.1} MB",
                gpu.index,
                cache.dir.display(),
                cache.tuned_entries(),
                cache.size_bytes() as f64 / 1e6
            );
            if let Some(project) = &project {
                let level = project.config.device.autotune;
                let state = match cache.warm_record(&signature(&project.config, level)) {
                    Some(r) => format!("tuned ({} kernels in {:.0}s)", r.tuned, r.seconds),
                    None => {
                        "not tuned yet: `nextslice gpu-warmup`, or its first GPU job will".into()
                    }
                };
                println!("  project shapes ({} autotune): {state}", level.name());
            }
        }
    }
    Ok(())
}

/// The warm-up on whichever backend the device needs.
struct Warm<'a> {
    config: &'a Config,
    cache: &'a KernelCache,
    level: AutotuneLevel,
}

impl BackendTask for Warm<'_> {
    type Output = Result<WarmUp, nextslice::engine::EngineError>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let cancel = AtomicBool::new(false);
        let progress = StderrProgress::default();
        ensure_warm_in::<B>(
            self.cache,
            self.level,
            self.config,
            &device,
            &progress,
            &cancel,
        )
    }
}

pub fn warmup(args: WarmupArgs) -> Result<()> {
    let project = Project::open(&args.project.project)?;
    let spec = args.device.unwrap_or(project.config.device.kind);
    let device = Device::resolve(spec)?;
    if device == Device::Cpu {
        if let Some(reason) = device.auto_fallback_reason(spec) {
            bail!("no GPU to tune: {reason}");
        }
        println!("{}: nothing to tune on the CPU.", device.describe());
        return Ok(());
    }
    device.prepare(args.autotune.unwrap_or(project.config.device.autotune))?;
    // What cubecl was given, so the record lands beside its caches.
    let Some(runtime) = nextslice::gpu::runtime::configured() else {
        bail!("the GPU runtime was not configured");
    };
    let (level, Some(cache)) = (runtime.level, runtime.cache.clone()) else {
        bail!("no cache directory for tuned kernels: set NEXTSLICE_GPU_CACHE");
    };
    println!(
        "{}: tuning this project's kernel shapes ({} autotune) into {}",
        device.describe(),
        level.name(),
        cache.dir.display()
    );
    // A simulation plan may add strategies (learning-loss's head) with
    // shapes of their own; the worker warms a simulation up for its plan.
    let plan = nextslice::simulate::load_plan(&project)?
        .filter(|plan| signature(plan, level) != signature(&project.config, level));
    let configs = std::iter::once(("this project's", &project.config))
        .chain(plan.as_ref().map(|plan| ("its simulation plan's", plan)));
    for (whose, config) in configs {
        let task = Warm {
            config,
            cache: &cache,
            level,
        };
        // A GPU out of memory panics in cubecl's device thread; say so, with
        // the remedy, as a failed job would. The three errors: a panic, the
        // backend not starting, the warm-up's own.
        let done = WorkerError::caught(|| with_backend(device, task))
            .map_err(|e| anyhow::anyhow!(e.in_foreground()))???;
        report(&done, whose, &cache);
    }
    Ok(())
}

/// What a warm-up of `whose` shapes did.
fn report(done: &WarmUp, whose: &str, cache: &KernelCache) {
    if done.skipped {
        println!(
            "{whose} shapes: already tuned (it took {} the first time); {} tuned kernel shapes in the cache",
            format_duration(Duration::from_secs_f64(done.seconds)),
            cache.tuned_entries()
        );
        return;
    }
    for w in &done.workloads {
        println!(
            "  {}: {:.1} s, {} kernels tuned",
            w.what, w.seconds, w.tuned
        );
    }
    println!(
        "{whose} shapes: tuned {} kernels in {}; {} tuned kernel shapes in the cache. Its GPU steps now start at once.",
        done.tuned,
        format_duration(Duration::from_secs_f64(done.seconds)),
        cache.tuned_entries()
    );
    for line in nextslice::model::steering_report() {
        println!("{line}");
    }
}
