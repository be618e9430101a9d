//! The GPU's batch rules (`infer::Pass` pads a pass's last batch), run on
//! the CPU backend: every step must keep from a padded pass what short
//! batches give.

use std::sync::atomic::AtomicBool;

use burn::backend::Flex;

use super::context::StepContext;
use super::gradient::{StepLength, gradient_sources};
use super::infer::tests::{small_store, tiny_models};
use super::scores::{Scoring, dal_inputs, score_candidates};
use super::train_vae::{encode_pool, measure};
use crate::device::CpuBackend;
use crate::journal::EventLog;
use crate::progress::Silent;
use crate::strategy::uncertainty::Measure;
use crate::train::NoObserver;
use crate::train::StoreMasks;
use burn::module::AutodiffModule;

/// On a GPU each pass's last batch is padded; what every step keeps
/// from a pass must be what short batches give (the VAE's quality sums
/// in another order, so to rounding).
#[test]
fn padded_last_batches_change_no_step_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let ids: Vec<usize> = (0..store.len().min(21)).collect();
    let ends_short = |n: usize, batch: usize| !n.is_multiple_of(batch);
    assert!(
        ends_short(ids.len(), 8) && ends_short(store.len(), 32),
        "the test needs short last batches"
    );
    let device = Default::default();
    let (vae, unet_spec) = tiny_models(&store);
    let vae = vae.init::<Flex>(&device);
    let unet = unet_spec.init::<CpuBackend>(&device);
    let ensemble = [unet.valid(), unet_spec.init::<Flex>(&device)];
    let (cancel, log) = (AtomicBool::new(false), EventLog::new(dir.path()));
    let ctx = StepContext {
        progress: &Silent,
        observer: &NoObserver,
        cancel: &cancel,
        log: &log,
    };
    let results = || {
        let latents = encode_pool::<CpuBackend>(&vae, &store, &ctx, &device).unwrap();
        let quality = measure::<CpuBackend>(&vae, &store, &ids, 1.0, 0.0, &ctx, &device)
            .unwrap()
            .unwrap();
        let masks = StoreMasks(&store);
        let length = StepLength::Literal(1e-2);
        let sources = gradient_sources::<CpuBackend>(
            &unet, &vae, &store, &ids, &masks, &latents, length, &ctx, &device,
        )
        .unwrap();
        let entropy = Scoring::Uncertainty(Measure::Entropy);
        let scores = score_candidates(&ensemble[0], &store, &ids, entropy, &ctx, &device);
        let dal = dal_inputs(&ensemble, &store, &ids, &ctx, &device).unwrap();
        let steps: Vec<(usize, Vec<f32>)> = (sources.sources.iter())
            .map(|s| (s.slice, s.step.clone()))
            .collect();
        (
            latents.values,
            [quality.reconstruction, quality.kl],
            steps,
            scores.unwrap(),
            (dal.uncertainty, dal.features),
        )
    };
    let short = results();
    let padded = crate::gpu::runtime::pretend::each_shape_tuned(results);
    assert!(short.0 == padded.0, "pool latents differ");
    for (a, b) in short.1.iter().zip(padded.1) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "VAE quality {a} vs {b}");
    }
    assert!(short.2 == padded.2, "gradient steps differ");
    // Slices that are no candidates score NaN.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(&short.3) == bits(&padded.3),
        "uncertainty scores differ"
    );
    assert!(
        bits(&short.4.0) == bits(&padded.4.0),
        "DAL's disagreement differs"
    );
    assert!(short.4.1 == padded.4.1, "DAL's features differ");
}
