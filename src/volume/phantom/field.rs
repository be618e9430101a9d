//! Smooth random fields: sums of random plane waves. They shape cortical folds,
//! tissue texture, tumour boundaries and the scanner's bias field.

use crate::rng::Rng;

/// `Σ cos(k·p + φ)`, normalised so its values stay roughly in [-1, 1].
#[derive(Clone, Debug)]
pub struct WaveField {
    waves: Vec<([f64; 3], f64)>,
    norm: f64,
}

impl WaveField {
    /// `count` waves with wavelengths in `[min_mm, max_mm]`.
    pub fn new(rng: &mut Rng, count: usize, min_mm: f64, max_mm: f64) -> WaveField {
        let waves = (0..count)
            .map(|_| {
                let k = std::f64::consts::TAU / rng.range(min_mm, max_mm);
                (
                    rng.direction().map(|d| d * k),
                    rng.range(0.0, std::f64::consts::TAU),
                )
            })
            .collect();
        WaveField {
            waves,
            norm: 1.0 / (count as f64 / 2.0).sqrt().max(1.0),
        }
    }

    pub fn at(&self, p: [f64; 3]) -> f64 {
        let sum: f64 = self
            .waves
            .iter()
            .map(|(k, phase)| (k[0] * p[0] + k[1] * p[1] + k[2] * p[2] + phase).cos())
            .sum();
        sum * self.norm
    }
}

/// A random star-shaped radius modulation `1 + Σ a·cos(k·u + φ)` over unit
/// directions `u`: irregular blobs without holes.
#[derive(Clone, Debug)]
pub struct RadialBumps {
    bumps: Vec<([f64; 3], f64, f64)>,
}

impl RadialBumps {
    pub fn new(rng: &mut Rng, count: usize, amplitude: f64, max_order: f64) -> RadialBumps {
        let bumps = (0..count)
            .map(|_| {
                let k = rng.range(1.0, max_order);
                (
                    rng.direction().map(|d| d * k),
                    rng.range(0.0, std::f64::consts::TAU),
                    amplitude * rng.range(0.3, 1.0) / (count as f64).sqrt(),
                )
            })
            .collect();
        RadialBumps { bumps }
    }

    /// The radius factor in direction `u` (a unit vector).
    pub fn at(&self, u: [f64; 3]) -> f64 {
        1.0 + self
            .bumps
            .iter()
            .map(|(k, phase, a)| a * (k[0] * u[0] + k[1] * u[1] + k[2] * u[2] + phase).cos())
            .sum::<f64>()
    }
}
