//! Every key of the main screen, written once: the one table that feeds
//! the key bar, the "next" box, the headline's key hints, the help overlay
//! and the dispatch in `App`. A row says which keys, where they apply,
//! what they are called (help line, "next" box label, key-bar word), when
//! they are offered and enabled, and what each key does.
//!
//! Adding a job is adding a row here (and, for a new kind of effect, a
//! `Does` variant and its arm in `App`). The import dialog's own keys are
//! not here: the dialog spells them out where they apply.
//!
//! A leaf: imports only crossterm's key types and the journal's `Phase` and
//! `Job`, never the app or the views (they import this).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::journal::{Job, Phase};

/// One key: a key code, with or without Ctrl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

const fn code(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

impl Key {
    /// Whether a key press is this key. Shift is ignored (`?` comes with
    /// it on some terminals, ⇧Tab always); Ctrl is not.
    pub fn matches(self, event: &KeyEvent) -> bool {
        event.code == self.code && event.modifiers.contains(KeyModifiers::CONTROL) == self.ctrl
    }

    /// How the key is written on the screen.
    pub fn name(self) -> String {
        match self.code {
            KeyCode::Char(c) if self.ctrl => format!("Ctrl-{}", c.to_ascii_uppercase()),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "⇧Tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            other => other.to_string(),
        }
    }

    /// A plain character key (no Ctrl).
    fn is_plain_char(self) -> bool {
        matches!(self.code, KeyCode::Char(_)) && !self.ctrl
    }
}

/// Where a key applies: everywhere on the main screen, or on one view only
/// (the same key may mean different things on different views). A view
/// without keys of its own is in `Everywhere`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Everywhere,
    History,
    Latent,
}

impl Context {
    /// Whether a key of this context is live where `current` is.
    pub fn applies_in(self, current: Context) -> bool {
        self == Context::Everywhere || self == current
    }

    /// Whether the two contexts are ever live at once.
    pub fn overlaps(self, other: Context) -> bool {
        self.applies_in(other) || other.applies_in(self)
    }
}

/// One of the latent map's axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    X,
    Y,
}

/// What a key does; `App` carries it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Does {
    /// Start a job in the detached worker.
    Start(Job),
    /// Export the pending slices for the annotators.
    Export,
    /// Open the import dialog.
    OpenImport,
    /// Ask the running job to stop.
    Cancel,
    /// Show the view at this index of `Tab::ALL`.
    ShowView(usize),
    /// Show the next (+1) or previous (−1) view.
    CycleView(isize),
    /// Move the selection in the suggestions list down (+1) or up (−1).
    Select(isize),
    NextModality,
    NextOverlay,
    /// History: Dice ⇄ HD95.
    SwitchMetric,
    /// History: this project ⇄ the simulation's curves.
    ToggleSimulation,
    /// History: the simulation's next (+1) or previous (−1) region.
    CycleRegion(isize),
    /// Latent map: the next latent dimension on this axis.
    NextDimension(Axis),
    OpenHelp,
    Quit,
}

/// What the table's conditions may look at: the app's state, summed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The round's phase; `None` while the state cannot be read.
    pub phase: Option<Phase>,
    /// A U-Net has been trained (so it can be evaluated).
    pub trained: bool,
    /// A detached worker holds the project.
    pub worker_running: bool,
    /// A short action (export, import check, …) runs in the TUI.
    pub short_action: bool,
}

impl Facts {
    /// Nothing runs: a job may start.
    pub fn free(&self) -> bool {
        !self.worker_running && !self.short_action
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    /// The keys and what each does; written on screen in this order, plain
    /// characters first.
    pub keys: &'static [(Key, Does)],
    pub context: Context,
    /// The help overlay's line.
    pub help: &'static str,
    /// The "next" box's words. Rows with them are the phase's actions:
    /// listed there and first on the key bar while offered.
    pub next: Option<&'static str>,
    /// The key bar's word or two; navigation rows without one stay off it.
    pub bar: Option<&'static str>,
    /// Whether the keys are live (and an action listed) now.
    pub offered: fn(&Facts) -> bool,
    /// Whether an offered action can run now; pressed while not, it says why.
    pub enabled: fn(&Facts) -> bool,
}

fn always(_: &Facts) -> bool {
    true
}

fn free(f: &Facts) -> bool {
    f.free()
}

/// A navigation row: always offered, always enabled, not in the "next" box.
const fn nav(
    keys: &'static [(Key, Does)],
    context: Context,
    help: &'static str,
    bar: Option<&'static str>,
) -> Binding {
    Binding {
        keys,
        context,
        help,
        next: None,
        bar,
        offered: always,
        enabled: always,
    }
}

pub const VIEWS: Binding = nav(
    &[
        (ch('1'), Does::ShowView(0)),
        (ch('2'), Does::ShowView(1)),
        (ch('3'), Does::ShowView(2)),
        (ch('4'), Does::ShowView(3)),
        (code(KeyCode::Tab), Does::CycleView(1)),
        (code(KeyCode::BackTab), Does::CycleView(-1)),
    ],
    Context::Everywhere,
    "Round · Suggestions · History · Latent map",
    Some("views"),
);

pub const TRAIN_VAE: Binding = Binding {
    keys: &[(ch('v'), Does::Start(Job::TrainVae))],
    context: Context::Everywhere,
    help: "train the VAE on every slice of the pool",
    next: Some("train the VAE on all slices"),
    bar: Some("train VAE"),
    offered: |f| f.phase == Some(Phase::NeedVae),
    enabled: free,
};

pub const SEED: Binding = Binding {
    keys: &[(ch('s'), Does::Start(Job::Suggest))],
    context: Context::Everywhere,
    help: "draw the random seed batch (round 0)",
    next: Some("draw the random seed batch"),
    bar: Some("seed"),
    offered: |f| f.phase == Some(Phase::Seeding),
    enabled: free,
};

pub const EXPORT: Binding = Binding {
    keys: &[(ch('e'), Does::Export)],
    context: Context::Everywhere,
    help: "export the suggested slices for the annotators",
    next: Some("export the suggested slices"),
    bar: Some("export"),
    offered: |f| f.phase == Some(Phase::AwaitingMasks),
    enabled: free,
};

pub const IMPORT: Binding = Binding {
    keys: &[(ch('i'), Does::OpenImport)],
    context: Context::Everywhere,
    help: "import masks (path prompt, Tab completes)",
    next: Some("import masks"),
    bar: Some("import"),
    offered: |f| f.phase == Some(Phase::AwaitingMasks),
    enabled: free,
};

pub const TRAIN_UNET: Binding = Binding {
    keys: &[(ch('t'), Does::Start(Job::Train))],
    context: Context::Everywhere,
    help: "train the U-Net on the labelled slices",
    next: Some("train the U-Net"),
    bar: Some("train U-Net"),
    offered: |f| f.phase == Some(Phase::Training),
    enabled: free,
};

pub const SUGGEST: Binding = Binding {
    keys: &[(ch('n'), Does::Start(Job::Suggest))],
    context: Context::Everywhere,
    help: "suggest the next batch (gradient-guided)",
    next: Some("suggest the next batch"),
    bar: Some("suggest"),
    offered: |f| f.phase == Some(Phase::Suggesting),
    enabled: free,
};

pub const EVALUATE: Binding = Binding {
    keys: &[(ch('a'), Does::Start(Job::Evaluate))],
    context: Context::Everywhere,
    help: "evaluate Dice on the held-out test cases",
    next: Some("evaluate on the test cases"),
    bar: Some("evaluate"),
    offered: |f| f.phase.is_some() && f.trained,
    enabled: free,
};

pub const CANCEL: Binding = Binding {
    keys: &[(ch('c'), Does::Cancel)],
    context: Context::Everywhere,
    help: "cancel the running job (keeps its checkpoint)",
    next: Some("cancel the job"),
    bar: Some("cancel job"),
    offered: |f| f.phase.is_some() && f.worker_running,
    enabled: always,
};

pub const SELECT: Binding = nav(
    &[
        (ch('j'), Does::Select(1)),
        (ch('k'), Does::Select(-1)),
        (code(KeyCode::Up), Does::Select(-1)),
        (code(KeyCode::Down), Does::Select(1)),
    ],
    Context::Everywhere,
    "select a suggested slice",
    None,
);

pub const MODALITY: Binding = nav(
    &[(ch('m'), Does::NextModality)],
    Context::Everywhere,
    "next modality",
    None,
);

pub const OVERLAY: Binding = nav(
    &[(ch('o'), Does::NextOverlay)],
    Context::Everywhere,
    "overlay: expert mask → prediction → truth → none",
    None,
);

pub const METRIC: Binding = nav(
    &[(ch('h'), Does::SwitchMetric)],
    Context::History,
    "history: Dice ⇄ HD95",
    None,
);

pub const SIMULATION: Binding = nav(
    &[(ch('r'), Does::ToggleSimulation)],
    Context::History,
    "history: this project ⇄ the simulation",
    None,
);

pub const REGION: Binding = nav(
    &[
        (code(KeyCode::Left), Does::CycleRegion(-1)),
        (code(KeyCode::Right), Does::CycleRegion(1)),
    ],
    Context::History,
    "history: the simulation's region",
    None,
);

pub const DIMENSIONS: Binding = nav(
    &[
        (ch('x'), Does::NextDimension(Axis::X)),
        (ch('y'), Does::NextDimension(Axis::Y)),
        (code(KeyCode::Left), Does::NextDimension(Axis::Y)),
        (code(KeyCode::Right), Does::NextDimension(Axis::X)),
    ],
    Context::Latent,
    "latent map: change the plotted dimensions",
    None,
);

pub const HELP: Binding = nav(
    &[(ch('?'), Does::OpenHelp)],
    Context::Everywhere,
    "this help (any key closes it)",
    Some("keys"),
);

/// Ctrl-C quits over the dialogs too (see `over_dialogs`).
pub const QUIT: Binding = nav(
    &[(ch('q'), Does::Quit), (ctrl('c'), Does::Quit)],
    Context::Everywhere,
    "quit (running jobs go on)",
    Some("quit"),
);

/// The table, in the help overlay's order (the phase's actions in the
/// "next" box's order).
pub static TABLE: &[&Binding] = &[
    &VIEWS,
    &TRAIN_VAE,
    &SEED,
    &EXPORT,
    &IMPORT,
    &TRAIN_UNET,
    &SUGGEST,
    &EVALUATE,
    &CANCEL,
    &SELECT,
    &MODALITY,
    &OVERLAY,
    &METRIC,
    &SIMULATION,
    &REGION,
    &DIMENSIONS,
    &HELP,
    &QUIT,
];

impl Binding {
    /// A phase action (listed in the "next" box) rather than navigation.
    pub fn is_action(&self) -> bool {
        self.next.is_some()
    }

    /// What the key press does here, if it is one of this row's keys.
    pub fn does(&self, event: &KeyEvent) -> Option<Does> {
        self.keys
            .iter()
            .find(|(k, _)| k.matches(event))
            .map(|&(_, does)| does)
    }

    /// All the keys, as the help overlay writes them: "1-4, Tab ⇧Tab",
    /// "j k, ↑ ↓", "q, Ctrl-C".
    pub fn keys_text(&self) -> String {
        let (chars, others) = self.spelled();
        match (chars.is_empty(), others.is_empty()) {
            (false, false) => format!("{chars}, {others}"),
            (false, true) => chars,
            _ => others,
        }
    }

    /// The key a hint names: the plain characters ("v", "1-4", "x y"), or
    /// the other keys where there are none ("← →").
    pub fn key(&self) -> String {
        let (chars, others) = self.spelled();
        if chars.is_empty() { others } else { chars }
    }

    /// "[v]": the hint after a mention of the action.
    pub fn hint(&self) -> String {
        format!("[{}]", self.key())
    }

    /// "train the VAE on all slices [v]": the "next" box's words (or the
    /// help line) with the hint.
    pub fn offer(&self) -> String {
        format!("{} {}", self.next.unwrap_or(self.help), self.hint())
    }

    /// The plain characters (runs of three or more consecutive digits
    /// written "1-4") and the other keys, each joined by spaces.
    fn spelled(&self) -> (String, String) {
        let chars: Vec<char> = self
            .keys
            .iter()
            .filter(|(k, _)| k.is_plain_char())
            .filter_map(|(k, _)| match k.code {
                KeyCode::Char(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut words = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let mut j = i;
            while j + 1 < chars.len()
                && chars[j].is_ascii_digit()
                && chars[j + 1] as u32 == chars[j] as u32 + 1
            {
                j += 1;
            }
            if j >= i + 2 {
                words.push(format!("{}-{}", chars[i], chars[j]));
            } else {
                words.extend(chars[i..=j].iter().map(char::to_string));
            }
            i = j + 1;
        }
        let others: Vec<String> = self
            .keys
            .iter()
            .filter(|(k, _)| !k.is_plain_char())
            .map(|(k, _)| k.name())
            .collect();
        (words.join(" "), others.join(" "))
    }
}

/// The row and effect of a key pressed on the main screen, on a view of
/// `context`, whether or not the row is offered now.
pub fn lookup(context: Context, event: &KeyEvent) -> Option<(&'static Binding, Does)> {
    TABLE
        .iter()
        .filter(|b| b.context.applies_in(context))
        .find_map(|b| b.does(event).map(|does| (*b, does)))
}

/// What a key does over a dialog: only the Ctrl keys of the whole screen
/// (Ctrl-C quits from anywhere; the dialogs take plain characters).
pub fn over_dialogs(event: &KeyEvent) -> Option<Does> {
    if !event.modifiers.contains(KeyModifiers::CONTROL) {
        return None;
    }
    lookup(Context::Everywhere, event).map(|(_, does)| does)
}

/// The phase's actions offered now, in order, each with whether it can run.
pub fn actions(facts: &Facts) -> Vec<(&'static Binding, bool)> {
    TABLE
        .iter()
        .filter(|b| b.is_action() && (b.offered)(facts))
        .map(|b| (*b, (b.enabled)(facts)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_means_one_thing_wherever_it_is_live() {
        for (i, a) in TABLE.iter().enumerate() {
            for (n, (key, _)) in a.keys.iter().enumerate() {
                assert!(
                    !a.keys[n + 1..].iter().any(|(k, _)| k == key),
                    "{} twice in {:?}",
                    key.name(),
                    a.help
                );
            }
            for b in &TABLE[i + 1..] {
                if !a.context.overlaps(b.context) {
                    continue;
                }
                for (key, _) in a.keys {
                    assert!(
                        !b.keys.iter().any(|(k, _)| k == key),
                        "{} is both {:?} and {:?}",
                        key.name(),
                        a.help,
                        b.help
                    );
                }
            }
        }
    }

    #[test]
    fn keys_are_spelled_for_people() {
        assert_eq!(VIEWS.keys_text(), "1-4, Tab ⇧Tab");
        assert_eq!(VIEWS.key(), "1-4");
        assert_eq!(SELECT.keys_text(), "j k, ↑ ↓");
        assert_eq!(QUIT.keys_text(), "q, Ctrl-C");
        assert_eq!(QUIT.key(), "q");
        assert_eq!(REGION.key(), "← →");
        assert_eq!(TRAIN_VAE.offer(), "train the VAE on all slices [v]");
    }

    #[test]
    fn a_press_finds_its_row_by_context() {
        let press = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let right = press(KeyCode::Right);
        assert_eq!(
            lookup(Context::History, &right).map(|(_, d)| d),
            Some(Does::CycleRegion(1))
        );
        assert_eq!(
            lookup(Context::Latent, &right).map(|(_, d)| d),
            Some(Does::NextDimension(Axis::X))
        );
        assert!(lookup(Context::Everywhere, &right).is_none());
        assert!(lookup(Context::Everywhere, &press(KeyCode::Char('h'))).is_none());
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(over_dialogs(&ctrl_c), Some(Does::Quit));
        assert_eq!(over_dialogs(&press(KeyCode::Char('q'))), None);
        // Ctrl-C is not `c` (cancel).
        assert_eq!(
            lookup(Context::Everywhere, &ctrl_c).map(|(b, _)| b.help),
            Some(QUIT.help)
        );
    }
}
