//! The paper's losses: multi-class soft Dice (Eq. 2) for the U-Net and
//! reconstruction + KL divergence (Eq. 1) for the VAE.

use burn::prelude::*;
use burn::tensor::activation::softmax;

/// Added to both numerator and denominator of each class's Dice term
/// (Eq. 2). The paper leaves 0/0 undefined — a class absent from both mask
/// and prediction. With the same smoothing on both sides that class scores
/// 1 (perfect, as it is), a class predicted where the mask has none scores
/// s/(Σp² + s) → 0 as the false positives grow, and a present class is
/// changed by at most one pixel's worth. Smoothing only the denominator
/// (ε → 0) scored an absent class 0, so a perfectly segmented tumour-free
/// slice lost −0.25 and its false positives cost nothing.
pub const DICE_SMOOTHING: f64 = 1.0;

/// One-hot encoding of class indices: [batch, h, w] → [batch, classes, h, w].
pub fn one_hot<B: Backend>(labels: Tensor<B, 3, Int>, classes: usize) -> Tensor<B, 4> {
    let [n, h, w] = labels.dims();
    let device = labels.device();
    let ids = Tensor::<B, 1, Int>::arange(0..classes as i64, &device).reshape([1, classes, 1, 1]);
    labels
        .reshape([n, 1, h, w])
        .expand([n, classes, h, w])
        .equal(ids.expand([n, classes, h, w]))
        .float()
}

/// Eq. 2, averaged over the batch, with symmetric smoothing s:
/// L = −(1/|K|) Σ_k (2·Σ_i ŷ_ik·y_ik + s) / (Σ_i ŷ_ik² + Σ_i y_ik² + s),
/// per slice (the printed −(2/|K|) Σ_k Σŷy / (Σŷ² + Σy²) when s = 0).
/// `probabilities` and `targets` are [batch, classes, h, w]; the value lies
/// in [−1, 0] (−1 = perfect in every class, absent classes included).
pub fn soft_dice_loss<B: Backend>(
    probabilities: Tensor<B, 4>,
    targets: Tensor<B, 4>,
) -> Tensor<B, 1> {
    soft_dice_loss_per_slice(probabilities, targets).mean()
}

/// Eq. 2 per slice, [batch]: what the learning-loss head learns to predict
/// (its mean over the batch is `soft_dice_loss`).
pub fn soft_dice_loss_per_slice<B: Backend>(
    probabilities: Tensor<B, 4>,
    targets: Tensor<B, 4>,
) -> Tensor<B, 1> {
    let [n, k, h, w] = probabilities.dims();
    let p = probabilities.reshape([n, k, h * w]);
    let y = targets.reshape([n, k, h * w]);
    let overlap = (p.clone() * y.clone())
        .sum_dim(2)
        .mul_scalar(2.0)
        .add_scalar(DICE_SMOOTHING);
    let norms = (p.square() + y.square())
        .sum_dim(2)
        .add_scalar(DICE_SMOOTHING);
    (overlap / norms)
        .sum_dim(1)
        .reshape([n])
        .mul_scalar(-1.0 / k as f64)
}

/// Dice loss straight from logits (softmax over classes first), averaged
/// over the batch.
pub fn dice_loss_from_logits<B: Backend>(
    logits: Tensor<B, 4>,
    targets: Tensor<B, 4>,
) -> Tensor<B, 1> {
    dice_loss_per_slice_from_logits(logits, targets).mean()
}

/// Eq. 2 per slice from logits, [batch]: one fused kernel on the CPU
/// backend, one autodiff node of three launches on the GPU backends
/// (`dice_node`), burn's operations elsewhere.
pub fn dice_loss_per_slice_from_logits<B: Backend>(
    logits: Tensor<B, 4>,
    targets: Tensor<B, 4>,
) -> Tensor<B, 1> {
    if let Some(served) = super::cpu::served(&logits) {
        return super::cpu::dice::dice_per_slice(served, logits, targets, DICE_SMOOTHING as f32);
    }
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    let (logits, targets) =
        match super::dice_node::dice_per_slice(logits, targets, DICE_SMOOTHING as f32) {
            Ok(losses) => return losses,
            Err(inputs) => inputs,
        };
    soft_dice_loss_per_slice(softmax(logits, 1), targets)
}

/// The two terms of Eq. 1, each averaged over the batch.
pub struct VaeLoss<B: Backend> {
    /// Squared error summed over channels and pixels: the Gaussian
    /// log-likelihood up to constants. Summing (not averaging) over pixels
    /// keeps the KL term from swamping reconstruction and collapsing the
    /// latent space.
    pub reconstruction: Tensor<B, 1>,
    /// KL(q(z|x) ‖ N(0, I)) summed over latent dimensions.
    pub kl: Tensor<B, 1>,
}

impl<B: Backend> VaeLoss<B> {
    pub fn total(&self, kl_weight: f64) -> Tensor<B, 1> {
        self.reconstruction.clone() + self.kl.clone().mul_scalar(kl_weight)
    }
}

pub fn vae_loss<B: Backend>(
    reconstruction: Tensor<B, 4>,
    input: Tensor<B, 4>,
    mean: Tensor<B, 2>,
    log_var: Tensor<B, 2>,
) -> VaeLoss<B> {
    let n = input.dims()[0] as f64;
    let squared = (reconstruction - input).square().sum().div_scalar(n);
    let kl = (log_var.clone().add_scalar(1.0) - mean.square() - log_var.exp())
        .sum()
        .mul_scalar(-0.5 / n);
    VaeLoss {
        reconstruction: squared,
        kl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn tensor4(values: &[f32], shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
    }

    #[test]
    fn soft_dice_matches_a_hand_computed_case() {
        // One slice, two classes, four pixels, s = 1.
        // class 0: p = [0.9, 0.2, 0.6, 0.1], y = [1, 0, 1, 0]
        //   Σp·y = 1.5, Σp² = 0.81+0.04+0.36+0.01 = 1.22, Σy² = 2 → (3+1)/(3.22+1)
        // class 1: p = [0.1, 0.8, 0.4, 0.9], y = [0, 1, 0, 1]
        //   Σp·y = 1.7, Σp² = 0.01+0.64+0.16+0.81 = 1.62, Σy² = 2 → (3.4+1)/(3.62+1)
        let p = tensor4(&[0.9, 0.2, 0.6, 0.1, 0.1, 0.8, 0.4, 0.9], [1, 2, 2, 2]);
        let y = tensor4(&[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0], [1, 2, 2, 2]);
        let want = -(4.0 / 4.22 + 4.4 / 4.62) / 2.0;
        let got: f32 = soft_dice_loss(p, y).into_scalar();
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn absent_classes_score_perfect_when_predicted_absent_and_cost_when_predicted() {
        // Three classes over four pixels; class 2 is in no mask.
        let y = tensor4(
            &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            [1, 3, 2, 2],
        );
        // Predicted absent too: all three classes perfect.
        let perfect: f32 = soft_dice_loss(y.clone(), y.clone()).into_scalar();
        assert!((perfect + 1.0).abs() < 1e-6, "{perfect}");
        // Class 2 predicted at 0.5 on the two class-1 pixels:
        //   class 0: perfect → 1
        //   class 1: p = [0, 0, .5, .5], Σpy = 1, Σp² = .5, Σy² = 2 → (2+1)/(2.5+1)
        //   class 2: p = [0, 0, .5, .5], Σpy = 0, Σp² = .5 → 1/(.5+1)
        let p = tensor4(
            &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5],
            [1, 3, 2, 2],
        );
        let want = -(1.0 + 3.0 / 3.5 + 1.0 / 1.5) / 3.0;
        let got: f32 = soft_dice_loss(p, y).into_scalar();
        assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn a_well_segmented_tumour_free_slice_scores_better_than_a_half_found_tumour() {
        // The bias Eq. 2 had with ε only in the denominator: a tumour-free
        // slice segmented perfectly scored −0.5 here (class 1 counted as 0).
        let empty = tensor4(&[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [1, 2, 2, 2]);
        let clean: f32 = soft_dice_loss(empty.clone(), empty).into_scalar();
        let tumour = tensor4(&[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0], [1, 2, 2, 2]);
        let half = tensor4(&[1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5], [1, 2, 2, 2]);
        let partial: f32 = soft_dice_loss(half, tumour).into_scalar();
        assert!(clean < partial, "tumour-free {clean} vs tumour {partial}");
    }

    #[test]
    fn perfect_prediction_scores_minus_one_and_batches_average() {
        let y = tensor4(&[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0], [1, 2, 2, 2]);
        let perfect: f32 = soft_dice_loss(y.clone(), y.clone()).into_scalar();
        assert!((perfect + 1.0).abs() < 1e-5);
        let wrong = tensor4(&[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0], [1, 2, 2, 2]);
        let batch = Tensor::cat(vec![y.clone(), wrong.clone()], 0);
        let targets = Tensor::cat(vec![y.clone(), y], 0);
        // The wrong slice: Σpy = 0, Σp² = Σy² = 2 per class → s/(4 + s) = 0.2.
        let mean: f32 = soft_dice_loss(batch, targets).into_scalar();
        assert!((mean + 0.6).abs() < 1e-5, "{mean}");
    }

    #[test]
    fn one_hot_and_vae_loss() {
        let device = Default::default();
        let labels = Tensor::<B, 3, Int>::from_data(
            TensorData::new(vec![0i32, 2, 1, 0], [1, 2, 2]),
            &device,
        );
        let encoded = one_hot(labels, 3).into_data().to_vec::<f32>().unwrap();
        assert_eq!(
            encoded,
            vec![1., 0., 0., 1., 0., 0., 1., 0., 0., 1., 0., 0.]
        );
        // Reconstruction error 0.5² × 4 pixels = 1; KL of N(1, e^0) vs N(0, 1) = ½·1 per dim.
        let x = tensor4(&[0.0; 4], [1, 1, 2, 2]);
        let r = tensor4(&[0.5; 4], [1, 1, 2, 2]);
        let mean = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device);
        let log_var = Tensor::<B, 2>::zeros([1, 2], &device);
        let loss = vae_loss(r, x, mean, log_var);
        assert!((loss.reconstruction.into_scalar() - 1.0).abs() < 1e-6);
        assert!((loss.kl.into_scalar() - 1.0).abs() < 1e-6);
    }
}
