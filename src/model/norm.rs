//! Batch normalisation with an explicit train/eval mode.
//!
//! burn's `BatchNorm` picks batch statistics whenever the backend records
//! gradients, but Eq. 3 needs the gradient of a *trained, frozen* U-Net with
//! respect to its input — eval-mode normalisation on an autodiff backend. This
//! version also costs fewer passes over the activations: statistics come from
//! contiguous reductions (no transposed copies), and normalisation is one
//! fused scale-and-shift per channel.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu};

pub use super::cpu::norm::Activation;
use super::cpu::{self, norm::Normalized};
use super::running_average::RunningAverage;

/// Whether a forward pass learns (batch statistics, running averages
/// updated) or infers (running averages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    gamma: Param<Tensor<B, 1>>,
    beta: Param<Tensor<B, 1>>,
    running_mean: RunningAverage<B, 1>,
    running_var: RunningAverage<B, 1>,
    momentum: f64,
    epsilon: f64,
}

/// A per-channel vector laid out as a contiguous [n, c, 1, 1] tensor.
///
/// Broadcasting a [1, c, 1, 1] tensor over [n, c, h, w] sends burn-flex down
/// its scalar strided path (a stride-0 batch dim); a contiguous [n, c] block
/// matches its SIMD "one scalar per row" kernel instead. Measured: ~19% of a
/// U-Net training step went to the strided path before this.
fn per_image_channel<B: Backend>(v: Tensor<B, 1>, n: usize) -> Tensor<B, 4> {
    let [c] = v.dims();
    v.reshape([1, c]).repeat_dim(0, n).reshape([n, c, 1, 1])
}

impl<B: Backend> BatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        BatchNorm2d {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningAverage::new(Tensor::zeros([channels], device)),
            running_var: RunningAverage::new(Tensor::ones([channels], device)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    /// `x`: [batch, channels, height, width] → same shape.
    pub fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        self.forward_activated(x, mode, Activation::Identity)
    }

    /// `activation(norm(x))`, as one fused kernel on the CPU backend.
    pub fn forward_activated(
        &self,
        x: Tensor<B, 4>,
        mode: Mode,
        activation: Activation,
    ) -> Tensor<B, 4> {
        self.forward_with(x, None, mode, activation)
    }

    /// `activation(norm(x) + shortcut)`, a residual block's join: on the
    /// GPU backends in the same pass over the activations as the
    /// normalisation, forward and backward, instead of three more.
    pub fn forward_joined(
        &self,
        x: Tensor<B, 4>,
        shortcut: Tensor<B, 4>,
        mode: Mode,
        activation: Activation,
    ) -> Tensor<B, 4> {
        assert_eq!(
            shortcut.dims(),
            x.dims(),
            "batch norm: a shortcut joins an input of its own shape"
        );
        self.forward_with(x, Some(shortcut), mode, activation)
    }

    fn forward_with(
        &self,
        x: Tensor<B, 4>,
        shortcut: Option<Tensor<B, 4>>,
        mode: Mode,
        activation: Activation,
    ) -> Tensor<B, 4> {
        let Some(served) = cpu::served(&x) else {
            return self.forward_composed(x, shortcut, mode, activation);
        };
        let Some(shortcut) = shortcut else {
            return self.forward_on_cpu(served, x, mode, activation);
        };
        // The CPU kernel has no join: it normalises, burn's operations
        // join and activate.
        let y = self.forward_on_cpu(served, x, mode, Activation::Identity);
        activate(y + shortcut, activation)
    }

    fn forward_on_cpu(
        &self,
        served: cpu::Served,
        x: Tensor<B, 4>,
        mode: Mode,
        activation: Activation,
    ) -> Tensor<B, 4> {
        let [n, _, h, w] = x.dims();
        let running = match mode {
            Mode::Train => None,
            Mode::Eval => Some((self.running_mean.value(), self.running_var.value())),
        };
        let Normalized {
            y,
            batch_statistics,
        } = cpu::norm::batch_norm(
            served,
            x,
            self.gamma.val(),
            self.beta.val(),
            running,
            self.epsilon,
            activation,
        );
        if let Some((mean, var)) = batch_statistics {
            self.update_running(&mean, &var, (n * h * w) as f64);
        }
        y
    }

    /// Backends without our CPU kernel: one autodiff node on the GPU
    /// backends (`norm_node`), else burn's tensor operations.
    fn forward_composed(
        &self,
        x: Tensor<B, 4>,
        shortcut: Option<Tensor<B, 4>>,
        mode: Mode,
        activation: Activation,
    ) -> Tensor<B, 4> {
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        let (x, shortcut) = match self.forward_node(x, shortcut, mode, activation) {
            Ok(y) => return y,
            Err(unserved) => unserved,
        };
        let y = self.forward_unfused(x, mode);
        match shortcut {
            Some(shortcut) => activate(y + shortcut, activation),
            None => activate(y, activation),
        }
    }

    /// `norm_node`'s single autodiff node, where it serves this backend and
    /// burn's own kernels were not asked for.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    fn forward_node(
        &self,
        x: Tensor<B, 4>,
        shortcut: Option<Tensor<B, 4>>,
        mode: Mode,
        activation: Activation,
    ) -> Result<Tensor<B, 4>, Unserved<B>> {
        use super::norm_node::{NormInputs, batch_norm};
        if cpu::burn_kernels_requested() {
            return Err((x, shortcut));
        }
        let train = mode == Mode::Train;
        let running = (self.running_mean.value(), self.running_var.value());
        let inputs = NormInputs {
            x,
            gamma: self.gamma.val(),
            beta: self.beta.val(),
            running,
            momentum: train.then_some(self.momentum),
            epsilon: self.epsilon,
            shortcut,
            activation,
        };
        match batch_norm(inputs) {
            Ok((y, running)) => {
                if let Some((mean, var)) = running {
                    self.running_mean.set(mean);
                    self.running_var.set(var);
                }
                Ok(y)
            }
            Err(inputs) => Err((inputs.x, inputs.shortcut)),
        }
    }

    /// Normalisation from burn's tensor ops, for backends without our kernel.
    fn forward_unfused(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let (mean, var) = match mode {
            Mode::Train => {
                let count = (n * h * w) as f64;
                // Sums over (batch, pixels) per channel, from contiguous reductions.
                let per_channel =
                    |t: Tensor<B, 4>| t.reshape([n, c, h * w]).sum_dim(2).sum_dim(0).reshape([c]);
                let mean = per_channel(x.clone()).div_scalar(count);
                let mean_sq = per_channel(x.clone().square()).div_scalar(count);
                let var = (mean_sq - mean.clone().square()).clamp_min(0.0);
                self.update_running(&mean, &var, count);
                (mean, var)
            }
            Mode::Eval => (self.running_mean.value(), self.running_var.value()),
        };
        let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val() - mean * scale.clone();
        x * per_image_channel(scale, n) + per_image_channel(shift, n)
    }

    fn update_running(&self, mean: &Tensor<B, 1>, var: &Tensor<B, 1>, count: f64) {
        let running = (self.running_mean.value(), self.running_var.value());
        let (mean, var) =
            super::running::updated(running, (mean.clone(), var.clone()), count, self.momentum);
        self.running_mean.set(mean);
        self.running_var.set(var);
    }
}

/// The input and shortcut a path handed back unserved.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
type Unserved<B> = (Tensor<B, 4>, Option<Tensor<B, 4>>);

fn activate<B: Backend>(z: Tensor<B, 4>, activation: Activation) -> Tensor<B, 4> {
    match activation {
        Activation::Identity => z,
        Activation::Relu => relu(z),
        Activation::LeakyRelu(slope) => leaky_relu(z, f64::from(slope)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    type Ad = Autodiff<Flex>;

    /// A norm with non-trivial γ, β and running averages, the same every call.
    fn norm(channels: usize, device: &burn::backend::flex::FlexDevice) -> BatchNorm2d<Ad> {
        let ramp = |a: f32, b: f32| {
            let values: Vec<f32> = (0..channels).map(|c| a + b * c as f32).collect();
            Tensor::<Ad, 1>::from_floats(values.as_slice(), device)
        };
        let mut bn = BatchNorm2d::new(channels, device);
        bn.gamma = Param::from_tensor(ramp(0.5, 0.3));
        bn.beta = Param::from_tensor(ramp(-0.2, 0.15));
        bn.running_mean = RunningAverage::new(ramp(0.1, -0.05));
        bn.running_var = RunningAverage::new(ramp(0.8, 0.4));
        bn
    }

    fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    fn assert_close(ours: Vec<f32>, theirs: Vec<f32>, what: &str) {
        assert_eq!(ours.len(), theirs.len(), "{what}: length");
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * scale,
                "{what}[{i}]: fused {a}, unfused {b} (scale {scale})"
            );
        }
    }

    /// Output, ∂x, ∂γ, ∂β and the running averages after one pass.
    fn run(fused: bool, mode: Mode, activation: Activation, x: &Tensor<Ad, 4>) -> Vec<Vec<f32>> {
        let device = x.device();
        let bn = norm(x.dims()[1], &device);
        let x = x.clone().detach().require_grad();
        let y = if fused {
            bn.forward_activated(x.clone(), mode, activation)
        } else {
            let y = bn.forward_unfused(x.clone(), mode);
            match activation {
                Activation::Identity => y,
                Activation::Relu => relu(y),
                Activation::LeakyRelu(s) => leaky_relu(y, f64::from(s)),
            }
        };
        let n: usize = y.dims().iter().product();
        let r = Tensor::<Ad, 1, Int>::arange(0..n as i64, &device)
            .float()
            .mul_scalar(0.61)
            .sin()
            .reshape(y.dims());
        let grads = (y.clone() * r).sum().backward();
        vec![
            values(y.inner()),
            values(x.grad(&grads).unwrap()),
            values(bn.gamma.val().grad(&grads).unwrap()),
            values(bn.beta.val().grad(&grads).unwrap()),
            values(bn.running_mean.value().inner()),
            values(bn.running_var.value().inner()),
        ]
    }

    #[test]
    fn the_fused_kernel_matches_burns_ops_forward_backward_and_running_averages() {
        let device = Default::default();
        let x = Tensor::<Ad, 4>::random([3, 5, 6, 7], Distribution::Normal(0.4, 1.3), &device);
        for mode in [Mode::Train, Mode::Eval] {
            for activation in [
                Activation::Identity,
                Activation::Relu,
                Activation::LeakyRelu(0.01),
            ] {
                let fused = run(true, mode, activation, &x);
                let unfused = run(false, mode, activation, &x);
                let names = ["output", "∂x", "∂γ", "∂β", "running mean", "running var"];
                for ((a, b), name) in fused.into_iter().zip(unfused).zip(names) {
                    assert_close(a, b, &format!("{mode:?} {activation:?} {name}"));
                }
            }
        }
    }

    #[test]
    fn inference_on_the_plain_backend_uses_the_running_averages() {
        let device = Default::default();
        let bn = norm(4, &device).valid();
        let x = Tensor::<Flex, 4>::random([2, 4, 3, 5], Distribution::Normal(0.0, 1.0), &device);
        let fused = bn.forward_activated(x.clone(), Mode::Eval, Activation::Relu);
        let unfused = relu(bn.forward_unfused(x, Mode::Eval));
        assert_close(values(fused), values(unfused), "plain Flex eval");
    }
}
