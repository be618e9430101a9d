//! Inference plumbing every step shares: store slices as model inputs, one
//! pass over many slices in batches (cancel check and progress after each),
//! tensors back on the host, class maps, and the ensemble's prediction.

use std::time::Instant;

use burn::prelude::*;

use super::context::{EngineError, Model, StepContext};
use crate::model::{Mode, UNet};
use crate::progress::ProgressUpdate;
use crate::store::SliceStore;

/// Store slices `ids` as one model input [n, C, H, W] on `device`; their
/// ground-truth class maps go into `labels` when asked for. `images` is a
/// buffer reused across batches.
pub fn input_batch<Bk: Backend>(
    store: &SliceStore,
    ids: &[usize],
    images: &mut Vec<f32>,
    labels: Option<&mut Vec<u8>>,
    device: &Bk::Device,
) -> Result<Tensor<Bk, 4>, EngineError> {
    store.read_batch(ids, images, labels)?;
    let meta = store.meta();
    Ok(Tensor::from_data(
        TensorData::new(
            images.clone(),
            [ids.len(), meta.channels(), meta.height, meta.width],
        ),
        device,
    ))
}

/// A tensor's values on the host, as f32.
pub fn to_host<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Result<Vec<f32>, EngineError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| EngineError::Tensor(format!("{e:?}")))
}

/// The most likely class of every pixel of [n, K, H, W] class scores
/// (logits or probabilities), n·H·W values.
pub fn class_map<Bk: Backend>(scores: Tensor<Bk, 4>) -> Result<Vec<u8>, EngineError> {
    Ok(scores
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .map_err(|e| EngineError::Tensor(format!("{e:?}")))?
        .into_iter()
        .map(|k| k.clamp(0, 255) as u8)
        .collect())
}

/// Class scores to take the argmax of: one U-Net's logits, or the mean of
/// an ensemble's softmax (DAL's prediction).
pub fn predict<Bk: Backend>(
    models: &[UNet<Bk>],
    x: Tensor<Bk, 4>,
) -> Result<Tensor<Bk, 4>, EngineError> {
    match models {
        [] => Err(EngineError::MissingModel(Model::Unet)),
        [one] => Ok(one.forward(x, Mode::Eval).logits),
        [first, rest @ ..] => {
            let mut sum = first.probabilities(x.clone(), Mode::Eval);
            for model in rest {
                sum = sum + model.probabilities(x.clone(), Mode::Eval);
            }
            Ok(sum.div_scalar(models.len() as f32))
        }
    }
}

/// The longest a batch should take, so a cancel (checked between batches)
/// lands within a second even where a full batch is slow (large models on
/// the CPU).
const BATCH_SECONDS: f64 = 0.3;

/// Batch sizes of the passes, which the GPU warm-up tunes: the VAE's,
/// the U-Net's, and the input gradient's (a backward pass, so smaller).
pub const VAE_BATCH: usize = 32;
pub const UNET_BATCH: usize = 16;
pub const GRADIENT_BATCH: usize = 8;

/// One batch of a [`Pass`]: the slices it is for and what its tensor's
/// rows hold.
pub struct Batch<'b> {
    /// The slices this batch is for.
    pub ids: &'b [usize],
    /// The slices of the tensor's rows: `ids`, then, in a padded batch, the
    /// last of them again up to the pass's batch size.
    pub rows: &'b [usize],
    /// The rows' ground-truth class maps, when the pass reads them.
    pub labels: &'b [u8],
}

impl Batch<'_> {
    /// The values of `ids`' rows among host values of all the rows (cut on
    /// the host: on the device, a tensor of fewer rows is a new shape).
    pub fn real<'v, T>(&self, values: &'v [T]) -> &'v [T] {
        let per_row = values.len() / self.rows.len().max(1);
        &values[..per_row * self.ids.len()]
    }

    /// 1 for each of `ids`' rows and 0 for the padding: zeroes the
    /// padding's share of a sum over the batch.
    pub fn weights<Bk: Backend>(&self, device: &Bk::Device) -> Tensor<Bk, 1> {
        let values: Vec<f32> = (0..self.rows.len())
            .map(|r| if r < self.ids.len() { 1.0 } else { 0.0 })
            .collect();
        Tensor::from_data(TensorData::new(values, [self.rows.len()]), device)
    }
}

/// One inference pass over store slices, the loop every scoring, encoding,
/// evaluation, prediction and gradient step shares: batches of up to
/// `batch` as model inputs (with their ground-truth class maps when
/// `labels`), a stop on cancel before each batch, and progress under
/// `stage` after each. Models in eval mode treat slices independently, and
/// on the CPU backend a slice's outputs are the same to the bit in any
/// batch (a test checks it), so neither rule below changes a result
/// beyond the order of a sum over the batch (the VAE's quality):
/// - On the CPU, batches shrink below `batch` when one takes longer than
///   `BATCH_SECONDS`.
/// - Where each new shape is tuned (a GPU), every batch has `batch` rows:
///   the last is padded with its last slice. Callers run the models on all
///   rows and keep `ids`' results ([`Batch::real`], [`Batch::weights`]).
pub struct Pass<'a> {
    stage: &'a str,
    detail: &'a str,
    batch: usize,
    labels: bool,
    whole: bool,
}

impl<'a> Pass<'a> {
    /// A pass of batches of up to `batch` slices, reported as `stage`;
    /// whole batches where this process tunes each shape.
    pub fn new(stage: &'a str, detail: &'a str, batch: usize) -> Self {
        Pass {
            stage,
            detail,
            batch,
            labels: false,
            whole: crate::gpu::runtime::tunes_each_shape(),
        }
    }

    /// Also reads the slices' ground-truth class maps when `labels`.
    pub fn with_labels(self, labels: bool) -> Self {
        Pass { labels, ..self }
    }

    pub fn run<Bk: Backend>(
        &self,
        store: &SliceStore,
        ids: &[usize],
        ctx: &StepContext<'_>,
        device: &Bk::Device,
        mut each: impl FnMut(&Batch<'_>, Tensor<Bk, 4>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let (mut images, mut labels, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        let report = |done: usize| {
            ctx.progress.update(&ProgressUpdate {
                stage: self.stage,
                done: done as u64,
                total: ids.len() as u64,
                unit: "slices",
                detail: self.detail,
            })
        };
        report(0);
        let most = self.batch.max(1);
        let (mut done, mut size) = (0, most);
        while done < ids.len() {
            ctx.check_cancel()?;
            let chunk = &ids[done..(done + size).min(ids.len())];
            rows.clear();
            rows.extend_from_slice(chunk);
            if self.whole
                && let Some(&last) = chunk.last()
            {
                rows.resize(most, last);
            }
            let started = Instant::now();
            let wanted = self.labels.then_some(&mut labels);
            let x = input_batch::<Bk>(store, &rows, &mut images, wanted, device)?;
            let batch = Batch {
                ids: chunk,
                rows: &rows,
                labels: &labels,
            };
            each(&batch, x)?;
            crate::failpoint::hit("pass-batch");
            if !self.whole {
                let per_slice = started.elapsed().as_secs_f64() / chunk.len() as f64;
                // A power of two, so batches repeat from run to run when the
                // pace is about the same.
                let fits = ((BATCH_SECONDS / per_slice.max(1e-9)) as usize).clamp(1, most);
                size = if fits == most {
                    most
                } else {
                    1 << fits.ilog2()
                };
            }
            done += chunk.len();
            report(done);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use burn::backend::Flex;

    use super::*;
    use crate::config::{Config, Preset};
    use crate::journal::EventLog;
    use crate::progress::{Progress, Silent};
    use crate::store::open_or_build;
    use crate::train::NoObserver;
    use crate::volume::dataset::discover;
    use crate::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

    /// Records every progress update.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, u64, u64)>>);

    impl Progress for Recorded {
        fn update(&self, u: &ProgressUpdate<'_>) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push((u.stage.to_string(), u.done, u.total));
            }
        }
    }

    /// A tiny VAE and U-Net for [`small_store`]'s slices.
    pub(in crate::engine) fn tiny_models(
        store: &SliceStore,
    ) -> (crate::model::VaeSpec, crate::model::UNetSpec) {
        let meta = store.meta();
        let vae = crate::model::VaeSpec {
            in_channels: meta.channels(),
            size: [meta.height, meta.width],
            widths: vec![4, 8],
            z_dim: 3,
        };
        let unet = crate::model::UNetSpec {
            in_channels: meta.channels(),
            classes: meta.label_values.len(),
            widths: vec![4, 8],
            bottleneck: 16,
        };
        (vae, unet)
    }

    /// A store of two 32² phantom subjects.
    pub(in crate::engine) fn small_store(dir: &std::path::Path) -> SliceStore {
        let data = dir.join("data");
        let spec = PhantomSpec {
            kind: PhantomKind::Tumour,
            subjects: 2,
            size: 32,
            seed: 3,
        };
        write_phantom(&data, &spec, &Silent).unwrap();
        let config =
            Config::preset_with(Preset::Demo, "<test>", "[slicing]\nsize = [32, 32]\n").unwrap();
        let cases = discover(&config.dataset, &data).unwrap().cases;
        open_or_build(
            &dir.join("store"),
            &config,
            &cases,
            &Silent,
            &AtomicBool::new(false),
        )
        .unwrap()
        .0
    }

    #[test]
    fn a_pass_reports_every_batch_and_stops_at_the_next_batch_after_a_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let store = small_store(dir.path());
        let ids: Vec<usize> = (0..store.len().min(20)).collect();
        assert!(ids.len() > 8, "the phantoms have too few slices");
        let (cancel, progress) = (AtomicBool::new(false), Recorded::default());
        let log = EventLog::new(dir.path());
        let ctx = StepContext {
            progress: &progress,
            observer: &NoObserver,
            cancel: &cancel,
            log: &log,
        };
        let pass = Pass::new("test pass", "", 4).with_labels(true);
        let mut batches = 0;
        let result = pass.run::<Flex>(&store, &ids, &ctx, &Default::default(), |batch, x| {
            batches += 1;
            assert_eq!(x.dims()[0], batch.ids.len());
            assert_eq!(batch.labels.len(), batch.ids.len() * 32 * 32);
            if batches == 2 {
                cancel.store(true, Ordering::Relaxed); // as the worker's watcher would
            }
            Ok(())
        });
        assert!(matches!(result, Err(EngineError::Cancelled)));
        assert_eq!(batches, 2, "no batch runs after the cancel");
        let seen = progress.0.lock().unwrap().clone();
        let total = ids.len() as u64;
        assert_eq!(
            seen,
            [
                ("test pass".to_string(), 0, total),
                ("test pass".to_string(), 4, total),
                ("test pass".to_string(), 8, total)
            ]
        );

        cancel.store(false, Ordering::Relaxed);
        let mut seen_ids = Vec::new();
        pass.run::<Flex>(&store, &ids, &ctx, &Default::default(), |batch, _| {
            seen_ids.extend_from_slice(batch.ids);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen_ids, ids);

        // Where each shape is tuned, the last batch is padded to 4 rows
        // with its last slice (labels too); `ids` are still the real ones.
        let mut shapes = Vec::new();
        let short = ids.len() - 1;
        assert!(
            !short.is_multiple_of(4),
            "the test needs a short last batch"
        );
        let padded_pass = || {
            let pass = Pass::new("test pass", "", 4).with_labels(true);
            pass.run::<Flex>(
                &store,
                &ids[..short],
                &ctx,
                &Default::default(),
                |batch, x| {
                    assert_eq!(x.dims()[0], 4);
                    assert_eq!(batch.labels.len(), 4 * 32 * 32);
                    assert_eq!(batch.rows[..batch.ids.len()], *batch.ids);
                    let last = batch.ids.last().unwrap();
                    assert!(batch.rows[batch.ids.len()..].iter().all(|r| r == last));
                    shapes.push((batch.ids.len(), batch.rows.len() > batch.ids.len()));
                    Ok(())
                },
            )
        };
        crate::gpu::runtime::pretend::each_shape_tuned(padded_pass).unwrap();
        let mut want = vec![(4, false); short / 4];
        want.push((short % 4, true));
        assert_eq!(shapes, want);
    }

    /// The batch size a pass picks (it shrinks slow batches) must not change
    /// what a model says about a slice: eval-mode models treat slices
    /// independently, to the bit.
    #[test]
    fn model_outputs_do_not_depend_on_the_batch_a_slice_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = small_store(dir.path());
        let device = Default::default();
        let (vae, unet) = tiny_models(&store);
        let (vae, unet) = (vae.init::<Flex>(&device), unet.init::<Flex>(&device));
        let ids: Vec<usize> = (0..store.len().min(12)).collect();
        let outputs = |batch: usize| {
            let mut images = Vec::new();
            let (mut z, mut logits) = (Vec::new(), Vec::new());
            for chunk in ids.chunks(batch) {
                let x = input_batch::<Flex>(&store, chunk, &mut images, None, &device).unwrap();
                z.extend(to_host(vae.encode_mean(x.clone())).unwrap());
                logits.extend(to_host(unet.forward(x, Mode::Eval).logits).unwrap());
            }
            (z, logits)
        };
        let whole = outputs(12);
        for batch in [1, 4, 8] {
            let (z, logits) = outputs(batch);
            assert!(z == whole.0, "VAE means differ with batches of {batch}");
            assert!(
                logits == whole.1,
                "U-Net logits differ with batches of {batch}"
            );
        }
    }
}
