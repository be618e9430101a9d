//! Eq. 3: the gradient of the Dice loss with respect to the input slice,
//! x' = x + α·∂L_Dice/∂x, computed through a trained U-Net frozen in eval mode.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::loss::dice_loss_per_slice_from_logits;
use super::norm::Mode;
use super::unet::UNet;

/// Per-slice input gradients and Dice losses for a batch.
pub struct InputGradient<B: Backend> {
    /// ∂L_Dice(x_i, y_i)/∂x_i, [batch, channels, height, width].
    pub gradient: Tensor<B, 4>,
    /// L_Dice(x_i, y_i) per slice, [batch].
    pub loss: Tensor<B, 1>,
}

/// ∂L_Dice/∂x for each slice of `images` against its one-hot `targets`
/// ([batch, classes, h, w]). The model runs in eval mode (running batch-norm
/// statistics), so slices do not influence each other and the gradient of
/// the summed loss is each slice's own gradient. Weights get no gradients.
/// `None` when no gradient reaches the input: a zero gradient in its place
/// would quietly turn gradient-guided sampling into nearest neighbours.
pub fn dice_gradient_wrt_input<B: AutodiffBackend>(
    model: &UNet<B>,
    images: Tensor<B::InnerBackend, 4>,
    targets: Tensor<B::InnerBackend, 4>,
) -> Option<InputGradient<B::InnerBackend>> {
    let frozen = model.clone().no_grad();
    let x = Tensor::<B, 4>::from_inner(images).require_grad();
    let y = Tensor::<B, 4>::from_inner(targets);
    let logits = frozen.forward(x.clone(), Mode::Eval).logits;
    // Each slice's own loss, all in one pass (no per-slice narrow and cat).
    let losses = dice_loss_per_slice_from_logits(logits, y);
    let grads = losses.clone().sum().backward();
    let gradient = x.grad(&grads)?;
    Some(InputGradient {
        gradient,
        loss: losses.inner(),
    })
}

/// The same model without autodiff, for plain inference.
pub fn inference_model<B: AutodiffBackend>(model: &UNet<B>) -> UNet<B::InnerBackend> {
    model.valid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;
    use crate::model::UNetSpec;
    use crate::model::loss::{one_hot, soft_dice_loss_per_slice};
    use crate::rng::Rng;
    use burn::backend::Flex;
    use burn::tensor::activation::softmax;

    /// The analytic input gradient agrees with central finite differences of
    /// the loss through the same eval-mode network: a tiny one (im2col
    /// convolutions) and one wide and large enough for Winograd's.
    #[test]
    fn input_gradient_matches_finite_differences() {
        for (widths, bottleneck, size) in [(vec![3, 4], 5, 8), (vec![16, 16], 16, 16)] {
            let spec = UNetSpec {
                in_channels: 2,
                classes: 3,
                widths,
                bottleneck,
            };
            input_gradient_matches_finite_differences_for(&spec, size);
        }
    }

    fn input_gradient_matches_finite_differences_for(spec: &UNetSpec, size: usize) {
        let device = Default::default();
        let (n, c, h, w) = (2, 2, size, size);
        // burn's parameters initialise lazily, on first use, and a clone of
        // an unused one draws its own values: use the model once, so the
        // gradient's frozen copy and the plain copy below share weights.
        <CpuBackend as Backend>::seed(&device, 0);
        let model = spec.init::<CpuBackend>(&device);
        let _ = model.forward(Tensor::zeros([1, c, h, w], &device), Mode::Eval);
        let mut rng = Rng::new(5, 0);
        let values: Vec<f32> = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
        let labels: Vec<i32> = (0..n * h * w).map(|_| rng.below(3) as i32).collect();
        let x =
            Tensor::<Flex, 4>::from_data(TensorData::new(values.clone(), [n, c, h, w]), &device);
        let y = one_hot(
            Tensor::<Flex, 3, Int>::from_data(TensorData::new(labels, [n, h, w]), &device),
            3,
        );
        let analytic = dice_gradient_wrt_input::<CpuBackend>(&model, x, y.clone())
            .expect("the gradient reaches the input");
        let grad = analytic.gradient.into_data().to_vec::<f32>().unwrap();

        // Directional derivatives of the summed per-slice losses: along the
        // gradient itself (where it must equal ‖g‖; a single pixel's finite
        // difference drowns in f32 rounding), and along random directions.
        let plain = model.valid();
        let total_loss = |v: &[f32]| -> f64 {
            let x =
                Tensor::<Flex, 4>::from_data(TensorData::new(v.to_vec(), [n, c, h, w]), &device);
            let logits = plain.forward(x, Mode::Eval).logits;
            let l = soft_dice_loss_per_slice(softmax(logits, 1), y.clone()).sum();
            f64::from(l.into_scalar())
        };
        let analytic_loss = f64::from(analytic.loss.clone().sum().into_scalar());
        assert!(
            (analytic_loss - total_loss(&values)).abs() < 1e-5,
            "the gradient's forward pass and plain inference disagree"
        );
        let norm = grad
            .iter()
            .map(|&g| f64::from(g).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(norm > 1e-6, "gradient is all zero");
        let unit = |d: Vec<f64>| {
            let len = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            d.into_iter().map(|v| v / len).collect::<Vec<f64>>()
        };
        let mut directions = vec![unit(grad.iter().map(|&g| f64::from(g)).collect())];
        for _ in 0..2 {
            directions.push(unit((0..values.len()).map(|_| rng.normal()).collect()));
        }
        let step = 0.05;
        for (k, d) in directions.iter().enumerate() {
            let moved = |sign: f64| -> Vec<f32> {
                values
                    .iter()
                    .zip(d)
                    .map(|(&v, &d)| (f64::from(v) + sign * step * d) as f32)
                    .collect()
            };
            let numeric = (total_loss(&moved(1.0)) - total_loss(&moved(-1.0))) / (2.0 * step);
            let analytic: f64 = grad.iter().zip(d).map(|(&g, &d)| f64::from(g) * d).sum();
            assert!(
                (analytic - numeric).abs() < 0.03 * norm,
                "{spec:?}, direction {k}: analytic {analytic:.3e} vs numeric {numeric:.3e} (‖g‖ {norm:.3e})"
            );
        }
    }
}
