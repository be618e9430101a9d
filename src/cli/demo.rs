//! `nextslice demo`: the whole pipeline built so far, on phantom data, on a CPU.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use nextslice::config::{Config, Preset};
use nextslice::progress::StderrProgress;
use nextslice::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo writes its data and store.
    #[arg(long, default_value = "nextslice-demo")]
    dir: PathBuf,
    #[arg(long, default_value_t = 16)]
    subjects: usize,
    /// In-plane voxels of the phantoms (the demo preset crops/pads to 64×64).
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: DemoArgs) -> Result<()> {
    super::check_phantom_args(args.subjects, args.size)?;
    let config = Config::resolve(Preset::Demo, &[])?;
    let data = args.dir.join("data");
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
    write_phantom(&data, &spec, &StderrProgress::default())?;
    println!(
        "2. slice store (canonical orientation, z-score, crop/pad to {}×{})",
        config.slicing.size[0], config.slicing.size[1]
    );
    super::store::build(&config, &data, &args.dir.join("store"))?;
    println!();
    println!(
        "Look at a volume:   nextslice info {}",
        spec.paths(&data, 0).0[0].display()
    );
    println!(
        "Your own data:      nextslice store --preset brats2019 --data /path/to/BraTS2019 --out store"
    );
    Ok(())
}
