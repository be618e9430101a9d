//! `nextslice store`: discover a dataset and build (or reuse) its slice store.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use nextslice::config::{Config, shared_store_root};
use nextslice::progress::StderrProgress;
use nextslice::store::{BuildOutcome, SliceStore, open_or_build, users};
use nextslice::volume::dataset::{Discovery, discover};

use super::ConfigSelection;

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Dataset directory (overrides dataset.root).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The store root: one subdirectory per input/setting hash (default:
    /// the shared root new projects use, $NEXTSLICE_STORE_ROOT or the
    /// user's data dir).
    #[arg(long, visible_alias = "root")]
    out: Option<PathBuf>,
    /// List the root's stores: size, cases, the projects using each.
    #[arg(long, conflicts_with = "gc")]
    list: bool,
    /// Remove the root's stores that no existing project uses.
    #[arg(long)]
    gc: bool,
    #[command(flatten)]
    selection: ConfigSelection,
}

pub fn run(args: StoreArgs) -> Result<()> {
    let out = match args.out.clone().or_else(shared_store_root) {
        Some(out) => out,
        None => anyhow::bail!("no home directory to keep stores in: pass --out DIR"),
    };
    if args.list || args.gc {
        return manage(&out, args.gc);
    }
    let mut config = args.selection.resolve()?;
    if let Some(data) = args.data {
        config.dataset.root = Some(data);
    }
    let root = config
        .dataset
        .root
        .clone()
        .context("no dataset given: pass --data DIR or set dataset.root in a --config file")?;
    build(&config, &root, &out)?;
    Ok(())
}

/// `--list` and `--gc`.
fn manage(root: &Path, gc: bool) -> Result<()> {
    let stores = users::list(root);
    println!("slice stores in {}", root.display());
    if stores.is_empty() {
        println!("  none");
        return Ok(());
    }
    for info in &stores {
        let who = if !info.registered {
            "no project registered in it (made by `nextslice store` or before registration): kept"
                .to_string()
        } else {
            format!(
                "{} of {} registered projects exist",
                info.live_users(),
                info.users.len()
            )
        };
        println!(
            "  {}  {:>9}  {} cases, {} slices  ({who})",
            info.key,
            megabytes(info.bytes),
            info.cases,
            info.slices
        );
        for (project, alive) in &info.users {
            let gone = if *alive { "" } else { "  (gone)" };
            println!("      {}{gone}", project.display());
        }
    }
    if gc {
        let removed = users::gc(root)?;
        let freed: u64 = removed.iter().map(|i| i.bytes).sum();
        for info in &removed {
            println!("removed {} (no project uses it)", info.key);
        }
        println!(
            "{} of {} stores removed, {} freed",
            removed.len(),
            stores.len(),
            megabytes(freed)
        );
    }
    Ok(())
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
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
