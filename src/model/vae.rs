//! The VAE that learns the data manifold (§2.1, §3.2, after Liu et al. 2017):
//! four levels, each one residual block with batch normalisation and
//! LeakyReLU(0.01) that halves the resolution, a linear map to the latent mean
//! and log-variance, and a mirrored decoder.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::leaky_relu;

use super::conv::conv2d;
use super::conv_weights::conv_weights_channels_last;
use super::dense;
use super::norm::{Activation, BatchNorm2d, Mode};
use super::upsample::conv_transpose2d;

const SLOPE: f64 = 0.01;

/// Shape of a VAE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaeSpec {
    pub in_channels: usize,
    /// Input height and width (multiples of 2^levels).
    pub size: [usize; 2],
    /// Channels per level, shallowest first.
    pub widths: Vec<usize>,
    pub z_dim: usize,
}

/// Residual block changing resolution by 2: strided 3×3 (or 2×2 transposed)
/// convolution, norm, LeakyReLU, 3×3 convolution, norm; plus a learned
/// projection of the input; LeakyReLU of the sum.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    resample: Resample<B>,
    norm1: BatchNorm2d<B>,
    conv: Conv2d<B>,
    norm2: BatchNorm2d<B>,
    shortcut: Resample<B>,
}

/// A stride-2 convolution (down) or transposed convolution (up).
#[derive(Module, Debug)]
pub enum Resample<B: Backend> {
    Down(Conv2d<B>),
    Up(ConvTranspose2d<B>),
}

impl<B: Backend> Resample<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Resample::Down(c) => conv2d(c, x),
            Resample::Up(c) => conv_transpose2d(c, x),
        }
    }
}

impl<B: Backend> ResBlock<B> {
    fn down(cin: usize, cout: usize, device: &B::Device) -> Self {
        let strided = |k: usize, pad: usize| {
            Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device)
        };
        ResBlock {
            resample: Resample::Down(strided(3, 1)),
            norm1: BatchNorm2d::new(cout, device),
            conv: conv3x3(cout, cout, device),
            norm2: BatchNorm2d::new(cout, device),
            shortcut: Resample::Down(strided(1, 0)),
        }
    }

    fn up(cin: usize, cout: usize, device: &B::Device) -> Self {
        let transposed = || {
            ConvTranspose2dConfig::new([cin, cout], [2, 2])
                .with_stride([2, 2])
                .with_bias(false)
                .init(device)
        };
        ResBlock {
            resample: Resample::Up(transposed()),
            norm1: BatchNorm2d::new(cout, device),
            conv: conv3x3(cout, cout, device),
            norm2: BatchNorm2d::new(cout, device),
            shortcut: Resample::Up(transposed()),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        let main = self.norm1.forward_activated(
            self.resample.forward(x.clone()),
            mode,
            Activation::LeakyRelu(SLOPE as f32),
        );
        self.norm2.forward_joined(
            conv2d(&self.conv, main),
            self.shortcut.forward(x),
            mode,
            Activation::LeakyRelu(SLOPE as f32),
        )
    }
}

fn conv3x3<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

#[derive(Module, Debug)]
pub struct Vae<B: Backend> {
    encoder: Vec<ResBlock<B>>,
    to_mean: Linear<B>,
    to_log_var: Linear<B>,
    from_latent: Linear<B>,
    decoder: Vec<ResBlock<B>>,
    out: Conv2d<B>,
    /// Channels and size of the deepest feature map: [c, h, w].
    deepest: [usize; 3],
}

/// A forward pass: reconstruction and the posterior's parameters.
pub struct VaeOutput<B: Backend> {
    /// [batch, channels, height, width]
    pub reconstruction: Tensor<B, 4>,
    /// [batch, z]
    pub mean: Tensor<B, 2>,
    /// [batch, z]
    pub log_var: Tensor<B, 2>,
}

impl VaeSpec {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vae<B> {
        let levels = self.widths.len();
        let mut encoder = Vec::new();
        let mut cin = self.in_channels;
        for &w in &self.widths {
            encoder.push(ResBlock::down(cin, w, device));
            cin = w;
        }
        let deepest = [cin, self.size[0] >> levels, self.size[1] >> levels];
        let flat = deepest.iter().product();
        let mut decoder = Vec::new();
        // Mirror: deepest width back up to the first, then one more block at
        // full resolution with the first width.
        let mut widths: Vec<usize> = self.widths.iter().rev().copied().skip(1).collect();
        widths.push(self.widths[0]);
        for w in widths {
            decoder.push(ResBlock::up(cin, w, device));
            cin = w;
        }
        conv_weights_channels_last(Vae {
            encoder,
            to_mean: LinearConfig::new(flat, self.z_dim).init(device),
            to_log_var: LinearConfig::new(flat, self.z_dim).init(device),
            from_latent: LinearConfig::new(self.z_dim, flat).init(device),
            decoder,
            out: Conv2dConfig::new([cin, self.in_channels], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            deepest,
        })
    }
}

impl<B: Backend> Vae<B> {
    /// Posterior mean and log-variance, each [batch, z].
    pub fn encode(&self, x: Tensor<B, 4>, mode: Mode) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let mut x = x;
        for block in &self.encoder {
            x = block.forward(x, mode);
        }
        let [n, c, h, w] = x.dims();
        let flat = x.reshape([n, c * h * w]);
        (
            dense::linear(&self.to_mean, flat.clone()),
            dense::linear(&self.to_log_var, flat),
        )
    }

    /// The projection onto the manifold used for sampling (Eq. 4): the
    /// posterior mean in eval mode.
    pub fn encode_mean(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.encode(x, Mode::Eval).0
    }

    /// `z`: [batch, z] → [batch, channels, height, width].
    pub fn decode(&self, z: Tensor<B, 2>, mode: Mode) -> Tensor<B, 4> {
        let [n, _] = z.dims();
        let [c, h, w] = self.deepest;
        let mut x = leaky_relu(dense::linear(&self.from_latent, z), SLOPE).reshape([n, c, h, w]);
        for block in &self.decoder {
            x = block.forward(x, mode);
        }
        conv2d(&self.out, x)
    }

    /// Encode, sample z = mean + σ·`noise` (reparameterisation; `noise` is
    /// [batch, z] standard normal, drawn by the caller so training is
    /// reproducible), decode.
    pub fn forward(&self, x: Tensor<B, 4>, noise: Tensor<B, 2>, mode: Mode) -> VaeOutput<B> {
        let (mean, log_var) = self.encode(x, mode);
        let z = mean.clone() + log_var.clone().mul_scalar(0.5).exp() * noise;
        VaeOutput {
            reconstruction: self.decode(z, mode),
            mean,
            log_var,
        }
    }
}
