//! Synthetic project states and event logs for TUI tests and the render
//! benchmark: no models, no files, every number deterministic.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use nextslice::config::{Config, Preset};
use nextslice::journal::{Event, Holder, Job, Logged, ProgressReport};
use nextslice::project::{Labelled, Pending, Phase, RoundRecord, RoundState, SliceKey};
use nextslice::rng::Rng;
use nextslice::strategy::Latents;
use nextslice::strategy::{StepReport, Suggestion};
use nextslice::tui::app::App;
use nextslice::tui::snapshot::{PoolInfo, Snapshot};

/// "Now" in every fixture: 2026-11-27 12:00 UTC.
pub const NOW: f64 = 1_795_953_600.0;
pub const CASES: usize = 20;
pub const SLICES_PER_CASE: usize = 60;

pub fn key(case: usize, slice: u32) -> SliceKey {
    SliceKey {
        case: format!("BraTS19_{case:03}"),
        slice,
    }
}

/// A pool of `n` slices with latents in three loose clusters.
pub fn pool(n: usize, dim: usize) -> (Arc<PoolInfo>, Arc<Latents>) {
    let mut rng = Rng::new(7, 1);
    let mut ids = HashMap::new();
    let mut values = Vec::with_capacity(n * dim);
    for i in 0..n {
        ids.insert(key(i / SLICES_PER_CASE, (i % SLICES_PER_CASE) as u32), i);
        let centre = [(-1.5, 0.5), (1.0, 1.2), (0.3, -1.4)][i % 3];
        for d in 0..dim {
            let c = match d {
                0 => centre.0,
                1 => centre.1,
                _ => 0.0,
            };
            values.push((c + 0.45 * rng.normal()) as f32);
        }
    }
    let info = PoolInfo {
        store_dir: PathBuf::from("/nonexistent/store"),
        key: "fixture".into(),
        slices: n,
        pool: n,
        modalities: vec!["flair".into(), "t1".into(), "t1ce".into(), "t2".into()],
        height: 128,
        width: 128,
        ids,
        in_pool: vec![true; n],
    };
    (Arc::new(info), Arc::new(Latents { dim, values }))
}

fn latent(map: &Latents, id: usize) -> Vec<f32> {
    map.get(id).map(<[f32]>::to_vec).unwrap_or_default()
}

/// A project in round 3 in `phase`, with `rounds` rounds of history and a
/// pool of `pool_size` slices.
pub fn state(phase: Phase, rounds: usize, map: &Latents) -> RoundState {
    let mut s = RoundState::new(vec!["BraTS19_018".into(), "BraTS19_019".into()]);
    s.round = rounds;
    s.phase = phase;
    s.vae = Some("models/vae.mpk".into());
    if rounds > 0 {
        s.unet = Some("models/unet.mpk".into());
    }
    let labelled = match phase {
        Phase::NeedVae | Phase::Seeding => 0,
        _ => 6 + 4 * rounds,
    };
    for i in 0..labelled {
        s.labelled.push(Labelled {
            key: key(i % 17, (7 * i % SLICES_PER_CASE) as u32),
            mask: format!("masks/m{i}.nii.gz").into(),
            round: i.saturating_sub(6) / 4,
        });
    }
    if phase == Phase::AwaitingMasks {
        for j in 0..5 {
            let source = 6 + 4 * j;
            let id = 61 * j + 13;
            let z = latent(map, source * 7 % 600);
            let step: Vec<f32> = z.iter().map(|v| 0.01 * v.signum()).collect();
            let z_prime: Vec<f32> = z.iter().zip(&step).map(|(a, b)| a + b).collect();
            s.pending.push(Pending {
                key: key(id / SLICES_PER_CASE, (id % SLICES_PER_CASE) as u32),
                source: Some(key(source % 17, (7 * source % SLICES_PER_CASE) as u32)),
                detail: Suggestion {
                    slice: id,
                    source: Some(source),
                    z: Some(z),
                    z_prime: Some(z_prime),
                    step: Some(step),
                    z_chosen: Some(latent(map, id)),
                    distance: Some(0.21 + 0.07 * j as f32),
                    angle_deg: Some(12.5 + 14.0 * j as f32),
                    angle_ok: j != 4,
                },
            });
        }
        s.gradient_step = Some(StepReport {
            calibrated: true,
            alpha: 2.5e4,
            median_step: 0.3,
            nn_median: 0.3,
            sources: 18,
            picks: 5,
            differ_from_zero_step: 4,
        });
    }
    for r in 0..rounds {
        let t = r as f64;
        s.history.push(RoundRecord {
            round: r,
            labelled: 6 + 4 * r,
            budget: (6.0 + 4.0 * t) / 1200.0,
            train_losses: (0..10).map(|e| -0.3 - 0.05 * t - 0.01 * e as f64).collect(),
            dice: vec![
                ("WT".into(), 0.55 + 0.3 * (1.0 - (-0.5 * t).exp())),
                ("TC".into(), 0.40 + 0.3 * (1.0 - (-0.4 * t).exp())),
                ("ET".into(), 0.30 + 0.3 * (1.0 - (-0.3 * t).exp())),
            ],
            hd95: vec![
                ("WT".into(), 30.0 * (-0.4 * t).exp() + 4.0),
                ("TC".into(), 35.0 * (-0.3 * t).exp() + 6.0),
                ("ET".into(), 40.0 * (-0.2 * t).exp() + 5.0),
            ],
            validation: None,
        });
    }
    s
}

/// The event log of a U-Net training that started 95 s before `NOW`,
/// reached epoch 4 of 10, batch 12 of 38.
pub fn training_events(pid: u32) -> Vec<Logged> {
    let start = NOW - 95.0;
    let mut events = vec![
        Logged {
            time: start - 300.0,
            event: Event::Transition {
                from: Phase::AwaitingMasks,
                to: Phase::Training,
                round: 3,
                reason: "18 masks imported".into(),
            },
        },
        Logged {
            time: start,
            event: Event::JobStarted {
                job: Job::Train,
                pid,
                device: "CUDA:0".into(),
            },
        },
    ];
    for i in 0..(3 * 38 + 12) {
        let (epoch, batch) = (i / 38 + 1, i % 38 + 1);
        let t = start + 0.75 * i as f64;
        events.push(Logged {
            time: t,
            event: Event::Progress(ProgressReport {
                epoch: Some(epoch),
                epochs: Some(10),
                loss: Some(-0.2 - 0.5 * (1.0 - (-(i as f64) / 60.0).exp())),
                rate: Some(42.7),
                eta_seconds: Some(252.0),
                ..ProgressReport::stage(Job::Train, "U-Net training", batch as u64, 38)
            }),
        });
        if batch == 38 {
            events.push(Logged {
                time: t,
                event: Event::Checkpoint {
                    job: Job::Train,
                    epoch,
                    epochs: 10,
                    loss: -0.4,
                },
            });
        }
    }
    events
}

pub fn holder(pid: u32) -> Holder {
    Holder {
        pid,
        job: Job::Train,
        device: "CUDA:0".into(),
        started: NOW - 95.0,
    }
}

/// An app in `phase` with `rounds` rounds behind it; `events` already
/// folded; the worker `pid` holding the lock if given.
pub fn app(
    phase: Phase,
    rounds: usize,
    pool_size: usize,
    events: &[Logged],
    worker: Option<u32>,
) -> App {
    let (info, map) = pool(pool_size, 3);
    let config = Config::preset(Preset::Brats2019);
    let snapshot = Snapshot {
        dir: PathBuf::from("/srv/al/brats-pilot"),
        config,
        state: Ok(state(phase, rounds, &map)),
        worker: worker.map(holder),
        pool: Some(info),
        latents: Some(map),
        simulation: None,
    };
    let mut app = App::new(snapshot, events, NOW);
    app.cwd = PathBuf::from("/srv/masks");
    app
}
