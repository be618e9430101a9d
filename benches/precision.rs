//! Does training hold its accuracy in bfloat16? Issue 13 asks for bf16
//! "where accuracy holds (check Dice on the phantom round against f32)".
//! burn 0.21 has no mixed precision: in bf16, weights, gradients and Adam's
//! moments are all bf16. This runs the same simulation (random sampling,
//! the demo preset, phantoms) once per precision, each in its own process
//! (a device's default dtype is fixed once per process), and prints the
//! test Dice of every round side by side.
//!
//! The CPU stands in for the GPU here: Flex computes bf16 operations in f32
//! and rounds each result to bf16, and sums in f32, which is what cubecl's
//! bf16 matmuls and reductions do. Our own CPU kernels serve f32 only, so
//! the bf16 process runs burn's; `f32-burn` (f32 on burn's kernels) shows
//! how much of a difference the kernels alone make.
//!
//! `cargo bench --bench precision [-- --modes f32,bf16,f32-burn --seeds 2 --first-seed 0 --subjects 16 --size 64 --keep DIR]`
//! takes about 4 min per seed in f32, and 12 in bf16 or on burn's kernels,
//! on 2 cores. More seeds can run later in another `--keep` directory
//! (`--first-seed`); `--report DIR,DIR --modes …` pools finished ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::DType;

use nextslice::config::{DeviceSpec, Strategy};
use nextslice::device::CpuBackend;
use nextslice::journal::Job;
use nextslice::project::Project;
use nextslice::simulate::{RESULTS_FILE, SIM_DIR, Start, prepare};

const MODES: [&str; 3] = ["f32", "bf16", "f32-burn"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(k) = args.iter().position(|a| a == "--child") {
        let mode = args.get(k + 1).context("--child MODE DIR")?;
        let dir = args.get(k + 2).context("--child MODE DIR")?;
        let seeds = option(&args, "--seeds", 1)?;
        return child(
            mode,
            Path::new(dir),
            seeds,
            option(&args, "--first-seed", 0)?,
        );
    }
    let modes: Vec<String> = value(&args, "--modes")
        .unwrap_or("f32,bf16")
        .split(',')
        .map(str::to_owned)
        .collect();
    if let Some(bad) = modes.iter().find(|m| !MODES.contains(&m.as_str())) {
        bail!("unknown mode `{bad}`: one of {}", MODES.join(", "));
    }
    if let Some(dirs) = value(&args, "--report") {
        let dirs: Vec<PathBuf> = dirs.split(',').map(PathBuf::from).collect();
        return report(&dirs, &modes);
    }
    let seeds = option(&args, "--seeds", 2)?;
    let first_seed = option(&args, "--first-seed", 0)?;
    let subjects = option(&args, "--subjects", 16)?;
    let size = option(&args, "--size", 64)?;
    let (work, _temp) = match value(&args, "--keep") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let temp = tempfile::tempdir()?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let nextslice = env!("CARGO_BIN_EXE_nextslice");
    let data = work.join("data");
    if !data.exists() {
        run(Command::new(nextslice)
            .args(["phantom", "--out"])
            .arg(&data)
            .args([
                "--subjects",
                &subjects.to_string(),
                "--size",
                &size.to_string(),
                "--seed",
                "11",
            ]))?;
    }
    // One process per precision, side by side: their tables are compared,
    // not their times.
    let mut children = Vec::new();
    for mode in &modes {
        let dir = work.join(mode);
        if !dir.exists() {
            run(Command::new(nextslice)
                .arg("init")
                .arg(&dir)
                .arg("--data")
                .arg(&data)
                .args(["--preset", "demo"]))?;
        }
        let log = std::fs::File::create(work.join(format!("{mode}.log")))?;
        let child = Command::new(std::env::current_exe()?)
            .args(["--child", mode])
            .arg(&dir)
            .args(["--seeds", &seeds.to_string()])
            .args(["--first-seed", &first_seed.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        eprintln!("{mode}: simulating in {} (log: {mode}.log)", dir.display());
        children.push((mode, child));
    }
    for (mode, mut child) in children {
        ensure!(
            child.wait()?.success(),
            "the {mode} simulation failed; see its log"
        );
    }
    report(&[work], &modes)
}

/// One precision's simulation, in this process.
fn child(mode: &str, dir: &Path, seeds: usize, first_seed: usize) -> Result<()> {
    if mode == "bf16" {
        // Before any tensor: the first one fixes the device's defaults.
        burn::tensor::set_default_dtypes::<CpuBackend>(
            &Default::default(),
            DType::BF16,
            DType::I32,
        )
        .map_err(|e| anyhow::anyhow!("bf16 as the CPU's default dtype: {e:?}"))?;
    }
    let project = Project::open(dir)?;
    let mut plan = project.config.clone();
    plan.simulate.strategies = vec![Strategy::Random];
    plan.simulate.seeds = seeds;
    plan.sampling.seed = first_seed as u64;
    prepare(&project, &plan, Start::Check)?;
    let simulate = || nextslice::worker::run_job(dir, Job::Simulate, DeviceSpec::Cpu);
    let summary = if mode == "f32-burn" {
        nextslice::model::with_burn_kernels(simulate)
    } else {
        simulate()
    }?;
    println!("{summary}");
    Ok(())
}

/// One test Dice: (run, directory/seed, round, case, region) → value.
type Values = BTreeMap<(String, String, usize, String, String), f64>;

/// The test Dice of each mode, pooled over the `--keep` directories
/// `dirs` (runs with different `--first-seed`), as mean tables and as
/// paired differences from the first mode.
fn report(dirs: &[PathBuf], modes: &[String]) -> Result<()> {
    let mut pooled: Vec<Values> = Vec::new();
    for mode in modes {
        let mut values = Values::new();
        // The results number seeds from 0 in each directory: the
        // directory's place keeps them apart.
        for (place, dir) in dirs.iter().enumerate() {
            let results = dir.join(mode).join(SIM_DIR).join(RESULTS_FILE);
            values.extend(read_values(&results, place)?);
        }
        pooled.push(values);
    }
    print_means(modes, &pooled);
    print_differences(modes, &pooled);
    Ok(())
}

fn read_values(results: &Path, place: usize) -> Result<Values> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("reading {}", results.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("an empty results file")?
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no `{name}` column in {}", results.display()))
    };
    let columns = [
        column("strategy")?,
        column("seed")?,
        column("round")?,
        column("case")?,
        column("region")?,
        column("dice")?,
    ];
    let mut values = Values::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let [run, seed, round, case, region, dice] =
            columns.map(|k| cells.get(k).copied().context("a short row"));
        let key = (
            run?.to_owned(),
            format!("{place}/{}", seed?),
            round?.parse()?,
            case?.to_owned(),
            region?.to_owned(),
        );
        values.insert(key, dice?.parse()?);
    }
    Ok(values)
}

/// Mean Dice per (run, round, region) and mode.
fn print_means(modes: &[String], pooled: &[Values]) {
    let Some(first) = pooled.first() else {
        return;
    };
    let mut cells: BTreeMap<(&str, usize, &str), Vec<Vec<f64>>> = BTreeMap::new();
    for (m, values) in pooled.iter().enumerate() {
        for ((run, _, round, _, region), v) in values {
            let cell = cells
                .entry((run.as_str(), *round, region.as_str()))
                .or_insert_with(|| vec![Vec::new(); pooled.len()]);
            cell[m].push(*v);
        }
    }
    print!("\n{:<12} {:>5} {:>6}", "run", "round", "region");
    for mode in modes {
        print!(" {:>9}", format!("{mode} Dice"));
    }
    println!("   (n, {} values in all)", first.len());
    for ((run, round, region), columns) in &cells {
        print!("{run:<12} {round:>5} {region:>6}");
        for column in columns {
            match column.len() {
                0 => print!(" {:>9}", "—"),
                n => print!(" {:>9.3}", column.iter().sum::<f64>() / n as f64),
            }
        }
        println!("   ({})", columns[0].len());
    }
}

/// Each mode minus the first, paired by (seed, round, case): the mean
/// difference and how many pairs went up and down, per run kind and region.
/// The pairs of one seed share a training history: not independent.
fn print_differences(modes: &[String], pooled: &[Values]) {
    let Some(first) = pooled.first() else {
        return;
    };
    println!(
        "\npaired differences from {} (mean, pairs up/down):",
        modes[0]
    );
    for (mode, values) in modes.iter().zip(pooled).skip(1) {
        let mut groups: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
        for (key, theirs) in values {
            if let Some(ours) = first.get(key) {
                let kind = if key.0 == "full-data" {
                    "full-data"
                } else {
                    "sampled"
                };
                groups
                    .entry((kind, key.4.as_str()))
                    .or_default()
                    .push(theirs - ours);
            }
        }
        for ((kind, region), d) in groups {
            let up = d.iter().filter(|v| **v > 0.0).count();
            let down = d.iter().filter(|v| **v < 0.0).count();
            println!(
                "{mode:>9} − {}: {kind:<9} {region:>3} {:+.3} ({up}↑/{down}↓ of {})",
                modes[0],
                d.iter().sum::<f64>() / d.len() as f64,
                d.len()
            );
        }
    }
}

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let k = args.iter().position(|a| a == name)?;
    args.get(k + 1).map(String::as_str)
}

fn option(args: &[String], name: &str, default: usize) -> Result<usize> {
    value(args, name).map_or(Ok(default), |v| {
        v.parse()
            .with_context(|| format!("{name} wants a number, not `{v}`"))
    })
}

fn run(command: &mut Command) -> Result<()> {
    let out = command.output()?;
    ensure!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
