//! Sampling strategies: which unlabelled slices to ask the experts for next.
//! Every strategy implements one trait over the same request, so baselines
//! are one file each. Heavy model work (encoding the pool with the VAE,
//! input gradients through the U-Net) happens before, in the round engine;
//! strategies only search.
//!
//! Imports only rng: strategies know no files, models or projects.

mod clsmc;
pub mod dal;
mod gradient;
pub mod maxcover;
pub mod oracle;
mod random;
mod ranked;
pub mod step;
pub mod uncertainty;
pub mod volume;

pub use clsmc::ClusterMaxCover;
pub use dal::Dal;
pub use gradient::GradientGuided;
pub use random::RandomSampling;
pub use ranked::RankedByScore;
pub use step::StepReport;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Latent vectors (VAE posterior means) of store slices, row per slice.
#[derive(Clone, Debug, PartialEq)]
pub struct Latents {
    pub dim: usize,
    /// `values[i * dim..(i + 1) * dim]` is the latent of store slice `i`.
    pub values: Vec<f32>,
}

impl Latents {
    pub fn of(&self, slice: usize) -> &[f32] {
        &self.values[slice * self.dim..(slice + 1) * self.dim]
    }

    /// The latent of `slice`, if the table has it.
    pub fn get(&self, slice: usize) -> Option<&[f32]> {
        self.values.get(slice * self.dim..(slice + 1) * self.dim)
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A labelled slice projected before and after its gradient step:
/// z = g(x), z' = g(x + α·∂L/∂x) (Eq. 3–4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientSource {
    pub slice: usize,
    pub z: Vec<f32>,
    pub z_prime: Vec<f32>,
    /// z' − z, kept separately: the step can be far smaller than the f32
    /// spacing around z, where `z_prime - z` would round to zero.
    pub step: Vec<f32>,
}

impl GradientSource {
    /// From z and the latent step z' − z.
    pub fn new(slice: usize, z: Vec<f32>, step: Vec<f32>) -> GradientSource {
        let z_prime = z.iter().zip(&step).map(|(a, b)| a + b).collect();
        GradientSource {
            slice,
            z,
            z_prime,
            step,
        }
    }
}

/// One suggested slice and, for gradient-guided sampling, why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Store index of the suggested slice.
    pub slice: usize,
    /// The labelled slice whose gradient led here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z_prime: Option<Vec<f32>>,
    /// z' − z, the latent step along which the search went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Vec<f32>>,
    /// Latent of the suggested slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z_chosen: Option<Vec<f32>>,
    /// ‖z_j − z'‖ (Eq. 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    /// Angle between z_j − z' and z' − z in degrees (Eq. 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_deg: Option<f32>,
    /// False when no candidate met the angular condition and the nearest was
    /// taken instead.
    #[serde(default = "yes")]
    pub angle_ok: bool,
}

fn yes() -> bool {
    true
}

impl Suggestion {
    /// A suggestion with no gradient provenance (random, seeding).
    pub fn plain(slice: usize) -> Suggestion {
        Suggestion {
            slice,
            source: None,
            z: None,
            z_prime: None,
            step: None,
            z_chosen: None,
            distance: None,
            angle_deg: None,
            angle_ok: true,
        }
    }
}

/// What a strategy gets to decide with.
pub struct Request<'a> {
    /// Store ids it may suggest: unlabelled, not pending, not in the test set.
    pub candidates: &'a [usize],
    pub count: usize,
    pub latents: Option<&'a Latents>,
    pub sources: &'a [GradientSource],
    pub rng: &'a mut Rng,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StrategyError {
    #[error("the {strategy} strategy needs {what}")]
    Missing {
        strategy: &'static str,
        what: &'static str,
    },
}

pub trait SamplingStrategy {
    fn name(&self) -> &'static str;
    /// Up to `count` distinct candidates (fewer only if there are fewer).
    fn suggest(&self, request: Request<'_>) -> Result<Vec<Suggestion>, StrategyError>;
}
