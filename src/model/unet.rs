//! The paper's U-Net (§3.2, after Ronneberger et al. 2015): per level two
//! 3×3 convolutions with batch normalisation and ReLU, 2×2 max-pooling down,
//! 2×2 stride-2 transposed convolutions up, skip concatenation, a bottleneck,
//! and a 1×1 convolution to one logit per class. Widths come from the config
//! (paper: 32-64-128-256 + 512).

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::conv::conv2d;
use super::conv_weights::conv_weights_channels_last;
use super::cpu::pool::max_pool2d;
use super::norm::{Activation, BatchNorm2d, Mode};
use super::skip_join::join;
use super::upsample::conv_transpose2d;

/// Shape of a U-Net.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UNetSpec {
    pub in_channels: usize,
    pub classes: usize,
    /// Filters per encoder level, shallowest first.
    pub widths: Vec<usize>,
    pub bottleneck: usize,
}

/// Two 3×3 convolutions, each followed by batch norm and ReLU.
#[derive(Module, Debug)]
pub struct DoubleConv<B: Backend> {
    conv1: Conv2d<B>,
    norm1: BatchNorm2d<B>,
    conv2: Conv2d<B>,
    norm2: BatchNorm2d<B>,
}

fn conv3x3<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false) // batch norm's shift makes a bias redundant
        .init(device)
}

impl<B: Backend> DoubleConv<B> {
    fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        DoubleConv {
            conv1: conv3x3(cin, cout, device),
            norm1: BatchNorm2d::new(cout, device),
            conv2: conv3x3(cout, cout, device),
            norm2: BatchNorm2d::new(cout, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        let x = self
            .norm1
            .forward_activated(conv2d(&self.conv1, x), mode, Activation::Relu);
        self.norm2
            .forward_activated(conv2d(&self.conv2, x), mode, Activation::Relu)
    }
}

#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    encoder: Vec<DoubleConv<B>>,
    bottleneck: DoubleConv<B>,
    up: Vec<ConvTranspose2d<B>>,
    decoder: Vec<DoubleConv<B>>,
    head: Conv2d<B>,
    pool: MaxPool2d,
}

/// Everything one forward pass produces.
pub struct UNetOutput<B: Backend> {
    /// [batch, classes, height, width], before the softmax.
    pub logits: Tensor<B, 4>,
    /// [batch, bottleneck, height/2^L, width/2^L] (DAL's representativeness features).
    pub bottleneck: Tensor<B, 4>,
    /// Decoder outputs, deepest first (learning-loss features).
    pub decoder: Vec<Tensor<B, 4>>,
}

impl<B: Backend> UNetOutput<B> {
    /// The bottleneck averaged over its pixels, [batch, bottleneck]: DAL's
    /// representativeness features.
    pub fn pooled_bottleneck(&self) -> Tensor<B, 2> {
        pixel_mean(self.bottleneck.clone())
    }

    /// The levels the loss head reads: the bottleneck, then the decoder
    /// stages deepest first.
    pub fn loss_head_features(self) -> Vec<Tensor<B, 4>> {
        std::iter::once(self.bottleneck)
            .chain(self.decoder)
            .collect()
    }
}

/// [n, c, h, w] features averaged over their pixels, [n, c].
pub fn pixel_mean<B: Backend>(features: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, _, _] = features.dims();
    features.mean_dim(3).mean_dim(2).reshape([n, c])
}

impl UNetSpec {
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        let mut encoder = Vec::new();
        let mut cin = self.in_channels;
        for &w in &self.widths {
            encoder.push(DoubleConv::new(cin, w, device));
            cin = w;
        }
        let bottleneck = DoubleConv::new(cin, self.bottleneck, device);
        let mut up = Vec::new();
        let mut decoder = Vec::new();
        let mut below = self.bottleneck;
        for &w in self.widths.iter().rev() {
            up.push(
                ConvTranspose2dConfig::new([below, w], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
            );
            decoder.push(DoubleConv::new(2 * w, w, device));
            below = w;
        }
        conv_weights_channels_last(UNet {
            encoder,
            bottleneck,
            up,
            decoder,
            head: Conv2dConfig::new([below, self.classes], [1, 1]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        })
    }
}

impl<B: Backend> UNet<B> {
    /// `x`: [batch, channels, height, width]; height and width must be
    /// multiples of 2^levels (the config checks this).
    pub fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> UNetOutput<B> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut x = x;
        for block in &self.encoder {
            let features = block.forward(x, mode);
            x = max_pool2d(&self.pool, features.clone());
            skips.push(features);
        }
        let bottleneck = self.bottleneck.forward(x, mode);
        let mut x = bottleneck.clone();
        let mut decoder = Vec::with_capacity(self.decoder.len());
        for ((up, block), skip) in self
            .up
            .iter()
            .zip(&self.decoder)
            .zip(skips.into_iter().rev())
        {
            let upsampled = conv_transpose2d(up, x);
            x = block.forward(join(upsampled, skip), mode);
            decoder.push(x.clone());
        }
        UNetOutput {
            logits: conv2d(&self.head, x),
            bottleneck,
            decoder,
        }
    }

    /// Class probabilities, [batch, classes, height, width].
    pub fn probabilities(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        softmax(self.forward(x, mode).logits, 1)
    }
}
