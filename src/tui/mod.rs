//! The terminal UI: `nextslice` in a project, or `nextslice tui DIR`.
//!
//! One UI thread owns the app and the terminal; everything slow happens on
//! other threads that send `Update`s over one channel: keys, a once-a-second
//! tick, the file watcher (worker lock, event log, state, store, latents),
//! short actions (export, import checks), and slice pictures. The screen is
//! redrawn only after an update that changed something. Long jobs are never
//! run here: they go to the detached worker, so closing the TUI (or losing
//! SSH) stops nothing, and re-opening it picks the job up from the log.
//!
//! The runtime: the only module that does I/O on the app's behalf. Imports
//! every TUI module, the worker (to start jobs), the project's actions,
//! simulate's results and the journal; never the engine or burn. None of
//! the TUI's modules imports this one.

pub mod app;
pub mod complete;
pub mod images;
pub mod jobs;
pub mod keys;
pub mod snapshot;
pub mod views;
pub mod watch;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui_image::picker::Picker;

use crate::journal::{Cursor, EventLog, Job, now};
use crate::progress::Silent;
use crate::project::Project;
use crate::project::actions::{check_import, confirm_import, export_pending, request_cancel};
use crate::worker::spawn;
use app::{App, Command, Modal, Outcome, Update};
use snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    #[error(transparent)]
    Events(#[from] crate::journal::EventLogError),
    #[error(
        "the TUI needs a terminal; in scripts use the subcommands (`nextslice status`, `train`, …)"
    )]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Opens the TUI on the project in `dir` until the operator quits.
pub fn run(dir: &Path) -> Result<(), TuiError> {
    run_with_import_prefill(dir, None)
}

/// As `run`, with the import prompt starting at `prefill`.
pub fn run_with_import_prefill(dir: &Path, prefill: Option<String>) -> Result<(), TuiError> {
    let project = Project::open(dir)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    let (events, cursor) = EventLog::new(dir).follow(Cursor::default())?;
    let mut app = App::new(Snapshot::load(&project), &events, now());
    app.import_prefill = prefill;

    // `init` also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    let result = run_loop(&mut terminal, &mut app, dir, cursor);
    ratatui::restore();
    result
}

/// Half-blocks unless the terminal answers for a graphics protocol.
fn picker() -> Picker {
    let images = std::env::var("NEXTSLICE_IMAGES").ok();
    if query_terminal(images.as_deref(), std::env::var_os("TMUX").is_some()) {
        Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks())
    } else {
        Picker::halfblocks()
    }
}

/// Whether to ask the terminal for its graphics protocol.
/// `NEXTSLICE_IMAGES=halfblocks` never asks, `=query` always does. Inside
/// tmux it does not by default: tmux drops the query unless
/// `allow-passthrough` is on, ratatui-image gives up after its timeout
/// (half-blocks, as without the query) but leaves its reader thread blocked
/// on stdin, and that thread swallowed the operator's first keystroke.
fn query_terminal(images: Option<&str>, in_tmux: bool) -> bool {
    match images {
        Some("halfblocks") => false,
        Some("query") => true,
        _ => !in_tmux,
    }
}

fn run_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    dir: &Path,
    cursor: Cursor,
) -> Result<(), TuiError> {
    let picker = picker();
    let (tx, rx) = mpsc::channel::<Update>();
    let stop = Arc::new(AtomicBool::new(false));
    spawn_input(tx.clone(), stop.clone());
    spawn_ticks(tx.clone(), stop.clone());
    watch::spawn(dir.to_path_buf(), cursor, tx.clone(), stop.clone());
    let (image_tx, image_rx) = mpsc::channel();
    images::spawn(dir.to_path_buf(), picker, image_rx, tx.clone());

    let mut dirty = true;
    let result = loop {
        if dirty {
            terminal.draw(|f| views::render(f, app))?;
            dirty = false;
            // Drawing told the app how big the picture is.
            for command in app.update(Update::Drawn) {
                execute(command, app, dir, &tx, &image_tx);
            }
        }
        let Ok(first) = rx.recv() else {
            break Ok(());
        };
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for update in batch {
            dirty |= changes_screen(&update, app);
            for command in app.update(update) {
                execute(command, app, dir, &tx, &image_tx);
            }
        }
        if app.quit {
            break Ok(());
        }
    };
    stop.store(true, Ordering::Relaxed);
    result
}

/// Ticks only move clocks: redraw for them only while a clock is shown
/// moving (a running job) or a notice may expire.
fn changes_screen(update: &Update, app: &App) -> bool {
    match update {
        Update::Tick(_) => {
            app.worker_running() || app.notice.is_some() || app.short_action.is_some()
        }
        _ => true,
    }
}

fn spawn_input(tx: Sender<Update>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            // Poll, not a blocking read: the thread must end with the TUI
            // (a leftover reader would swallow the shell's next keystroke).
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let update = match event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Update::Key(k),
                Ok(TermEvent::Resize(..)) => Update::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(update).is_err() {
                return;
            }
        }
    });
}

fn spawn_ticks(tx: Sender<Update>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            if tx.send(Update::Tick(now())).is_err() {
                return;
            }
        }
    });
}

/// Runs a command off the UI thread; its outcome comes back as an update.
fn execute(
    command: Command,
    app: &App,
    dir: &Path,
    tx: &Sender<Update>,
    images: &Sender<app::ImageRequest>,
) {
    if let Command::Image(request) = command {
        let _ = images.send(request);
        return;
    }
    let plan = match (&command, &app.modal) {
        (Command::ConfirmImport, Some(Modal::Import(d))) => d.plan.clone(),
        _ => None,
    };
    let dir: PathBuf = dir.to_path_buf();
    let tx = tx.clone();
    std::thread::spawn(move || {
        let outcome = match perform(command, &dir, plan) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e),
        };
        let _ = tx.send(Update::Done(outcome));
    });
}

fn perform(
    command: Command,
    dir: &Path,
    plan: Option<Arc<crate::masks::ImportPlan>>,
) -> Result<Outcome, String> {
    let project = Project::open(dir).map_err(|e| e.to_string())?;
    let text = |e: crate::project::actions::ActionError| e.to_string();
    match command {
        Command::Start(job) => start(&project, job),
        Command::Export => {
            let done = export_pending(&project, &Silent).map_err(text)?;
            Ok(Outcome::Exported {
                dir: done.dir,
                slices: done.slices,
            })
        }
        Command::CheckImport(paths) => {
            let paths = expand_globs(paths)?;
            let plan = check_import(&project, &paths, &Silent).map_err(text)?;
            Ok(Outcome::Checked(Arc::new(plan)))
        }
        Command::ConfirmImport => {
            let plan = plan.ok_or("nothing checked to import")?;
            let done = confirm_import(&project, &plan).map_err(text)?;
            Ok(Outcome::Imported {
                accepted: done.accepted,
                remaining: done.remaining,
            })
        }
        Command::Cancel => {
            let holder = request_cancel(dir).map_err(text)?;
            Ok(Outcome::CancelRequested(holder.map(|h| h.job.to_string())))
        }
        Command::Image(_) => Err("pictures are made by the image thread".into()),
    }
}

/// The prompt is not a shell: expand `*` and `?` patterns ourselves, so
/// `data/*/*_seg.nii.gz` works as it does on the command line.
fn expand_globs(paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        let text = p.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            out.push(p);
            continue;
        }
        let matches: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| format!("bad pattern {text}: {e}"))?
            .filter_map(Result::ok)
            .collect();
        if matches.is_empty() {
            return Err(format!("nothing matches {text}"));
        }
        out.extend(matches);
    }
    Ok(out)
}

/// Starts the detached worker, and reaps it when it exits so no zombie
/// lingers while the TUI stays open.
fn start(project: &Project, job: Job) -> Result<Outcome, String> {
    let mut child =
        spawn(&project.dir, job, project.config.device.kind).map_err(|e| e.to_string())?;
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(Outcome::Started(job, pid))
}

#[cfg(test)]
mod tests {
    use super::query_terminal;

    #[test]
    fn the_terminal_is_asked_for_graphics_outside_tmux_or_when_told() {
        assert!(query_terminal(None, false));
        assert!(
            !query_terminal(None, true),
            "tmux drops the query by default"
        );
        assert!(query_terminal(Some("query"), true));
        assert!(!query_terminal(Some("halfblocks"), false));
    }
}
