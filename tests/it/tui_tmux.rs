//! The real binary's TUI in a real terminal (tmux), driven by keys as an
//! operator would: start the VAE job and watch it, close the TUI mid-job
//! (the worker goes on), re-open it and find the job, seed, open the
//! suggestions, import the phantom's ground truth as the expert's masks.
//!
//! Needs `tmux` (`.ci/run` installs it). Without it the test says so and
//! passes, unless NEXTSLICE_REQUIRE_TMUX=1 (set in CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nextslice::journal::{Job, running_worker};
use nextslice::project::{Phase, RoundState};

use super::common::{TINY, tumour_phantoms};

/// The tiny test settings, with a VAE job long enough to close the TUI
/// while it runs.
const LONGER_VAE: &str = "[vae]\nepochs = 40\n";

/// A private tmux server, killed when the test ends (pass or fail).
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Each its own server: tests run in parallel threads of one process,
    /// and one test's `kill-server` must not end another's sessions.
    fn new() -> Tmux {
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Tmux {
            socket: format!("nextslice-test-{}-{n}", std::process::id()),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Opens the TUI on `project` in a 100×30 window named `session`.
    fn open(&self, session: &str, project: &Path) {
        self.open_with(session, project, "NEXTSLICE_IMAGES=halfblocks");
    }

    /// [`open`](Self::open) with `env` (`NAME=value`, or empty) in its
    /// environment; the window stays after the TUI exits, saying so.
    fn open_with(&self, session: &str, project: &Path, env: &str) {
        let command = format!(
            "{env} {} tui {}; echo TUI-EXITED $?; sleep 30",
            env!("CARGO_BIN_EXE_nextslice"),
            project.display()
        );
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ]);
        assert!(out.status.success(), "tmux: {out:?}");
    }

    fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", session]).stdout)
            .into_owned()
    }

    fn keys(&self, session: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", session];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn type_text(&self, session: &str, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", session, "-l", text])
                .status
                .success()
        );
    }

    /// Waits until the screen shows every one of `texts`.
    fn wait_for(&self, session: &str, texts: &[&str], timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(session);
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {texts:?}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("NEXTSLICE_REQUIRE_TMUX").is_none(),
            "NEXTSLICE_REQUIRE_TMUX is set but tmux is not installed"
        );
        eprintln!(
            "SKIPPED: tmux is not installed (apt-get install tmux) — the TUI end-to-end test did not run"
        );
    }
    found
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A demo-preset project under `dir` on `subjects` small phantoms (in
/// `dir/data`), with `configs` (TOML texts) laid over the preset.
fn project_on_phantoms(dir: &Path, subjects: usize, configs: &[&str]) -> PathBuf {
    let data = dir.join("data");
    tumour_phantoms(&data, subjects, 32, 5);
    let project = dir.join("project");
    let mut init = super::common::nextslice();
    init.args(["init", p(&project), "--data", p(&data), "--preset", "demo"]);
    for (i, text) in configs.iter().enumerate() {
        let file = dir.join(format!("config-{i}.toml"));
        std::fs::write(&file, text).expect("config");
        init.args(["--config", p(&file)]);
    }
    let out = init.output().expect("init");
    assert!(out.status.success(), "{out:?}");
    project
}

#[test]
fn a_round_through_the_tui_in_tmux_survives_closing_it_mid_job() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let project = project_on_phantoms(dir.path(), 4, &[TINY, LONGER_VAE]);

    let tmux = Tmux::new();
    let long = Duration::from_secs(120);
    tmux.open("first", &project);
    tmux.wait_for("first", &["train the VAE on all slices [v]"], long);
    tmux.keys("first", &["v"]);
    let screen = tmux.wait_for("first", &["train-vae running", "epoch"], long);
    assert!(screen.contains("device CPU"), "{screen}");

    // Close the TUI mid-job, as a dropped SSH session would.
    assert!(tmux.cmd(&["kill-session", "-t", "first"]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    let worker = running_worker(&project);
    assert!(
        worker.as_ref().is_some_and(|w| w.job == Job::TrainVae),
        "the job goes on without the TUI: {worker:?}"
    );

    // Re-opened, the TUI finds the job in the log and follows it to the end.
    tmux.open("second", &project);
    let screen = tmux.wait_for("second", &["job: train-vae"], long);
    assert!(
        screen.contains("train-vae running") || screen.contains("finished"),
        "{screen}"
    );
    tmux.wait_for(
        "second",
        &["VAE ready", "draw the random seed batch [s]"],
        long,
    );

    tmux.keys("second", &["s"]);
    tmux.wait_for("second", &["slices suggested", "export them [e]"], long);
    tmux.keys("second", &["2"]);
    let screen = tmux.wait_for("second", &["slices awaiting masks", "random"], long);
    let pending = RoundState::load(&project).expect("state").pending;
    assert!(!pending.is_empty());
    assert!(screen.contains(&pending[0].key.to_string()), "{screen}");

    tmux.keys("second", &["i"]);
    tmux.wait_for("second", &["import masks", "Tab: complete"], long);
    tmux.keys("second", &["C-u"]);
    tmux.type_text("second", &format!("{}/*/*_seg.nii.gz", data.display()));
    tmux.keys("second", &["Enter"]);
    tmux.wait_for("second", &["valid", "0 rejected", "y/Enter: import"], long);
    // Nothing is written before the confirm.
    assert_eq!(
        RoundState::load(&project).expect("state").phase,
        Phase::AwaitingMasks
    );
    tmux.keys("second", &["y"]);
    tmux.wait_for("second", &["train the U-Net [t]"], long);
    let state = RoundState::load(&project).expect("state");
    assert_eq!(state.phase, Phase::Training);
    assert!(state.pending.is_empty());

    tmux.keys("second", &["q"]);
    tmux.wait_for("second", &["TUI-EXITED 0"], Duration::from_secs(5));
}

#[test]
fn the_first_key_reaches_the_tui_with_the_terminal_left_as_tmux_sets_it() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let project = project_on_phantoms(dir.path(), 2, &[]);
    let tmux = Tmux::new();
    // No NEXTSLICE_IMAGES: the TUI decides about the graphics query itself.
    tmux.open_with("plain", &project, "");
    tmux.wait_for(
        "plain",
        &["train the VAE on all slices [v]"],
        Duration::from_secs(60),
    );
    // The graphics query's reader thread swallowed this key once.
    std::thread::sleep(Duration::from_millis(1500));
    tmux.keys("plain", &["q"]);
    tmux.wait_for("plain", &["TUI-EXITED 0"], Duration::from_secs(5));
}
