//! 2×2, stride-2 max pooling (the U-Net's downsampling) on the CPU backend.
//! burn-flex runs every max pool through its general 3D pooling with
//! indices, 6 % of a U-Net inference pass; this keeps each window's winner
//! as one byte and scatters the gradient back to it.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{Route, from_primitive, route, to_flex, to_tracked};

/// `layer.forward(x)`, through our kernel for 2×2 stride-2 unpadded pooling.
pub fn max_pool2d<B: Backend>(layer: &MaxPool2d, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let ours = layer.kernel_size == [2, 2]
        && layer.stride == [2, 2]
        && layer.dilation == [1, 1]
        && !layer.ceil_mode
        && matches!(layer.padding, PaddingConfig2d::Valid);
    match route(&x).filter(|_| ours) {
        Some(Route::Flex) => {
            let (y, _) = forward(&to_flex(x), false);
            from_primitive(y)
        }
        Some(Route::AutodiffFlex) => from_primitive(track(to_tracked(x))),
        None => layer.forward(x),
    }
}

/// Shape of the pooling: planes (batch × channels), input and output sizes.
#[derive(Clone, Copy, Debug)]
struct Pooling {
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
}

impl Pooling {
    fn of(x: &FlexTensor) -> (Pooling, [usize; 4]) {
        let dims: [usize; 4] = x.layout().shape().dims();
        let [n, c, h, w] = dims;
        let p = Pooling {
            planes: n * c,
            input: [h, w],
            output: [h / 2, w / 2],
        };
        (p, [n, c, h / 2, w / 2])
    }
}

/// The pooled tensor and, when asked, each window's winner (0..4, row-major
/// in the window; the first of equal values wins).
fn forward(x: &FlexTensor, winners: bool) -> (FlexTensor, Vec<u8>) {
    let x = x.to_contiguous();
    let (p, out_shape) = Pooling::of(&x);
    let [h, w] = p.input;
    let [oh, ow] = p.output;
    let values = x.storage::<f32>();
    let mut y = vec![0.0f32; p.planes * oh * ow];
    let mut won = vec![0u8; if winners { y.len() } else { 0 }];
    let out_plane = (oh * ow).max(1);
    let work = |(i, y): (usize, &mut [f32]), won: Option<&mut [u8]>| {
        let plane = &values[i * h * w..(i + 1) * h * w];
        let mut won = won;
        for oy in 0..oh {
            let top = &plane[2 * oy * w..2 * oy * w + w];
            let bottom = &plane[(2 * oy + 1) * w..(2 * oy + 2) * w];
            for ox in 0..ow {
                let window = [
                    top[2 * ox],
                    top[2 * ox + 1],
                    bottom[2 * ox],
                    bottom[2 * ox + 1],
                ];
                let mut best = 0;
                for k in 1..4 {
                    if window[k] > window[best] {
                        best = k;
                    }
                }
                y[oy * ow + ox] = window[best];
                if let Some(won) = won.as_deref_mut() {
                    won[oy * ow + ox] = best as u8;
                }
            }
        }
    };
    if winners {
        y.par_chunks_mut(out_plane)
            .enumerate()
            .zip(won.par_chunks_mut(out_plane))
            .for_each(|(plane, won)| work(plane, Some(won)));
    } else {
        y.par_chunks_mut(out_plane)
            .enumerate()
            .for_each(|plane| work(plane, None));
    }
    (FlexTensor::from_data(TensorData::new(y, out_shape)), won)
}

/// ∂L/∂x: each output's gradient to its window's winner, zero elsewhere.
fn backward(p: Pooling, in_shape: [usize; 4], won: &[u8], dy: &FlexTensor) -> FlexTensor {
    let dy = dy.to_contiguous();
    let dy = dy.storage::<f32>();
    let [h, w] = p.input;
    let [oh, ow] = p.output;
    let mut dx = vec![0.0f32; p.planes * h * w];
    let out_plane = oh * ow;
    dx.par_chunks_mut((h * w).max(1))
        .enumerate()
        .for_each(|(i, dx)| {
            let dy = &dy[i * out_plane..(i + 1) * out_plane];
            let won = &won[i * out_plane..(i + 1) * out_plane];
            for oy in 0..oh {
                for ox in 0..ow {
                    let k = usize::from(won[oy * ow + ox]);
                    dx[(2 * oy + k / 2) * w + 2 * ox + k % 2] = dy[oy * ow + ox];
                }
            }
        });
    FlexTensor::from_data(TensorData::new(dx, in_shape))
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = (Pooling, [usize; 4], Vec<u8>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            let (p, in_shape, won) = ops.state;
            grads.register::<Flex>(node.id, backward(p, in_shape, &won, &dy));
        }
    }
}

fn track(x: super::Tracked) -> super::Tracked {
    match PoolBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, won) = forward(&x.primitive, true);
            let (p, _) = Pooling::of(&x.primitive);
            prep.finish((p, x.primitive.layout().shape().dims(), won), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, false).0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::nn::pool::MaxPool2dConfig;

    type Ad = Autodiff<Flex>;

    #[test]
    fn pooling_matches_burn_forward_and_backward() {
        let device = Default::default();
        let layer = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        // Distinct values (no ties), odd sizes (the last row/column is dropped).
        for shape in [[2, 3, 6, 8], [1, 2, 5, 7]] {
            let n: usize = shape.iter().product();
            let x = Tensor::<Ad, 1, Int>::arange(0..n as i64, &device)
                .float()
                .mul_scalar(1.7)
                .sin()
                .reshape(shape);
            let run = |ours: bool| {
                let x = x.clone().detach().require_grad();
                let y = if ours {
                    max_pool2d(&layer, x.clone())
                } else {
                    layer.forward(x.clone())
                };
                let m: usize = y.dims().iter().product();
                let r = Tensor::<Ad, 1, Int>::arange(0..m as i64, &device)
                    .float()
                    .reshape(y.dims());
                let grads = (y.clone() * r).sum().backward();
                let dx = x.grad(&grads).unwrap();
                (y.inner().into_data(), dx.into_data())
            };
            let (y_ours, dx_ours) = run(true);
            let (y_burn, dx_burn) = run(false);
            assert_eq!(y_ours, y_burn, "{shape:?} output");
            assert_eq!(dx_ours, dx_burn, "{shape:?} gradient");
        }
        let plain = Tensor::<Flex, 4>::from_data(x_plain(), &device);
        assert_eq!(
            max_pool2d(&layer, plain.clone()).into_data(),
            layer.forward(plain).into_data()
        );
    }

    fn x_plain() -> TensorData {
        let values: Vec<f32> = (0..2 * 2 * 4 * 6).map(|i| ((i * 37) % 23) as f32).collect();
        TensorData::new(values, [2, 2, 4, 6])
    }
}
