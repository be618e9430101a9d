//! Eq. 3–4 over the labelled slices: for each, the gradient of its Dice
//! loss with respect to the input, the input moved by α along it, and the
//! latent step z' − z that moves to, through the VAE's encoder mean.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{GRADIENT_BATCH, Pass, to_host};
use crate::model::loss::one_hot;
use crate::model::{UNet, Vae, dice_gradient_wrt_input};
use crate::store::SliceStore;
use crate::strategy::step::calibrated_alpha;
use crate::strategy::{GradientSource, Latents};
use crate::train::MaskSource;

/// The smallest RMS input step (per pixel) whose encoding f32 activations
/// resolve from the unmoved input's; below it the step is taken to first
/// order through a central difference at this size.
const RESOLVABLE_RMS: f32 = 1e-2;

/// How long the steps of a round are.
#[derive(Clone, Copy, Debug)]
pub enum StepLength {
    /// α as given (Eq. 3 as printed).
    Literal(f64),
    /// One α for all sources, so that their median ‖z′ − z‖ is `target`.
    Calibrated { target: f64 },
}

/// The sources of a round and the α their steps were taken with.
pub struct Sources {
    pub sources: Vec<GradientSource>,
    pub alpha: f64,
}

/// z (from the pool's latent table) and z' for every labelled slice `ids`,
/// their masks read from `masks`.
#[allow(clippy::too_many_arguments)]
pub fn gradient_sources<B: AutodiffBackend>(
    unet: &UNet<B>,
    vae: &Vae<B::InnerBackend>,
    store: &SliceStore,
    ids: &[usize],
    masks: &dyn MaskSource,
    latents: &Latents,
    length: StepLength,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Sources, EngineError> {
    let meta = store.meta();
    let (h, w) = (meta.height, meta.width);
    let classes = meta.label_values.len();
    let mut sources = Vec::with_capacity(ids.len());
    let mut labels = Vec::new();
    let pass = Pass::new("input gradients", "labelled slices", GRADIENT_BATCH);
    pass.run::<B::InnerBackend>(store, ids, ctx, device, |batch, x| {
        // Every row, padding included: its gradient is its own, and unused.
        let n = batch.rows.len();
        labels.resize(n * h * w, 0);
        for (k, &id) in batch.rows.iter().enumerate() {
            masks.mask(id, &mut labels[k * h * w..(k + 1) * h * w])?;
        }
        let y: Vec<i64> = labels.iter().map(|&v| i64::from(v)).collect();
        let y = one_hot(
            Tensor::<B::InnerBackend, 3, Int>::from_data(TensorData::new(y, [n, h, w]), device),
            classes,
        );
        let z: Vec<&[f32]> = batch.rows.iter().map(|&id| latents.of(id)).collect();
        let g = dice_gradient_wrt_input::<B>(unet, x.clone(), y)
            .ok_or(EngineError::NoInputGradient)?
            .gradient;
        let steps = match length {
            StepLength::Literal(alpha) => latent_steps(vae, x, g, &z, alpha as f32)?,
            // Unit-α directions J·∂L/∂x, scaled once all are known.
            StepLength::Calibrated { .. } => first_order_steps(vae, x, g, 1.0)?,
        };
        for ((&id, z), step) in batch.ids.iter().zip(z).zip(steps) {
            sources.push(GradientSource::new(id, z.to_vec(), step));
        }
        Ok(())
    })?;
    match length {
        StepLength::Literal(alpha) => Ok(Sources { sources, alpha }),
        StepLength::Calibrated { target } => calibrate(sources, target),
    }
}

/// Scales unit-α steps by the one α that makes their median length
/// `target`. No direction at all (every step zero) is an error: the
/// gradient never reached the latent space, and a zero step would quietly
/// turn the method into nearest neighbours.
fn calibrate(sources: Vec<GradientSource>, target: f64) -> Result<Sources, EngineError> {
    let directions: Vec<Vec<f32>> = sources.iter().map(|s| s.step.clone()).collect();
    let alpha = calibrated_alpha(&directions, target).ok_or(EngineError::NoInputGradient)?;
    let sources = sources
        .into_iter()
        .map(|s| {
            let step = s
                .step
                .iter()
                .map(|v| (f64::from(*v) * alpha) as f32)
                .collect();
            GradientSource::new(s.slice, s.z, step)
        })
        .collect();
    Ok(Sources { sources, alpha })
}

/// Whether a slice's x + α·∂L/∂x is encoded directly (else its z' − z is
/// taken to first order): when its step, α × its gradient's RMS, is
/// resolvable. Decided per slice, so a slice's step never depends on which
/// slices share its batch.
fn resolvable(gradient_rms: f32, alpha: f32) -> bool {
    alpha * gradient_rms >= RESOLVABLE_RMS
}

/// z' − z for a batch `x` with input gradients `g` = ∂L/∂x and latents `z`
/// (the encoder means of `x`): z' = g_φ(x + α·∂L/∂x) (Eq. 3–4).
///
/// When the step α·∂L/∂x is below what f32 activations resolve (typical: a
/// Dice gradient of ~1e-4 per pixel times α = 1e-3), g_φ(x + α∂L/∂x) −
/// g_φ(x) is rounding noise. Then z' is taken to first order,
/// z' = z + α·J·∂L/∂x, with the Jacobian-vector product from a central
/// difference along the gradient at a resolvable step.
pub fn latent_steps<Bk: Backend>(
    vae: &Vae<Bk>,
    x: Tensor<Bk, 4>,
    g: Tensor<Bk, 4>,
    z: &[&[f32]],
    alpha: f32,
) -> Result<Vec<Vec<f32>>, EngineError> {
    let [n, c, h, w] = x.dims();
    let values = to_host(g.clone())?;
    let per_slice = c * h * w;
    let rms: Vec<f32> = values
        .chunks(per_slice)
        .map(|s| (s.iter().map(|v| v * v).sum::<f32>() / per_slice as f32).sqrt())
        .collect();
    let direct: Vec<bool> = rms.iter().map(|&r| resolvable(r, alpha)).collect();
    let mut steps = vec![Vec::new(); n];
    if direct.iter().any(|&d| d) {
        let z_prime = to_host(vae.encode_mean(x.clone() + g.clone().mul_scalar(alpha)))?;
        let d = z_prime.len() / n.max(1);
        for k in (0..n).filter(|&k| direct[k]) {
            steps[k] = (0..d).map(|j| z_prime[k * d + j] - z[k][j]).collect();
        }
    }
    if direct.iter().all(|&d| d) {
        return Ok(steps);
    }
    let first_order = first_order_steps(vae, x, g, alpha)?;
    for (k, step) in first_order.into_iter().enumerate() {
        if !direct[k] {
            steps[k] = step;
        }
    }
    Ok(steps)
}

/// α·J·∂L/∂x for every slice of the batch: the Jacobian-vector product of
/// the encoder mean along each slice's gradient, from a central difference
/// at a step of RMS `RESOLVABLE_RMS` per pixel. Zero for a zero gradient.
pub fn first_order_steps<Bk: Backend>(
    vae: &Vae<Bk>,
    x: Tensor<Bk, 4>,
    g: Tensor<Bk, 4>,
    alpha: f32,
) -> Result<Vec<Vec<f32>>, EngineError> {
    let [n, c, h, w] = x.dims();
    let per_slice = c * h * w;
    let scales: Vec<f32> = to_host(g.clone())?
        .chunks(per_slice)
        .map(|s| (s.iter().map(|v| v * v).sum::<f32>() / per_slice as f32).sqrt())
        .map(|r| if r > 0.0 { RESOLVABLE_RMS / r } else { 0.0 })
        .collect();
    let device = x.device();
    let scale = Tensor::<Bk, 1>::from_data(TensorData::new(scales.clone(), [n]), &device)
        .reshape([n, 1, 1, 1]);
    let delta = g * scale;
    let plus = to_host(vae.encode_mean(x.clone() + delta.clone()))?;
    let minus = to_host(vae.encode_mean(x - delta))?;
    let d = plus.len() / n.max(1);
    Ok((0..n)
        .map(|k| {
            // J·(s·g) ≈ (z₊ − z₋)/2, so α·J·g = α·(z₊ − z₋)/(2s).
            let factor = if scales[k] > 0.0 {
                alpha / (2.0 * scales[k])
            } else {
                0.0
            };
            (0..d)
                .map(|j| factor * (plus[k * d + j] - minus[k * d + j]))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::AutodiffModule;
    use burn::prelude::*;

    use super::*;
    use crate::device::CpuBackend;
    use crate::model::VaeSpec;
    use crate::rng::Rng;

    const N: usize = 2;
    const C: usize = 2;
    const S: usize = 8;

    /// A batch, a direction to step along, and a tiny VAE.
    struct Fixture {
        vae: Vae<Flex>,
        x: Vec<f32>,
        /// The step direction, standing in for ∂L/∂x: what is tested here
        /// is the latent step taken along it (the U-Net's input gradient is
        /// checked against finite differences in `model::gradient`). Fixed
        /// and smooth, with a different RMS per slice.
        g: Vec<f32>,
    }

    fn fixture() -> Fixture {
        let device = Default::default();
        let vae = VaeSpec {
            in_channels: C,
            size: [S, S],
            widths: vec![4, 8],
            z_dim: 3,
        }
        .init::<CpuBackend>(&device)
        .valid();
        let mut rng = Rng::new(5, 0);
        let x: Vec<f32> = (0..N * C * S * S).map(|_| rng.normal() as f32).collect();
        let per = C * S * S;
        let g = (0..N * per)
            .map(|i| {
                let k = (i / per) as f32;
                1e-4 * (1.0 + k) * (0.37 * i as f32 + k).sin()
            })
            .collect();
        Fixture { vae, x, g }
    }

    fn input(values: &[f32]) -> Tensor<Flex, 4> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [N, C, S, S]),
            &Default::default(),
        )
    }

    fn encode(f: &Fixture, values: &[f32]) -> Vec<f32> {
        to_host(f.vae.encode_mean(input(values))).unwrap()
    }

    fn rms(slice: &[f32]) -> f32 {
        (slice.iter().map(|v| v * v).sum::<f32>() / slice.len() as f32).sqrt()
    }

    /// Encodes the batch with slice `k` moved by `scale`·∂L/∂x and the
    /// other slice left as it is; returns slice `k`'s latent.
    fn encode_moved(f: &Fixture, k: usize, scale: f32) -> Vec<f64> {
        let per = C * S * S;
        let mut moved = f.x.clone();
        for (v, g) in moved[k * per..(k + 1) * per]
            .iter_mut()
            .zip(&f.g[k * per..(k + 1) * per])
        {
            *v += scale * g;
        }
        let z = encode(f, &moved);
        let d = z.len() / N;
        z[k * d..(k + 1) * d]
            .iter()
            .map(|&v| f64::from(v))
            .collect()
    }

    fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f64>], tolerance: f64) {
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!(
                norm > 0.0,
                "{what}: slice {k} has no latent step to compare"
            );
            let err = g
                .iter()
                .zip(w)
                .map(|(a, b)| (f64::from(*a) - b).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                err <= tolerance * norm,
                "{what}: slice {k}: z' − z = {g:?}, finite difference {w:?}"
            );
        }
    }

    fn steps(f: &Fixture, alpha: f32) -> Vec<Vec<f32>> {
        let z = encode(f, &f.x);
        let d = z.len() / N;
        let zs: Vec<&[f32]> = z.chunks(d).collect();
        latent_steps(&f.vae, input(&f.x), input(&f.g), &zs, alpha).unwrap()
    }

    /// Slice `k`'s z' − z taken directly: g_φ(x_k + α·∂L/∂x_k) − g_φ(x_k).
    fn direct_difference(f: &Fixture, k: usize, alpha: f32) -> Vec<f64> {
        let (moved, at) = (encode_moved(f, k, alpha), encode_moved(f, k, 0.0));
        moved.iter().zip(&at).map(|(a, b)| a - b).collect()
    }

    /// Slice `k`'s z' − z to first order: α·(g_φ(x + s·∂L/∂x) −
    /// g_φ(x − s·∂L/∂x))/(2s), with s making its probe resolvable.
    fn central_difference(f: &Fixture, k: usize, alpha: f32, rms: f32) -> Vec<f64> {
        let s = RESOLVABLE_RMS / rms;
        let (plus, minus) = (encode_moved(f, k, s), encode_moved(f, k, -s));
        plus.iter()
            .zip(&minus)
            .map(|(p, m)| f64::from(alpha) * (p - m) / (2.0 * f64::from(s)))
            .collect()
    }

    /// Each slice's own gradient RMS.
    fn gradient_rms(f: &Fixture) -> Vec<f32> {
        f.g.chunks(C * S * S).map(rms).collect()
    }

    #[test]
    fn calibration_scales_every_step_by_one_alpha_and_refuses_zero_gradients() {
        let sources = vec![
            GradientSource::new(0, vec![0.0, 0.0], vec![1e-6, 0.0]),
            GradientSource::new(1, vec![1.0, 0.0], vec![0.0, 3e-6]),
            GradientSource::new(2, vec![0.0, 1.0], vec![2e-6, 0.0]),
        ];
        let made = calibrate(sources, 0.4).unwrap();
        assert!((made.alpha - 2e5).abs() < 1.0, "{}", made.alpha);
        let lengths: Vec<f32> = made
            .sources
            .iter()
            .map(|s| rms(&s.step) * 2f32.sqrt())
            .collect();
        assert!((lengths[2] - 0.4).abs() < 1e-5, "{lengths:?}");
        assert!((lengths[1] / lengths[0] - 3.0).abs() < 1e-4, "{lengths:?}");
        assert_eq!(made.sources[1].z_prime, vec![1.0, made.sources[1].step[1]]);
        let zero = vec![GradientSource::new(0, vec![0.0; 2], vec![0.0; 2]); 3];
        assert!(matches!(
            calibrate(zero, 0.4),
            Err(EngineError::NoInputGradient)
        ));
    }

    #[test]
    fn a_resolvable_step_is_the_forward_difference_of_each_slices_encoding() {
        let f = fixture();
        let rms = gradient_rms(&f);
        let smallest = rms.iter().copied().fold(f32::MAX, f32::min);
        assert!(smallest > 0.0, "the Dice gradient vanished");
        let alpha = 2.0 * RESOLVABLE_RMS / smallest;
        assert!(rms.iter().all(|&r| resolvable(r, alpha)));
        let want: Vec<Vec<f64>> = (0..N).map(|k| direct_difference(&f, k, alpha)).collect();
        assert_close("direct", &steps(&f, alpha), &want, 1e-3);
    }

    #[test]
    fn a_step_below_f32_resolution_is_a_central_difference_scaled_to_alpha() {
        let f = fixture();
        let rms = gradient_rms(&f);
        let largest = rms.iter().copied().fold(0.0f32, f32::max);
        let alpha = 1e-3 * RESOLVABLE_RMS / largest;
        assert!(rms.iter().all(|&r| !resolvable(r, alpha)));
        let taken = steps(&f, alpha);
        let want: Vec<Vec<f64>> = (0..N)
            .map(|k| central_difference(&f, k, alpha, rms[k]))
            .collect();
        assert_close("first order", &taken, &want, 1e-3);
        // Far below the f32 spacing of z, yet not zero, and linear in α.
        assert!(taken.iter().flatten().any(|v| v.abs() > 0.0));
        let doubled = steps(&f, 2.0 * alpha);
        for (a, b) in taken.iter().flatten().zip(doubled.iter().flatten()) {
            assert!(
                (2.0 * a - b).abs() <= 1e-6 * b.abs().max(1e-12),
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn in_a_mixed_batch_each_slice_takes_its_own_step() {
        let f = fixture();
        let rms = gradient_rms(&f);
        let (lo, hi) = (rms[0].min(rms[1]), rms[0].max(rms[1]));
        assert!(hi > lo, "the two slices' gradients have the same RMS");
        // Resolvable for the slice with the larger gradient only.
        let alpha = RESOLVABLE_RMS / (0.5 * (lo + hi));
        let taken = steps(&f, alpha);
        for k in 0..N {
            let want = if resolvable(rms[k], alpha) {
                direct_difference(&f, k, alpha)
            } else {
                central_difference(&f, k, alpha, rms[k])
            };
            assert_close("mixed", &taken[k..=k], &[want], 1e-3);
        }
    }
}
