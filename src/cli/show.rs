//! `nextslice show CASE:SLICE`: one stored slice in the terminal, with its
//! expert mask (or the ground truth) overlaid — via viuer, outside any TUI
//! (Kitty/iTerm2 graphics where the terminal has them, half-blocks elsewhere).

use anyhow::{Context, Result, bail};
use clap::Args;
use image::DynamicImage;

use nextslice::masks::derived_path;
use nextslice::masks::preview::{class_colour, slice_picture};
use nextslice::progress::StderrProgress;
use nextslice::project::{Project, SliceIndex, SliceKey};

use super::project::ProjectArg;

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    project: ProjectArg,
    /// The slice, as CASE:SLICE (as `status`, manifests and logs print them).
    slice: SliceKey,
    /// Modality to show (default: the first).
    #[arg(long)]
    modality: Option<String>,
    /// Overlay the dataset's ground truth instead of the expert mask.
    #[arg(long)]
    truth: bool,
    /// Width in terminal columns.
    #[arg(long, default_value_t = 64)]
    width: u32,
}

pub fn run(args: ShowArgs) -> Result<()> {
    let project = Project::open(&args.project.project)?;
    let state = project.state()?;
    let store = project.store(&StderrProgress::default(), &Default::default())?;
    let index = SliceIndex::new(&store, &state.test_cases);
    let Some(id) = index.id(&args.slice) else {
        bail!(
            "no slice {} in the store (slices are CASE:INDEX, e.g. {})",
            args.slice,
            index.key(0)
        );
    };
    let meta = store.meta();
    let channel = match &args.modality {
        Some(m) => meta
            .modalities
            .iter()
            .position(|x| x == m)
            .with_context(|| {
                format!(
                    "no modality `{m}`; the project has {}",
                    meta.modalities.join(", ")
                )
            })?,
        None => 0,
    };
    let (h, w) = (meta.height, meta.width);
    let mut image = vec![0f32; meta.slice_values()];
    store.read_image(id, &mut image)?;
    let plane = &image[channel * h * w..(channel + 1) * h * w];

    let (mask, source) = if args.truth {
        let mut m = vec![0u8; h * w];
        if !store.read_label(id, &mut m)? {
            bail!("case {} has no ground truth", args.slice.case);
        }
        (Some(m), "ground truth".to_string())
    } else if let Some(l) = state.labelled.iter().find(|l| l.key == args.slice) {
        let m = std::fs::read(derived_path(&project.dir, &l.key))?;
        (Some(m), format!("expert mask (round {})", l.round))
    } else {
        let pending = state.pending.iter().any(|p| p.key == args.slice);
        (
            None,
            if pending {
                "awaiting its mask".into()
            } else {
                "not labelled".into()
            },
        )
    };

    let rgb = slice_picture(plane, h, w, mask.as_deref());
    let config = viuer::Config {
        width: Some(args.width),
        absolute_offset: false,
        ..Default::default()
    };
    viuer::print(&DynamicImage::ImageRgb8(rgb), &config).context("cannot draw in this terminal")?;
    let legend: Vec<String> = project
        .config
        .labels
        .classes
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| {
            format!(
                "\x1b[38;2;{};{};{}m■\x1b[0m {}",
                class_colour(i)[0],
                class_colour(i)[1],
                class_colour(i)[2],
                c.name
            )
        })
        .collect();
    println!("{} · {} · {source}", args.slice, meta.modalities[channel]);
    if mask.is_some() {
        println!("{}", legend.join("  "));
    }
    Ok(())
}
