//! A steered convolution's weight gradient with the batch folded into the
//! channels, for the parallelism its GEMM lacks (experimental:
//! `NEXTSLICE_GPU_WGRAD_FOLD=auto` or a group count).
//!
//! burn-cubecl's implicit-GEMM weight gradient is one GEMM of
//! Cout × Cin·k² outputs, each a sum over N·H·W, and cubek 0.2's matmuls
//! never split that sum. A 64-to-64-channel layer at 256², batch 32, sums
//! 2 M terms into a handful of output tiles, so a few of a GPU's
//! multiprocessors do all the work. On an H200 (stop 29) the passes without
//! weight gradients ran at 1.2× PyTorch and training at 0.06–0.14×.
//!
//! Folding G images into the channels (x as [N/G, G·Cin, H, W], ∂L/∂y as
//! [N/G, G·Cout, H, W], plain reshapes, which copy channels-last tensors)
//! makes the GEMM G² times larger and each sum G times shorter. Block
//! (j, j') of the folded gradient pairs
//! image n·G+j's ∂L/∂y with image n·G+j''s input, so the G diagonal blocks,
//! summed, are the gradient; the others are thrown away (G times the
//! arithmetic, traded for G² times the tiles). Off until a GPU measures it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

/// The environment variable that asks for the fold: `auto` (a group count
/// from the layer's shape), a number (at most that many groups), or
/// `off`/unset.
pub const FOLD_ENV: &str = "NEXTSLICE_GPU_WGRAD_FOLD";

/// Whether, and how far, weight gradients fold the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    Off,
    /// Enough groups to give the GEMM [`AUTO_OUTPUTS`] outputs, at most
    /// [`AUTO_MAX_GROUPS`].
    Auto,
    /// At most this many groups.
    AtMost(usize),
}

/// The GEMM size `Auto` aims for: one wave of 64×64 output tiles over an
/// H100's or H200's 132 multiprocessors.
pub const AUTO_OUTPUTS: usize = 132 * 64 * 64;
/// The most groups `Auto` folds: G groups cost G times the arithmetic.
pub const AUTO_MAX_GROUPS: usize = 8;

thread_local! {
    /// Set by [`with_weight_grad_fold`]; `None` defers to the environment.
    static OVERRIDE: Cell<Option<Fold>> = const { Cell::new(None) };
}

/// Runs `f` with weight gradients on this thread folded as `fold` says,
/// whatever the environment says.
pub fn with_weight_grad_fold<R>(fold: Fold, f: impl FnOnce() -> R) -> R {
    crate::switch::with_thread_value(&OVERRIDE, Some(fold), f)
}

/// How weight gradients fold on this thread.
pub fn weight_grad_fold() -> Fold {
    static FROM_ENV: OnceLock<Fold> = OnceLock::new();
    OVERRIDE.get().unwrap_or_else(|| {
        let meaning = ["auto, off or a group count", "no fold"];
        crate::switch::from_env(&FROM_ENV, FOLD_ENV, parse, Fold::Off, meaning)
    })
}

fn parse(value: &str) -> Option<Fold> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "off" | "1" => Some(Fold::Off),
        "auto" => Some(Fold::Auto),
        n => n.parse().ok().filter(|&g| g >= 1).map(Fold::AtMost),
    }
}

/// The groups a weight gradient of `weight` ([Cout, Cin, kh, kw]) over a
/// batch of `batch` folds into: a divisor of the batch, 1 for none.
pub(super) fn groups(fold: Fold, batch: usize, weight: [usize; 4]) -> usize {
    let wanted = match fold {
        Fold::Off => 1,
        Fold::AtMost(g) => g,
        Fold::Auto => {
            let outputs = weight.iter().product::<usize>().max(1);
            // G² · outputs ≥ AUTO_OUTPUTS.
            let mut g = 1;
            while g < AUTO_MAX_GROUPS && g * g * outputs < AUTO_OUTPUTS {
                g += 1;
            }
            g
        }
    };
    (1..=wanted.min(batch).max(1))
        .rev()
        .find(|&g| batch.is_multiple_of(g))
        .unwrap_or(1)
}

static FOLDED: AtomicU64 = AtomicU64::new(0);

/// Weight gradients computed folded in this process: whether the fold is
/// in force (the models bench prints it).
pub fn folded_weight_gradients() -> u64 {
    FOLDED.load(Ordering::Relaxed)
}

/// [N, C, H, W] as [N/G, G·C, H, W]: image n·G+j's channels become block
/// j of folded image n.
pub(super) fn fold<I: Backend>(t: FloatTensor<I>, groups: usize) -> FloatTensor<I> {
    let t = Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(t));
    let [n, c, h, w] = t.dims();
    t.reshape([n / groups, groups * c, h, w])
        .into_primitive()
        .tensor()
}

/// The gradient from a folded one ([G·Cout, G·Cin, kh, kw]): the sum of its
/// G diagonal blocks.
pub(super) fn unfold<I: Backend>(folded: FloatTensor<I>, groups: usize) -> FloatTensor<I> {
    FOLDED.fetch_add(1, Ordering::Relaxed);
    let folded = Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(folded));
    let [gco, gci, _, _] = folded.dims();
    let (co, ci) = (gco / groups, gci / groups);
    let block = |j: usize| {
        folded
            .clone()
            .slice([j * co..(j + 1) * co, j * ci..(j + 1) * ci])
    };
    (1..groups)
        .fold(block(0), |sum, j| sum + block(j))
        .into_primitive()
        .tensor()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::device::CpuBackend;

    #[test]
    fn the_environment_is_read_as_auto_off_or_a_count() {
        assert_eq!(parse("auto"), Some(Fold::Auto));
        assert_eq!(parse(" OFF "), Some(Fold::Off));
        assert_eq!(parse(""), Some(Fold::Off));
        assert_eq!(parse("4"), Some(Fold::AtMost(4)));
        assert_eq!(parse("0"), None);
        assert_eq!(parse("many"), None);
    }

    #[test]
    fn groups_divide_the_batch_and_auto_widens_only_narrow_gemms() {
        // 64 → 64 channels, 3×3: 36 864 outputs, 4 groups reach 132·64².
        assert_eq!(groups(Fold::Auto, 32, [64, 64, 3, 3]), 4);
        // The first layer (4 modalities): the cap.
        assert_eq!(groups(Fold::Auto, 32, [64, 4, 3, 3]), AUTO_MAX_GROUPS);
        // Already wide: none.
        assert_eq!(groups(Fold::Auto, 32, [512, 512, 3, 3]), 1);
        // A divisor of the batch, never more than it.
        assert_eq!(groups(Fold::Auto, 6, [64, 4, 3, 3]), 6);
        assert_eq!(groups(Fold::AtMost(4), 6, [8, 8, 3, 3]), 3);
        assert_eq!(groups(Fold::AtMost(8), 1, [8, 8, 3, 3]), 1);
        assert_eq!(groups(Fold::Off, 32, [8, 8, 3, 3]), 1);
    }

    /// The fold's algebra on the CPU: a weight gradient computed as
    /// Σₙ ∂L/∂yₙ ⊗ xₙ (1×1 kernels: a plain matrix product per image) from
    /// folded operands, unfolded, equals the one from the batch as it is.
    #[test]
    fn the_diagonal_blocks_of_a_folded_gradient_sum_to_the_gradient() {
        type B = CpuBackend;
        let device = Default::default();
        let (n, ci, co, hw) = (6, 3, 5, 4);
        let x = Tensor::<B, 4>::random([n, ci, 2, 2], Distribution::Normal(0.0, 1.0), &device);
        let dy = Tensor::<B, 4>::random([n, co, 2, 2], Distribution::Normal(0.0, 1.0), &device);
        // ∂L/∂w[o, i] = Σ over images and pixels of dy[o] · x[i].
        let gradient = |x: Tensor<B, 4>, dy: Tensor<B, 4>| -> Tensor<B, 4> {
            let [n, ci, _, _] = x.dims();
            let co = dy.dims()[1];
            let x = x.reshape([n, ci, hw]).swap_dims(1, 2); // [n, hw, ci]
            let dy = dy.reshape([n, co, hw]); // [n, co, hw]
            dy.matmul(x).sum_dim(0).reshape([co, ci, 1, 1])
        };
        let plain = gradient(x.clone(), dy.clone());
        for g in [2, 3, 6] {
            let xf = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(fold::<B>(
                x.clone().into_primitive().tensor(),
                g,
            )));
            let dyf = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(fold::<B>(
                dy.clone().into_primitive().tensor(),
                g,
            )));
            assert_eq!(xf.dims(), [n / g, g * ci, 2, 2]);
            let folded = gradient(xf, dyf);
            assert_eq!(folded.dims(), [g * co, g * ci, 1, 1]);
            let unfolded = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(unfold::<B>(
                folded.into_primitive().tensor(),
                g,
            )));
            unfolded
                .into_data()
                .assert_approx_eq::<f32>(&plain.to_data(), Default::default());
        }
    }
}
