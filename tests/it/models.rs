//! The models learn on real (phantom) slices through the real store, save and
//! load exactly, and resume an interrupted run where it stopped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::AutodiffModule;
use burn::prelude::*;

use nextslice::config::{Config, Preset};
use nextslice::device::CpuBackend;
use nextslice::model::{Mode, UNetSpec, VaeSpec};
use nextslice::progress::Silent;
use nextslice::store::{SliceStore, open_or_build};
use nextslice::train::{
    NoObserver, StoreMasks, TrainEvent, TrainObserver, UnetTraining, VaeTraining, load_model,
    save_model, train_unet, train_vae,
};
use nextslice::volume::dataset::discover;

type B = CpuBackend;
type Inner = burn::backend::Flex;

/// A 32² phantom store and its config (tiny networks).
fn phantom_store(dir: &Path, subjects: usize) -> (Config, SliceStore) {
    let data = dir.join("data");
    super::common::tumour_phantoms(&data, subjects, 32, 21);
    let config = Config::preset_with(
        Preset::Demo,
        "<test>",
        "[slicing]\nsize = [32, 32]\n[unet]\nwidths = [8, 16]\nbottleneck = 32\nlr = 3e-3\nbatch_size = 8\nmin_steps_per_round = 0\n\
         [vae]\nwidths = [4, 8]\nz_dim = 3\nlr = 1e-3\nbatch_size = 16\n",
    )
    .unwrap();
    let cases = discover(&config.dataset, &data).unwrap().cases;
    let (store, _) = open_or_build(
        &dir.join("store"),
        &config,
        &cases,
        &Silent,
        &AtomicBool::new(false),
    )
    .unwrap();
    (config, store)
}

/// Slices with the most tumour: a small, informative training set.
fn tumour_slices(store: &SliceStore, count: usize) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..store.len()).collect();
    ids.sort_by(|&a, &b| {
        let f = |i: usize| store.entries()[i].foreground_fraction.unwrap_or(0.0);
        f(b).total_cmp(&f(a))
    });
    ids.truncate(count);
    ids
}

fn batch(store: &SliceStore, ids: &[usize]) -> (Tensor<Inner, 4>, Vec<u8>) {
    let meta = store.meta();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    store
        .read_batch(ids, &mut images, Some(&mut labels))
        .unwrap();
    let shape = [ids.len(), meta.channels(), meta.height, meta.width];
    (
        Tensor::from_data(TensorData::new(images, shape), &Default::default()),
        labels,
    )
}

/// Hard Dice of the whole tumour (any foreground class) over a batch.
fn whole_tumour_dice(predicted: &[i64], truth: &[u8]) -> f64 {
    let (mut both, mut sum) = (0usize, 0usize);
    for (&p, &t) in predicted.iter().zip(truth) {
        let (p, t) = (p > 0, t > 0);
        both += usize::from(p && t);
        sum += usize::from(p) + usize::from(t);
    }
    2.0 * both as f64 / sum.max(1) as f64
}

#[test]
fn a_tiny_unet_learns_the_phantom_tumours() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, store) = phantom_store(dir.path(), 3);
    config.unet.epochs_per_round = 60;
    config.augment.enabled = false;
    config.unet.lr = 1e-2;
    let slices = tumour_slices(&store, 8);
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 7);
    let model = UNetSpec::from_config(&config).init::<B>(&device);
    let job = UnetTraining {
        store: &store,
        masks: &StoreMasks(&store),
        slices: &slices,
        config: &config.unet,
        augment: &config.augment,
        seed: 1,
        checkpoints: &dir.path().join("ckpt"),
    };
    let trained = train_unet(&job, model, &device, &NoObserver, &AtomicBool::new(false)).unwrap();
    let losses = &trained.outcome.epoch_losses;
    assert_eq!(losses.len(), 60);
    assert!(
        losses[59] < losses[0] - 0.2,
        "Dice loss barely fell: {:.3} → {:.3}",
        losses[0],
        losses[59]
    );

    let (x, truth) = batch(&store, &slices);
    let predicted = trained
        .model
        .valid()
        .forward(x, Mode::Eval)
        .logits
        .argmax(1);
    let predicted = predicted
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap();
    let dice = whole_tumour_dice(&predicted, &truth);
    assert!(
        dice > 0.7,
        "whole-tumour Dice on the training slices is only {dice:.3}"
    );
}

#[test]
fn the_vae_reconstruction_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, store) = phantom_store(dir.path(), 2);
    config.vae.epochs = 10;
    let slices: Vec<usize> = (0..store.len()).collect();
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 4);
    let model = VaeSpec::from_config(&config).init::<B>(&device);
    let job = VaeTraining {
        store: &store,
        slices: &slices,
        config: &config.vae,
        seed: 3,
        checkpoints: &dir.path().join("vae"),
    };
    let trained = train_vae(&job, model, &device, &NoObserver, &AtomicBool::new(false)).unwrap();
    let losses = &trained.outcome.epoch_losses;
    assert!(
        losses[9] < 0.75 * losses[0],
        "VAE loss did not fall: {losses:?}"
    );
    assert!(
        losses.windows(3).all(|w| w[2] < w[0]),
        "VAE loss is not falling steadily: {losses:?}"
    );
    let (x, _) = batch(&store, &slices[..4]);
    let z = trained.model.valid().encode_mean(x);
    assert_eq!(z.dims(), [4, 3]);
}

#[test]
fn saved_models_load_to_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, store) = phantom_store(dir.path(), 2);
    config.unet.epochs_per_round = 2; // moves weights and running statistics off their init
    let slices = tumour_slices(&store, 8);
    let device = Default::default();
    let spec = UNetSpec::from_config(&config);
    let job = UnetTraining {
        store: &store,
        masks: &StoreMasks(&store),
        slices: &slices,
        config: &config.unet,
        augment: &config.augment,
        seed: 2,
        checkpoints: &dir.path().join("ckpt"),
    };
    let model = train_unet(
        &job,
        spec.init::<B>(&device),
        &device,
        &NoObserver,
        &AtomicBool::new(false),
    )
    .unwrap()
    .model;
    let path = dir.path().join("unet.mpk");
    save_model::<B, _>(&path, &model).unwrap();
    let loaded = load_model::<B, _>(&path, spec.init::<B>(&device), &device).unwrap();
    let (x, _) = batch(&store, &slices);
    let a = model
        .valid()
        .forward(x.clone(), Mode::Eval)
        .logits
        .into_data();
    let b = loaded.valid().forward(x, Mode::Eval).logits.into_data();
    assert_eq!(a, b);

    // A damaged file is an error, not a panic.
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = load_model::<B, _>(&path, spec.init::<B>(&device), &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("damaged"), "{err}");
}

/// Cancels the run right after epoch `at` is checkpointed.
struct CancelAfter<'a> {
    at: usize,
    cancel: &'a AtomicBool,
}

impl TrainObserver for CancelAfter<'_> {
    fn event(&self, event: &TrainEvent) {
        if let TrainEvent::EpochDone { epoch, .. } = event
            && *epoch == self.at
        {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn an_interrupted_run_resumes_at_the_next_epoch_with_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, store) = phantom_store(dir.path(), 2);
    config.unet.epochs_per_round = 4;
    let slices = tumour_slices(&store, 12);
    let device = Default::default();
    // burn initialises parameters lazily, on first use, from a generator
    // shared by all threads (tests run in parallel): a clone of a fresh model
    // would draw its own weights. Save one initialisation and load it for
    // each run instead.
    let spec = UNetSpec::from_config(&config);
    let initial_path = dir.path().join("initial.mpk");
    save_model::<B, _>(&initial_path, &spec.init::<B>(&device)).unwrap();
    let fresh = || load_model::<B, _>(&initial_path, spec.init::<B>(&device), &device).unwrap();
    let masks = StoreMasks(&store);
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let job = |ckpt: &'static str| UnetTraining {
        store: &store,
        masks: &masks,
        slices: &slices,
        config: &config.unet,
        augment: &config.augment,
        seed: 9,
        checkpoints: if ckpt == "a" { &a_dir } else { &b_dir },
    };
    let never = AtomicBool::new(false);
    let straight = train_unet(&job("a"), fresh(), &device, &NoObserver, &never).unwrap();

    let cancel = AtomicBool::new(false);
    let interrupted = train_unet(
        &job("b"),
        fresh(),
        &device,
        &CancelAfter {
            at: 2,
            cancel: &cancel,
        },
        &cancel,
    )
    .unwrap();
    assert!(interrupted.outcome.cancelled);
    assert_eq!(interrupted.outcome.epochs_completed, 2);
    // A new process starts from a fresh model and finds the checkpoint.
    let resumed = train_unet(&job("b"), fresh(), &device, &NoObserver, &never).unwrap();
    assert_eq!(resumed.outcome.resumed_from, Some(2));
    assert_eq!(resumed.outcome.epochs_completed, 4);

    // Same shuffles, augmentations, weights and Adam moments: the resumed run
    // ends where the uninterrupted one did (to float noise: burn-flex's
    // parallel reductions may sum in a different order run to run).
    let (x, _) = batch(&store, &slices);
    let a = straight
        .model
        .valid()
        .forward(x.clone(), Mode::Eval)
        .logits
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = resumed
        .model
        .valid()
        .forward(x, Mode::Eval)
        .logits
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-4,
        "resumed run diverged from the uninterrupted one by {worst}"
    );
    for (p, q) in straight
        .outcome
        .epoch_losses
        .iter()
        .zip(&resumed.outcome.epoch_losses)
    {
        assert!(
            (p - q).abs() < 1e-5,
            "{:?} vs {:?}",
            straight.outcome.epoch_losses,
            resumed.outcome.epoch_losses
        );
    }
}

/// Relative difference of two values, against the larger.
fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

/// Our CPU kernels (im2col + gemm, Winograd, fused norm, pooling) against
/// burn's own on one fixed phantom batch: the U-Net's Dice loss, the loss
/// after one SGD step (which moves every weight by its gradient), the input
/// gradient of Eq. 3, and the VAE's loss, before and after a step. Widths of
/// 16+ channels put the 3×3 convolutions on the Winograd path.
#[test]
fn our_cpu_kernels_agree_with_burns_on_a_fixed_batch() {
    use burn::optim::{GradientsParams, Optimizer, SgdConfig};
    use nextslice::model::loss::{dice_loss_from_logits, one_hot, vae_loss};
    use nextslice::model::{dice_gradient_wrt_input, with_burn_kernels};

    let dir = tempfile::tempdir().unwrap();
    let (config, store) = phantom_store(dir.path(), 2);
    let (x, labels) = batch(&store, &tumour_slices(&store, 4));
    let device = Default::default();
    let x = Tensor::<B, 4>::from_inner(x);
    let [n, _, h, w] = x.dims();
    let labels: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    let labels = Tensor::<B, 3, Int>::from_data(TensorData::new(labels, [n, h, w]), &device);
    let classes = config.labels.classes.len();
    let target = one_hot(labels, classes);
    let noise = Tensor::<B, 2>::from_data(
        TensorData::new([0.3f32, -1.2, 0.7].repeat(n), [n, 3]),
        &device,
    );

    let measure = || -> Vec<f64> {
        // Fresh models each time: a training pass moves the norms' running
        // averages, which the (eval-mode) input gradient reads.
        <B as burn::tensor::backend::Backend>::seed(&device, 11);
        let unet = UNetSpec {
            widths: vec![16, 32],
            bottleneck: 64,
            ..UNetSpec::from_config(&config)
        }
        .init::<B>(&device);
        let vae = VaeSpec {
            widths: vec![16, 32],
            ..VaeSpec::from_config(&config)
        }
        .init::<B>(&device);
        let scalar = |t: Tensor<B, 1>| f64::from(t.into_scalar());
        let dice = |m: &nextslice::model::UNet<B>| {
            dice_loss_from_logits(m.forward(x.clone(), Mode::Train).logits, target.clone())
        };
        let loss = dice(&unet);
        let before = scalar(loss.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        let stepped = SgdConfig::new().init().step(0.5, unet.clone(), grads);
        let after = scalar(dice(&stepped));
        let input_gradient =
            dice_gradient_wrt_input::<B>(&unet, x.clone().inner(), target.clone().inner())
                .unwrap()
                .gradient;
        let gradient_norm = f64::from(input_gradient.square().sum().sqrt().into_scalar());
        let vae_total = |m: &nextslice::model::Vae<B>| {
            let out = m.forward(x.clone(), noise.clone(), Mode::Train);
            vae_loss(out.reconstruction, x.clone(), out.mean, out.log_var).total(1.0)
        };
        let vae_loss_now = vae_total(&vae);
        let vae_before = scalar(vae_loss_now.clone());
        let grads = GradientsParams::from_grads(vae_loss_now.backward(), &vae);
        let vae_stepped = SgdConfig::new().init().step(1e-4, vae.clone(), grads);
        let vae_after = scalar(vae_total(&vae_stepped));
        vec![before, after, gradient_norm, vae_before, vae_after]
    };
    let ours = measure();
    let theirs = with_burn_kernels(measure);
    let names = [
        "U-Net Dice loss",
        "U-Net loss after an SGD step",
        "‖∂Dice/∂x‖",
        "VAE loss",
        "VAE loss after an SGD step",
    ];
    for ((a, b), name) in ours.iter().zip(&theirs).zip(names) {
        eprintln!(
            "{name}: ours {a:.7}, burn {b:.7}, relative {:.2e}",
            relative(*a, *b)
        );
        assert!(relative(*a, *b) < 1e-4, "{name}: ours {a}, burn {b}");
    }
    // The step moved the losses, so their agreement tests the gradients.
    assert!(relative(ours[0], ours[1]) > 1e-3 && relative(ours[3], ours[4]) > 1e-5);
}
