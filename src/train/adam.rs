//! Adam with burn's defaults (β₁ 0.9, β₂ 0.999, ε 1e-5), whose update runs
//! as one GPU kernel per parameter tensor (`gpu::adam`) where the backend
//! allows, and from burn's tensor operations elsewhere.
//!
//! Its state is burn's own `AdamState`, so checkpoints written with burn's
//! Adam load unchanged.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::gpu::adam::{AdamScalars, adam_step};

/// The optimiser every training loop uses.
pub fn adam<B: AutodiffBackend, M: AutodiffModule<B>>() -> OptimizerAdaptor<Adam, M, B> {
    Adam::default().into()
}

/// Adam without weight decay or AMSGrad (what nextslice trains with).
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

impl Default for Adam {
    /// burn's `AdamConfig::new()`.
    fn default() -> Self {
        Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
        }
    }
}

impl Adam {
    /// The step's scalars, with the bias corrections of step `time` (from 1)
    /// folded in, exactly as burn computes them.
    fn scalars(&self, lr: LearningRate, time: usize) -> AdamScalars {
        let time = time as i32;
        let correction_2 = (1.0 - self.beta_2.powi(time)).sqrt();
        let combined = correction_2 / (1.0 - self.beta_1.powi(time));
        AdamScalars {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            step_size: lr as f32 * combined,
            epsilon: self.epsilon * correction_2,
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for Adam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (time, moment_1, moment_2) = match state {
            Some(AdamState { momentum: s }) => (s.time + 1, s.moment_1, s.moment_2),
            // Zero moments make the first update burn's first-step one.
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let s = self.scalars(lr, time);
        let (tensor, moment_1, moment_2) = match adam_step(&tensor, &grad, &moment_1, &moment_2, s)
        {
            Some(updated) => updated,
            None => {
                let moment_1 =
                    moment_1.mul_scalar(s.beta_1) + grad.clone().mul_scalar(1.0 - s.beta_1);
                let moment_2 =
                    moment_2.mul_scalar(s.beta_2) + grad.square().mul_scalar(1.0 - s.beta_2);
                let update = moment_1
                    .clone()
                    .div(moment_2.clone().sqrt().add_scalar(s.epsilon))
                    .mul_scalar(s.step_size);
                (tensor - update, moment_1, moment_2)
            }
        };
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};

    type A = Autodiff<Flex>;

    /// The same regression problem on every call.
    fn inputs() -> (Tensor<A, 2>, Tensor<A, 2>) {
        let device = Default::default();
        let values = |n: usize, k: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * k) % 13) as f32 / 3.0 - 2.0).collect()
        };
        (
            Tensor::from_data(TensorData::new(values(80, 7), [16, 5]), &device),
            Tensor::from_data(TensorData::new(values(48, 5), [16, 3]), &device),
        )
    }

    /// A fresh layer whose weights are drawn once (burn initialises lazily,
    /// and each clone of an unmaterialised module would draw its own).
    fn layer() -> Linear<A> {
        let layer: Linear<A> = LinearConfig::new(5, 3).init(&Default::default());
        let record = layer.clone().into_record();
        layer.load_record(record)
    }

    fn train<O: Optimizer<Linear<A>, A>>(
        mut model: Linear<A>,
        optim: &mut O,
        steps: usize,
    ) -> Linear<A> {
        let (x, y) = inputs();
        for _ in 0..steps {
            let loss = (model.forward(x.clone()) - y.clone()).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        model
    }

    fn values(model: &Linear<A>) -> Vec<f32> {
        let mut v: Vec<f32> = model.weight.val().into_data().to_vec().unwrap();
        let b: Vec<f32> = model
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec()
            .unwrap();
        v.extend(b);
        v
    }

    fn assert_close(ours: &[f32], burns: &[f32]) {
        assert_eq!(ours.len(), burns.len());
        for (i, (a, b)) in ours.iter().zip(burns).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "parameter {i}: ours {a}, burn's Adam {b}"
            );
        }
    }

    #[test]
    fn it_takes_the_steps_burns_adam_takes() {
        let start = layer();
        let ours = train(start.clone(), &mut adam::<A, Linear<A>>(), 4);
        let burns = train(start.clone(), &mut AdamConfig::new().init(), 4);
        assert_close(&values(&ours), &values(&burns));
        // And it moved: a test of two optimisers that did nothing would pass.
        let moved = values(&ours)
            .iter()
            .zip(values(&start))
            .any(|(a, b)| (a - b).abs() > 1e-3);
        assert!(moved, "four Adam steps left the weights where they were");
    }

    /// A checkpoint written while training with burn's Adam resumes with
    /// ours: same record format, same next step.
    #[test]
    fn it_resumes_from_burns_adam_state() {
        type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;
        let device = Default::default();
        let mut burns = AdamConfig::new().init::<A, Linear<A>>();
        let model = train(layer(), &mut burns, 2);
        let saved = Bytes::new()
            .record(burns.to_record(), ())
            .expect("burn's Adam state serialises");
        let mut ours = adam::<A, Linear<A>>();
        let record = Bytes::new()
            .load(saved, &device)
            .expect("our Adam reads burn's Adam state");
        ours = ours.load_record(record);
        let next_ours = train(model.clone(), &mut ours, 1);
        let next_burns = train(model, &mut burns, 1);
        assert_close(&values(&next_ours), &values(&next_burns));
    }
}
