//! Our layers on a cubecl backend, against burn's own kernels: burn's wgpu
//! backend on Mesa's lavapipe (a CPU Vulkan driver) compiles and runs the
//! same cubecl kernels burn-cuda does, so the GPU-only paths in `model`
//! (the decoders' up-convolutions as matmuls, batch norm and the Dice loss
//! as one autodiff node each, Adam as one kernel, convolution weights
//! channels-last, convolutions steered to one kernel) run here on a
//! machine with no GPU.
//!
//! `cargo test --features wgpu --test gpu_layers` (`.ci/run` installs
//! `mesa-vulkan-drivers`).

use burn::backend::{Autodiff, Wgpu};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use burn_cubecl::cubecl::wgpu::WgpuRuntime;
use burn_cubecl::tensor::CubeTensor;
use nextslice::config::AutotuneLevel;
use nextslice::gpu::adam::{AdamScalars, adam_step};
use nextslice::gpu::channels::ChannelOrder;
use nextslice::gpu::configure;
use nextslice::model::loss::{dice_loss_per_slice_from_logits, one_hot};
use nextslice::model::{
    Activation, BatchNorm2d, Fold, Mode, Steer, UNet, UNetSpec, Vae, VaeSpec,
    batch_norm_is_one_node, dice_gradient_wrt_input, folded_weight_gradients, matmul_counts,
    steering_counts, with_burn_kernels, with_conv_steering, with_matmul_steering,
    with_weight_grad_fold,
};
use nextslice::train::{load_model, save_model};

type Gpu = Autodiff<Wgpu>;

fn normal(shape: [usize; 4]) -> Tensor<Gpu, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// A loss that weighs every output element differently, so an output
/// element painted in the wrong place changes it.
fn weighted_sum(y: Tensor<Gpu, 4>, weights: &Tensor<Gpu, 4>) -> Tensor<Gpu, 1> {
    (y * weights.clone()).sum()
}

fn assert_close(ours: Tensor<Wgpu, 4>, burns: Tensor<Wgpu, 4>, what: &str) {
    assert_eq!(ours.dims(), burns.dims(), "{what}: shapes");
    let ours: Vec<f32> = ours.into_data().to_vec().unwrap();
    let burns: Vec<f32> = burns.into_data().to_vec().unwrap();
    let scale = burns.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}[{i}]: ours {a}, burn's kernels {b} (largest value {scale})"
        );
    }
}

/// burn initialises parameters lazily, and each clone of an uninitialised
/// module draws its own weights: both sides must start from the same ones.
fn materialized<M: Module<Gpu>>(model: M) -> M {
    let record = model.clone().into_record();
    model.load_record(record)
}

/// One plain gradient step, then the model's output again: every
/// parameter's gradient, the up-convolutions' weights included, shows in it.
/// Both outputs use batch statistics (training mode): clones share their
/// running averages, which each side's step updates.
fn unet_step(
    model: UNet<Gpu>,
    x: &Tensor<Gpu, 4>,
    weights: &Tensor<Gpu, 4>,
) -> [Tensor<Wgpu, 4>; 2] {
    let logits = model.forward(x.clone(), Mode::Train).logits;
    let grads = weighted_sum(logits.clone(), weights).backward();
    let grads = GradientsParams::from_grads(grads, &model);
    let model = SgdConfig::new().init().step(0.01, model, grads);
    let after = model.forward(x.clone(), Mode::Train).logits;
    [logits.inner(), after.inner()]
}

/// The same for the VAE, whose decoder's up-convolutions have no bias.
fn vae_step(model: Vae<Gpu>, x: &Tensor<Gpu, 4>, weights: &Tensor<Gpu, 4>) -> [Tensor<Wgpu, 4>; 2] {
    let noise = Tensor::<Gpu, 2>::zeros([x.dims()[0], 3], &Default::default());
    let out = model.forward(x.clone(), noise.clone(), Mode::Train);
    let grads = weighted_sum(out.reconstruction.clone(), weights).backward();
    let grads = GradientsParams::from_grads(grads, &model);
    let model = SgdConfig::new().init().step(0.01, model, grads);
    let after = model.forward(x.clone(), noise, Mode::Train).reconstruction;
    [out.reconstruction.inner(), after.inner()]
}

/// One test: cubecl is configured once per process.
/// ∂Dice/∂x through the U-Net in eval mode (Eq. 3's gradient): batch norm
/// with running statistics, differentiated.
fn input_gradient(unet: &UNet<Gpu>, x: &Tensor<Gpu, 4>, y: &Tensor<Wgpu, 4>) -> Tensor<Wgpu, 4> {
    dice_gradient_wrt_input::<Gpu>(unet, x.clone().inner(), y.clone())
        .expect("the gradient reaches the input")
        .gradient
}

/// The U-Net every model test builds: two input channels on 16² inputs,
/// three classes.
fn tiny_unet() -> UNetSpec {
    UNetSpec {
        in_channels: 2,
        classes: 3,
        widths: vec![4, 8],
        bottleneck: 8,
    }
}

/// The VAE every model test builds, for the same inputs.
fn tiny_vae() -> VaeSpec {
    VaeSpec {
        in_channels: 2,
        size: [16, 16],
        widths: vec![4, 8],
        z_dim: 3,
    }
}

/// Against burn's kernels (`with_burn_kernels`: burn's transposed
/// convolution, batch norm from burn's tensor operations): the model outputs
/// before and after one training step, and the input gradient in eval mode.
#[test]
fn our_gpu_layers_train_like_burns_kernels() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    assert!(
        batch_norm_is_one_node::<Gpu>() && batch_norm_is_one_node::<Wgpu>(),
        "batch norm does not run as one node on burn-wgpu: this test would compare burn with burn"
    );
    let x = normal([2, 2, 16, 16]);
    models_agree(&x, &|f| f(), &|f| with_burn_kernels(f), "ours vs burn's");

    let spec = tiny_unet();
    let unet = materialized(spec.init::<Gpu>(&Default::default()));
    // Inference: no autodiff at all.
    let infer = || unet.valid().forward(x.clone().inner(), Mode::Eval).logits;
    assert_close(infer(), with_burn_kernels(infer), "U-Net inference logits");
    // The running averages one training pass leaves, read through eval-mode
    // outputs, on copies that share no state.
    let copy = || {
        spec.init::<Gpu>(&Default::default())
            .load_record(unet.clone().into_record())
    };
    let (ours, burns) = (copy(), copy());
    let _ = ours.forward(x.clone(), Mode::Train);
    with_burn_kernels(|| {
        let _ = burns.forward(x.clone(), Mode::Train);
    });
    let eval = |m: &UNet<Gpu>| m.valid().forward(x.clone().inner(), Mode::Eval).logits;
    assert_close(
        eval(&ours),
        eval(&burns),
        "U-Net eval after one training pass",
    );
    let unchanged = (eval(&ours) - infer()).abs().max().into_scalar();
    assert!(
        unchanged > 1e-3,
        "a training pass left the running averages as they were (eval moved {unchanged})"
    );
}

/// A computation of two outputs, run under a switch.
type Run<'a> = &'a dyn Fn() -> [Tensor<Wgpu, 4>; 2];

/// The models run one way (`ours`, which sets its switch around a run)
/// against another (`theirs`): a U-Net's and a VAE's outputs before and
/// after one training step, where every layer's gradients show, and the
/// U-Net's Eq. 3 input gradient.
fn models_agree(
    x: &Tensor<Gpu, 4>,
    ours: &dyn Fn(Run<'_>) -> [Tensor<Wgpu, 4>; 2],
    theirs: &dyn Fn(Run<'_>) -> [Tensor<Wgpu, 4>; 2],
    what: &str,
) {
    let unet = materialized(tiny_unet().init::<Gpu>(&Default::default()));
    let weights = normal([2, 3, 16, 16]);
    let step = || unet_step(unet.clone(), x, &weights);
    let [logits, after] = ours(&step);
    let [their_logits, their_after] = theirs(&step);
    assert_close(logits, their_logits, &format!("{what}: U-Net logits"));
    assert_close(after, their_after, &format!("{what}: U-Net after one step"));
    let labels = Tensor::<Wgpu, 3>::random(
        [2, 16, 16],
        Distribution::Uniform(0.0, 3.0),
        &Default::default(),
    );
    let y = one_hot(labels.int(), 3);
    let gradient = || {
        let g = input_gradient(&unet, x, &y);
        [g.clone(), g]
    };
    let [ours_g, _] = ours(&gradient);
    let [theirs_g, _] = theirs(&gradient);
    assert_close(ours_g, theirs_g, &format!("{what}: U-Net input gradient"));

    let vae = materialized(tiny_vae().init::<Gpu>(&Default::default()));
    let weights = normal([2, 2, 16, 16]);
    let step = || vae_step(vae.clone(), x, &weights);
    let [reconstruction, after] = ours(&step);
    let [their_reconstruction, their_after] = theirs(&step);
    assert_close(
        reconstruction,
        their_reconstruction,
        &format!("{what}: VAE reconstruction"),
    );
    assert_close(after, their_after, &format!("{what}: VAE after one step"));
}

/// Convolutions steered to one kernel (`model::conv_node`) against the same
/// models autotuned: outputs before and after one training step (every
/// convolution's input and weight gradients show in them), and Eq. 3's input
/// gradient. lavapipe has no tensor-core tiles, so the implicit GEMM
/// refuses and falls back; the direct kernel runs the node itself.
#[test]
fn steered_convolutions_train_like_autotuned_ones() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let x = normal([2, 2, 16, 16]);
    let autotuned = |f: Run<'_>| with_conv_steering(None, f);
    for steer in [Steer::Direct, Steer::ImplicitGemm] {
        let (steered_before, _) = steering_counts();
        let steered = |f: Run<'_>| with_conv_steering(Some(steer), f);
        models_agree(&x, &steered, &autotuned, &format!("{steer:?}"));
        let (steered_after, _) = steering_counts();
        if steer == Steer::Direct {
            assert!(
                steered_after > steered_before,
                "no convolution pass ran the direct kernel: this test compared autotuning with itself"
            );
        }
    }
}

/// Steered weight gradients with the batch folded into the channels
/// (`model::weight_grad_fold`) against the same unfolded: a U-Net and a VAE
/// after one training step (every convolution's weight gradient shows in
/// it), at batch 4 folded in 2 groups of 2. Steered to the direct kernel,
/// which lavapipe runs.
#[test]
fn folded_weight_gradients_train_like_unfolded_ones() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let x = normal([4, 2, 16, 16]);
    let direct = |fold: Fold, f: &dyn Fn() -> [Tensor<Wgpu, 4>; 2]| {
        with_conv_steering(Some(Steer::Direct), || with_weight_grad_fold(fold, f))
    };
    let unet = materialized(tiny_unet().init::<Gpu>(&Default::default()));
    let unet_weights = normal([4, 3, 16, 16]);
    let vae = materialized(tiny_vae().init::<Gpu>(&Default::default()));
    let vae_weights = normal([4, 2, 16, 16]);
    let unet_step = || unet_step(unet.clone(), &x, &unet_weights);
    let vae_step = || vae_step(vae.clone(), &x, &vae_weights);
    let [_, unet_plain] = direct(Fold::Off, &unet_step);
    let [_, vae_plain] = direct(Fold::Off, &vae_step);
    let groups = 2;
    let before = folded_weight_gradients();
    let [_, unet_folded] = direct(Fold::AtMost(groups), &unet_step);
    let [_, vae_folded] = direct(Fold::AtMost(groups), &vae_step);
    assert!(
        folded_weight_gradients() > before,
        "no weight gradient was folded in {groups} groups: this test compared the plain path with itself"
    );
    assert_close(
        unet_folded,
        unet_plain,
        &format!("U-Net after one step, {groups} groups"),
    );
    assert_close(
        vae_folded,
        vae_plain,
        &format!("VAE after one step, {groups} groups"),
    );
}

/// Matmuls steered to one kernel (`NEXTSLICE_GPU_MATMUL=fixed`: the
/// decoders' up-convolutions and the VAE's linear maps) against the same
/// models autotuned: outputs before and after one training step (both
/// gradients of every matmul show in them), and Eq. 3's input gradient.
/// lavapipe has no tensor cores, so the fixed kernel is cubek's unit matmul.
#[test]
fn steered_matmuls_train_like_autotuned_ones() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let x = normal([2, 2, 16, 16]);
    let fixed = |f: Run<'_>| with_matmul_steering(true, f);
    let autotuned = |f: Run<'_>| with_matmul_steering(false, f);
    let (steered_before, refused_before) = matmul_counts();
    let passes_in = |f: Run<'_>| {
        let before = matmul_counts().0;
        fixed(f);
        matmul_counts().0 - before
    };
    let unet = materialized(tiny_unet().init::<Gpu>(&Default::default()));
    let forward = || {
        let logits = unet.clone().forward(x.clone(), Mode::Train).logits.inner();
        [logits.clone(), logits]
    };
    let forward_passes = passes_in(&forward);
    assert!(forward_passes > 0, "no up-convolution ran the fixed kernel");
    let weights = normal([2, 3, 16, 16]);
    let step_passes = passes_in(&|| unet_step(unet.clone(), &x, &weights));
    // Forward, both gradients of each matmul, forward again after the step.
    assert_eq!(
        step_passes,
        4 * forward_passes,
        "the backward pass ran the fixed kernel too"
    );

    models_agree(&x, &fixed, &autotuned, "fixed matmuls");
    let (steered_after, refused_after) = matmul_counts();
    assert!(steered_after > steered_before);
    assert_eq!(
        refused_after, refused_before,
        "lavapipe's unit matmul takes every pass"
    );
}

/// One batch-norm layer: its output, its input gradient, the running
/// averages it leaves (read through eval mode) and its output after one
/// step (the parameters' gradients).
fn norm_pass(x: &Tensor<Gpu, 4>, weights: &Tensor<Gpu, 4>) -> [Tensor<Wgpu, 4>; 4] {
    let bn = BatchNorm2d::<Gpu>::new(x.dims()[1], &Default::default());
    let x = x.clone().detach().require_grad();
    let y = bn.forward(x.clone(), Mode::Train);
    let grads = weighted_sum(y.clone(), weights).backward();
    let dx = x.grad(&grads).expect("the gradient reaches x");
    let eval = bn.valid().forward(x.clone().inner(), Mode::Eval);
    let grads = GradientsParams::from_grads(grads, &bn);
    let bn = SgdConfig::new().init().step(0.1, bn, grads);
    let after = bn.forward(x, Mode::Train);
    [y.inner(), dx, eval, after.inner()]
}

/// A standard normal [n, c, h, w] tensor whose buffer is NCHW, or NHWC (as
/// burn's convolutions leave their outputs) with `channels_last`.
fn normal_in(shape: [usize; 4], channels_last: bool) -> Tensor<Gpu, 4> {
    let [n, c, h, w] = shape;
    match channels_last {
        false => normal(shape),
        true => normal([n, h, w, c]).permute([0, 3, 1, 2]),
    }
}

fn channel_order(t: &Tensor<Wgpu, 4>) -> Option<ChannelOrder> {
    let cube: CubeTensor<WgpuRuntime> = t.clone().into_primitive().tensor();
    ChannelOrder::of(&cube)
}

/// Whether `t`'s buffer is NHWC-contiguous (and not NCHW-contiguous too).
fn is_channels_last(t: &Tensor<Wgpu, 4>) -> bool {
    channel_order(t) == Some(ChannelOrder::Last)
}

/// Whether `t`'s buffer is NCHW-contiguous.
fn is_channels_first(t: &Tensor<Wgpu, 4>) -> bool {
    channel_order(t) == Some(ChannelOrder::First)
}

/// Batch norm against burn's operations: where each channel's sums split
/// into several chunks (4500 values, chunks crossing image boundaries) and
/// the batch's statistics are far from the initial running averages, and
/// where four values per channel make the running variance's 4/3 unbiasing
/// visible; each with its buffer NCHW and NHWC. NHWC also where the
/// channels fill more than one cube's lanes (300: two groups, the second
/// part-empty) and where they are not a power of two (48, 3). An NHWC
/// input keeps its order in the output and the input gradient.
#[test]
fn batch_norm_matches_burns_operations() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let cases = [
        ([5, 2, 30, 30], false),
        ([5, 2, 30, 30], true),
        ([2, 3, 2, 1], false),
        ([2, 3, 2, 1], true),
        ([2, 300, 4, 5], true),
        ([4, 48, 20, 20], true),
    ];
    for (shape, channels_last) in cases {
        let x = normal_in(shape, channels_last)
            .mul_scalar(3.0)
            .add_scalar(1.5);
        let weights = normal_in(shape, channels_last);
        let ours = norm_pass(&x, &weights);
        if channels_last {
            assert!(is_channels_last(&ours[0]), "output order, {shape:?}");
            assert!(
                is_channels_last(&ours[1]),
                "input gradient order, {shape:?}"
            );
        }
        let burns = with_burn_kernels(|| norm_pass(&x, &weights));
        let names = [
            "output",
            "input gradient",
            "eval output",
            "output after a step",
        ];
        let order = if channels_last { "NHWC" } else { "NCHW" };
        for ((ours, burns), name) in ours.into_iter().zip(burns).zip(names) {
            assert_close(
                ours,
                burns,
                &format!("batch norm {name}, {shape:?} {order}"),
            );
        }
    }
}

/// One batch-norm layer joined with a shortcut, act(norm(x) + shortcut):
/// its output, both input gradients, the eval-mode output after the pass
/// and its output after one step.
fn joined_norm_pass(
    x: &Tensor<Gpu, 4>,
    shortcut: &Tensor<Gpu, 4>,
    weights: &Tensor<Gpu, 4>,
    activation: Activation,
) -> [Tensor<Wgpu, 4>; 5] {
    let bn = BatchNorm2d::<Gpu>::new(x.dims()[1], &Default::default());
    let x = x.clone().detach().require_grad();
    let shortcut = shortcut.clone().detach().require_grad();
    let y = bn.forward_joined(x.clone(), shortcut.clone(), Mode::Train, activation);
    let grads = weighted_sum(y.clone(), weights).backward();
    let dx = x.grad(&grads).expect("the gradient reaches x");
    let d_shortcut = shortcut
        .grad(&grads)
        .expect("the gradient reaches the shortcut");
    let eval = bn.valid().forward_joined(
        x.clone().inner(),
        shortcut.clone().inner(),
        Mode::Eval,
        activation,
    );
    let grads = GradientsParams::from_grads(grads, &bn);
    let bn = SgdConfig::new().init().step(0.1, bn, grads);
    let after = bn.forward_joined(x, shortcut, Mode::Train, activation);
    [y.inner(), dx, d_shortcut, eval, after.inner()]
}

/// A residual block's join (the VAE's) in the batch-norm node against
/// burn's operations: the shortcut in x's order and in the other one (then
/// read through a copy), LeakyReLU with a slope large enough to see and
/// ReLU; the output and both gradients keep x's order.
#[test]
fn batch_norm_joined_with_a_shortcut_matches_burns_operations() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let cases = [
        ([4, 48, 20, 20], true, true, Activation::LeakyRelu(0.2)),
        ([5, 2, 30, 30], true, false, Activation::LeakyRelu(0.2)),
        ([2, 3, 2, 1], false, true, Activation::Relu),
        ([5, 2, 30, 30], false, false, Activation::Relu),
    ];
    for (shape, x_last, shortcut_last, activation) in cases {
        let x = normal_in(shape, x_last).mul_scalar(3.0).add_scalar(1.5);
        let shortcut = normal_in(shape, shortcut_last);
        let weights = normal_in(shape, x_last);
        let ours = joined_norm_pass(&x, &shortcut, &weights, activation);
        if x_last {
            for (t, name) in ours.iter().zip(["output", "∂x", "∂shortcut"]) {
                assert!(is_channels_last(t), "{name} order, {shape:?}");
            }
        }
        let burns = with_burn_kernels(|| joined_norm_pass(&x, &shortcut, &weights, activation));
        let names = [
            "output",
            "input gradient",
            "shortcut gradient",
            "eval output",
            "output after a step",
        ];
        for ((ours, burns), name) in ours.into_iter().zip(burns).zip(names) {
            assert_close(
                ours,
                burns,
                &format!(
                    "joined batch norm {name}, {shape:?}, x NHWC {x_last}, shortcut NHWC {shortcut_last}"
                ),
            );
        }
    }
}

/// Eq. 2 per slice and its gradients: the losses, ∂/∂logits and
/// ∂/∂targets of Σ up·loss (both tracked), ∂/∂logits with constant
/// targets, and the losses without autodiff; [n] values as [n, 1, 1, 1].
fn dice_pass(z: &Tensor<Gpu, 4>, y: &Tensor<Gpu, 4>, up: &Tensor<Gpu, 1>) -> [Tensor<Wgpu, 4>; 5] {
    let n = z.dims()[0];
    let column = |t: Tensor<Wgpu, 1>| t.reshape([n, 1, 1, 1]);
    let (z, y) = (z.clone().detach().require_grad(), y.clone().detach());
    let tracked_y = y.clone().require_grad();
    let losses = dice_loss_per_slice_from_logits(z.clone(), tracked_y.clone());
    let grads = (losses.clone() * up.clone()).sum().backward();
    let dz = z.grad(&grads).expect("the gradient reaches the logits");
    let dy = tracked_y
        .grad(&grads)
        .expect("the gradient reaches the targets");
    let constant = dice_loss_per_slice_from_logits(z.clone(), y.clone());
    let grads = (constant * up.clone()).sum().backward();
    let dz_only = z.grad(&grads).expect("the gradient reaches the logits");
    let plain = dice_loss_per_slice_from_logits(z.inner(), y.inner());
    [column(losses.inner()), dz, dy, dz_only, column(plain)]
}

/// The Dice loss from logits against burn's operations: one-hot targets
/// (as `one_hot` makes them, NCHW) against NHWC logits (as the head
/// convolution leaves them), the training case; soft targets in NHWC
/// against NCHW and NHWC logits; two and three classes (a pixel's classes
/// fill no power of two of lanes); 4096 pixels a slice, so each slice's
/// sums split into chunks. The logits' gradient keeps their order.
#[test]
fn dice_loss_matches_burns_operations() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let device = Default::default();
    let cases = [
        ([2, 4, 64, 64], true, None),
        ([3, 3, 20, 30], false, Some(true)),
        ([2, 3, 64, 64], true, Some(true)),
        ([1, 2, 5, 7], false, None),
    ];
    for (shape, logits_last, soft_targets_last) in cases {
        let [n, k, h, w] = shape;
        let z = normal_in(shape, logits_last).mul_scalar(2.0);
        let y = match soft_targets_last {
            Some(last) => normal_in(shape, last).abs().clamp_max(1.0),
            None => {
                let labels = Tensor::<Gpu, 3, Int>::random(
                    [n, h, w],
                    Distribution::Uniform(0.0, k as f64),
                    &device,
                );
                one_hot(labels, k)
            }
        };
        let up = Tensor::<Gpu, 1>::random([n], Distribution::Uniform(0.5, 2.0), &device);
        let ours = dice_pass(&z, &y, &up);
        if logits_last {
            assert!(
                is_channels_last(&ours[1]),
                "logits' gradient order, {shape:?}"
            );
        }
        let burns = with_burn_kernels(|| dice_pass(&z, &y, &up));
        let names = [
            "losses",
            "logits' gradient",
            "targets' gradient",
            "logits' gradient, constant targets",
            "losses untracked",
        ];
        for ((ours, burns), name) in ours.into_iter().zip(burns).zip(names) {
            assert_close(ours, burns, &format!("Dice {name}, {shape:?}"));
        }
    }
}

/// Three steps of a linear regression with optimiser `optim`.
fn adam_steps<O: Optimizer<Linear<Gpu>, Gpu>>(mut model: Linear<Gpu>, mut optim: O) -> Linear<Gpu> {
    let device = Default::default();
    let values = |n: usize, k: usize| -> Vec<f32> {
        (0..n).map(|i| ((i * k) % 13) as f32 / 3.0 - 2.0).collect()
    };
    let x = Tensor::<Gpu, 2>::from_data(TensorData::new(values(80, 7), [16, 5]), &device);
    let y = Tensor::<Gpu, 2>::from_data(TensorData::new(values(48, 5), [16, 3]), &device);
    for _ in 0..3 {
        let loss = (model.forward(x.clone()) - y.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    model
}

/// `train::adam` on a cubecl backend updates each parameter tensor with
/// `gpu::adam`'s one kernel, and takes the steps burn's Adam takes.
#[test]
fn adam_runs_as_one_kernel_and_steps_like_burns_adam() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let device = Default::default();
    let t = Tensor::<Wgpu, 1>::random([37], Distribution::Normal(0.0, 1.0), &device);
    let scalars = AdamScalars {
        beta_1: 0.9,
        beta_2: 0.999,
        step_size: 1e-2,
        epsilon: 1e-5,
    };
    assert!(
        adam_step(&t, &t, &t, &t.clone().abs(), scalars).is_some(),
        "the kernel path is not taken on burn-wgpu"
    );

    channels_last_gradients_step_contiguous_weights(scalars);
    channels_last_weights_stay_channels_last(scalars);

    let start = materialized(LinearConfig::new(5, 3).init::<Gpu>(&device));
    let ours = adam_steps(start.clone(), nextslice::train::adam::<Gpu, Linear<Gpu>>());
    let burns = adam_steps(start.clone(), AdamConfig::new().init::<Gpu, Linear<Gpu>>());
    let weights = |m: &Linear<Gpu>| m.weight.val().inner().reshape([1, 1, 5, 3]);
    let biases = |m: &Linear<Gpu>| m.bias.as_ref().unwrap().val().inner().reshape([1, 1, 1, 3]);
    let moved = (weights(&ours) - weights(&start)).abs().max().into_scalar();
    assert!(
        moved > 1e-3,
        "three Adam steps moved no weight by more than {moved}"
    );
    assert_close(weights(&ours), weights(&burns), "weights after three steps");
    assert_close(biases(&ours), biases(&burns), "biases after three steps");
}

/// Adam's update from burn's operations, for comparison.
fn adam_by_operations([p, g, m, v]: [Tensor<Wgpu, 4>; 4], s: AdamScalars) -> [Tensor<Wgpu, 4>; 3] {
    let m = m.mul_scalar(s.beta_1) + g.clone().mul_scalar(1.0 - s.beta_1);
    let v = v.mul_scalar(s.beta_2) + g.powi_scalar(2).mul_scalar(1.0 - s.beta_2);
    let p = p - m.clone().mul_scalar(s.step_size) / v.clone().sqrt().add_scalar(s.epsilon);
    [p, m, v]
}

/// A convolution's weight gradient comes channels-last ([out, kh, kw, in]
/// seen as [out, in, kh, kw]): the kernel reads it through its strides,
/// steps a contiguous weight by it correctly, twice, and leaves the weight
/// and moments contiguous (burn tunes convolutions per operand layout, so
/// a weight that changed layout would be tuned again).
fn channels_last_gradients_step_contiguous_weights(scalars: AdamScalars) {
    let wgpu = |t: Tensor<Gpu, 4>| t.inner();
    let gradient = || wgpu(normal_in([6, 5, 3, 3], true));
    let mut state = [
        wgpu(normal([6, 5, 3, 3])),
        wgpu(normal([6, 5, 3, 3]).abs().mul_scalar(0.1)),
        wgpu(normal([6, 5, 3, 3]).abs()),
    ];
    for step in 0..2 {
        let g = gradient();
        let [p, m, v] = state;
        let (p2, m2, v2) = adam_step(&p, &g, &m, &v, scalars).expect("the kernel path");
        let expected = adam_by_operations([p, g.clone(), m, v], scalars);
        for (ours, (burns, name)) in
            [p2.clone(), m2.clone(), v2.clone()]
                .into_iter()
                .zip(
                    expected
                        .into_iter()
                        .zip(["weight", "first moment", "second moment"]),
                )
        {
            assert!(is_channels_first(&ours), "{name} order, step {step}");
            assert_close(ours, burns, &format!("{name} after step {step}"));
        }
        state = [p2, m2, v2];
    }
}

/// A gradient of shape [6, 5, 3, 3] in one of three layouts: NHWC, NCHW,
/// or [kh, kw, in, out] (neither; contiguous in no channel order).
fn gradient_laid_out(layout: usize) -> Tensor<Wgpu, 4> {
    match layout {
        0 => normal_in([6, 5, 3, 3], true).inner(),
        1 => normal([6, 5, 3, 3]).inner(),
        _ => normal([3, 3, 5, 6]).permute([3, 2, 0, 1]).inner(),
    }
}

/// A convolution's weight stored channels-last (`model::conv_weights`)
/// comes out of each step channels-last, its moments too: from row-major
/// zero moments and a channels-last gradient (a first step), then from its
/// own moments and a row-major gradient, then one laid out in neither
/// order (both read through their strides).
fn channels_last_weights_stay_channels_last(scalars: AdamScalars) {
    let shape = [6, 5, 3, 3];
    let zeros = Tensor::<Wgpu, 4>::zeros(shape, &Default::default());
    let mut state = [normal_in(shape, true).inner(), zeros.clone(), zeros];
    for step in 0..3 {
        let g = gradient_laid_out(step);
        let [p, m, v] = state;
        let (p2, m2, v2) = adam_step(&p, &g, &m, &v, scalars).expect("the kernel path");
        let expected = adam_by_operations([p, g, m, v], scalars);
        let ours = [p2.clone(), m2.clone(), v2.clone()];
        let names = ["weight", "first moment", "second moment"];
        for ((ours, burns), name) in ours.into_iter().zip(expected).zip(names) {
            assert!(is_channels_last(&ours), "{name} order, step {step}");
            assert_close(ours, burns, &format!("{name} after step {step}"));
        }
        state = [p2, m2, v2];
    }
}

/// Where each 4-D parameter of a model lies: the struct that holds it, its
/// kernel's height, and whether its buffer is channels-last and row-major.
#[derive(Default)]
struct WeightLayouts {
    fields: Vec<String>,
    found: Vec<(String, usize, bool, bool)>,
}

impl ModuleVisitor<Gpu> for WeightLayouts {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.fields.push(format!("{container_type}.{name}"));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.fields.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Gpu, D>>) {
        if D != 4 {
            return;
        }
        let t = Tensor::<Wgpu, 4>::from_primitive(param.val().inner().into_primitive());
        let cube: CubeTensor<WgpuRuntime> = t.into_primitive().tensor();
        let field = self.fields.last().cloned().unwrap_or_default();
        self.found.push((
            field,
            cube.meta.shape()[2],
            ChannelOrder::Last.holds(&cube),
            ChannelOrder::First.holds(&cube),
        ));
    }
}

/// Every convolution's weight channels-last, the up-convolutions' weights
/// row-major; `what` says where in the model's life.
fn assert_weight_layouts<M: Module<Gpu>>(model: &M, what: &str) {
    let mut layouts = WeightLayouts::default();
    model.visit(&mut layouts);
    let convolutions = layouts
        .found
        .iter()
        .filter(|(field, ..)| field == "Struct:Conv2d.weight")
        .count();
    assert!(
        convolutions >= 3,
        "{what}: {convolutions} convolutions found"
    );
    for (field, kernel, last, first) in &layouts.found {
        match field.as_str() {
            "Struct:Conv2d.weight" => assert!(
                *last && (*kernel == 1 || !first),
                "{what}: a {kernel}×{kernel} convolution's weight is not channels-last"
            ),
            "Struct:ConvTranspose2d.weight" => assert!(
                *first && !last,
                "{what}: an up-convolution's weight is not row-major"
            ),
            other => panic!("{what}: an unexpected 4-D parameter {other}"),
        }
    }
}

/// The convolutions' weights are channels-last from initialisation, stay
/// so through training steps with our Adam (burn's autotuner keys a
/// convolution by its weight's layout), and are again after loading.
#[test]
fn convolution_weights_lie_channels_last_from_init_through_training_and_loading() {
    configure(None, AutotuneLevel::Minimal).unwrap();
    let device = Default::default();
    let spec = tiny_unet();
    let mut unet = spec.init::<Gpu>(&device);
    assert_weight_layouts(&unet, "U-Net after init");
    let x = normal([2, 2, 16, 16]);
    let weights = normal([2, 3, 16, 16]);
    let mut optim = nextslice::train::adam::<Gpu, UNet<Gpu>>();
    for _ in 0..2 {
        let logits = unet.forward(x.clone(), Mode::Train).logits;
        let grads = GradientsParams::from_grads(weighted_sum(logits, &weights).backward(), &unet);
        unet = optim.step(1e-2, unet, grads);
    }
    assert_weight_layouts(&unet, "U-Net after two Adam steps");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unet.bin");
    save_model(&path, &unet).unwrap();
    let loaded = load_model(&path, spec.init::<Gpu>(&device), &device).unwrap();
    assert_weight_layouts(&loaded, "U-Net after loading");
    let eval = |m: &UNet<Gpu>| m.valid().forward(x.clone().inner(), Mode::Eval).logits;
    assert_close(eval(&loaded), eval(&unet), "U-Net loaded against saved");

    let vae = tiny_vae().init::<Gpu>(&device);
    assert_weight_layouts(&vae, "VAE after init");
}
