//! The learning-loss baseline's loss-prediction module (Yoo & Kweon 2019):
//! each feature level of the U-Net — the bottleneck and every decoder stage —
//! is averaged over its pixels, passed through a fully connected layer and a
//! ReLU, and the concatenation is mapped to one number, the predicted loss
//! of the slice. It is trained with the U-Net by a pairwise ranking loss, so
//! it only has to order slices by how badly the U-Net does on them.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::dense;
use super::unet::{UNet, UNetSpec, pixel_mean};

/// Width of each level's fully connected layer (Yoo & Kweon: 128).
pub const LOSS_HEAD_HIDDEN: usize = 128;

#[derive(Module, Debug)]
pub struct LossHead<B: Backend> {
    levels: Vec<Linear<B>>,
    out: Linear<B>,
}

impl UNetSpec {
    /// A loss head for this U-Net's feature levels: the bottleneck, then
    /// the decoder stages deepest first, as `UNet::forward` returns them.
    pub fn loss_head<B: Backend>(&self, device: &B::Device) -> LossHead<B> {
        let widths = std::iter::once(self.bottleneck).chain(self.widths.iter().rev().copied());
        let levels: Vec<Linear<B>> = widths
            .map(|c| LinearConfig::new(c, LOSS_HEAD_HIDDEN).init(device))
            .collect();
        let out = LinearConfig::new(levels.len() * LOSS_HEAD_HIDDEN, 1).init(device);
        LossHead { levels, out }
    }
}

impl<B: Backend> LossHead<B> {
    /// Predicted loss per slice, [batch], from [batch, c, h, w] features.
    pub fn forward(&self, features: &[Tensor<B, 4>]) -> Tensor<B, 1> {
        let pooled: Vec<Tensor<B, 2>> = self
            .levels
            .iter()
            .zip(features)
            .map(|(fc, f)| relu(dense::linear(fc, pixel_mean(f.clone()))))
            .collect();
        let joined = Tensor::cat(pooled, 1);
        let n = joined.dims()[0];
        dense::linear(&self.out, joined).reshape([n])
    }
}

/// The U-Net and its loss head, trained as one model.
#[derive(Module, Debug)]
pub struct UNetWithLossHead<B: Backend> {
    pub unet: UNet<B>,
    pub head: LossHead<B>,
}

/// Yoo & Kweon's ranking loss: the batch is split into pairs (i, i + n/2),
/// and each pair costs max(0, −sign(l_i − l_j)·(l̂_i − l̂_j) + ξ), averaged
/// — the prediction is only asked to order each pair, by a margin ξ.
/// `target` holds the true per-slice losses (detached by the caller);
/// `slices` the slice each row holds: a pair of two copies of one slice
/// (a batch filled up on a GPU) has nothing to order and is not counted.
pub fn ranking_loss<B: Backend>(
    predicted: Tensor<B, 1>,
    target: Tensor<B, 1>,
    margin: f64,
    slices: &[usize],
) -> Tensor<B, 1> {
    let n = predicted.dims()[0];
    let half = n / 2;
    if half == 0 {
        return predicted.mul_scalar(0.0).sum();
    }
    let counted: Vec<f32> = (0..half)
        .map(|i| match (slices.get(i), slices.get(i + half)) {
            (Some(a), Some(b)) if a == b => 0.0,
            _ => 1.0,
        })
        .collect();
    let pairs = counted.iter().sum::<f32>().max(1.0);
    let counted = Tensor::from_data(TensorData::new(counted, [half]), &predicted.device());
    let (p_i, p_j) = (
        predicted.clone().slice(0..half),
        predicted.slice(half..2 * half),
    );
    let (t_i, t_j) = (target.clone().slice(0..half), target.slice(half..2 * half));
    let sign = (t_i - t_j).sign();
    let cost = (sign.neg() * (p_i - p_j)).add_scalar(margin).clamp_min(0.0);
    (cost * counted).sum().div_scalar(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    fn tensor(values: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Default::default(),
        )
    }

    #[test]
    fn the_ranking_loss_charges_pairs_ordered_wrongly_or_too_close() {
        // Pairs (0, 2) and (1, 3): the first is ordered right by 2 (> ξ = 1,
        // free), the second wrongly by 0.5 (costs 0.5 + 1).
        let predicted = tensor(&[3.0, 0.0, 1.0, -0.5]);
        let target = tensor(&[0.9, 0.1, 0.2, 0.8]);
        let loss = ranking_loss(predicted.clone(), target.clone(), 1.0, &[0, 1, 2, 3]);
        assert!((loss.into_scalar() - 0.75).abs() < 1e-6);
        // A single slice has no pair.
        let one = ranking_loss(tensor(&[2.0]), tensor(&[0.3]), 1.0, &[0]).into_scalar();
        assert_eq!(one, 0.0);
        // Two copies of slice 1 (a filled batch) are no pair: only (0, 2) counts.
        let copies = ranking_loss(predicted, target, 1.0, &[0, 1, 2, 1]).into_scalar();
        assert_eq!(copies, 0.0);
        let wrong = ranking_loss(
            tensor(&[0.0, 0.0, 1.0, 5.0]),
            tensor(&[0.9, 0.1, 0.2, 0.8]),
            1.0,
            &[0, 1, 2, 1],
        );
        assert!(
            (wrong.into_scalar() - 2.0).abs() < 1e-6,
            "only (0, 2), wrongly by 1"
        );
    }

    #[test]
    fn learning_loss_targets_rank_well_segmented_tumour_free_slices_as_easy() {
        use crate::model::loss::soft_dice_loss_per_slice;
        // Four slices, two classes, four pixels: slices 0–1 tumour-free and
        // segmented cleanly, slices 2–3 with a tumour found by half.
        let y: Vec<f32> = [
            [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0],
            [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        ]
        .concat();
        let p: Vec<f32> = [
            [0.98, 0.99, 0.98, 0.99, 0.02, 0.01, 0.02, 0.01],
            [0.99, 0.97, 0.99, 0.98, 0.01, 0.03, 0.01, 0.02],
            [1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5],
            [1.0, 0.5, 0.5, 0.5, 0.0, 0.5, 0.5, 0.5],
        ]
        .concat();
        let device = Default::default();
        let t = |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [4, 2, 2, 2]), &device);
        let target = soft_dice_loss_per_slice(t(p), t(y));
        let values = target.clone().into_data().to_vec::<f32>().unwrap();
        assert!(
            values[0].max(values[1]) < values[2].min(values[3]),
            "tumour-free slices must be the easy ones: {values:?}"
        );
        // Pairs (0, 2) and (1, 3): a head that calls the tumour slices
        // harder by more than ξ costs nothing; the old bias costs.
        let slices = [0, 1, 2, 3];
        let right = ranking_loss(
            tensor(&[-0.9, -0.9, -0.2, -0.2]),
            target.clone(),
            0.5,
            &slices,
        );
        assert_eq!(right.into_scalar(), 0.0);
        let biased = ranking_loss(tensor(&[-0.2, -0.2, -0.9, -0.9]), target, 0.5, &slices);
        assert!(biased.into_scalar() > 1.0);
    }

    #[test]
    fn the_head_learns_to_order_slices_by_their_loss() {
        use burn::backend::Autodiff;
        use burn::optim::{AdamConfig, GradientsParams, Optimizer};
        type A = Autodiff<B>;
        let device = Default::default();
        let spec = UNetSpec {
            in_channels: 1,
            classes: 2,
            widths: vec![4],
            bottleneck: 8,
        };
        let unet = spec.init::<A>(&device);
        let mut head = spec.loss_head::<A>(&device);
        // Eight slices whose "loss" grows with their brightness.
        let n = 8;
        let images: Vec<f32> = (0..n)
            .flat_map(|i| {
                (0..64).map(move |p| (i as f32 / n as f32) * (1.0 + (p % 7) as f32 / 7.0))
            })
            .collect();
        let x = Tensor::<A, 4>::from_data(TensorData::new(images, [n, 1, 8, 8]), &device);
        let out = unet.forward(x, crate::model::Mode::Eval);
        let mut features = vec![out.bottleneck.detach()];
        features.extend(out.decoder.into_iter().map(Tensor::detach));
        let target_values: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let target = Tensor::<A, 1>::from_data(TensorData::new(target_values, [n]), &device);
        let mut optimizer = AdamConfig::new().init::<A, LossHead<A>>();
        let mut rng = crate::rng::Rng::new(3, 0);
        for _ in 0..150 {
            // A random pairing each step, as shuffled batches give.
            let mut order: Vec<i64> = (0..n as i64).collect();
            rng.shuffle(&mut order);
            let index = Tensor::<A, 1, Int>::from_data(TensorData::new(order, [n]), &device);
            let permuted: Vec<Tensor<A, 4>> = features
                .iter()
                .map(|f| f.clone().select(0, index.clone()))
                .collect();
            let loss = ranking_loss(
                head.forward(&permuted),
                target.clone().select(0, index),
                1.0,
                &(0..n).collect::<Vec<_>>(),
            );
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optimizer.step(1e-2, head, grads);
        }
        let predicted: Vec<f32> = head.forward(&features).into_data().to_vec().unwrap();
        let mut right = 0;
        let mut pairs = 0;
        for i in 0..n {
            for j in i + 1..n {
                pairs += 1;
                right += usize::from(predicted[j] > predicted[i]);
            }
        }
        assert!(
            right * 10 >= pairs * 9,
            "{right} of {pairs} pairs ordered: {predicted:?}"
        );
    }

    #[test]
    fn the_head_predicts_one_loss_per_slice() {
        let device = Default::default();
        let spec = UNetSpec {
            in_channels: 2,
            classes: 3,
            widths: vec![4, 8],
            bottleneck: 8,
        };
        let unet = spec.init::<B>(&device);
        let head = spec.loss_head::<B>(&device);
        let x = Tensor::<B, 4>::ones([3, 2, 16, 16], &device);
        let features = unet
            .forward(x, crate::model::Mode::Eval)
            .loss_head_features();
        assert_eq!(head.forward(&features).dims(), [3]);
    }
}
