//! How far the gradient step of Eq. 3 moves in latent space, and the
//! calibrated step length.
//!
//! Eq. 3 as printed takes x′ = x + α·∂L/∂x with α = 1e-3. A soft-Dice
//! gradient is ~1e-4 per pixel, so the latent step ‖z′ − z‖ comes out at
//! 1e-8…1e-6 while neighbouring slices lie ~0.5 apart: z′ is z, and Eq. 5
//! ("nearest to z′") becomes "nearest to the labelled slice". The
//! calibrated step keeps the direction J·∂L/∂x of every source and picks
//! one α per round so that the median step is κ × the median distance
//! from an unlabelled slice to its nearest unlabelled neighbour — a step
//! that lands among real slices rather than on its source. One α for all
//! sources keeps their ranking by step length (the gradient's strength).

use serde::{Deserialize, Serialize};

use super::{GradientSource, Latents};

/// Query points for the nearest-neighbour median; beyond it an evenly
/// spaced subsample (deterministic) is measured against every point.
const NN_QUERIES: usize = 2000;

/// What the round's gradient step was, logged with its suggestions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// True when α was calibrated, false when it is `sampling.alpha`.
    pub calibrated: bool,
    /// The α used this round.
    pub alpha: f64,
    /// Median ‖z′ − z‖ over the sources.
    pub median_step: f64,
    /// Median nearest-neighbour distance among the unlabelled latents.
    pub nn_median: f64,
    /// Labelled slices that cast a step.
    pub sources: usize,
    /// Suggestions, and how many of them differ from those a zero-length
    /// step (z′ = z, same direction for Eq. 6) would have made.
    pub picks: usize,
    pub differ_from_zero_step: usize,
}

impl StepReport {
    /// Median step over the nearest-neighbour median: 1 means z′ typically
    /// lands one slice-spacing away from its source.
    pub fn ratio(&self) -> f64 {
        if self.nn_median > 0.0 {
            self.median_step / self.nn_median
        } else {
            0.0
        }
    }

    /// A short line for narrow screens (the TUI's views).
    pub fn short(&self) -> String {
        format!(
            "{} step α {:.2e} · median |z′−z| {:.2}× NN distance · {}/{} picks moved by it",
            self.rule(),
            self.alpha,
            self.ratio(),
            self.differ_from_zero_step,
            self.picks
        )
    }

    fn rule(&self) -> &'static str {
        if self.calibrated {
            "calibrated"
        } else {
            "literal"
        }
    }

    /// One line for logs and the CLI.
    pub fn describe(&self) -> String {
        format!(
            "{} step α = {:.3e}: median |z′−z| = {:.3} × NN distance ({:.2e} / {:.2e}); {} of {} picks differ from a zero step",
            self.rule(),
            self.alpha,
            self.ratio(),
            self.median_step,
            self.nn_median,
            self.differ_from_zero_step,
            self.picks
        )
    }
}

/// Median of `values` (mean of the middle two for an even count); 0 when
/// empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Median over `ids` of the distance to the nearest other latent among
/// `ids`. Identical latents (distance 0) are skipped as neighbours: a run
/// of blank slices encodes to one point and says nothing about spacing.
pub fn nn_median(latents: &Latents, ids: &[usize]) -> f64 {
    if ids.len() < 2 {
        return 0.0;
    }
    let stride = ids.len().div_ceil(NN_QUERIES);
    let mut nearest: Vec<f64> = ids
        .iter()
        .step_by(stride)
        .filter_map(|&q| {
            let a = latents.of(q);
            ids.iter()
                .filter(|&&p| p != q)
                .map(|&p| {
                    let b = latents.of(p);
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| f64::from(x - y) * f64::from(x - y))
                        .sum::<f64>()
                })
                .filter(|&d2| d2 > 0.0)
                .min_by(f64::total_cmp)
                .map(f64::sqrt)
        })
        .collect();
    median(&mut nearest)
}

/// Median ‖step‖ over `steps`.
pub fn median_step(steps: &[Vec<f32>]) -> f64 {
    let mut lengths: Vec<f64> = steps.iter().map(|s| norm(s)).collect();
    median(&mut lengths)
}

/// The α that makes the median of ‖α·d‖ over the unit-α `directions`
/// equal `target`; `None` when every direction is zero (no gradient
/// reached the latent space, so no length can be set).
pub fn calibrated_alpha(directions: &[Vec<f32>], target: f64) -> Option<f64> {
    let m = median_step(directions);
    (m > 0.0 && target.is_finite()).then(|| target / m)
}

/// The sources with z′ put back on z and the direction kept: what the
/// search would do if the step had no length (the literal step, in
/// effect), to count how many picks the step's length changes.
pub fn zero_step(sources: &[GradientSource]) -> Vec<GradientSource> {
    sources
        .iter()
        .map(|s| GradientSource {
            slice: s.slice,
            z: s.z.clone(),
            z_prime: s.z.clone(),
            step: s.step.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn cloud(n: usize, dim: usize, seed: u64) -> Latents {
        let mut rng = Rng::new(seed, 0);
        Latents {
            dim,
            values: (0..n * dim).map(|_| rng.normal() as f32).collect(),
        }
    }

    #[test]
    fn medians_of_odd_even_and_empty_lists() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn nn_median_on_a_grid_is_its_spacing_and_skips_duplicates() {
        // A 5×5 grid of spacing 0.3, with every point doubled.
        let mut values = Vec::new();
        for i in 0..5 {
            for j in 0..5 {
                for _ in 0..2 {
                    values.extend([0.3 * i as f32, 0.3 * j as f32]);
                }
            }
        }
        let latents = Latents { dim: 2, values };
        let ids: Vec<usize> = (0..50).collect();
        assert!((nn_median(&latents, &ids) - 0.3).abs() < 1e-6);
    }

    #[test]
    fn the_calibrated_alpha_sets_the_median_step_to_kappa_nn_distances() {
        let latents = cloud(600, 3, 7);
        let unlabelled: Vec<usize> = (20..600).collect();
        let nn = nn_median(&latents, &unlabelled);
        assert!(nn > 0.0);
        // Unit-α latent directions of very different lengths, as J·∂L/∂x
        // gives: ~1e-7 to 1e-5.
        let mut rng = Rng::new(3, 1);
        let directions: Vec<Vec<f32>> = (0..20)
            .map(|k| {
                let scale = 1e-7 * (1.0 + 5.0 * k as f32);
                (0..3).map(|_| scale * rng.normal() as f32).collect()
            })
            .collect();
        for kappa in [0.5, 1.0, 2.0] {
            let alpha = calibrated_alpha(&directions, kappa * nn).unwrap();
            let steps: Vec<Vec<f32>> = directions
                .iter()
                .map(|d| d.iter().map(|v| (f64::from(*v) * alpha) as f32).collect())
                .collect();
            let got = median_step(&steps);
            assert!(
                (got / (kappa * nn) - 1.0).abs() < 1e-4,
                "κ = {kappa}: median step {got} vs {}",
                kappa * nn
            );
        }
        assert_eq!(calibrated_alpha(&vec![vec![0.0; 3]; 4], nn), None);
    }

    #[test]
    fn a_zero_step_keeps_the_direction_and_puts_z_prime_on_z() {
        let source = GradientSource::new(4, vec![1.0, 2.0], vec![0.5, -0.5]);
        let zero = zero_step(std::slice::from_ref(&source));
        assert_eq!(zero[0].z_prime, source.z);
        assert_eq!(zero[0].step, source.step);
    }
}
