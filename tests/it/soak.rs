//! Crash soak (not run by CI; minutes long): `kill -9` at random moments
//! across train-vae, suggest, import, train, evaluate and simulate, each
//! followed by a resume, counting what a crash could cost — masks lost,
//! files left unreadable, epochs trained again.
//!
//! `cargo test --release --test it soak -- --ignored --nocapture`
//! (`NEXTSLICE_SOAK_KILLS`, default 24; `NEXTSLICE_SOAK_SEED`, default 1).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use nextslice::journal::{Event, EventLog, running_worker};
use nextslice::project::{Phase, Project, RoundState};
use nextslice::rng::Rng;

use super::common::{fixture, nextslice, p, run_ok};

/// What the soak found.
#[derive(Default, Debug)]
struct Tally {
    kills: BTreeMap<&'static str, usize>,
    lost_masks: usize,
    unreadable: Vec<String>,
    /// Most whole epochs trained twice after one kill.
    worst_epoch_loss: usize,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wait_until(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file a crash could have left half-written is read back.
fn check_files(project: &Path, tally: &mut Tally) {
    match RoundState::load(project) {
        Ok(state) => {
            for l in &state.labelled {
                if !project.join(&l.mask).exists() {
                    tally.lost_masks += 1;
                }
            }
        }
        Err(e) => tally.unreadable.push(format!("state: {e}")),
    }
    if let Err(e) = EventLog::new(project).read_all() {
        tally.unreadable.push(format!("events: {e}"));
    }
    if let Err(e) = Project::open(project).and_then(|p| p.discover()) {
        tally.unreadable.push(format!("project: {e}"));
    }
    // Every complete store (a half-built one is a hidden `.build-*`).
    let root = Project::open(project).map(|p| p.store_root());
    if let Some(entries) = root.ok().and_then(|r| std::fs::read_dir(r).ok()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.')
                && let Err(err) = nextslice::store::SliceStore::open(&e.path())
            {
                tally.unreadable.push(format!("store {name}: {err}"));
            }
        }
    }
}

/// Starts `job` detached, kills its worker after `delay`; true if it was
/// still running when killed.
fn kill_worker(project: &Path, job: &str, delay: Duration) -> bool {
    run_ok(&[job, "-p", p(project)]);
    std::thread::sleep(delay);
    let Some(holder) = running_worker(project) else {
        return false; // finished first
    };
    // SAFETY: a signal to a worker this test started.
    unsafe { libc::kill(holder.pid as i32, libc::SIGKILL) };
    wait_until(30, "the lock", || running_worker(project).is_none());
    true
}

/// Kills an in-process command (import) after `delay`.
fn kill_command(mut child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    let running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    running
}

fn truth(data: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .map(|c| {
            let c = c.unwrap().path();
            let id = c.file_name().unwrap().to_string_lossy().into_owned();
            c.join(format!("{id}_seg.nii.gz"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

#[test]
#[ignore = "minutes long; run by hand (see the module doc)"]
fn crash_soak_loses_no_mask_no_file_and_at_most_one_epoch() {
    let kills = env_or("NEXTSLICE_SOAK_KILLS", 24) as usize;
    let mut rng = Rng::new(env_or("NEXTSLICE_SOAK_SEED", 1), 0x736f_616b);
    let f = fixture(
        6,
        "[vae]\nepochs = 12\n[unet]\nepochs_per_round = 12\n[sampling]\nrounds = 6\n\
         [simulate]\nstrategies = [\"gradient\", \"random\"]\nseeds = 1\nfull_reference = false\n",
    );
    let project = &f.project;
    let truth = truth(&f.data);
    let mut tally = Tally::default();
    let mut hit = 0;
    let mut rounds_done = 0;
    while hit < kills {
        let state = RoundState::load(project).expect("state parses");
        let delay = Duration::from_millis(100 + (rng.unit() * 2500.0) as u64);
        // Suggestions and evaluations of tiny networks take well under a second.
        let short = Duration::from_millis(20 + (rng.unit() * 300.0) as u64);
        let (job, killed) = match state.phase {
            Phase::AwaitingMasks => {
                let mut args = vec!["import".to_string(), "-p".into(), p(project).into()];
                args.extend(truth.iter().cloned());
                let child = nextslice().args(&args).spawn().unwrap();
                let quick = Duration::from_millis((rng.unit() * 400.0) as u64);
                ("import", kill_command(child, quick))
            }
            Phase::NeedVae => ("train-vae", kill_worker(project, "train-vae", delay)),
            Phase::Seeding | Phase::Suggesting | Phase::Done
                if state.phase == Phase::Done || (rounds_done >= 2 && hit % 3 == 0) =>
            {
                // Now and then an evaluation, and the simulation.
                if hit % 2 == 0 {
                    ("evaluate", kill_worker(project, "evaluate", short))
                } else {
                    ("simulate", kill_worker(project, "simulate", delay))
                }
            }
            Phase::Seeding | Phase::Suggesting => {
                ("suggest", kill_worker(project, "suggest", short))
            }
            Phase::Training => {
                let killed = kill_worker(project, "train", delay);
                // Killed after its commit (cleaning up, exiting): the
                // round is trained and there is nothing to resume.
                let committed = RoundState::load(project).unwrap().phase != Phase::Training;
                if killed && !committed {
                    // Resume now and measure the epochs trained twice: the
                    // resumed run must start right after the saved epoch.
                    let saved = saved_epochs(project, state.round);
                    let log = EventLog::new(project);
                    let (_, cursor) = log.follow(Default::default()).unwrap();
                    run_ok(&["train", "--wait", "-p", p(project)]);
                    let (after, _) = log.follow(cursor).unwrap();
                    let first = after.iter().find_map(|e| match &e.event {
                        Event::Progress(p) if p.stage == "U-Net training" => p.epoch,
                        _ => None,
                    });
                    if let Some(first) = first {
                        tally.worst_epoch_loss = tally
                            .worst_epoch_loss
                            .max((saved + 1).saturating_sub(first));
                    }
                    rounds_done += 1;
                }
                ("train", killed && !committed)
            }
            Phase::Done => unreachable!("handled above"),
        };
        if killed {
            hit += 1;
            *tally.kills.entry(job).or_default() += 1;
        }
        check_files(project, &mut tally);
        // Resume what was killed (train resumed above; simulate resumes as
        // planned, so let it run on to the end once in a while).
        match job {
            _ if !killed => {}
            // Run again what the project still waits for: a worker killed
            // after its commit, while exiting, left nothing to resume.
            "train-vae" | "suggest" | "evaluate" => {
                let phase = RoundState::load(project).unwrap().phase;
                let pending = match job {
                    "train-vae" => phase == Phase::NeedVae,
                    "suggest" => matches!(phase, Phase::Seeding | Phase::Suggesting),
                    _ => true,
                };
                if pending {
                    run_ok(&[job, "--wait", "-p", p(project)]);
                }
            }
            "import" if RoundState::load(project).unwrap().phase == Phase::AwaitingMasks => {
                let mut args = vec!["import", "-p", p(project)];
                args.extend(truth.iter().map(String::as_str));
                run_ok(&args);
            }
            "simulate" if hit % 2 == 0 => {
                run_ok(&["simulate", "--wait", "-p", p(project)]);
            }
            _ => {}
        }
        if job == "train" && !killed {
            rounds_done += 1;
        }
        check_files(project, &mut tally);
    }
    println!("crash soak: {tally:#?}");
    assert_eq!(tally.lost_masks, 0, "{tally:#?}");
    assert!(tally.unreadable.is_empty(), "{tally:#?}");
    assert!(tally.worst_epoch_loss <= 1, "{tally:#?}");
    assert!(hit >= kills.min(20), "only {hit} kills landed: {tally:#?}");
}

/// Epochs a killed U-Net training of `round` had checkpointed (0 when it
/// died before its first).
fn saved_epochs(project: &Path, round: usize) -> usize {
    let path = project.join(format!("checkpoints/unet-round-{round:03}/checkpoint.json"));
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["epochs_completed"].as_u64())
        .unwrap_or(0) as usize
}
