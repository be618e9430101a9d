//! `nextslice demo`: the whole loop on phantom data, on a CPU: phantom scans,
//! a project, the VAE, the random seed batch and its export — up to the point
//! where an expert's masks are needed. The phantom's ground truth can stand in
//! for the expert.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use nextslice::config::{DeviceSpec, Preset, shared_store_root};
use nextslice::journal::Job;
use nextslice::progress::StderrProgress;
use nextslice::project::{Project, StorePlace};
use nextslice::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo writes its data and project.
    #[arg(long, default_value = "nextslice-demo")]
    dir: PathBuf,
    #[arg(long, default_value_t = 16)]
    subjects: usize,
    /// In-plane voxels of the phantoms (the demo preset crops/pads to 64×64).
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// Print the next steps instead of opening the TUI at the end.
    #[arg(long)]
    no_tui: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    super::check_phantom_args(args.subjects, args.size)?;
    let data = args.dir.join("data");
    let project_dir = args.dir.join("project");
    let spec = PhantomSpec {
        kind: PhantomKind::Tumour,
        subjects: args.subjects,
        size: args.size,
        seed: args.seed,
    };
    let [x, y, z] = spec.dims();
    println!(
        "1. phantom data: {} BraTS-like subjects of {x}×{y}×{z} voxels in {}",
        args.subjects,
        data.display()
    );
    if !data.join(spec.case_id(args.subjects - 1)).exists() {
        write_phantom(&data, &spec, &StderrProgress::default())?;
    }
    let project = match Project::open(&project_dir) {
        Ok(p) => p,
        Err(_) => Project::init(
            &project_dir,
            &data,
            Preset::Demo,
            &[],
            StorePlace::Configured {
                default: shared_store_root(),
            },
        )?,
    };
    let state = project.state()?;
    println!(
        "2. project {} ({} test cases held out)",
        project_dir.display(),
        state.test_cases.len()
    );
    let mut state = state;
    if state.phase == nextslice::project::Phase::NeedVae {
        println!(
            "3. training the VAE on the pool ({} epochs)…",
            project.config.vae.epochs
        );
        println!(
            "   {}",
            super::jobs::run_foreground(&project_dir, Job::TrainVae, args.device)?
        );
        state = project.state()?;
    }
    if state.phase == nextslice::project::Phase::Seeding {
        println!("4. drawing the random seed batch…");
        println!(
            "   {}",
            super::jobs::run_foreground(&project_dir, Job::Suggest, args.device)?
        );
    }
    use std::io::IsTerminal;
    if !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        println!("5. opening the TUI: export [e]; import [i] (the prompt offers the phantom's");
        println!(
            "   ground truth, {}/*/*_seg.nii.gz, as the expert's masks); train [t];",
            data.display()
        );
        println!("   suggest [n]; evaluate [a]. ? lists the keys, q quits (jobs go on).");
        // The phantom's ground truth stands in for the expert's masks.
        let truth = std::fs::canonicalize(&data)
            .unwrap_or_else(|_| data.clone())
            .join("*/*_seg.nii.gz");
        return super::tui_with_import_prefill(&project_dir, Some(truth.display().to_string()));
    }
    let p = project_dir.display();
    println!("5. export the suggested slices for annotation:");
    println!("     nextslice export -p {p}");
    println!("   An expert would now draw masks. The phantom's ground truth can stand in:");
    println!(
        "     nextslice import -p {p} {}/*/*_seg.nii.gz",
        data.display()
    );
    println!("   then train, suggest the next batch with gradient-guided sampling, and repeat:");
    println!(
        "     nextslice train --wait -p {p}   ·   nextslice suggest --wait -p {p}   ·   nextslice status -p {p}"
    );
    println!(
        "6. or compare the strategies with the ground truth as the annotator (about 8 minutes on 2 CPU cores):"
    );
    println!("     nextslice simulate --wait -p {p}");
    Ok(())
}
