//! The app's messages (updates in, commands out, outcomes of short
//! actions) and the small types of its view state.

use std::path::PathBuf;
use std::sync::Arc;

use ratatui::crossterm::event::KeyEvent;
use ratatui_image::protocol::Protocol;

use crate::journal::{Holder, Job, Logged};
use crate::masks::ImportPlan;
use crate::project::{RoundState, SliceKey};
use crate::tui::keys::Binding;
use crate::tui::snapshot::PoolInfo;

/// Something that happened, for `App::update`.
pub enum Update {
    Key(KeyEvent),
    /// The terminal changed size: only a redraw follows (which sends
    /// `Drawn`).
    Resize,
    /// A frame was drawn, so the layout's sizes the app keeps (the
    /// picture's cells) are current: the picture may be asked for anew.
    Drawn,
    /// `state.json` changed (boxed: it dwarfs every other update).
    State(Box<Result<RoundState, String>>),
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
    pub(super) fn next(self) -> Overlay {
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
