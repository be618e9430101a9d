//! The round engine end to end through the real binary and the detached
//! worker: two full rounds on tiny phantom data, crash recovery after
//! `kill -9`, and import rejections that leave the project untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use nextslice::journal::{Event, EventLog, Holder, Job, WorkerLock, running_worker};
use nextslice::progress::Silent;
use nextslice::project::actions::{check_import, confirm_import};
use nextslice::project::{Phase, Project, RoundState};

use super::common::{fixture, nextslice, p, run_fails};

fn run(args: &[&str]) -> Output {
    let out = nextslice().args(args).output().expect("run nextslice");
    assert!(
        out.status.success(),
        "nextslice {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn state(project: &Path) -> RoundState {
    RoundState::load(project).expect("state.json parses")
}

/// The ground-truth label volumes of the phantoms (the "expert").
fn ground_truth(data: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|case| {
            let id = case.file_name().unwrap().to_string_lossy().into_owned();
            case.join(format!("{id}_seg.nii.gz"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn two_full_rounds_through_the_cli() {
    let f = fixture(6, "");
    let project = &f.project;
    let s = state(project);
    assert_eq!(s.phase, Phase::NeedVae);
    assert_eq!(s.test_cases.len(), 2);
    let config = Project::open(project).unwrap().config;
    assert_eq!(config.vae.widths, [4, 8]);
    assert_eq!(
        config.dataset.root.as_deref(),
        Some(f.data.canonicalize().unwrap().as_path())
    );

    // The VAE, through the detached worker.
    let out = run(&["train-vae", "--wait", "-p", p(project)]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("VAE trained"), "{said}");
    // No store, no pool size yet: the forecast says so rather than guess.
    assert!(said.contains("the slice store is built first"), "{said}");
    // The VAE measured on the test slices it never saw.
    assert!(
        state(project)
            .vae_quality
            .is_some_and(|q| q.slices > 0 && q.mse_per_pixel > 0.0)
    );
    // Progress into a pipe: plain lines, no carriage returns or escapes.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("train-vae: started"), "{progress}");
    assert!(
        !progress.contains('\r') && !progress.contains('\x1b'),
        "{progress:?}"
    );
    assert_eq!(state(project).phase, Phase::Seeding);
    assert!(project.join("models/vae.mpk").exists() && project.join("models/latents.bin").exists());
    assert!(
        running_worker(project).is_none(),
        "the worker exits and releases its lock"
    );

    // Round 0: random seed batch, export, import, train.
    run(&["suggest", "--wait", "-p", p(project)]);
    let s = state(project);
    assert_eq!((s.phase, s.round), (Phase::AwaitingMasks, 0));
    let seed = s.pending.len();
    assert!(seed >= 1);
    assert!(
        s.pending
            .iter()
            .all(|p| !s.test_cases.contains(&p.key.case)),
        "test cases are never suggested"
    );
    run(&["export", "-p", p(project)]);
    let export = project.join("rounds/000/export");
    let manifest = std::fs::read_to_string(export.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), seed + 1);
    let first = &s.pending[0].key;
    for suffix in ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"] {
        assert!(
            export
                .join(format!("{}_s{:03}_{suffix}", first.case, first.slice))
                .exists()
        );
    }
    assert!(
        export
            .join(format!("{}_s{:03}.png", first.case, first.slice))
            .exists()
    );
    let truth = ground_truth(&f.data);
    let mut import: Vec<&str> = vec!["import", "-p", p(project)];
    import.extend(truth.iter().map(String::as_str));
    run(&import);
    let s = state(project);
    assert_eq!(
        (s.phase, s.labelled.len(), s.pending.len()),
        (Phase::Training, seed, 0)
    );
    for l in &s.labelled {
        assert!(
            project.join(&l.mask).exists(),
            "accepted mask copied into the project"
        );
    }
    run(&["train", "--wait", "-p", p(project)]);
    let s = state(project);
    assert_eq!(s.phase, Phase::Suggesting);
    assert_eq!(s.history.len(), 1);
    assert_eq!(s.history[0].train_losses.len(), 2);

    // Round 1: gradient-guided suggestions, with their provenance logged.
    run(&["suggest", "--wait", "-p", p(project)]);
    let s = state(project);
    assert_eq!((s.phase, s.round), (Phase::AwaitingMasks, 1));
    assert!(
        s.pending
            .iter()
            .all(|p| p.source.is_some() && p.detail.angle_deg.is_some() && p.detail.step.is_some())
    );
    let labelled: Vec<_> = s.labelled.iter().map(|l| &l.key).collect();
    assert!(
        s.pending.iter().all(|p| !labelled.contains(&&p.key)),
        "nothing suggested twice"
    );
    let log: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.join("rounds/001/suggestions.json")).unwrap(),
    )
    .unwrap();
    assert!(log[0]["detail"]["distance"].as_f64().is_some());
    // The U-Net's view of each suggested slice, for the TUI's overlay.
    for pending in &s.pending {
        let map = std::fs::read(nextslice::masks::predicted_path(project, &pending.key)).unwrap();
        assert_eq!(map.len(), 32 * 32);
        assert!(map.iter().all(|&c| c < 4), "class indices");
    }
    run(&import);
    let out = run(&["train", "--wait", "-p", p(project)]);
    // Round 0's training measured the U-Net's rate on this machine.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("train: projected"), "{said}");
    assert!(said.contains("measured here on CPU"), "{said}");
    let s = state(project);
    assert_eq!(s.phase, Phase::Suggesting);
    assert_eq!(s.history.len(), 2);
    assert!(s.history[1].labelled > s.history[0].labelled);
    // The demo preset holds 10 % of the labelled slices out of training,
    // drawn only from slices new in their round, and scores the U-Net on
    // them before it steers a suggestion.
    let expected = (0.1 * s.labelled.len() as f64).round() as usize;
    assert!(expected >= 1, "{} labelled", s.labelled.len());
    assert_eq!(s.validation.len(), expected, "{:?}", s.validation);
    assert!(
        s.validation
            .iter()
            .all(|k| s.labelled.iter().any(|l| &l.key == k))
    );
    let held = s.history[1].validation.as_ref().expect("held-out Dice");
    assert_eq!(held.slices, s.validation.len());
    assert_eq!(held.dice.len(), 3);
    assert!(held.dice.iter().all(|(_, d)| (0.0..=1.0).contains(d)));
    assert!(said.contains("held-out slice"), "{said}");
    let status = String::from_utf8_lossy(&run(&["status", "-p", p(project)]).stdout).into_owned();
    assert!(status.contains("held out Dice"), "{status}");

    // Evaluation on the held-out cases.
    let out = run(&["evaluate", "--wait", "-p", p(project)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WT") && text.contains("TC") && text.contains("ET"),
        "{text}"
    );
    let s = state(project);
    let dice = &s.history[1].dice;
    assert_eq!(dice.len(), 3);
    assert!(dice.iter().all(|(_, d)| (0.0..=1.0).contains(d)));
    let hd95 = &s.history[1].hd95;
    assert_eq!(hd95.len(), 3);
    assert!(
        hd95.iter().all(|(_, d)| d.is_finite() && *d >= 0.0),
        "{hd95:?}"
    );
    assert!(text.contains("HD95 mm"), "{text}");
    let csv = std::fs::read_to_string(project.join("rounds/001/evaluation.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("case,region,dice,hd95_mm"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        3 * s.test_cases.len(),
        "a row per test volume and region"
    );
    assert!(
        rows.iter()
            .all(|r| s.test_cases.iter().any(|c| r.starts_with(c.as_str())))
    );

    let status = String::from_utf8_lossy(&run(&["status", "-p", p(project)]).stdout).into_owned();
    assert!(
        status.contains("round    1") && status.contains("Dice WT"),
        "{status}"
    );
    let events = EventLog::new(project).read_all().unwrap();
    let transitions = events
        .iter()
        .filter(|e| matches!(e.event, Event::Transition { .. }))
        .count();
    assert_eq!(transitions, 7, "every state change is logged");

    // Evaluating after the next suggestion scores the same (last trained)
    // U-Net and records it on its round, not on the new, untrained one.
    run(&["suggest", "--wait", "-p", p(project)]);
    let mut s = state(project);
    s.history[1].dice.clear();
    s.save(project).unwrap();
    run(&["evaluate", "--wait", "-p", p(project)]);
    let s = state(project);
    assert_eq!(s.round, 2);
    assert_eq!(s.history.len(), 2);
    assert_eq!(s.history[1].dice.len(), 3, "recorded on the trained round");
    for ((name, again), (_, first)) in s.history[1].dice.iter().zip(dice) {
        assert!((again - first).abs() < 1e-3, "{name}: {again} vs {first}");
    }
    // The project is still consistent for a third reader.
    assert!(Project::open(project).is_ok());
}

/// Polls until `pred` holds, failing after `secs`.
fn wait_for(secs: u64, what: &str, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn checkpoints(project: &Path, job: &str) -> usize {
    EventLog::new(project)
        .read_all()
        .unwrap()
        .iter()
        .filter(|e| matches!(&e.event, Event::Checkpoint { job: j, .. } if j.name() == job))
        .count()
}

/// Starts `job` detached, waits for its first checkpoint, kills the worker
/// with SIGKILL, checks nothing is half-written, and runs it again: the new
/// run must resume after the checkpointed epoch.
fn kill_and_resume(project: &Path, job: &str) {
    run(&[job, "-p", p(project)]);
    wait_for(120, "a checkpoint", || checkpoints(project, job) >= 1);
    let holder = running_worker(project).expect("the worker is running");
    // SAFETY: sending a signal to a child process we started.
    let killed = unsafe { libc::kill(holder.pid as i32, libc::SIGKILL) };
    assert_eq!(killed, 0);
    wait_for(30, "the lock to be released", || {
        running_worker(project).is_none()
    });
    let before = state(project); // parses: nothing half-written
    let found: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.join(format!(
            "checkpoints/{}/checkpoint.json",
            if job == "train-vae" {
                "vae".to_string()
            } else {
                format!("unet-round-{:03}", before.round)
            }
        )))
        .unwrap(),
    )
    .unwrap();
    let saved_epochs = found["epochs_completed"].as_u64().unwrap() as usize;
    assert!(saved_epochs >= 1);

    let log = EventLog::new(project);
    let (_, offset) = log.read_from(0).unwrap();
    run(&[job, "--wait", "-p", p(project)]);
    let (after, _) = log.read_from(offset).unwrap();
    assert!(
        after.iter().any(|e| matches!(&e.event, Event::JobFailed { error, .. } if error.contains("stopped without finishing"))),
        "the dead worker's job is reported"
    );
    let first_epoch = after
        .iter()
        .find_map(|e| match &e.event {
            Event::Progress(p) => p.epoch,
            _ => None,
        })
        .expect("training progress after the restart");
    assert_eq!(
        first_epoch,
        saved_epochs + 1,
        "resumed after the last checkpoint"
    );
}

#[test]
fn killed_training_resumes_from_the_last_epoch() {
    let f = fixture(4, "[vae]\nepochs = 6\n[unet]\nepochs_per_round = 6\n");
    let project = &f.project;
    kill_and_resume(project, "train-vae");
    assert_eq!(state(project).phase, Phase::Seeding);

    run(&["suggest", "--wait", "-p", p(project)]);
    let truth = ground_truth(&f.data);
    let mut import: Vec<&str> = vec!["import", "-p", p(project)];
    import.extend(truth.iter().map(String::as_str));
    run(&import);
    kill_and_resume(project, "train");
    assert_eq!(state(project).phase, Phase::Suggesting);
}

/// `nextslice status`, as text.
fn status(project: &Path) -> String {
    String::from_utf8_lossy(&run(&["status", "-p", p(project)]).stdout).into_owned()
}

#[test]
fn a_crashed_job_is_a_failed_job_and_a_killed_one_is_reported_by_status() {
    let f = fixture(4, "");
    let project = &f.project;
    let with_failpoint = |point: &str| {
        nextslice()
            .args(["train-vae", "--foreground", "-p", p(project)])
            .env("NEXTSLICE_FAILPOINT", point)
            .output()
            .unwrap()
    };

    // A panic in a model pass, as a burn or CUDA error would raise.
    let out = with_failpoint("pass-batch:panic");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the job crashed: failpoint `pass-batch`"),
        "{stderr}"
    );
    assert!(stderr.contains("run the step again"), "{stderr}");
    let events = EventLog::new(project).read_all().unwrap();
    assert!(
        matches!(&events.last().unwrap().event, Event::JobFailed { error, .. } if error.contains("crashed")),
        "the crash is logged as a failed job: {:?}",
        events.last()
    );
    assert!(running_worker(project).is_none(), "the lock was released");
    let text = status(project);
    assert!(
        text.contains("train-vae: FAILED — the job crashed"),
        "{text}"
    );

    // A GPU out of memory: cubecl's device thread panics first, the job's
    // thread then fails on a consequence. The cause and its remedy win.
    let out = with_failpoint("pass-batch:device-panic");
    assert!(!out.status.success());
    let events = EventLog::new(project).read_all().unwrap();
    assert!(
        matches!(&events.last().unwrap().event, Event::JobFailed { error, .. }
            if error.starts_with("the job crashed: can't allocate buffer of size: 4294967296 (4.3 GB), in thread failpoint-device")
                && error.contains("lower unet.batch_size")
                && error.contains("own error followed: failpoint `pass-batch`")),
        "{:?}",
        events.last()
    );
    assert!(status(project).contains("lower unet.batch_size"));

    // Killed outright (abort, like kill -9): only status can tell.
    let out = with_failpoint("pass-batch");
    assert!(!out.status.success());
    let text = status(project);
    assert!(
        text.contains("train-vae stopped without finishing (killed or crashed)"),
        "{text}"
    );

    // Run again, it finishes (the VAE's epochs resume from the checkpoint).
    run(&["train-vae", "--foreground", "-p", p(project)]);
    assert_eq!(state(project).phase, Phase::Seeding);
    assert!(status(project).contains("last: train-vae: finished"));
}

#[test]
fn a_cancelled_job_that_never_reaches_its_next_batch_is_ended_by_the_worker() {
    let f = fixture(
        4,
        "[notify]\ncommand = 'echo \"$NEXTSLICE_JOB $NEXTSLICE_STATUS\" >> notified.txt'\n",
    );
    let project = &f.project;
    // The VAE trains, then its quality pass stops inside its first batch,
    // as a job does while a GPU kernel is tuned for minutes.
    let out = nextslice()
        .args(["train-vae", "-p", p(project)])
        .env("NEXTSLICE_FAILPOINT", "pass-batch:hang")
        .env("NEXTSLICE_CANCEL_GRACE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let hanging = || {
        std::fs::read_to_string(project.join("worker.log"))
            .is_ok_and(|log| log.contains("failpoint `pass-batch`: hanging"))
    };
    wait_for(120, "the VAE's quality pass to hang", hanging);
    let worker = running_worker(project).expect("the worker is running");
    let text = status(project);
    assert!(text.contains("job      train-vae running for "), "{text}");
    let asked = Instant::now();
    run(&["cancel", "-p", p(project)]);
    wait_for(20, "the worker to end the job", || {
        running_worker(project).is_none()
    });
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "ended before the grace was over: {waited:?}"
    );
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = || unsafe { libc::kill(worker.pid as i32, 0) } == 0;
    wait_for(10, "the worker process to exit", || !alive());
    let events = EventLog::new(project).read_all().unwrap();
    assert!(
        matches!(&events.last().unwrap().event, Event::JobCancelled { .. }),
        "{:?}",
        events.last()
    );
    assert!(!project.join("cancel").exists(), "the request is cleared");
    // The notify command was started, not waited for.
    let heard = || std::fs::read_to_string(project.join("notified.txt")).unwrap_or_default();
    wait_for(10, "the notify command", || heard().ends_with('\n'));
    assert_eq!(heard().trim(), "train-vae cancelled");
    assert!(
        status(project).contains("train-vae: cancelled"),
        "{}",
        status(project)
    );

    // Nothing was half-written: the next run finishes the step.
    run(&["train-vae", "--wait", "-p", p(project)]);
    assert_eq!(state(project).phase, Phase::Seeding);
}

#[test]
fn an_import_writes_only_while_it_holds_the_project_lock() {
    let f = fixture(4, "");
    let project = &f.project;
    run(&["train-vae", "--wait", "-p", p(project)]);
    run(&["suggest", "--wait", "-p", p(project)]);
    let opened = Project::open(project).unwrap();
    let masks: Vec<PathBuf> = ground_truth(&f.data).iter().map(PathBuf::from).collect();
    let plan = check_import(&opened, &masks, &Silent).unwrap();
    assert!(!plan.accepted.is_empty());
    // Everything but the lock file, which the running job writes itself.
    let files = || {
        let mut all = snapshot(project);
        all.remove(Path::new("worker.lock"));
        all
    };
    let before = files();

    // A job starts between the check and the confirmation.
    let running = Holder {
        pid: 4242,
        job: Job::Train,
        device: "CPU".into(),
        started: 1.0,
    };
    let lock = WorkerLock::acquire(project, &running).unwrap();
    let refused = confirm_import(&opened, &plan)
        .err()
        .expect("refused while a job runs");
    assert!(
        refused
            .to_string()
            .contains("pid 4242) is already running job `train`"),
        "{refused}"
    );
    assert!(files() == before, "nothing was written");

    drop(lock);
    let done = confirm_import(&opened, &plan).unwrap();
    assert_eq!(done.remaining, 0);
    assert_eq!(state(project).phase, Phase::Training);
    assert!(
        running_worker(project).is_none(),
        "the import let the lock go"
    );
}

#[test]
fn the_notify_command_hears_how_each_job_ended() {
    let f = fixture(
        4,
        "[notify]\ncommand = 'echo \"$NEXTSLICE_JOB $NEXTSLICE_STATUS $NEXTSLICE_SECONDS\" >> notified.txt'\n",
    );
    let project = &f.project;
    run(&["train-vae", "--foreground", "-p", p(project)]);
    // Training before any masks: refused, and the refusal is an ending too.
    let out = nextslice()
        .args(["train", "--foreground", "-p", p(project)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let heard = std::fs::read_to_string(project.join("notified.txt")).unwrap();
    let lines: Vec<Vec<&str>> = heard.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 2, "{heard}");
    assert_eq!(lines[0][..2], ["train-vae", "finished"]);
    assert_eq!(lines[1][..2], ["train", "failed"]);
    assert!(lines.iter().all(|l| l[2].parse::<f64>().is_ok()), "{heard}");
}

#[test]
fn a_crash_during_import_loses_nothing() {
    let f = fixture(4, "");
    let project = &f.project;
    run(&["train-vae", "--foreground", "-p", p(project)]);
    run(&["suggest", "--foreground", "-p", p(project)]);
    let before = state(project);
    let truth = ground_truth(&f.data);
    let mut import: Vec<&str> = vec!["import", "-p", p(project)];
    import.extend(truth.iter().map(String::as_str));
    // Abort between copying the masks and committing the state.
    let out = nextslice()
        .args(&import)
        .env("NEXTSLICE_FAILPOINT", "import-before-commit")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        state(project),
        before,
        "the state is the last committed one"
    );
    // Importing again completes, and every accepted mask is on disk.
    run(&import);
    let after = state(project);
    assert_eq!(after.phase, Phase::Training);
    assert_eq!(after.labelled.len(), before.pending.len());
    for l in &after.labelled {
        assert!(project.join(&l.mask).exists());
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    super::common::files_under(dir)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap()))
        .collect()
}

#[test]
fn rejected_imports_leave_the_project_byte_identical() {
    use nextslice::volume::{NiftiWriter, read_labels};

    let f = fixture(4, "");
    let project = &f.project;
    run(&["train-vae", "--foreground", "-p", p(project)]);
    run(&["suggest", "--foreground", "-p", p(project)]);
    run(&["export", "-p", p(project)]);
    let s = state(project);
    let key = s.pending[0].key.clone();
    let export = project.join("rounds/000/export");
    let slice_image = export.join(format!("{}_s{:03}_t1.nii.gz", key.case, key.slice));
    let good = read_labels(&slice_image).ok(); // t1 intensities are not labels; used for its grid
    let grid = nextslice::volume::read_header(&slice_image).unwrap();
    let bad_dir = tempfile::tempdir().unwrap();
    let mask_name = format!("{}_s{:03}_mask.nii.gz", key.case, key.slice);
    let write = |name: &str, dims: [usize; 4], affine: nextslice::volume::Affine, values: &[u8]| {
        let path = bad_dir.path().join(name);
        let sub = path.parent().unwrap();
        std::fs::create_dir_all(sub).unwrap();
        NiftiWriter::new(dims, affine).write(&path, values).unwrap();
        path
    };
    let n = grid.dims.iter().product::<usize>();
    let zeros = vec![0u8; n];
    let mut with_three = zeros.clone();
    with_three[n / 2] = 3;
    let other_pending_or_unknown = format!("{}_s{:03}_mask.nii.gz", key.case, 999);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write(
                &format!("shape/{mask_name}"),
                [grid.dims[0] + 1, grid.dims[1], 1, 1],
                grid.affine,
                &vec![0u8; n + grid.dims[1]],
            ),
            "voxels",
        ),
        (
            write(
                &format!("geometry/{mask_name}"),
                grid.dims,
                grid.affine.translated_voxels([3.0, 0.0, 0.0]),
                &zeros,
            ),
            "grid",
        ),
        (
            write(
                &format!("values/{mask_name}"),
                grid.dims,
                grid.affine,
                &with_three,
            ),
            "BraTS 2021",
        ),
        (
            write(
                &format!("unknown/{other_pending_or_unknown}"),
                grid.dims,
                grid.affine,
                &zeros,
            ),
            "not among the suggested",
        ),
        (
            {
                let d = bad_dir.path().join("notes");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("readme.txt"), b"hello").unwrap();
                d.join("readme.txt")
            },
            "not a mask file",
        ),
        (
            {
                let d = bad_dir.path().join("corrupt");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(&mask_name), b"\x1f\x8bnot really gzip").unwrap();
                d.join(&mask_name)
            },
            "gzip",
        ),
        (
            {
                let d = bad_dir.path().join("stranger");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("somebody_else.nii.gz"), b"x").unwrap();
                d.join("somebody_else.nii.gz")
            },
            "cannot tell which slice",
        ),
    ];
    let _ = good;
    let before = snapshot(project);
    for (path, needle) in &cases {
        let text = run_fails(&["import", "-p", p(project), p(path)]);
        assert!(
            text.contains(needle),
            "{}: expected `{needle}` in:\n{text}",
            path.display()
        );
        assert!(
            text.contains("nothing was imported") || text.contains("no valid mask"),
            "{text}"
        );
        assert_eq!(
            snapshot(project),
            before,
            "import of {} changed the project",
            path.display()
        );
    }
    // The same slice twice (a slice mask and its case's full volume).
    let dup = write(&format!("dup/{mask_name}"), grid.dims, grid.affine, &zeros);
    let volume = f
        .data
        .join(&key.case)
        .join(format!("{}_seg.nii.gz", key.case));
    let text = run_fails(&["import", "-p", p(project), p(&dup), p(&volume)]);
    assert!(text.contains("more than once"), "{text}");
    assert_eq!(snapshot(project), before);

    // With --partial the valid masks go in; the rest stay awaited.
    let out = run(&[
        "import",
        "--partial",
        "-p",
        p(project),
        p(&cases[2].0),
        p(&volume),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REJECTED") && text.contains("imported"),
        "{text}"
    );
    let after = state(project);
    assert!(after.labelled.iter().any(|l| l.key == key));
    if s.pending.iter().any(|p| p.key.case != key.case) {
        assert_eq!(after.phase, Phase::AwaitingMasks);
        assert!(text.contains("still awaited"), "{text}");
    }
}

/// A baseline strategy through the whole engine: seed, import, train, then
/// its own suggestion of distinct, unlabelled, non-test slices.
fn baseline_suggests_through_the_engine(strategy: &str) {
    let f = fixture(4, &format!("[sampling]\nstrategy = \"{strategy}\"\n"));
    let project = &f.project;
    run(&["train-vae", "--wait", "-p", p(project)]);
    run(&["suggest", "--wait", "-p", p(project)]);
    let truth = ground_truth(&f.data);
    let mut import: Vec<&str> = vec!["import", "-p", p(project)];
    import.extend(truth.iter().map(String::as_str));
    run(&import);
    run(&["train", "--wait", "-p", p(project)]);
    let out = run(&["suggest", "--wait", "-p", p(project)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("by {strategy} sampling")), "{text}");
    let s = state(project);
    assert_eq!((s.phase, s.round), (Phase::AwaitingMasks, 1));
    assert!(!s.pending.is_empty());
    let labelled: Vec<_> = s.labelled.iter().map(|l| &l.key).collect();
    let mut keys: Vec<_> = s.pending.iter().map(|p| &p.key).collect();
    assert!(
        keys.iter()
            .all(|k| !labelled.contains(k) && !s.test_cases.contains(&k.case)),
        "{strategy}: unlabelled, non-test slices only"
    );
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), s.pending.len(), "{strategy}: distinct");
    if strategy == "learning-loss" {
        let head = s.loss_head.as_ref().expect("a loss head was trained");
        assert!(project.join(head).exists());
    }
    if strategy == "dal" {
        // A bootstrap ensemble of four, each on its own resample: four
        // different sets of weights, and the test set scored by their mean.
        assert_eq!(s.ensemble.len(), 4);
        let weights: std::collections::BTreeSet<Vec<u8>> = s
            .ensemble
            .iter()
            .map(|m| std::fs::read(project.join(m)).unwrap())
            .collect();
        assert_eq!(weights.len(), 4, "members differ");
        let out = run(&["evaluate", "--wait", "-p", p(project)]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("test-set Dice"));
    }
}

#[test]
fn baselines_suggest_through_the_engine() {
    for strategy in [
        "learning-loss",
        "dal",
        "clsmc",
        "least-confidence",
        "margin",
        "entropy",
        "oracle",
    ] {
        baseline_suggests_through_the_engine(strategy);
    }
}
