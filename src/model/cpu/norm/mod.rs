//! Batch normalisation fused with the activation that follows it.

mod autodiff;
mod kernels;

pub use kernels::Activation;

use burn::prelude::*;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use super::{Route, Served, flex_values, from_primitive, to_flex, to_tracked};
use kernels::{Planes, Saved};

/// The normalised, activated tensor, and the batch statistics it used
/// (training only) for the caller's running averages.
pub struct Normalized<B: Backend> {
    pub y: Tensor<B, 4>,
    /// Per-channel mean and biased variance of this batch.
    pub batch_statistics: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
}

/// `act(γ·(x − μ)/√(σ² + ε) + β)` per channel, with μ, σ² from this batch
/// (`running` = None) or the given running averages.
pub fn batch_norm<B: Backend>(
    served: Served,
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    running: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    epsilon: f64,
    activation: Activation,
) -> Normalized<B> {
    let route = served.0;
    let device = x.device();
    let [batch, channels, h, w] = x.dims();
    let planes = Planes {
        batch,
        channels,
        pixels: h * w,
    };
    let gamma_values = flex_values(route, gamma.clone());
    let beta_values = flex_values(route, beta.clone());
    // x as Flex values; the tracked handle kept for the autodiff node.
    let (x_flex, tracked) = match route {
        Route::Flex => (to_flex(x).to_contiguous(), None),
        Route::AutodiffFlex => {
            let t = to_tracked(x);
            (t.primitive.to_contiguous(), Some(t))
        }
    };
    let values = x_flex.storage::<f32>();
    let from_batch = running.is_none();
    let (mean, var) = match running {
        Some((mean, var)) => (flex_values(route, mean), flex_values(route, var)),
        None => kernels::batch_statistics(planes, values),
    };
    let map = kernels::affine(&gamma_values, &beta_values, &mean, &var, epsilon);
    let y = FlexTensor::from_data(TensorData::new(
        kernels::normalize(planes, values, &map.scale, &map.shift, activation),
        [batch, channels, h, w],
    ));
    let batch_statistics = from_batch.then(|| {
        let vector =
            |v: &[f32]| Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [channels]), &device);
        (vector(&mean), vector(&var))
    });
    let y = match tracked {
        None => from_primitive(y),
        Some(x) => {
            let saved = Saved {
                gamma: gamma_values,
                inv_std: map.inv_std,
                mean,
                scale: map.scale,
                shift: map.shift,
                activation,
                batch_statistics: from_batch,
            };
            let (gamma, beta) = (to_tracked(gamma), to_tracked(beta));
            from_primitive(autodiff::track(planes, saved, &x, &gamma, &beta, y))
        }
    };
    Normalized {
        y,
        batch_statistics,
    }
}
