//! `nextslice store`: discover a dataset and build (or reuse) its slice store.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use nextslice::config::Config;
use nextslice::progress::StderrProgress;
use nextslice::store::{BuildOutcome, SliceStore, open_or_build};
use nextslice::volume::dataset::{Discovery, discover};

use super::ConfigSelection;

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Dataset directory (overrides dataset.root).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory holding the store (one subdirectory per input/setting hash).
    #[arg(long, default_value = "nextslice-store")]
    out: PathBuf,
    #[command(flatten)]
    selection: ConfigSelection,
}

pub fn run(args: StoreArgs) -> Result<()> {
    let mut config = args.selection.resolve()?;
    if let Some(data) = args.data {
        config.dataset.root = Some(data);
    }
    let root = config
        .dataset
        .root
        .clone()
        .context("no dataset given: pass --data DIR or set dataset.root in a --config file")?;
    build(&config, &root, &args.out)?;
    Ok(())
}

/// Discovers the dataset at `data` and opens or builds its store under `out`.
pub fn build(config: &Config, data: &Path, out: &Path) -> Result<SliceStore> {
    let discovery = discover(&config.dataset, data)?;
    let started = Instant::now();
    let (store, outcome) = open_or_build(
        out,
        config,
        &discovery.cases,
        &StderrProgress::default(),
        &AtomicBool::new(false),
    )?;
    print_summary(&store, &discovery, outcome, started.elapsed().as_secs_f64());
    Ok(store)
}

fn print_summary(store: &SliceStore, discovery: &Discovery, outcome: BuildOutcome, seconds: f64) {
    let meta = store.meta();
    let how = match outcome {
        BuildOutcome::Built => format!("built in {seconds:.1}s"),
        BuildOutcome::Reused => "inputs unchanged, reused".to_string(),
    };
    let bytes = (meta.slices * meta.slice_values() * meta.bytes_per_value()) as f64;
    println!("slice store {} ({how})", store.dir().display());
    println!(
        "  {} volumes, {} slices of {}×{}×{} ({}, {:.1} MB)",
        meta.volumes.len(),
        meta.slices,
        meta.channels(),
        meta.height,
        meta.width,
        meta.dtype.name(),
        bytes / 1e6
    );
    let labelled = store
        .entries()
        .iter()
        .filter(|e| e.foreground_fraction.is_some())
        .count();
    let foreground = store
        .entries()
        .iter()
        .filter(|e| e.foreground_fraction.is_some_and(|f| f > 0.0))
        .count();
    if labelled > 0 {
        println!(
            "  {labelled} slices have ground truth; {foreground} of them ({:.0}%) contain foreground labels",
            100.0 * foreground as f64 / labelled as f64
        );
    }
    for (case, reason) in &discovery.skipped {
        println!("  skipped {case}: {reason}");
    }
}
