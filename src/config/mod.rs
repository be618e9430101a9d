//! The typed configuration of a dataset and an experiment.
//!
//! A configuration is built in layers — a built-in preset (`config/*.toml`),
//! then the user's file in the XDG config directory, then any files given on
//! the command line — and every layer is checked strictly: an unknown key or a
//! bad value is an error naming the file, the key and what is allowed.
//!
//! Imports nothing of the crate: every layer may read the configuration.

mod load;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use load::{ConfigError, Preset, shared_store_root, user_config_path};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub dataset: DatasetConfig,
    pub labels: LabelConfig,
    pub slicing: SlicingConfig,
    pub normalisation: NormalisationConfig,
    pub store: StoreConfig,
    pub split: SplitConfig,
    pub vae: VaeConfig,
    pub unet: UnetConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    pub sampling: SamplingConfig,
    /// `nextslice simulate`: which strategies to compare, over how many seeds.
    #[serde(default)]
    pub simulate: SimulateConfig,
    pub device: DeviceConfig,
    /// What to run when a long job ends, for an operator who logged out.
    #[serde(default)]
    pub notify: NotifyConfig,
}

/// Where the volumes are and how their files are named.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub layout: Layout,
    /// The dataset directory; set by `--data` or in a project file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Image channels, in the order the models see them. For the BraTS layout
    /// these are the file-name tokens (`flair` matches `<case>_flair.nii.gz`).
    pub modalities: Vec<String>,
    /// BraTS layout: the token of the label file (`<case>_seg.nii.gz`).
    #[serde(default = "default_label_token")]
    pub label_token: String,
    /// Generic layout: one glob per modality, relative to `root`; the text
    /// matched by the wildcards is the case id.
    #[serde(default)]
    pub image_globs: Vec<String>,
    /// Generic layout: the glob of the label maps (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_glob: Option<String>,
    /// Leave out cases that lack a modality (listed in the report) instead of
    /// stopping with an error.
    #[serde(default)]
    pub skip_incomplete: bool,
}

fn default_label_token() -> String {
    "seg".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `<case>/<case>_<modality>.nii.gz`, at any depth (BraTS 2019 nests them
    /// under `HGG/` and `LGG/`).
    Brats,
    /// One glob per modality plus one for labels (MALC-like datasets).
    Generic,
}

/// Label values in the files, their names, and the regions scored in evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// Every label value a mask may hold; the first must be the background (0).
    /// The models see class `i` for `classes[i].value`.
    pub classes: Vec<LabelClass>,
    /// Evaluation regions (unions of label values). Empty: every non-background
    /// class is its own region.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Explanations shown when a mask holds an unexpected value, keyed by value.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelClass {
    pub value: u8,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub values: Vec<u8>,
}

impl LabelConfig {
    /// Class index of each possible label value (`None`: not in the label map).
    pub fn class_lookup(&self) -> [Option<u8>; 256] {
        let mut lut = [None; 256];
        for (i, c) in self.classes.iter().enumerate() {
            lut[c.value as usize] = Some(i as u8);
        }
        lut
    }

    pub fn values(&self) -> Vec<u8> {
        self.classes.iter().map(|c| c.value).collect()
    }

    /// The configured regions, or one per non-background class.
    pub fn evaluation_regions(&self) -> Vec<Region> {
        if !self.regions.is_empty() {
            return self.regions.clone();
        }
        self.classes
            .iter()
            .skip(1)
            .map(|c| Region {
                name: c.name.clone(),
                values: vec![c.value],
            })
            .collect()
    }

    /// Why `value` is not accepted, with the preset's note when it has one.
    pub fn explain_unexpected(&self, value: u8) -> String {
        let allowed = self
            .values()
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!("label value {value} is not in the label map (allowed: {allowed})");
        if let Some(note) = self.notes.get(&value.to_string()) {
            text += ": ";
            text += note;
        }
        text
    }
}

/// How volumes become 2D slices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlicingConfig {
    pub axis: SliceAxis,
    /// In-plane size `[height, width]` after centred crop or zero padding.
    pub size: [usize; 2],
    /// In-plane spacing `[row, column]` in mm to resample every volume to
    /// before cropping (linear for images, nearest for labels); absent:
    /// each volume keeps its own. Experts still see and return slices at
    /// the volume's own resolution, and evaluation scores on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spacing: Option<[f64; 2]>,
    /// Leave out slices whose brain area is below `min_brain_fraction`.
    pub drop_empty: bool,
    pub min_brain_fraction: f64,
}

/// Slicing direction in the canonical (RAS) orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SliceAxis {
    /// Slices of constant z (inferior–superior).
    Axial,
    /// Slices of constant y (posterior–anterior).
    Coronal,
    /// Slices of constant x (left–right).
    Sagittal,
}

impl SliceAxis {
    /// The canonical voxel axis held constant within a slice.
    pub fn normal_axis(self) -> usize {
        match self {
            SliceAxis::Sagittal => 0,
            SliceAxis::Coronal => 1,
            SliceAxis::Axial => 2,
        }
    }

    /// The canonical axes along the slice's rows (height) and columns (width).
    pub fn in_plane_axes(self) -> (usize, usize) {
        match self {
            SliceAxis::Sagittal => (2, 1),
            SliceAxis::Coronal => (2, 0),
            SliceAxis::Axial => (1, 0),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalisationConfig {
    pub method: NormalisationMethod,
    /// Voxels the mean and standard deviation are taken over.
    pub region: NormalisationRegion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormalisationMethod {
    /// Per volume and modality: (v − mean) / std.
    Zscore,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormalisationRegion {
    /// Non-zero voxels of any modality (skull-stripped data); the background
    /// stays exactly 0.
    Brain,
    All,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Element type of the memory-mapped slice file; f16 halves disk and page
    /// cache for BraTS-sized pools at ~1e-3 relative precision.
    pub dtype: StoreDtype,
    /// Where stores live, shared by every project on the same data and
    /// settings (`init` sets the user's data dir); absent: inside the
    /// project, as projects made before shared stores have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreDtype {
    F16,
    F32,
}

impl StoreDtype {
    pub fn name(self) -> &'static str {
        match self {
            StoreDtype::F16 => "f16",
            StoreDtype::F32 => "f32",
        }
    }
}

/// The held-out test volumes, never suggested for annotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction of volumes held out, drawn with `seed`.
    pub test_fraction: f64,
    pub seed: u64,
    /// A file listing test case ids, one per line; replaces the fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Latent dimension (paper: 3 for BraTS, 2 for MALC).
    pub z_dim: usize,
    /// Channels of the four residual levels.
    pub widths: Vec<usize>,
    pub lr: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Weight of the KL term of Eq. 1 (1 = the paper's loss).
    pub kl_weight: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnetConfig {
    /// Filters per encoder level (paper: 32, 64, 128, 256).
    pub widths: Vec<usize>,
    /// Filters of the bottleneck (paper: 512).
    pub bottleneck: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub epochs_per_round: usize,
    /// The fewest optimiser steps a round trains for: with few labelled
    /// slices an epoch is one or two batches, and `epochs_per_round` of
    /// them leave a U-Net too raw to steer the next suggestions. Epochs
    /// stay the unit when they give more steps; 0 = epochs only.
    #[serde(default)]
    pub min_steps_per_round: usize,
    /// Labelled slices held out of training to measure each round's U-Net
    /// before it steers a suggestion (0 = none: every mask trains).
    #[serde(default)]
    pub validation_fraction: f64,
}

impl UnetConfig {
    /// Epochs a round over `slices` labelled slices trains for.
    pub fn epochs_for(&self, slices: usize) -> usize {
        let batches = slices.div_ceil(self.batch_size.max(1)).max(1);
        self.epochs_per_round
            .max(self.min_steps_per_round.div_ceil(batches))
    }
}

/// Augmentation while training the U-Net (§3.2): flips, intensity, elastic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    pub enabled: bool,
    /// Mirror left–right with probability ½.
    pub flip: bool,
    /// Per channel, multiply brain intensities by 1 ± up to this.
    pub intensity_scale: f64,
    /// Per channel, add up to ± this (z-score units) inside the brain.
    pub intensity_shift: f64,
    /// Standard deviation (pixels) of the elastic displacements; 0 = off.
    pub elastic_sigma: f64,
    /// Control points per side of the elastic displacement grid.
    pub elastic_points: usize,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            flip: true,
            intensity_scale: 0.1,
            intensity_shift: 0.1,
            elastic_sigma: 2.0,
            elastic_points: 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    pub strategy: Strategy,
    /// Step length α of Eq. 3 under `step = "literal"`.
    pub alpha: f64,
    /// How α is set: as printed (`literal`, `alpha`), or per round so the
    /// latent step lands among real slices (`calibrated`, `kappa`).
    #[serde(default)]
    pub step: GradientStep,
    /// Calibrated step: the median ‖z′ − z‖ over the sources is `kappa` ×
    /// the median nearest-neighbour distance among unlabelled latents.
    #[serde(default = "default_kappa")]
    pub kappa: f64,
    /// Angular condition of Eq. 6 in degrees (paper: 60°, i.e. π/3).
    pub max_angle_deg: f64,
    /// Fraction of the pool annotated at random to start (paper: 0.5%).
    pub initial_fraction: f64,
    /// Fraction of the pool suggested per round (paper: 1% BraTS, 6% MALC).
    pub round_fraction: f64,
    pub rounds: usize,
    pub seed: u64,
    /// DAL: U-Nets in the bootstrap ensemble (the paper: 4).
    #[serde(default = "default_dal_models")]
    pub dal_models: usize,
    /// DAL: uncertain candidates per max-cover chunk (the paper: 20) …
    #[serde(default = "default_dal_candidates")]
    pub dal_candidates: usize,
    /// … and the picks max-cover keeps of them (the paper: 10).
    #[serde(default = "default_dal_picks")]
    pub dal_picks: usize,
    /// Learning loss: margin ξ of the ranking loss (the paper, §3.2: 0.5).
    #[serde(default = "default_ll_margin")]
    pub ll_margin: f64,
    /// Learning loss: weight λ of the ranking loss (the paper: 1).
    #[serde(default = "default_ll_weight")]
    pub ll_weight: f64,
    /// Learning loss: after this fraction of each round's epochs the loss
    /// head's gradient no longer reaches the U-Net (the paper: 30 of 50).
    #[serde(default = "default_ll_detach_fraction")]
    pub ll_detach_fraction: f64,
    /// Learning loss: an absolute epoch (from 0) instead of the fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ll_detach_epoch: Option<usize>,
    /// What the experts annotate: single slices, or whole volumes chosen by
    /// the slices' votes (the MICCAI 2020 patient-wise variant).
    #[serde(default)]
    pub unit: SamplingUnit,
}

/// The unit of a suggestion. The budget counts slices either way.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SamplingUnit {
    /// Each pick is one slice, annotated on its own.
    #[default]
    Slice,
    /// Each pick votes for its volume; the most-voted volumes are annotated
    /// whole (as 3D masks) while their slices fit in the round's budget.
    Volume,
}

impl SamplingUnit {
    pub fn name(self) -> &'static str {
        match self {
            SamplingUnit::Slice => "slice",
            SamplingUnit::Volume => "volume",
        }
    }
}

impl SamplingConfig {
    /// The epoch (from 0) of a round of `epochs` from which the loss head
    /// stops shaping the U-Net.
    pub fn ll_detach_at(&self, epochs: usize) -> usize {
        self.ll_detach_epoch
            .unwrap_or_else(|| (self.ll_detach_fraction * epochs as f64).round() as usize)
    }
}

/// How the step length α of Eq. 3 is chosen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum GradientStep {
    /// α = `sampling.alpha`, as printed. At the paper's 1e-3 the latent step
    /// is 1e-8…1e-6 against ~0.5 between slices: z′ sits on its source.
    Literal,
    /// One α per round, chosen so the median ‖z′ − z‖ is `kappa` × the
    /// median nearest-neighbour distance among unlabelled latents — the
    /// same direction J·∂L/∂x, a length that can reach another slice.
    #[default]
    Calibrated,
}

impl GradientStep {
    pub fn name(self) -> &'static str {
        match self {
            GradientStep::Literal => "literal",
            GradientStep::Calibrated => "calibrated",
        }
    }
}

fn default_kappa() -> f64 {
    1.0
}

fn default_ll_margin() -> f64 {
    0.5
}

fn default_ll_weight() -> f64 {
    1.0
}

fn default_ll_detach_fraction() -> f64 {
    0.6
}

fn default_dal_models() -> usize {
    4
}

fn default_dal_candidates() -> usize {
    20
}

fn default_dal_picks() -> usize {
    10
}

/// The strategy comparison `nextslice simulate` replays with ground-truth
/// masks as the annotator (the paper's Tables 3–5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    pub strategies: Vec<Strategy>,
    /// Repetitions; seed k runs with `sampling.seed + k` (seed batch, U-Net
    /// initialisation, shuffling). All repetitions share one VAE.
    pub seeds: usize,
    /// Also train on every pool slice: the full-data reference.
    pub full_reference: bool,
    /// Gradient arms run once per step rule listed (rows `gradient-literal`,
    /// `gradient-calibrated`); empty = `sampling.step` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gradient_steps: Vec<GradientStep>,
    /// ClsMC as the paper ran it (`one-shot`: each budget's whole set chosen
    /// at once from the initial pool) or grown round by round (`per-round`).
    #[serde(default)]
    pub clsmc: ClsmcMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClsmcMode {
    #[default]
    OneShot,
    PerRound,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            strategies: vec![Strategy::Gradient, Strategy::Random, Strategy::Oracle],
            seeds: 3,
            full_reference: true,
            gradient_steps: Vec::new(),
            clsmc: ClsmcMode::OneShot,
        }
    }
}

/// Sampling strategies: the paper's method and the baselines it compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Gradient,
    /// Gradient-guided without the angular condition (the paper's ablation).
    GradientNoAngle,
    Random,
    Oracle,
    LeastConfidence,
    Margin,
    Entropy,
    Dal,
    Clsmc,
    LearningLoss,
}

impl Strategy {
    /// The name in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Gradient => "gradient",
            Strategy::GradientNoAngle => "gradient-no-angle",
            Strategy::Random => "random",
            Strategy::Oracle => "oracle",
            Strategy::LeastConfidence => "least-confidence",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::Dal => "dal",
            Strategy::Clsmc => "clsmc",
            Strategy::LearningLoss => "learning-loss",
        }
    }
}

/// `[notify] command`: a shell command (`sh -c`) run when a job finishes,
/// fails or is cancelled, after the project is free again. It finds the
/// outcome in its environment: `NEXTSLICE_JOB` (e.g. `train`),
/// `NEXTSLICE_STATUS` (`finished`, `failed`, `cancelled`),
/// `NEXTSLICE_SUMMARY`, `NEXTSLICE_SECONDS` and `NEXTSLICE_PROJECT`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub kind: DeviceSpec,
    /// How hard cubecl searches for the fastest GPU kernel of each shape, once
    /// per GPU and driver (the results are cached). Ignored on the CPU.
    #[serde(default)]
    pub autotune: AutotuneLevel,
}

/// cubecl's autotune levels, least effort first. `minimal` until a GPU
/// session measures that more effort pays for its first-step tuning time
/// (`bench/cuda-check.sh` times each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutotuneLevel {
    #[default]
    Minimal,
    Balanced,
    Extensive,
    Full,
}

impl std::str::FromStr for AutotuneLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            AutotuneLevel::Minimal,
            AutotuneLevel::Balanced,
            AutotuneLevel::Extensive,
            AutotuneLevel::Full,
        ]
        .into_iter()
        .find(|l| l.name() == s)
        .ok_or_else(|| {
            format!("unknown autotune level `{s}`, expected minimal, balanced, extensive or full")
        })
    }
}

impl AutotuneLevel {
    /// The name cubecl's configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            AutotuneLevel::Minimal => "minimal",
            AutotuneLevel::Balanced => "balanced",
            AutotuneLevel::Extensive => "extensive",
            AutotuneLevel::Full => "full",
        }
    }
}

/// `auto` (CUDA when a GPU and driver are present, else CPU), `cpu`, `cuda`
/// or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(0) => write!(f, "cuda"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| {
                    format!("unknown device `{s}`, expected `auto`, `cpu`, `cuda` or `cuda:N`")
                }),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
