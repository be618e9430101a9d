//! `nextslice info`: what a NIfTI file holds, as a radiologist's tool would say it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use nextslice::volume::{VoxelStats, read_header, read_volume};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// NIfTI files (.nii or .nii.gz).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also read the voxels (scaling applied) and print their sum, mean,
    /// min, max, non-zero and NaN counts, as nibabel + numpy would.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let mut failed = 0;
    for file in &args.files {
        match read_header(file) {
            Ok(h) => {
                let [x, y, z, t] = h.dims;
                let size = if t > 1 {
                    format!("{x}×{y}×{z}×{t}")
                } else {
                    format!("{x}×{y}×{z}")
                };
                let [sx, sy, sz] = h.spacing;
                println!("{}", file.display());
                println!(
                    "  size         {size} {}{}",
                    h.voxel_type.name(),
                    if h.big_endian { " (big-endian)" } else { "" }
                );
                println!("  spacing      {sx:.3} × {sy:.3} × {sz:.3} mm");
                println!(
                    "  orientation  {} (from {})",
                    h.orientation, h.affine_source
                );
                if let Some(s) = h.scaling {
                    println!("  scaling      value × {} + {}", s.slope, s.inter);
                }
                for row in h.affine.rows() {
                    println!(
                        "  affine       [{:9.3} {:9.3} {:9.3} {:9.3}]",
                        row[0], row[1], row[2], row[3]
                    );
                }
                if !h.description.is_empty() {
                    println!("  description  {}", h.description);
                }
                if args.stats {
                    match read_volume(file) {
                        Ok(v) => {
                            let s = VoxelStats::of(&v.data);
                            println!(
                                "  voxels       {} · sum {} · mean {:.6} · min {} · max {}",
                                s.count, s.sum, s.mean, s.min, s.max
                            );
                            println!("               {} non-zero · {} NaN", s.nonzero, s.nan);
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            failed += 1;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} files could not be read",
        args.files.len()
    );
    Ok(())
}
