//! Eq. 3: the gradient of the Dice loss with respect to the input slice,
//! x' = x + α·∂L_Dice/∂x, computed through a trained U-Net frozen in eval mode.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::loss::dice_loss_from_logits;
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
    let n = images.dims()[0];
    let frozen = model.clone().no_grad();
    let x = Tensor::<B, 4>::from_inner(images).require_grad();
    let y = Tensor::<B, 4>::from_inner(targets);
    let logits = frozen.forward(x.clone(), Mode::Eval).logits;
    let per_slice: Vec<Tensor<B, 1>> = (0..n)
        .map(|i| dice_loss_from_logits(logits.clone().narrow(0, i, 1), y.clone().narrow(0, i, 1)))
        .collect();
    let losses = Tensor::cat(per_slice, 0);
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
    use crate::model::loss::one_hot;
    use crate::rng::Rng;
    use burn::backend::Flex;

    /// The analytic input gradient agrees with central finite differences of
    /// the loss through the same eval-mode network.
    #[test]
    fn input_gradient_matches_finite_differences() {
        let device = Default::default();
        let spec = UNetSpec {
            in_channels: 2,
            classes: 3,
            widths: vec![3, 4],
            bottleneck: 5,
        };
        let model = spec.init::<CpuBackend>(&device);
        let (n, c, h, w) = (2, 2, 8, 8);
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

        let plain = model.valid();
        let loss_of = |v: &[f32], slice: usize| -> f64 {
            let x =
                Tensor::<Flex, 4>::from_data(TensorData::new(v.to_vec(), [n, c, h, w]), &device);
            let logits = plain.forward(x, Mode::Eval).logits;
            let l =
                dice_loss_from_logits(logits.narrow(0, slice, 1), y.clone().narrow(0, slice, 1));
            f64::from(l.into_scalar())
        };
        let step = 1e-2f32;
        let mut compared = 0;
        for _ in 0..24 {
            let i = rng.below(values.len());
            let slice = i / (c * h * w);
            let (mut up, mut down) = (values.clone(), values.clone());
            up[i] += step;
            down[i] -= step;
            let numeric = (loss_of(&up, slice) - loss_of(&down, slice)) / (2.0 * f64::from(step));
            let a = f64::from(grad[i]);
            let tolerance = 2e-3 + 0.05 * numeric.abs().max(a.abs());
            assert!(
                (a - numeric).abs() < tolerance,
                "pixel {i}: analytic {a} vs numeric {numeric}"
            );
            compared += 1;
        }
        assert_eq!(compared, 24);
        assert!(grad.iter().any(|g| g.abs() > 1e-6), "gradient is all zero");
    }
}
