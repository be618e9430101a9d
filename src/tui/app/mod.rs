//! The TUI's state and its update function: keys and file changes in,
//! commands out. No I/O here, so every screen can be driven by tests.
//! `types` holds the messages and view-state types, `input` carries out
//! keys (looked up in `keys`' table), `rows` the suggestions list.
//!
//! Imports the TUI's data modules (`keys`, `jobs`, `snapshot`,
//! `complete`) and the journal's and project's types, never the views or
//! the runtime.

mod input;
mod rows;
mod types;

pub use rows::SuggestionRow;
pub use types::{
    Action, Command, ImageRequest, ImportDialog, Metric, Modal, Notice, Outcome, Overlay, Picture,
    Tab, Update,
};

use std::path::PathBuf;

use crate::journal::Logged;
use crate::project::{Phase, RoundState};
use crate::tui::jobs::{JobTracker, Liveness, liveness};
use crate::tui::keys::{self, Context, Facts};
use crate::tui::snapshot::Snapshot;
use crate::worker::CANCEL_GRACE;

pub struct App {
    pub snapshot: Snapshot,
    pub jobs: JobTracker,
    pub tab: Tab,
    pub modal: Option<Modal>,
    /// Row selected in the suggestions list.
    pub selected: usize,
    pub modality: usize,
    pub overlay: Overlay,
    /// Latent dimensions on the map's x and y axes.
    pub axes: (usize, usize),
    pub metric: Metric,
    /// The history view shows the simulation's curves instead of this
    /// project's rounds.
    pub show_simulation: bool,
    /// Region of the simulation's curves shown.
    pub region: usize,
    pub notice: Option<Notice>,
    /// A short action (export, import check, …) is running in the TUI:
    /// its name. Jobs run in the worker instead: `worker_running`.
    pub short_action: Option<String>,
    pub picture: Picture,
    /// Seconds since the epoch, advanced by ticks (tests set it).
    pub now: f64,
    pub quit: bool,
    /// Cells the suggestions view gives the picture, set while drawing.
    pub picture_cells: std::cell::Cell<(u16, u16)>,
    /// Where the import prompt starts.
    pub cwd: PathBuf,
    /// What the import prompt starts with instead (the demo puts the
    /// phantom's ground truth there).
    pub import_prefill: Option<String>,
}

impl App {
    pub fn new(snapshot: Snapshot, events: &[Logged], now: f64) -> App {
        let mut jobs = JobTracker::default();
        for e in events {
            jobs.apply(e);
        }
        App {
            snapshot,
            jobs,
            tab: Tab::Round,
            modal: None,
            selected: 0,
            modality: 0,
            overlay: Overlay::Mask,
            axes: (0, 1),
            metric: Metric::Dice,
            show_simulation: false,
            region: 0,
            notice: None,
            short_action: None,
            picture: Picture::default(),
            now,
            quit: false,
            picture_cells: std::cell::Cell::new((0, 0)),
            cwd: std::env::current_dir().unwrap_or_default(),
            import_prefill: None,
        }
    }

    pub fn state(&self) -> Option<&RoundState> {
        self.snapshot.state.as_ref().ok()
    }

    /// The job the worker is running now, if any.
    pub fn running_job(&self) -> Option<&super::jobs::JobRun> {
        self.jobs.active(self.snapshot.worker.as_ref())
    }

    /// Whether a worker holds the project (even before its first event).
    pub fn worker_running(&self) -> bool {
        self.snapshot.worker.is_some()
    }

    pub fn latest_liveness(&self) -> Option<Liveness> {
        self.jobs
            .latest()
            .map(|r| liveness(r, self.snapshot.worker.as_ref(), self.now))
    }

    /// What the key table's conditions look at.
    pub fn facts(&self) -> Facts {
        Facts {
            phase: self.state().map(|s| s.phase),
            trained: self.state().is_some_and(|s| s.unet.is_some()),
            worker_running: self.worker_running(),
            short_action: self.short_action.is_some(),
        }
    }

    /// The view's keys in the key table.
    fn key_context(&self) -> Context {
        match self.tab {
            Tab::History => Context::History,
            Tab::Latent => Context::Latent,
            Tab::Round | Tab::Suggestions => Context::Everywhere,
        }
    }

    /// The actions of the current phase, in the order shown.
    pub fn actions(&self) -> Vec<Action> {
        keys::actions(&self.facts())
            .into_iter()
            .map(|(binding, enabled)| Action { binding, enabled })
            .collect()
    }

    /// One line: where the round is and what to do next.
    pub fn headline(&self) -> String {
        let state = match &self.snapshot.state {
            Ok(s) => s,
            Err(e) => return format!("cannot read the project state: {e}"),
        };
        let round = format!("Round {}", state.round);
        if let Some(run) = self.running_job() {
            return format!(
                "{round} · {} running · watch it here, or close the TUI: the job goes on [{} cancels]",
                run.job,
                keys::CANCEL.key()
            );
        }
        match &self.snapshot.worker {
            Some(holder) if holder.job == crate::journal::Job::Import => {
                return format!("{round} · masks are being imported…");
            }
            Some(_) => return format!("{round} · a job is starting…"),
            None => {}
        }
        match state.phase {
            Phase::NeedVae => format!(
                "{round} · first, learn the data manifold: {}",
                keys::TRAIN_VAE.offer()
            ),
            Phase::Seeding => format!("{round} · VAE ready · {}", keys::SEED.offer()),
            Phase::AwaitingMasks => format!(
                "{round} · {} slices suggested · export them {}, then {}",
                state.pending.len(),
                keys::EXPORT.hint(),
                keys::IMPORT.offer()
            ),
            Phase::Training => format!(
                "{round} · {} slices labelled · {}",
                state.labelled.len(),
                keys::TRAIN_UNET.offer()
            ),
            Phase::Suggesting => format!(
                "{round} · U-Net trained · {} or evaluate {}",
                keys::SUGGEST.offer(),
                keys::EVALUATE.hint()
            ),
            Phase::Done => format!(
                "{round} · all rounds done · evaluate {}",
                keys::EVALUATE.hint()
            ),
        }
    }

    pub fn modalities(&self) -> Vec<String> {
        match &self.snapshot.pool {
            Some(p) => p.modalities.clone(),
            None => self.snapshot.config.dataset.modalities.clone(),
        }
    }

    fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
            until: self.now + if error { 30.0 } else { 8.0 },
        });
    }

    /// Applies one update; returns the commands it asks for.
    pub fn update(&mut self, update: Update) -> Vec<Command> {
        let mut commands = match update {
            Update::Key(key) => self.on_key(key),
            // The picture request below is the point of `Drawn`.
            Update::Resize | Update::Drawn => Vec::new(),
            Update::State(state) => {
                self.snapshot.state = *state;
                let rows = self.suggestion_rows().len();
                self.selected = self.selected.min(rows.saturating_sub(1));
                Vec::new()
            }
            Update::Worker(w) => {
                self.snapshot.worker = w;
                Vec::new()
            }
            Update::Events(events) => {
                for e in &events {
                    self.jobs.apply(e);
                    self.now = self.now.max(e.time);
                }
                Vec::new()
            }
            Update::Pool(pool, latents) => {
                self.snapshot.pool = pool;
                self.snapshot.latents = latents;
                Vec::new()
            }
            Update::Simulation(rows) => {
                self.snapshot.simulation = rows;
                Vec::new()
            }
            Update::Done(outcome) => {
                self.short_action = None;
                self.on_outcome(outcome);
                Vec::new()
            }
            Update::Image(request, result) => {
                if self.picture.wanted.as_ref() == Some(&request) {
                    match result {
                        Ok(p) => {
                            self.picture.shown = Some((request, p));
                            self.picture.error = None;
                        }
                        Err(e) => {
                            self.picture.shown = None;
                            self.picture.error = Some(e);
                        }
                    }
                }
                Vec::new()
            }
            Update::Tick(now) => {
                self.now = now;
                if self.notice.as_ref().is_some_and(|n| n.until < now) {
                    self.notice = None;
                }
                Vec::new()
            }
        };
        commands.extend(self.picture_request());
        commands
    }

    /// Asks for the selected slice's picture when the suggestions view shows
    /// a different one (or at a different size) than wanted.
    fn picture_request(&mut self) -> Option<Command> {
        if self.tab != Tab::Suggestions || self.modal.is_some() {
            return None;
        }
        let cells = self.picture_cells.get();
        if cells.0 < 4 || cells.1 < 2 {
            return None;
        }
        let rows = self.suggestion_rows();
        let row = rows.get(self.selected)?;
        let request = ImageRequest {
            key: row.key.clone(),
            modality: self.modality,
            overlay: self.overlay,
            cells,
        };
        if self.picture.wanted.as_ref() == Some(&request) {
            return None;
        }
        self.picture.wanted = Some(request.clone());
        Some(Command::Image(request))
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Started(job, pid) => self.notify(
                format!(
                    "{} started in a detached worker (pid {pid}); it goes on if you close this",
                    job.name()
                ),
                false,
            ),
            Outcome::Exported { dir, slices } => self.notify(
                format!(
                    "exported {slices} slices to {} — send it to the annotators, then import {}",
                    dir.display(),
                    keys::IMPORT.hint()
                ),
                false,
            ),
            Outcome::Checked(plan) => {
                if let Some(Modal::Import(d)) = &mut self.modal {
                    d.checking = false;
                    d.plan = Some(plan);
                }
            }
            Outcome::Imported {
                accepted,
                remaining,
            } => {
                self.modal = None;
                let next = if remaining == 0 {
                    format!("all masks in · {}", keys::TRAIN_UNET.offer())
                } else {
                    format!("{remaining} still awaited")
                };
                self.notify(format!("imported {accepted} masks · {next}"), false);
            }
            Outcome::CancelRequested(Some(job)) => self.notify(
                format!(
                    "cancel requested: {job} stops after its current batch (at most {} s)",
                    CANCEL_GRACE.as_secs()
                ),
                false,
            ),
            Outcome::CancelRequested(None) => self.notify("no job is running", false),
            Outcome::Failed(e) => {
                if let Some(Modal::Import(d)) = &mut self.modal {
                    d.checking = false;
                }
                self.notify(e, true);
            }
        }
    }
}
