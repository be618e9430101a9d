//! One Adam update per parameter tensor as a single GPU kernel.
//!
//! burn 0.21's Adam runs 13 element-wise kernels per parameter tensor and
//! step (moments, bias correction, square root, division, update). Counted
//! with cubecl's profiler on a U-Net training step (demo widths, burn-wgpu),
//! that was 832 of the step's 2544 kernel launches, for 64 parameter
//! tensors. On a GPU a launch has a fixed cost whatever its size, and most of
//! these tensors are small (biases, batch-norm scales). This kernel reads
//! the parameter, its gradient and both moments once and writes the new
//! three: one launch per tensor.
//!
//! The arithmetic is burn's (`burn_optim::AdaptiveMomentum`), with the
//! bias corrections folded into two scalars by the caller.

use burn::prelude::*;

/// The per-step scalars of Adam's update, bias corrections folded in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    pub beta_1: f32,
    pub beta_2: f32,
    /// `lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    pub step_size: f32,
    /// `ε · √(1 − β₂ᵗ)`.
    pub epsilon: f32,
}

/// The updated parameter and moments, or `None` where this backend is not a
/// plain cubecl one (Flex, burn's fused backend) or the tensors are not
/// f32: the caller then runs the same update from tensor operations.
#[allow(clippy::type_complexity)]
pub fn adam_step<B: Backend, const D: usize>(
    param: &Tensor<B, D>,
    grad: &Tensor<B, D>,
    moment_1: &Tensor<B, D>,
    moment_2: &Tensor<B, D>,
    scalars: AdamScalars,
) -> Option<(Tensor<B, D>, Tensor<B, D>, Tensor<B, D>)> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let Some(Some(out)) = super::cube::on_runtime_of::<B, _>(kernel::AdamTask {
        param,
        grad,
        moment_1,
        moment_2,
        scalars,
    }) {
        return Some(out);
    }
    // (Read by the GPU builds' arms only.)
    let _ = (param, grad, moment_1, moment_2, scalars);
    None
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
#[allow(clippy::too_many_arguments)]
mod kernel {
    use burn::tensor::Tensor;
    use burn::tensor::backend::Backend;
    use burn_cubecl::CubeRuntime;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::Tensor as KernelTensor;
    use burn_cubecl::cubecl::prelude::*;
    use burn_cubecl::ops::permute_nchw_to_nhwc;
    use burn_cubecl::tensor::CubeTensor;

    use super::AdamScalars;
    use crate::gpu::channels::{ChannelOrder, empty_in, into_order};
    use crate::gpu::cube::{CubeTask, array, from_cube, grid, raw_f32};

    /// The buffer offset of row-major element `i` of `t`, through its
    /// strides.
    #[cube]
    fn strided_offset<F: Float>(t: &KernelTensor<F>, i: usize) -> usize {
        let mut rest = i;
        let mut offset = 0;
        let rank = t.rank();
        for k in 0..rank {
            let d = rank - 1 - k;
            offset += (rest % t.shape(d)) * t.stride(d);
            rest /= t.shape(d);
        }
        offset
    }

    /// Buffer element i of param and the moments (one layout), and the same
    /// element of `grad`, a view of it in their axis order: at i too when
    /// `grad_as_param` (the view is contiguous, most tensors: no index
    /// arithmetic then), else wherever its strides put row-major element i.
    #[cube(launch_unchecked)]
    fn adam_kernel<F: Float>(
        param: &Array<F>,
        grad: &KernelTensor<F>,
        moment_1: &Array<F>,
        moment_2: &Array<F>,
        new_param: &mut Array<F>,
        new_moment_1: &mut Array<F>,
        new_moment_2: &mut Array<F>,
        beta_1: f32,
        beta_2: f32,
        step_size: f32,
        epsilon: f32,
        #[comptime] grad_as_param: bool,
    ) {
        let i = ABSOLUTE_POS;
        if i < param.len() {
            let mut at = i;
            if !grad_as_param {
                at = strided_offset::<F>(grad, i);
            }
            let g = grad[at];
            let b1 = F::cast_from(beta_1);
            let b2 = F::cast_from(beta_2);
            let m = moment_1[i] * b1 + g * (F::new(1.0) - b1);
            let v = moment_2[i] * b2 + g * g * (F::new(1.0) - b2);
            new_moment_1[i] = m;
            new_moment_2[i] = v;
            new_param[i] =
                param[i] - F::cast_from(step_size) * m / (F::sqrt(v) + F::cast_from(epsilon));
        }
    }

    /// One tensor's update, on whichever runtime its backend uses.
    pub(super) struct AdamTask<'a, B: Backend, const D: usize> {
        pub param: &'a Tensor<B, D>,
        pub grad: &'a Tensor<B, D>,
        pub moment_1: &'a Tensor<B, D>,
        pub moment_2: &'a Tensor<B, D>,
        pub scalars: AdamScalars,
    }

    impl<B: Backend, const D: usize> CubeTask for AdamTask<'_, B, D> {
        type Output = Option<(Tensor<B, D>, Tensor<B, D>, Tensor<B, D>)>;

        fn run<R: CubeRuntime>(self) -> Self::Output {
            // The update is written in the parameter's layout: row-major, or
            // channels-last for a convolution's weight (`model::conv_weights`),
            // which burn's autotuner keys convolutions by, so it must not
            // change between steps. The moments follow it (a copy on the
            // first step, or after loading a checkpoint).
            let p = raw_f32::<R, B, D>(self.param)?;
            let order = ChannelOrder::of(&p).unwrap_or(ChannelOrder::First);
            let p = into_order(p, order);
            let m = into_order(raw_f32::<R, B, D>(self.moment_1)?, order);
            let v = into_order(raw_f32::<R, B, D>(self.moment_2)?, order);
            // The gradient is read where it lies, never copied (that was a
            // launch per tensor and step): seen in the parameter's axis
            // order (NHWC for a channels-last weight), its element for the
            // parameter's buffer index i is row-major element i of that
            // view, at i itself when the view is contiguous.
            let g = raw_f32::<R, B, D>(self.grad)?;
            let g = match order {
                ChannelOrder::Last => permute_nchw_to_nhwc(g),
                ChannelOrder::First => g,
            };
            let (p, m, v) = launch(p, g, m, v, order, self.scalars);
            Some((from_cube(p), from_cube(m), from_cube(v)))
        }
    }

    fn launch<R: CubeRuntime>(
        param: CubeTensor<R>,
        grad: CubeTensor<R>,
        moment_1: CubeTensor<R>,
        moment_2: CubeTensor<R>,
        order: ChannelOrder,
        s: AdamScalars,
    ) -> (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) {
        let n = param.meta.num_elements();
        let shape = crate::gpu::cube::dims(&param);
        let (new_param, new_m, new_v) = (
            empty_in(&param, &shape, order),
            empty_in(&param, &shape, order),
            empty_in(&param, &shape, order),
        );
        let client = param.client.clone();
        let (cube_count, cube_dim) = grid(&param, n);
        let grad_as_param = grad.is_contiguous();
        // Safety: the six arrays hold `n` f32 elements contiguous in
        // `order` (`into_order`, `empty_in`), and the kernel reads and
        // writes index < n only; `grad` holds n elements, read at index i
        // when contiguous, else through its strides, which stay inside its
        // buffer.
        unsafe {
            adam_kernel::launch_unchecked::<f32, R>(
                &client,
                cube_count,
                cube_dim,
                array(&param, n),
                grad.clone().into_tensor_arg(),
                array(&moment_1, n),
                array(&moment_2, n),
                array(&new_param, n),
                array(&new_m, n),
                array(&new_v, n),
                s.beta_1,
                s.beta_2,
                s.step_size,
                s.epsilon,
                grad_as_param,
            );
        }
        (new_param, new_m, new_v)
    }
}
