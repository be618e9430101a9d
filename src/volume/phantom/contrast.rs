//! MR appearance of the phantom: per-tissue intensities for each modality,
//! texture, partial-volume blur, a smooth bias field and Rician noise.

use super::anatomy::{Lesion, Point, Tissue};
use crate::rng::Rng;

/// BraTS modality tokens, in the order the phantom writes them.
pub const TUMOUR_MODALITIES: [&str; 4] = ["flair", "t1", "t1ce", "t2"];
pub const TISSUE_MODALITIES: [&str; 1] = ["t1"];

/// Relative mean intensity per modality (rows as `TUMOUR_MODALITIES`) and class:
/// CSF, grey, white, necrosis, non-enhancing core, oedema, enhancing rim.
/// Chosen after published contrast ratios: CSF is dark in FLAIR but bright in
/// T2, oedema is bright in FLAIR and T2, only T1ce shows the enhancing rim.
const MEANS: [[f64; 7]; 4] = [
    // CSF  grey  white necr  non-e oedema enh
    [0.16, 0.62, 0.50, 0.50, 0.80, 0.95, 0.75], // FLAIR
    [0.25, 0.55, 0.80, 0.30, 0.45, 0.56, 0.60], // T1
    [0.25, 0.57, 0.80, 0.30, 0.48, 0.58, 1.15], // T1ce
    [1.00, 0.60, 0.42, 0.95, 0.85, 0.82, 0.65], // T2
];

fn class_index(point: Point) -> Option<usize> {
    Some(match (point.lesion, point.tissue) {
        (Lesion::Necrosis, _) => 3,
        (Lesion::NonEnhancing, _) => 4,
        (Lesion::Oedema, _) => 5,
        (Lesion::Enhancing, _) => 6,
        (Lesion::None, Tissue::Csf) => 0,
        (Lesion::None, Tissue::Grey) => 1,
        (Lesion::None, Tissue::White) => 2,
        (Lesion::None, Tissue::Background) => return None,
    })
}

/// One subject's scanner: jittered contrasts, gains and noise level.
pub struct Scanner {
    means: [[f64; 7]; 4],
    gain: [f64; 4],
    bias_amplitude: [f64; 4],
    noise_sigma: f64,
}

impl Scanner {
    pub fn random(rng: &mut Rng) -> Scanner {
        let mut means = MEANS;
        for row in &mut means {
            for m in row.iter_mut() {
                *m *= 1.0 + 0.05 * rng.normal().clamp(-2.5, 2.5);
            }
        }
        Scanner {
            means,
            gain: std::array::from_fn(|_| rng.range(500.0, 1400.0)),
            bias_amplitude: std::array::from_fn(|_| rng.range(0.08, 0.2)),
            noise_sigma: rng.range(0.025, 0.045),
        }
    }

    /// Noise-free intensity of a voxel. `texture` and `lesion_texture` are
    /// smooth fields around 0; oedema keeps part of the tissue it infiltrates.
    pub fn intensity(
        &self,
        modality: usize,
        point: Point,
        texture: f64,
        lesion_texture: f64,
    ) -> f64 {
        let Some(class) = class_index(point) else {
            return 0.0;
        };
        let means = &self.means[modality];
        let base = means[class] * (1.0 + 0.05 * texture);
        match point.lesion {
            Lesion::None => base,
            Lesion::Oedema => {
                let tissue = class_index(Point {
                    tissue: point.tissue,
                    lesion: Lesion::None,
                })
                .map_or(base, |c| means[c]);
                (0.7 * base + 0.3 * tissue) * (1.0 + 0.08 * lesion_texture)
            }
            _ => base * (1.0 + 0.12 * lesion_texture),
        }
    }

    pub fn bias(&self, modality: usize, field: f64) -> f64 {
        (self.bias_amplitude[modality] * field).exp()
    }

    /// Magnitude image of a complex signal with Gaussian noise in both channels.
    pub fn rician(&self, rng: &mut Rng, signal: f64) -> f64 {
        let re = signal + self.noise_sigma * rng.normal();
        let im = self.noise_sigma * rng.normal();
        (re * re + im * im).sqrt()
    }

    pub fn gain(&self, modality: usize) -> f64 {
        self.gain[modality]
    }
}

/// Separable [1, 4, 1]/6 blur along each axis (≈ Gaussian, σ ≈ 0.6 voxel):
/// the partial-volume effect of a finite point-spread function.
pub fn blur3(data: &mut [f32], dims: [usize; 3]) {
    let strides = [1, dims[0], dims[0] * dims[1]];
    let mut line = Vec::new();
    for axis in 0..3 {
        let (n, stride) = (dims[axis], strides[axis]);
        if n < 3 {
            continue;
        }
        let lines = data.len() / n;
        for l in 0..lines {
            // Start index of line `l` along `axis`.
            let outer = l / stride;
            let inner = l % stride;
            let start = outer * stride * n + inner;
            line.clear();
            line.extend((0..n).map(|i| data[start + i * stride]));
            for i in 0..n {
                let prev = line[i.saturating_sub(1)];
                let next = line[(i + 1).min(n - 1)];
                data[start + i * stride] = (prev + 4.0 * line[i] + next) / 6.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_constants_and_spreads_a_spike() {
        let dims = [5, 4, 3];
        let mut flat = vec![2.0f32; 60];
        blur3(&mut flat, dims);
        assert!(flat.iter().all(|v| (v - 2.0).abs() < 1e-6));
        let mut spike = vec![0.0f32; 60];
        spike[2 + 5 * (1 + 4)] = 216.0;
        blur3(&mut spike, dims);
        assert!((spike.iter().sum::<f32>() - 216.0).abs() < 1e-3);
        assert!((spike[2 + 5 * (1 + 4)] - 64.0).abs() < 1e-3);
    }
}
