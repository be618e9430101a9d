//! The TUI's state and its update function: keys and file changes in,
//! commands out. No I/O here, so every screen can be driven by tests.
//!
//! Keys are looked up in `keys`' table; this file carries out what they
//! do. Imports the TUI's data modules (`keys`, `jobs`, `snapshot`,
//! `complete`) and the engine's types, never the views or the runtime.

use std::path::PathBuf;
use std::sync::Arc;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_image::protocol::Protocol;

use super::complete::complete_path;
use super::jobs::{JobTracker, Liveness, liveness};
use super::keys::{self, Axis, Binding, Context, Does, Facts};
use super::snapshot::{PoolInfo, Snapshot};
use crate::journal::{Holder, Job, Logged};
use crate::masks::ImportPlan;
use crate::project::{Phase, RoundState, SliceKey};

/// Something that happened, for `App::update`.
pub enum Update {
    Key(KeyEvent),
    /// The terminal changed size: only a redraw follows (which sends
    /// `Drawn`).
    Resize,
    /// A frame was drawn, so the layout's sizes the app keeps (the
    /// picture's cells) are current: the picture may be asked for anew.
    Drawn,
    State(Result<RoundState, String>),
    Worker(Option<Holder>),
    Events(Vec<Logged>),
    Pool(Option<Arc<PoolInfo>>, Option<Arc<crate::strategy::Latents>>),
    /// `simulate/results.csv` changed.
    Simulation(Option<Arc<Vec<crate::simulate::Row>>>),
    /// A short action (export, import check, …) finished.
    Done(Outcome),
    /// A slice picture is ready (or could not be made).
    Image(ImageRequest, Result<Protocol, String>),
    /// Once a second: clocks move (elapsed, notices expire).
    Tick(f64),
}

/// What the runtime should do; the app never does I/O itself.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Start(Job),
    Export,
    CheckImport(Vec<PathBuf>),
    ConfirmImport,
    Cancel,
    Image(ImageRequest),
}

/// The result of a short action.
pub enum Outcome {
    Started(Job, u32),
    Exported { dir: PathBuf, slices: usize },
    Checked(Arc<ImportPlan>),
    Imported { accepted: usize, remaining: usize },
    CancelRequested(Option<String>),
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Round,
    Suggestions,
    History,
    Latent,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Round, Tab::Suggestions, Tab::History, Tab::Latent];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Round => "Round",
            Tab::Suggestions => "Suggestions",
            Tab::History => "History",
            Tab::Latent => "Latent map",
        }
    }
}

/// The test metric the history view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Dice,
    /// 95th-percentile Hausdorff distance, mm.
    Hd95,
}

/// What is drawn over the selected slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overlay {
    /// The expert's imported mask, where there is one.
    Mask,
    /// The U-Net's prediction, saved when the slice was suggested.
    Prediction,
    /// The dataset's ground truth (phantoms, simulations).
    Truth,
    None,
}

impl Overlay {
    fn next(self) -> Overlay {
        match self {
            Overlay::Mask => Overlay::Prediction,
            Overlay::Prediction => Overlay::Truth,
            Overlay::Truth => Overlay::None,
            Overlay::None => Overlay::Mask,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Overlay::Mask => "expert mask",
            Overlay::Prediction => "U-Net prediction",
            Overlay::Truth => "ground truth",
            Overlay::None => "no overlay",
        }
    }
}

/// A picture of one slice at one size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRequest {
    pub key: SliceKey,
    pub modality: usize,
    pub overlay: Overlay,
    /// Cells available (columns, rows).
    pub cells: (u16, u16),
}

/// The import dialog: a path prompt, then the engine's report.
pub struct ImportDialog {
    pub input: String,
    /// Completion candidates shown under the prompt.
    pub choices: Vec<String>,
    pub plan: Option<Arc<ImportPlan>>,
    pub checking: bool,
}

pub enum Modal {
    Help,
    Import(ImportDialog),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub until: f64,
}

/// The slice picture slot of the suggestions view.
#[derive(Default)]
pub struct Picture {
    pub wanted: Option<ImageRequest>,
    pub shown: Option<(ImageRequest, Protocol)>,
    pub error: Option<String>,
}

/// One action the current phase offers: its row of the key table, and
/// whether it can run now.
#[derive(Clone, Copy, Debug)]
pub struct Action {
    pub binding: &'static Binding,
    pub enabled: bool,
}

impl Action {
    /// The key that starts it, as written on screen.
    pub fn key(&self) -> String {
        self.binding.key()
    }
}

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

/// A row of the suggestions list.
#[derive(Clone, Debug, PartialEq)]
pub struct SuggestionRow {
    pub key: SliceKey,
    pub source: Option<SliceKey>,
    pub distance: Option<f32>,
    pub angle: Option<f32>,
    pub angle_ok: bool,
    pub labelled: bool,
    /// Store id of the slice, when the pool is known.
    pub id: Option<usize>,
    pub z: Option<Vec<f32>>,
    pub z_prime: Option<Vec<f32>>,
    pub z_chosen: Option<Vec<f32>>,
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
        if self.worker_running() {
            return format!("{round} · a job is starting…");
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

    /// The slices of the suggestions view: the pending batch, or when none
    /// is pending, the latest round's labelled slices.
    pub fn suggestion_rows(&self) -> Vec<SuggestionRow> {
        let Some(state) = self.state() else {
            return Vec::new();
        };
        let id = |k: &SliceKey| {
            self.snapshot
                .pool
                .as_ref()
                .and_then(|p| p.ids.get(k).copied())
        };
        if !state.pending.is_empty() {
            return state
                .pending
                .iter()
                .map(|p| SuggestionRow {
                    key: p.key.clone(),
                    source: p.source.clone(),
                    distance: p.detail.distance,
                    angle: p.detail.angle_deg,
                    angle_ok: p.detail.angle_ok,
                    labelled: false,
                    id: id(&p.key),
                    z: p.detail.z.clone(),
                    z_prime: p.detail.z_prime.clone(),
                    z_chosen: p.detail.z_chosen.clone(),
                })
                .collect();
        }
        let last = state.labelled.iter().map(|l| l.round).max();
        state
            .labelled
            .iter()
            .filter(|l| Some(l.round) == last)
            .map(|l| SuggestionRow {
                key: l.key.clone(),
                source: None,
                distance: None,
                angle: None,
                angle_ok: true,
                labelled: true,
                id: id(&l.key),
                z: None,
                z_prime: None,
                z_chosen: None,
            })
            .collect()
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
                self.snapshot.state = state;
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
                format!("cancel requested: {job} stops after its current batch"),
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

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if let Some(does) = keys::over_dialogs(&key) {
            return self.carry_out(does, "");
        }
        match self.modal.take() {
            Some(Modal::Help) => {
                // Any key closes help; quit still quits.
                if let Some((_, Does::Quit)) = keys::lookup(Context::Everywhere, &key) {
                    self.quit = true;
                }
                Vec::new()
            }
            Some(Modal::Import(dialog)) => self.on_import_key(dialog, key),
            None => self.on_main_key(key),
        }
    }

    /// A key on the main screen: its row in the key table, if offered here
    /// and now, and enabled.
    fn on_main_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let Some((binding, does)) = keys::lookup(self.key_context(), &key) else {
            return Vec::new();
        };
        let facts = self.facts();
        if !(binding.offered)(&facts) {
            return Vec::new();
        }
        if !(binding.enabled)(&facts) {
            let why = if facts.short_action {
                "wait for the current action to finish".to_string()
            } else {
                format!(
                    "a job is running; wait for it or cancel it {}",
                    keys::CANCEL.hint()
                )
            };
            self.notify(why, true);
            return Vec::new();
        }
        self.carry_out(does, binding.next.unwrap_or(binding.help))
    }

    /// Does what a key does; `name` names a short action while it runs.
    fn carry_out(&mut self, does: Does, name: &str) -> Vec<Command> {
        let command = match does {
            Does::Start(job) => Command::Start(job),
            Does::Export => Command::Export,
            Does::Cancel => Command::Cancel,
            Does::OpenImport => {
                self.open_import();
                return Vec::new();
            }
            Does::ShowView(i) => {
                self.tab = Tab::ALL[i % Tab::ALL.len()];
                return Vec::new();
            }
            Does::CycleView(step) => {
                self.cycle_tab(step);
                return Vec::new();
            }
            Does::Select(step) => {
                self.move_selection(step);
                return Vec::new();
            }
            Does::NextModality => {
                let n = self.modalities().len().max(1);
                self.modality = (self.modality + 1) % n;
                return Vec::new();
            }
            Does::NextOverlay => {
                self.overlay = self.overlay.next();
                return Vec::new();
            }
            Does::SwitchMetric => {
                self.metric = match self.metric {
                    Metric::Dice => Metric::Hd95,
                    Metric::Hd95 => Metric::Dice,
                };
                return Vec::new();
            }
            Does::ToggleSimulation => {
                if self.snapshot.simulation.is_some() {
                    self.show_simulation = !self.show_simulation;
                } else {
                    self.notify(
                        "no simulation results yet: `nextslice simulate` writes them",
                        true,
                    );
                }
                return Vec::new();
            }
            Does::CycleRegion(step) => {
                self.cycle_region(step);
                return Vec::new();
            }
            Does::NextDimension(axis) => {
                self.cycle_axis(axis);
                return Vec::new();
            }
            Does::OpenHelp => {
                self.modal = Some(Modal::Help);
                return Vec::new();
            }
            Does::Quit => {
                self.quit = true;
                return Vec::new();
            }
        };
        self.short_action = Some(name.to_string());
        vec![command]
    }

    fn open_import(&mut self) {
        let mut input = self.cwd.display().to_string();
        if !input.ends_with('/') {
            input.push('/');
        }
        if let Some(prefill) = &self.import_prefill {
            input.clone_from(prefill);
        }
        self.modal = Some(Modal::Import(ImportDialog {
            input,
            choices: Vec::new(),
            plan: None,
            checking: false,
        }));
    }

    fn on_import_key(&mut self, mut d: ImportDialog, key: KeyEvent) -> Vec<Command> {
        let mut commands = Vec::new();
        if let Some(plan) = d.plan.clone() {
            // The report is up: confirm or go back to the prompt.
            match key.code {
                KeyCode::Char('y') | KeyCode::Enter if !plan.accepted.is_empty() => {
                    self.short_action = Some("importing masks".into());
                    commands.push(Command::ConfirmImport);
                }
                KeyCode::Esc | KeyCode::Char('n') => {
                    d.plan = None;
                }
                _ => {}
            }
            self.modal = Some(Modal::Import(d));
            return commands;
        }
        if d.checking {
            if key.code == KeyCode::Esc {
                return Vec::new(); // closes; the check's answer is dropped
            }
            self.modal = Some(Modal::Import(d));
            return Vec::new();
        }
        match key.code {
            KeyCode::Esc => return Vec::new(),
            KeyCode::Enter => {
                let paths: Vec<PathBuf> = d.input.split_whitespace().map(PathBuf::from).collect();
                if paths.is_empty() {
                    self.notify("type the path of the mask files or their folder", true);
                } else {
                    d.checking = true;
                    d.choices.clear();
                    self.short_action = Some("checking masks".into());
                    commands.push(Command::CheckImport(paths));
                }
            }
            KeyCode::Tab => {
                let (completed, choices) = complete_path(&d.input);
                d.input = completed;
                d.choices = choices;
            }
            KeyCode::Backspace => {
                d.input.pop();
                d.choices.clear();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                d.input.clear();
            }
            KeyCode::Char(ch) => {
                d.input.push(ch);
                d.choices.clear();
            }
            _ => {}
        }
        self.modal = Some(Modal::Import(d));
        commands
    }

    fn cycle_tab(&mut self, step: isize) {
        let i = Tab::ALL.iter().position(|t| *t == self.tab).unwrap_or(0) as isize;
        let n = Tab::ALL.len() as isize;
        self.tab = Tab::ALL[((i + step).rem_euclid(n)) as usize];
    }

    fn move_selection(&mut self, step: isize) {
        let n = self.suggestion_rows().len();
        if n == 0 {
            return;
        }
        self.selected = (self.selected as isize + step).clamp(0, n as isize - 1) as usize;
    }

    fn cycle_axis(&mut self, axis: Axis) {
        let dim = self
            .snapshot
            .latents
            .as_ref()
            .map_or(self.snapshot.config.vae.z_dim, |l| l.dim)
            .max(1);
        let (a, b) = self.axes;
        self.axes = match axis {
            Axis::X => ((a + 1) % dim, b),
            Axis::Y => (a, (b + 1) % dim),
        };
    }

    /// Next (or previous) region of the simulation's curves.
    fn cycle_region(&mut self, step: isize) {
        let n = self.snapshot.simulation.as_ref().map_or(1, |rows| {
            crate::simulate::summary::regions(rows).len().max(1)
        });
        self.region = (self.region as isize + step).rem_euclid(n as isize) as usize;
    }
}
