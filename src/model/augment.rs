//! On-the-fly data augmentation (§3.2: "flipping, random intensity and random
//! elastic deformation"), on CPU buffers before a batch is uploaded. Every
//! geometric transform moves image and mask together: images are resampled
//! bilinearly, masks by nearest neighbour, from the same displacement field.

use crate::config::AugmentConfig;
use crate::rng::Rng;

/// One slice: `image` is channels × height × width, `label` height × width.
pub struct Sample<'a> {
    pub image: &'a mut [f32],
    pub label: Option<&'a mut [u8]>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Applies the configured augmentations to one slice, drawing from `rng`.
pub fn augment(sample: Sample<'_>, config: &AugmentConfig, rng: &mut Rng) {
    if !config.enabled {
        return;
    }
    let Sample {
        image,
        mut label,
        channels,
        height,
        width,
    } = sample;
    let plane = height * width;
    let flip = config.flip && rng.chance(0.5);
    let field =
        (config.elastic_sigma > 0.0).then(|| DisplacementField::random(height, width, config, rng));
    if flip || field.is_some() {
        let mut source = image.to_vec();
        let label_source = label.as_ref().map(|l| l.to_vec());
        for r in 0..height {
            for c in 0..width {
                // Where output pixel (r, c) comes from in the input.
                let (mut sy, mut sx) = (r as f32, c as f32);
                if let Some(f) = &field {
                    let (dy, dx) = f.at(r, c);
                    sy += dy;
                    sx += dx;
                }
                if flip {
                    sx = (width - 1) as f32 - sx;
                }
                for ch in 0..channels {
                    let src = &source[ch * plane..(ch + 1) * plane];
                    image[ch * plane + r * width + c] = bilinear(src, height, width, sy, sx);
                }
                if let (Some(out), Some(src)) = (label.as_deref_mut(), &label_source) {
                    out[r * width + c] = nearest(src, height, width, sy, sx);
                }
            }
        }
        source.clear();
    }
    if config.intensity_scale > 0.0 || config.intensity_shift > 0.0 {
        // Inside the brain only: the background stays exactly 0.
        let brain: Vec<bool> = (0..plane)
            .map(|i| (0..channels).any(|ch| image[ch * plane + i] != 0.0))
            .collect();
        for ch in 0..channels {
            let scale = 1.0 + rng.range(-config.intensity_scale, config.intensity_scale) as f32;
            let shift = rng.range(-config.intensity_shift, config.intensity_shift) as f32;
            for (v, inside) in image[ch * plane..(ch + 1) * plane].iter_mut().zip(&brain) {
                if *inside {
                    *v = *v * scale + shift;
                }
            }
        }
    }
}

/// A smooth random displacement: Gaussian offsets on a coarse grid of
/// control points, interpolated bilinearly to every pixel.
struct DisplacementField {
    points: usize,
    dy: Vec<f32>,
    dx: Vec<f32>,
    scale_r: f32,
    scale_c: f32,
}

impl DisplacementField {
    fn random(height: usize, width: usize, config: &AugmentConfig, rng: &mut Rng) -> Self {
        let points = config.elastic_points.max(2);
        let n = points * points;
        let sigma = config.elastic_sigma;
        let mut draw = || {
            (0..n)
                .map(|_| (rng.normal() * sigma) as f32)
                .collect::<Vec<_>>()
        };
        let (dy, dx) = (draw(), draw());
        DisplacementField {
            points,
            dy,
            dx,
            scale_r: (points - 1) as f32 / (height.max(2) - 1) as f32,
            scale_c: (points - 1) as f32 / (width.max(2) - 1) as f32,
        }
    }

    fn at(&self, r: usize, c: usize) -> (f32, f32) {
        let p = self.points;
        let (gy, gx) = (r as f32 * self.scale_r, c as f32 * self.scale_c);
        (
            bilinear(&self.dy, p, p, gy, gx),
            bilinear(&self.dx, p, p, gy, gx),
        )
    }
}

/// Bilinear sample of a height × width plane at (y, x); 0 outside.
fn bilinear(plane: &[f32], height: usize, width: usize, y: f32, x: f32) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let at = |yy: f32, xx: f32| -> f32 {
        if yy < 0.0 || xx < 0.0 || yy >= height as f32 || xx >= width as f32 {
            0.0
        } else {
            plane[yy as usize * width + xx as usize]
        }
    };
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1.0) * fx;
    let bottom = at(y0 + 1.0, x0) * (1.0 - fx) + at(y0 + 1.0, x0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Nearest-neighbour sample of a label plane at (y, x); background outside.
fn nearest(plane: &[u8], height: usize, width: usize, y: f32, x: f32) -> u8 {
    let (yy, xx) = (y.round(), x.round());
    if yy < 0.0 || xx < 0.0 || yy >= height as f32 || xx >= width as f32 {
        0
    } else {
        plane[yy as usize * width + xx as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sigma: f64) -> AugmentConfig {
        AugmentConfig {
            enabled: true,
            flip: true,
            intensity_scale: 0.0,
            intensity_shift: 0.0,
            elastic_sigma: sigma,
            elastic_points: 4,
        }
    }

    /// Channels 0 and 1 hold each pixel's own column and row, channel 2 is
    /// all ones (it stays exactly 1 only where all four bilinear neighbours
    /// lie inside the slice), and the mask is a block pattern of the same
    /// coordinates: after any geometric transform, the mask at a pixel must be
    /// the pattern at the coordinates the image says the pixel came from.
    #[test]
    fn image_and_mask_move_together() {
        let (h, w) = (32, 40);
        let n = h * w;
        let pattern = |r: usize, c: usize| ((r / 5 + c / 7) % 4) as u8;
        let (mut moved, mut checked) = (0, 0);
        for seed in 0..20 {
            let mut image: Vec<f32> = (0..n).map(|i| (i % w) as f32).collect();
            image.extend((0..n).map(|i| (i / w) as f32));
            image.extend(std::iter::repeat_n(1.0, n));
            let mut label: Vec<u8> = (0..n).map(|i| pattern(i / w, i % w)).collect();
            let before = label.clone();
            let mut rng = Rng::new(seed, 0);
            let sample = Sample {
                image: &mut image,
                label: Some(&mut label),
                channels: 3,
                height: h,
                width: w,
            };
            augment(sample, &config(2.5), &mut rng);
            moved += usize::from(label != before);
            for i in 0..n {
                if (image[2 * n + i] - 1.0).abs() > 1e-5 {
                    continue; // sampled partly outside the slice
                }
                let (x, y) = (image[i], image[n + i]);
                if (x.fract() - 0.5).abs() < 0.01 || (y.fract() - 0.5).abs() < 0.01 {
                    continue; // a rounding tie
                }
                let want = pattern(y.round() as usize, x.round() as usize);
                assert_eq!(label[i], want, "seed {seed} pixel {i} from ({y}, {x})");
                checked += 1;
            }
        }
        assert!(moved > 15, "augmentation should usually change the mask");
        assert!(checked > 20 * n / 2, "too few pixels checked: {checked}");
    }

    #[test]
    fn same_seed_same_result_and_background_stays_zero() {
        let mut cfg = config(2.0);
        cfg.intensity_scale = 0.2;
        cfg.intensity_shift = 0.3;
        let run = |seed| {
            let mut image = vec![0.0f32; 2 * 16 * 16];
            for r in 4..12 {
                for c in 4..12 {
                    image[r * 16 + c] = 1.0;
                    image[256 + r * 16 + c] = -1.0;
                }
            }
            let mut rng = Rng::new(seed, 3);
            augment(
                Sample {
                    image: &mut image,
                    label: None,
                    channels: 2,
                    height: 16,
                    width: 16,
                },
                &cfg,
                &mut rng,
            );
            image
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let out = run(1);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[256], 0.0);
    }
}
