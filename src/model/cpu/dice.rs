//! Eq. 2 per slice straight from logits (softmax over classes, then soft
//! Dice with symmetric smoothing), forward and backward as one kernel per
//! slice. burn's graph for the same loss is a softmax and a dozen
//! broadcasting reductions, each a strided pass in burn-flex, in both
//! directions.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{Route, Served, Tracked, from_primitive, to_flex, to_tracked};

/// Per-slice loss, [batch]: −(1/K) Σ_k (2Σŷy + s)/(Σŷ² + Σy² + s), with ŷ
/// the softmax of `logits` over classes; `logits` and `targets` are
/// [batch, classes, h, w].
pub fn dice_per_slice<B: Backend>(
    served: Served,
    logits: Tensor<B, 4>,
    targets: Tensor<B, 4>,
    smoothing: f32,
) -> Tensor<B, 1> {
    match served.0 {
        Route::Flex => {
            let (losses, _) = forward(&to_flex(logits), &to_flex(targets), smoothing);
            from_primitive(losses)
        }
        Route::AutodiffFlex => {
            from_primitive(track(to_tracked(logits), to_tracked(targets), smoothing))
        }
    }
}

/// Softmax over classes of one slice's logits [k][pixels] into `p`, class
/// by class so every loop runs contiguously over pixels.
fn softmax(z: &[f32], classes: usize, p: &mut [f32]) {
    let pixels = z.len() / classes;
    let mut max = z[..pixels].to_vec();
    for k in 1..classes {
        for (m, &v) in max.iter_mut().zip(&z[k * pixels..(k + 1) * pixels]) {
            *m = m.max(v);
        }
    }
    let mut sum = vec![0.0f32; pixels];
    for k in 0..classes {
        let range = k * pixels..(k + 1) * pixels;
        for (((e, &v), &m), s) in p[range.clone()]
            .iter_mut()
            .zip(&z[range])
            .zip(&max)
            .zip(&mut sum)
        {
            *e = (v - m).exp();
            *s += *e;
        }
    }
    for k in 0..classes {
        for (e, &s) in p[k * pixels..(k + 1) * pixels].iter_mut().zip(&sum) {
            *e /= s;
        }
    }
}

/// Numerator 2Σŷy + s and denominator Σŷ² + Σy² + s of each class, f64.
fn class_terms(p: &[f32], y: &[f32], classes: usize, smoothing: f32) -> Vec<(f64, f64)> {
    let pixels = p.len() / classes;
    (0..classes)
        .map(|k| {
            let (p, y) = (
                &p[k * pixels..(k + 1) * pixels],
                &y[k * pixels..(k + 1) * pixels],
            );
            let (mut overlap, mut norms) = (0.0f64, 0.0f64);
            for (p, y) in p.chunks(1024).zip(y.chunks(1024)) {
                let (mut o, mut q) = (0.0f32, 0.0f32);
                for (&p, &y) in p.iter().zip(y) {
                    o += p * y;
                    q += p * p + y * y;
                }
                overlap += f64::from(o);
                norms += f64::from(q);
            }
            (
                2.0 * overlap + f64::from(smoothing),
                norms + f64::from(smoothing),
            )
        })
        .collect()
}

/// Per-slice losses, and each slice's class terms for the backward pass.
fn forward(
    logits: &FlexTensor,
    targets: &FlexTensor,
    smoothing: f32,
) -> (FlexTensor, Vec<Vec<(f64, f64)>>) {
    let (z, y) = (logits.to_contiguous(), targets.to_contiguous());
    let [n, classes, h, w]: [usize; 4] = z.layout().shape().dims();
    let len = classes * h * w;
    let (z, y) = (z.storage::<f32>(), y.storage::<f32>());
    let terms: Vec<Vec<(f64, f64)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut p = vec![0.0f32; len];
            softmax(&z[i * len..(i + 1) * len], classes, &mut p);
            class_terms(&p, &y[i * len..(i + 1) * len], classes, smoothing)
        })
        .collect();
    let losses: Vec<f32> = terms
        .iter()
        .map(|t| (-t.iter().map(|(a, b)| a / b).sum::<f64>() / classes as f64) as f32)
        .collect();
    (FlexTensor::from_data(TensorData::new(losses, [n])), terms)
}

/// ∂L/∂logits and ∂L/∂targets for upstream per-slice gradients `up`.
fn backward(
    logits: &FlexTensor,
    targets: &FlexTensor,
    terms: &[Vec<(f64, f64)>],
    up: &FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let (z, y, up) = (
        logits.to_contiguous(),
        targets.to_contiguous(),
        up.to_contiguous(),
    );
    let shape = z.layout().shape().clone();
    let [_, classes, h, w]: [usize; 4] = shape.dims();
    let (pixels, len) = (h * w, classes * h * w);
    let (z, y, up) = (z.storage::<f32>(), y.storage::<f32>(), up.storage::<f32>());
    let mut dz = vec![0.0f32; z.len()];
    let mut dy = vec![0.0f32; z.len()];
    dz.par_chunks_mut(len)
        .zip(dy.par_chunks_mut(len))
        .enumerate()
        .for_each(|(i, (dz, dy))| {
            let (z, y) = (&z[i * len..(i + 1) * len], &y[i * len..(i + 1) * len]);
            let mut p = vec![0.0f32; len];
            softmax(z, classes, &mut p);
            let scale = -f64::from(up[i]) / classes as f64;
            // dL/dŷ = scale·(2y/B − 2A·ŷ/B²), into dz; dL/dy symmetric.
            for (k, &(a, b)) in terms[i].iter().enumerate() {
                let (linear, quadratic) =
                    ((2.0 * scale / b) as f32, (2.0 * scale * a / (b * b)) as f32);
                let range = k * pixels..(k + 1) * pixels;
                for ((g, d), (&p, &y)) in dz[range.clone()]
                    .iter_mut()
                    .zip(&mut dy[range.clone()])
                    .zip(p[range.clone()].iter().zip(&y[range]))
                {
                    *g = linear * y - quadratic * p;
                    *d = linear * p - quadratic * y;
                }
            }
            // Softmax backward: dz = ŷ·(g − Σ_k ŷ_k g_k), per pixel.
            let mut dot = vec![0.0f32; pixels];
            for k in 0..classes {
                let range = k * pixels..(k + 1) * pixels;
                for ((s, &g), &p) in dot.iter_mut().zip(&dz[range.clone()]).zip(&p[range]) {
                    *s += g * p;
                }
            }
            for k in 0..classes {
                let range = k * pixels..(k + 1) * pixels;
                for ((g, &p), &s) in dz[range.clone()].iter_mut().zip(&p[range]).zip(&dot) {
                    *g = p * (*g - s);
                }
            }
        });
    (
        FlexTensor::from_data(TensorData::new(dz, shape.clone())),
        FlexTensor::from_data(TensorData::new(dy, shape)),
    )
}

#[derive(Debug)]
struct DiceBackward;

impl Backward<Flex, 2> for DiceBackward {
    type State = (NodeId, NodeId, Vec<Vec<(f64, f64)>>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_logits, node_targets] = ops.parents;
        let up = grads.consume::<Flex>(&ops.node);
        let (logits_state, targets_state, terms) = ops.state;
        let logits = checkpointer.retrieve_node_output::<FlexTensor>(logits_state);
        let targets = checkpointer.retrieve_node_output::<FlexTensor>(targets_state);
        let (dz, dy) = backward(&logits, &targets, &terms, &up);
        if let Some(node) = node_logits {
            grads.register::<Flex>(node.id, dz);
        }
        if let Some(node) = node_targets {
            grads.register::<Flex>(node.id, dy);
        }
    }
}

fn track(logits: Tracked, targets: Tracked, smoothing: f32) -> Tracked {
    let (losses, terms) = forward(&logits.primitive, &targets.primitive, smoothing);
    match DiceBackward
        .prepare::<NoCheckpointing>([logits.node.clone(), targets.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let logits_state = prep.checkpoint(&logits);
            let targets_state = prep.checkpoint(&targets);
            prep.finish((logits_state, targets_state, terms), losses)
        }
        OpsKind::UnTracked(prep) => prep.finish(losses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::loss::{DICE_SMOOTHING, soft_dice_loss_per_slice};
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax as burn_softmax;

    type Ad = Autodiff<Flex>;

    fn close(a: TensorData, b: TensorData, what: &str) {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * scale,
                "{what}[{i}]: fused {x}, burn {y}"
            );
        }
    }

    #[test]
    fn the_fused_loss_matches_burns_ops_forward_and_backward() {
        let device = Default::default();
        let logits = Tensor::<Ad, 4>::random([3, 4, 5, 6], Distribution::Normal(0.0, 2.0), &device);
        // Soft targets, with class 3 absent from the second slice.
        let mask = Tensor::<Ad, 4>::ones([3, 4, 5, 6], &device).slice_assign(
            [1..2, 3..4, 0..5, 0..6],
            Tensor::zeros([1, 1, 5, 6], &device),
        );
        let targets =
            Tensor::<Ad, 4>::random([3, 4, 5, 6], Distribution::Uniform(0.0, 1.0), &device) * mask;
        let run = |fused: bool| {
            let (z, y) = (
                logits.clone().require_grad(),
                targets.clone().require_grad(),
            );
            let losses = if fused {
                let served = crate::model::cpu::served(&z).unwrap();
                dice_per_slice(served, z.clone(), y.clone(), DICE_SMOOTHING as f32)
            } else {
                soft_dice_loss_per_slice(burn_softmax(z.clone(), 1), y.clone())
            };
            let weights = Tensor::<Ad, 1>::from_floats([0.5, -1.0, 2.0], &device);
            let grads = (losses.clone() * weights).sum().backward();
            [
                losses.inner().into_data(),
                z.grad(&grads).unwrap().into_data(),
                y.grad(&grads).unwrap().into_data(),
            ]
        };
        let names = ["losses", "∂logits", "∂targets"];
        for ((a, b), name) in run(true).into_iter().zip(run(false)).zip(names) {
            close(a, b, name);
        }
        let plain =
            Tensor::<Flex, 4>::random([2, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let served = crate::model::cpu::served(&plain).unwrap();
        close(
            dice_per_slice(served, plain.clone(), burn_softmax(plain.clone(), 1), 1.0).into_data(),
            soft_dice_loss_per_slice(burn_softmax(plain.clone(), 1), burn_softmax(plain, 1))
                .into_data(),
            "plain Flex",
        );
    }
}
