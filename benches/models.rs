//! Model throughput, nextslice (burn) vs the same architectures in PyTorch,
//! measured side by side in one run on this machine:
//! U-Net train step (C=4, K=4; 128², batch 8 and 256², batch 4), U-Net
//! inference, VAE train step (128², batch 16), and the gradient-guided step
//! (dDice/dx through the frozen U-Net + VAE encode; 128², batch 8).
//!
//! `cargo bench --bench models [-- --cases unet-train-128-b8,… --repeat 3 --burn-kernels]`
//! `--burn-kernels` also times burn's own kernels (the A/B for `model::cpu`
//! on the CPU, for `model::upsample`'s matmuls on CUDA), in the same run;
//! `--wgpu` (with `--features wgpu`) runs that A/B on burn-wgpu alone
//! (`--half`: f16 against f32 instead). On CUDA, `--bf16` adds the cases in
//! bfloat16; `--profile` times one step per case under cubecl's kernel
//! profiler (`NEXTSLICE_GPU_PROFILE=FILE`); a `cuda-fusion` build measures
//! burn's fused backend. `--wgrad-fold` (GPU) adds the cases with steered
//! weight gradients folded (`NEXTSLICE_GPU_WGRAD_FOLD=auto`), and
//! `--matmul-ab` with matmuls chosen the other way from
//! `NEXTSLICE_GPU_MATMUL` (fixed to one kernel, or autotuned). `--torch-last`
//! times PyTorch after burn instead of before (a time-limited GPU run keeps
//! burn's rates if it stops early).
//! PyTorch side: `.venv-torch` made by `../shared/tools/torch-cpu-venv .venv-torch`
//! (or $NEXTSLICE_TORCH_PYTHON). NdArray: add `--features ndarray`.

#[path = "common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;

use nextslice::device::{BackendTask, Device, with_backend};
use nextslice::model::loss::{dice_loss_from_logits, one_hot, vae_loss};
use nextslice::model::{Mode, UNetSpec, VaeSpec, dice_gradient_wrt_input};

const C: usize = 4;
const K: usize = 4;

/// The paper's widths (issue 3's cases), then the demo's (`config/demo.toml`:
/// 8-16-32-64 + 128 at 64²), prefixed `demo-`.
const CASES: [&str; 10] = [
    "unet-train-128-b8",
    "unet-infer-128-b8",
    "unet-train-256-b4",
    "unet-infer-256-b4",
    "vae-train-128-b16",
    "gradient-encode-128-b8",
    "demo-unet-train-64-b8",
    "demo-unet-infer-64-b8",
    "demo-vae-train-64-b16",
    "demo-gradient-encode-64-b8",
];

/// On a GPU (`--device cuda`) the default cases are issue 13's: the
/// paper's batch of 32 at 256², and the VAE at 256² too.
const GPU_CASES: [&str; 8] = [
    "unet-train-128-b8",
    "unet-infer-128-b8",
    "unet-train-256-b32",
    "unet-infer-256-b32",
    "vae-train-128-b16",
    "vae-train-256-b16",
    "gradient-encode-128-b8",
    "gradient-encode-256-b8",
];

/// Encoder widths: the paper's, or the demo's for `demo-` cases.
fn widths(demo: bool) -> Vec<usize> {
    if demo {
        vec![8, 16, 32, 64]
    } else {
        vec![32, 64, 128, 256]
    }
}

fn unet_spec(demo: bool) -> UNetSpec {
    UNetSpec {
        in_channels: C,
        classes: K,
        widths: widths(demo),
        bottleneck: if demo { 128 } else { 512 },
    }
}

fn vae_spec(size: usize, demo: bool) -> VaeSpec {
    VaeSpec {
        in_channels: C,
        size: [size, size],
        widths: widths(demo),
        z_dim: 3,
    }
}

/// Untimed calls before timing: 1 on the CPU; more on CUDA, whose kernels are
/// compiled and autotuned on first use. Set by `--warmup`.
static WARMUP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// `--profile`: one step after the warm-up, between two device syncs, so
/// that cubecl's kernel profiler (`$NEXTSLICE_GPU_PROFILE`) writes a table
/// for that step alone.
static PROFILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Median slices/s of `repeat` timed calls after the warm-up calls; with
/// `--profile`, the slices/s of the one profiled step (slowed by profiling).
fn rate(slices: usize, repeat: usize, sync: impl Fn(), mut step: impl FnMut()) -> f64 {
    let warmup = WARMUP.load(std::sync::atomic::Ordering::Relaxed);
    if PROFILE.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..warmup {
            step();
        }
        // cubecl writes the warm-up's table here and starts a new one.
        sync();
        let start = Instant::now();
        step();
        sync();
        return slices as f64 / start.elapsed().as_secs_f64().max(1e-12);
    }
    slices as f64 / common::median_seconds_after(warmup, repeat.max(1), step).max(1e-12)
}

fn inputs<B: Backend>(n: usize, size: usize, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let x = Tensor::random([n, C, size, size], Distribution::Normal(0.0, 1.0), device);
    let labels = Tensor::<B, 3>::random(
        [n, size, size],
        Distribution::Uniform(0.0, K as f64),
        device,
    )
    .int();
    (x, one_hot(labels, K))
}

fn run_case<B: AutodiffBackend>(case: &str, repeat: usize, device: &B::Device) -> f64 {
    let parse = |s: &str| -> (usize, usize) {
        let parts: Vec<&str> = s.rsplit('-').collect();
        (
            parts[1].parse().unwrap_or(128),
            parts[0].trim_start_matches('b').parse().unwrap_or(8),
        )
    };
    let (size, n) = parse(case);
    let sync = || {
        if let Err(e) = B::sync(device) {
            eprintln!("device sync failed: {e:?}");
        }
    };
    let demo = case.starts_with("demo-");
    let case = case.trim_start_matches("demo-");
    if case.starts_with("unet-train") {
        let mut model = unet_spec(demo).init::<B>(device);
        let mut optim = nextslice::train::adam::<B, _>();
        let (x, y) = inputs::<B>(n, size, device);
        rate(n, repeat, sync, || {
            let loss =
                dice_loss_from_logits(model.forward(x.clone(), Mode::Train).logits, y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model.clone(), grads);
            let _: f32 = loss.into_scalar().elem();
        })
    } else if case.starts_with("unet-infer") {
        let model = unet_spec(demo).init::<B>(device).valid();
        let (x, _) = inputs::<B::InnerBackend>(n, size, device);
        rate(n, repeat, sync, || {
            let p = model.probabilities(x.clone(), Mode::Eval);
            let _: f32 = p.sum().into_scalar().elem();
        })
    } else if case.starts_with("vae-train") {
        let mut model = vae_spec(size, demo).init::<B>(device);
        let mut optim = nextslice::train::adam::<B, _>();
        let (x, _) = inputs::<B>(n, size, device);
        rate(n, repeat, sync, || {
            let noise = Tensor::random([n, 3], Distribution::Normal(0.0, 1.0), device);
            let out = model.forward(x.clone(), noise, Mode::Train);
            let loss = vae_loss(out.reconstruction, x.clone(), out.mean, out.log_var).total(1.0);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-4, model.clone(), grads);
            let _: f32 = loss.into_scalar().elem();
        })
    } else {
        let unet = unet_spec(demo).init::<B>(device);
        let vae = vae_spec(size, demo).init::<B>(device).valid();
        let (x, y) = inputs::<B::InnerBackend>(n, size, device);
        rate(n, repeat, sync, || {
            let g = dice_gradient_wrt_input::<B>(&unet, x.clone(), y.clone())
                .expect("the gradient reaches the input");
            let z = vae.encode_mean(x.clone() + g.gradient.mul_scalar(1e-3));
            let _: f32 = z.sum().into_scalar().elem();
        })
    }
}

/// One benchmark case, run on whichever backend the device needs.
struct Case<'a> {
    name: &'a str,
    repeat: usize,
}

impl BackendTask for Case<'_> {
    type Output = f64;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        run_case::<B>(self.name, self.repeat, &device)
    }
}

/// How the PyTorch side runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Torch {
    /// As users run it (on CUDA: cuDNN convolutions in TF32).
    Default,
    /// With the malloc settings nextslice gives itself (CPU).
    SameMalloc,
    /// With TF32 off everywhere: plain f32, like burn's kernels (CUDA).
    NoTf32,
}

fn torch_rates(
    cases: &[&str],
    repeat: usize,
    device: Device,
    variant: Torch,
) -> Option<(String, Vec<f64>)> {
    // A bench binary copied to another machine runs from a checkout there.
    let root = if Path::new("bench/models_torch.py").exists() {
        Path::new(".")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    };
    let python = std::env::var_os("NEXTSLICE_TORCH_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-torch/bin/python"));
    let script = root.join("bench/models_torch.py");
    let torch_device = match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut command = Command::new(&python);
    if variant == Torch::SameMalloc {
        command.env("GLIBC_TUNABLES", nextslice::heap::GLIBC_TUNABLES);
    }
    let numerics = if variant == Torch::NoTf32 {
        "no-tf32"
    } else {
        "default"
    };
    let out = command
        .args([
            script.to_str()?,
            &cases.join(","),
            &repeat.to_string(),
            &threads.to_string(),
            &torch_device,
            numerics,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "PyTorch run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let rates = cases
        .iter()
        .map(|c| json["cases"][c].as_f64().unwrap_or(f64::NAN))
        .collect();
    Some((
        format!(
            "PyTorch {} {} ({} threads{})",
            json["torch"].as_str().unwrap_or("?"),
            json["device"].as_str().unwrap_or("?"),
            json["threads"],
            match variant {
                Torch::Default => "",
                Torch::SameMalloc => ", our malloc",
                Torch::NoTf32 => ", TF32 off",
            }
        ),
        rates,
    ))
}

/// `--bf16` on CUDA: the cases with bfloat16 tensors throughout (burn 0.21
/// has no mixed precision), for their own column.
fn bf16_rates(wanted: bool, device: Device, cases: &[&str], repeat: usize) -> Option<Vec<f64>> {
    match (wanted, device) {
        (false, _) => None,
        #[cfg(feature = "cuda")]
        (true, Device::Cuda(gpu)) => {
            Some(cases.iter().map(|c| bf16_rate(c, repeat, gpu)).collect())
        }
        (true, _) => {
            // (Used by the CUDA arm only.)
            let _ = (cases, repeat);
            eprintln!("--bf16: only with --device cuda in a CUDA build; no bf16 column");
            None
        }
    }
}

/// One case on CUDA in bfloat16; a case that fails there (an operation
/// without a bf16 kernel) is reported and left out, not fatal.
#[cfg(feature = "cuda")]
fn bf16_rate(case: &str, repeat: usize, gpu: usize) -> f64 {
    type Half = burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::bf16>>;
    let device = burn::backend::cuda::CudaDevice::new(gpu);
    std::panic::catch_unwind(|| run_case::<Half>(case, repeat, &device)).unwrap_or_else(|_| {
        eprintln!("{case}: failed in bf16");
        f64::NAN
    })
}

/// `--wgpu` (build with `--features wgpu`): the cases on burn-wgpu, our
/// layers against burn's kernels. Without a GPU that is Mesa's lavapipe,
/// cubecl's kernels run by the CPU: it compares the kernels cubecl is asked
/// to run, not what a GPU makes of them.
/// `--half` adds a column in f16 (lavapipe has no bf16): a check that the
/// models run at half precision on a cubecl backend, before a GPU's `--bf16`.
#[cfg(feature = "wgpu")]
fn wgpu_ab(cases: &[&str], repeat: usize, level: nextslice::config::AutotuneLevel, half: bool) {
    type Wgpu = burn::backend::Autodiff<burn::backend::Wgpu>;
    type Wgpu16 = burn::backend::Autodiff<burn::backend::Wgpu<burn::tensor::f16>>;
    if let Err(e) = nextslice::gpu::configure(None, level) {
        eprintln!("{e}");
        std::process::exit(2)
    }
    let device = Default::default();
    println!("burn-wgpu, slices/s (median of {repeat}, after warm-up)");
    let other = if half { "f16" } else { "burn's kernels" };
    println!(
        "{:<26} {:>12} {other:>15} {:>12}",
        "case", "ours", "other/ours"
    );
    for case in cases {
        let ours = run_case::<Wgpu>(case, repeat, &device);
        let theirs = if half {
            std::panic::catch_unwind(|| run_case::<Wgpu16>(case, repeat, &device)).unwrap_or_else(
                |_| {
                    eprintln!("{case}: failed in f16");
                    f64::NAN
                },
            )
        } else {
            nextslice::model::with_burn_kernels(|| run_case::<Wgpu>(case, repeat, &device))
        };
        println!(
            "{case:<26} {ours:>12.2} {theirs:>15.2} {:>11.2}×",
            theirs / ours
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let repeat: usize = value("--repeat").and_then(|r| r.parse().ok()).unwrap_or(3);
    let started = Instant::now();

    // `--device cuda[:N]` measures burn-cuda instead (build with --features cuda),
    // against PyTorch on the same GPU.
    let spec: nextslice::config::DeviceSpec = value("--device")
        .unwrap_or_else(|| "cpu".into())
        .parse()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    let device = Device::resolve(spec).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let known: Vec<&str> = CASES.iter().chain(&GPU_CASES).copied().collect();
    let cases: Vec<&str> = match value("--cases") {
        Some(list) => list
            .split(',')
            .filter_map(|w| known.iter().copied().find(|c| *c == w))
            .collect(),
        None if device == Device::Cpu => CASES.to_vec(),
        None => GPU_CASES.to_vec(),
    };
    // `--autotune LEVEL` on a GPU: cubecl's search effort (default minimal),
    // with tuned kernels in the user's cache (or $NEXTSLICE_GPU_CACHE).
    let autotune: nextslice::config::AutotuneLevel = value("--autotune")
        .map_or(Ok(Default::default()), |l| l.parse())
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    if let Err(e) = device.prepare(autotune) {
        eprintln!("{e}");
        std::process::exit(2)
    }
    let warmup = value("--warmup")
        .and_then(|w| w.parse().ok())
        .unwrap_or(if device == Device::Cpu { 1 } else { 3 });
    WARMUP.store(warmup, std::sync::atomic::Ordering::Relaxed);
    let flag = |name: &str| args.iter().any(|a| a == name);
    if flag("--profile") {
        if std::env::var_os(nextslice::gpu::runtime::PROFILE_ENV).is_none() {
            eprintln!(
                "--profile: set {}=FILE for cubecl's kernel tables",
                nextslice::gpu::runtime::PROFILE_ENV
            );
        }
        PROFILE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    #[cfg(feature = "wgpu")]
    if flag("--wgpu") {
        wgpu_ab(&cases, repeat, autotune, flag("--half"));
        if flag("--profile") {
            profile_written();
        }
        return;
    }

    let mut columns: Vec<(String, Vec<f64>)> = Vec::new();
    // PyTorch as users run it, then on equal terms: on the CPU with
    // nextslice's malloc settings, on CUDA with TF32 off (burn computes in
    // plain f32).
    let pytorch = || {
        let began = Instant::now();
        let torch = torch_rates(&cases, repeat, device, Torch::Default);
        let second = match device {
            Device::Cpu => Torch::SameMalloc,
            Device::Cuda(_) => Torch::NoTf32,
        };
        let equal_terms = torch
            .as_ref()
            .and_then(|_| torch_rates(&cases, repeat, device, second));
        if torch.is_none() {
            eprintln!(
                "PyTorch not available (make .venv-torch with ../shared/tools/torch-cpu-venv); no ratios"
            );
        }
        for (name, rates) in torch.iter().chain(&equal_terms) {
            eprintln!("{name}: {rates:.2?} slices/s");
        }
        // What PyTorch costs a time-limited GPU run.
        eprintln!("(PyTorch {:.0} s)", began.elapsed().as_secs_f64());
        (torch, equal_terms)
    };
    // PyTorch first, then burn, each in one process: no competition for the
    // cores. `--torch-last` turns that round, so a time-limited GPU run whose
    // burn side is slow still says its burn rates.
    let torch_last = flag("--torch-last");
    let (mut torch, mut torch_same_malloc) = if torch_last { (None, None) } else { pytorch() };
    nextslice::heap::keep_freed_memory();
    let label = match device {
        Device::Cpu => "burn Flex".to_string(),
        // A `cuda-fusion` build runs burn's fused CUDA backend.
        Device::Cuda(n) if cfg!(feature = "cuda-fusion") => format!("burn CUDA:{n} fused"),
        Device::Cuda(n) => format!("burn CUDA:{n}"),
    };
    let run = |name: &str| with_backend(device, Case { name, repeat });
    let ours = column_rates(&label, &cases, run);
    columns.push((label, ours));
    if torch_last {
        (torch, torch_same_malloc) = pytorch();
    }
    let burn_kernels = flag("--burn-kernels");
    if burn_kernels {
        let label = format!("{}, burn's kernels", columns[0].0);
        let theirs = column_rates(&label, &cases, |c| {
            nextslice::model::with_burn_kernels(|| run(c))
        });
        columns.push((label, theirs));
    }
    // Columns timed again with one switch, each with its ratio to the
    // first column (header, column).
    let mut against_first: Vec<(&str, usize)> = Vec::new();
    // `--wgrad-fold`: the cases again with steered weight gradients folded
    // (`model::weight_grad_fold`, auto); `--matmul-ab`: with matmuls chosen
    // the other way (`model::matmul_node`: fixed if the first column
    // autotuned them, autotuned if it ran them fixed).
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        use nextslice::model::{Fold, with_matmul_steering, with_weight_grad_fold};
        if flag("--wgrad-fold") {
            let label = format!("{}, weight gradients folded", columns[0].0);
            let folded = column_rates(&label, &cases, |c| {
                with_weight_grad_fold(Fold::Auto, || run(c))
            });
            columns.push((label, folded));
            against_first.push(("folded/plain", columns.len() - 1));
        }
        if flag("--matmul-ab") {
            // The other way from the first column's (NEXTSLICE_GPU_MATMUL).
            let fixed = !nextslice::model::matmuls_steered();
            let (way, ratio) = if fixed {
                ("fixed", "fixed/tuned")
            } else {
                ("autotuned", "tuned/fixed")
            };
            let label = format!("{}, matmuls {way}", columns[0].0);
            let other = column_rates(&label, &cases, |c| with_matmul_steering(fixed, || run(c)));
            columns.push((label, other));
            against_first.push((ratio, columns.len() - 1));
        }
    }
    if let Some(half) = bf16_rates(flag("--bf16"), device, &cases, repeat) {
        columns.push((format!("{}, bf16", columns[0].0), half));
        against_first.push(("bf16/f32", columns.len() - 1));
    }
    #[cfg(feature = "ndarray")]
    {
        // NdArray trains two orders of magnitude slower: one timed step, and
        // only the 128² cases (a 256² training step would take many minutes).
        type Nd = burn::backend::Autodiff<burn::backend::NdArray>;
        let nd: Vec<f64> = cases
            .iter()
            .map(|c| {
                if c.contains("-256-") {
                    f64::NAN
                } else {
                    run_case::<Nd>(c, 1, &Default::default())
                }
            })
            .collect();
        columns.push(("burn NdArray".into(), nd));
    }
    if let Some(t) = torch.clone() {
        columns.push(t);
    }
    if let Some(t) = torch_same_malloc.clone() {
        columns.push(t);
    }

    println!(
        "model throughput, slices/s (median of {repeat}, after warm-up); ratio = nextslice ÷ PyTorch"
    );
    print!("{:<24}", "case");
    for (name, _) in &columns {
        print!(" {name:>26}");
    }
    if burn_kernels {
        print!(" {:>14}", "ours/burn's");
    }
    for (header, _) in &against_first {
        print!(" {header:>14}");
    }
    if torch.is_some() {
        print!(" {:>12}", "burn/PyTorch");
        if torch_same_malloc.is_some() {
            print!(
                " {:>18}",
                if device == Device::Cpu {
                    "same malloc"
                } else {
                    "vs TF32 off"
                }
            );
        }
        #[cfg(feature = "ndarray")]
        print!(" {:>14}", "NdArray/PyTorch");
    }
    println!();
    for (i, case) in cases.iter().enumerate() {
        print!("{case:<24}");
        for (_, rates) in &columns {
            print!(" {:>26.2}", rates[i]);
        }
        if burn_kernels {
            print!(" {:>13.2}×", columns[0].1[i] / columns[1].1[i]);
        }
        for (_, column) in &against_first {
            print!(" {:>13.2}×", columns[*column].1[i] / columns[0].1[i]);
        }
        if let Some((_, t)) = &torch {
            print!(" {:>11.2}×", columns[0].1[i] / t[i]);
            if let Some((_, t)) = &torch_same_malloc {
                print!(" {:>17.2}×", columns[0].1[i] / t[i]);
            }
            #[cfg(feature = "ndarray")]
            if let Some((_, nd)) = columns.iter().find(|(name, _)| name == "burn NdArray") {
                print!(" {:>13.3}×", nd[i] / t[i]);
            }
        }
        println!();
    }
    if PROFILE.load(std::sync::atomic::Ordering::Relaxed) {
        profile_written();
    }
    for line in nextslice::model::steering_report() {
        println!("{line}");
    }
    println!("({:.0}s in all)", started.elapsed().as_secs_f64());
}

/// Every case's rate for one column, `run` timing one case.
fn column_rates<E: std::fmt::Display>(
    column: &str,
    cases: &[&str],
    run: impl Fn(&str) -> Result<f64, E>,
) -> Vec<f64> {
    cases
        .iter()
        .map(|c| case_rate(column, c, || run(c)))
        .collect()
}

/// One case's rate, said on stderr as soon as it is known, so that a run
/// stopped by a time limit (a lent GPU's) still leaves its numbers; a case
/// that fails or panics (a kernel a backend cannot compile) is NaN, not the
/// end of the run.
fn case_rate<E: std::fmt::Display>(
    column: &str,
    case: &str,
    run: impl FnOnce() -> Result<f64, E>,
) -> f64 {
    let started = Instant::now();
    let rate = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(rate)) => rate,
        Ok(Err(e)) => {
            eprintln!("{column} {case}: {e}");
            f64::NAN
        }
        Err(_) => {
            eprintln!("{column} {case}: panicked");
            f64::NAN
        }
    };
    eprintln!(
        "{column} {case}: {rate:.2} slices/s ({:.0} s with warm-up)",
        started.elapsed().as_secs_f64()
    );
    rate
}

/// cubecl's logger writes the last kernel table from a background task:
/// waits until the profile file stops growing (at most 10 s) so that the
/// process does not exit before it.
fn profile_written() {
    let Some(file) = std::env::var_os(nextslice::gpu::runtime::PROFILE_ENV) else {
        return;
    };
    let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let mut last = size();
    while Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = size();
        if now == last && now > 0 {
            return;
        }
        last = now;
    }
}
