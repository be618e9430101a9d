//! Batch normalisation fused with the activation after it, on contiguous
//! f32 [batch, channels, pixels] buffers: statistics in one pass, normalise
//! and activate in another; backward in two. Planes (one image, one
//! channel) run in parallel.

use rayon::prelude::*;

/// The element-wise function applied after the normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// LeakyReLU with this negative slope.
    LeakyRelu(f32),
}

impl Activation {
    #[inline]
    fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu(slope) => {
                if z >= 0.0 {
                    z
                } else {
                    z * slope
                }
            }
        }
    }

    /// The derivative at `z` (0 at a ReLU's kink, as burn takes it).
    #[inline]
    fn derivative(self, z: f32) -> f32 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(slope) => {
                if z >= 0.0 {
                    1.0
                } else {
                    slope
                }
            }
        }
    }
}

/// Batch, channels and pixels per plane of an [n, c, h, w] tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    pub batch: usize,
    pub channels: usize,
    pub pixels: usize,
}

impl Planes {
    fn count(&self) -> f64 {
        (self.batch * self.pixels) as f64
    }
}

/// Per-channel sums over every plane of that channel, of `f(plane index,
/// plane)` → (a, b), accumulated in f64.
fn channel_sums(
    p: Planes,
    data: &[f32],
    f: impl Fn(usize, &[f32]) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let per_plane: Vec<(f64, f64)> = data
        .par_chunks(p.pixels.max(1))
        .enumerate()
        .map(|(i, plane)| f(i, plane))
        .collect();
    let mut sums = vec![(0.0, 0.0); p.channels];
    for (i, (a, b)) in per_plane.into_iter().enumerate() {
        let s = &mut sums[i % p.channels];
        s.0 += a;
        s.1 += b;
    }
    sums
}

/// Values summed in f32 before the running total moves to f64.
const BLOCK: usize = 1024;

/// Sum of a plane's values and of their squares, eight lanes at a time in
/// f32 per block and in f64 across blocks (accurate and vectorised).
fn sum_and_squares(plane: &[f32]) -> (f64, f64) {
    let (mut sum, mut squares) = (0.0f64, 0.0f64);
    for block in plane.chunks(BLOCK) {
        let (mut s, mut q) = ([0.0f32; 8], [0.0f32; 8]);
        let mut lanes = block.chunks_exact(8);
        for v in &mut lanes {
            for l in 0..8 {
                s[l] += v[l];
                q[l] += v[l] * v[l];
            }
        }
        for &v in lanes.remainder() {
            s[0] += v;
            q[0] += v * v;
        }
        sum += s.iter().map(|&v| f64::from(v)).sum::<f64>();
        squares += q.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (sum, squares)
}

/// Per-channel batch mean and (biased) variance.
pub fn batch_statistics(p: Planes, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let sums = channel_sums(p, x, |_, plane| sum_and_squares(plane));
    let n = p.count().max(1.0);
    sums.into_iter()
        .map(|(s, q)| {
            let mean = s / n;
            (mean as f32, (q / n - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

/// The per-channel affine map the normalisation is, y = act(x·scale + shift),
/// with 1/√(var + ε) kept for the backward pass.
pub struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub inv_std: Vec<f32>,
}

pub fn affine(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f64) -> Affine {
    let inv_std: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (f64::from(v) + epsilon).sqrt())
        .collect();
    let scale: Vec<f64> = gamma
        .iter()
        .zip(&inv_std)
        .map(|(&g, i)| f64::from(g) * i)
        .collect();
    Affine {
        shift: beta
            .iter()
            .zip(mean.iter().zip(&scale))
            .map(|(&b, (&m, a))| (f64::from(b) - f64::from(m) * a) as f32)
            .collect(),
        scale: scale.into_iter().map(|a| a as f32).collect(),
        inv_std: inv_std.into_iter().map(|i| i as f32).collect(),
    }
}

/// y = act(x·scale[c] + shift[c]).
pub fn normalize(p: Planes, x: &[f32], scale: &[f32], shift: &[f32], act: Activation) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(p.pixels.max(1))
        .zip(x.par_chunks(p.pixels.max(1)))
        .enumerate()
        .for_each(|(i, (y, x))| {
            let (a, b) = (scale[i % p.channels], shift[i % p.channels]);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = act.apply(x * a + b);
            }
        });
    y
}

/// What the backward pass needs besides x and ∂L/∂y.
#[derive(Clone, Debug)]
pub struct Saved {
    pub gamma: Vec<f32>,
    pub mean: Vec<f32>,
    /// 1/√(var + ε)
    pub inv_std: Vec<f32>,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub activation: Activation,
    /// Whether mean and variance came from this batch (training), so the
    /// gradient flows through them too.
    pub batch_statistics: bool,
}

/// Gradients of x, γ and β.
pub struct Grads {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// With g = ∂L/∂y·act′(z), x̂ = (x − μ)/σ and m values per channel:
/// ∂L/∂β = Σg, ∂L/∂γ = Σg·x̂, and ∂L/∂x = γ/σ·(g − Σg/m − x̂·Σg·x̂/m) with
/// batch statistics, γ/σ·g with fixed ones. Without batch statistics and
/// with `affine` false (a frozen network's input gradient, Eq. 3) the sums
/// are not needed, and the pass that makes them is skipped; γ and β's
/// gradients are then empty.
pub fn backward(p: Planes, x: &[f32], dy: &[f32], s: &Saved, affine: bool) -> Grads {
    let width = p.pixels.max(1);
    let sums = if !affine && !s.batch_statistics {
        vec![(0.0, 0.0); p.channels]
    } else {
        channel_sums_of_gradients(p, x, dy, s)
    };
    let n = p.count().max(1.0);
    let mut dx = vec![0.0; x.len()];
    dx.par_chunks_mut(width)
        .zip(x.par_chunks(width).zip(dy.par_chunks(width)))
        .enumerate()
        .for_each(|(i, (dx, (x, dy)))| {
            let c = i % p.channels;
            let (a, b, mean, inv) = (s.scale[c], s.shift[c], s.mean[c], s.inv_std[c]);
            let gain = s.gamma[c] * inv;
            let (mean_g, mean_gx) = if s.batch_statistics {
                ((sums[c].0 / n) as f32, (sums[c].1 / n) as f32)
            } else {
                (0.0, 0.0)
            };
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                let g = dy * s.activation.derivative(x * a + b);
                *dx = gain * (g - mean_g - (x - mean) * inv * mean_gx);
            }
        });
    let (gamma, beta) = if affine {
        (
            sums.iter().map(|s| s.1 as f32).collect(),
            sums.iter().map(|s| s.0 as f32).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Grads { x: dx, gamma, beta }
}

/// Per channel, Σg and Σg·x̂ (see [`backward`]).
fn channel_sums_of_gradients(p: Planes, x: &[f32], dy: &[f32], s: &Saved) -> Vec<(f64, f64)> {
    channel_sums(p, dy, |i, dy| {
        let c = i % p.channels;
        let x = &x[i * p.pixels..(i + 1) * p.pixels];
        let (a, b, mean, inv) = (s.scale[c], s.shift[c], s.mean[c], s.inv_std[c]);
        let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
        // f32 within a block (vectorised), f64 across blocks (accurate).
        for (x, dy) in x.chunks(BLOCK).zip(dy.chunks(BLOCK)) {
            let (mut block_g, mut block_gx) = (0.0f32, 0.0f32);
            for (&x, &dy) in x.iter().zip(dy) {
                let g = dy * s.activation.derivative(x * a + b);
                block_g += g;
                block_gx += g * (x - mean) * inv;
            }
            sum_g += f64::from(block_g);
            sum_gx += f64::from(block_gx);
        }
        (sum_g, sum_gx)
    })
}
