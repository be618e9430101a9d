//! Carrying out keys: the main screen's (looked up in `keys`' table), the
//! import dialog's, and the selection and view cycling they drive.

use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{App, Command, ImportDialog, Metric, Modal, Tab};
use crate::tui::complete::complete_path;
use crate::tui::keys::{self, Axis, Context, Does};

impl App {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
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
