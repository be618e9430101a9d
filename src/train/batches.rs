//! Batches for training: shuffled per epoch, read from the store and
//! augmented on a producer thread while the previous batch trains.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::config::AugmentConfig;
use crate::model::augment::{Sample, augment};
use crate::rng::Rng;
use crate::store::{SliceStore, StoreError};

/// Where training masks come from: the store's ground truth (simulation,
/// tests) or, in a project, the experts' imported masks.
pub trait MaskSource: Sync {
    /// Class indices of slice `id`, height × width.
    fn mask(&self, id: usize, out: &mut [u8]) -> Result<(), StoreError>;
}

/// Ground-truth masks from the store.
pub struct StoreMasks<'a>(pub &'a SliceStore);

impl MaskSource for StoreMasks<'_> {
    fn mask(&self, id: usize, out: &mut [u8]) -> Result<(), StoreError> {
        self.0.read_label(id, out).map(|_| ())
    }
}

/// One batch in host memory.
pub struct HostBatch {
    /// The slice of each row (a filled batch repeats some).
    pub ids: Vec<usize>,
    pub images: Vec<f32>,
    pub masks: Option<Vec<u8>>,
}

/// An epoch's batches: shuffled slice ids and one augmentation seed each,
/// all drawn from the run's generator so a resumed run repeats them.
/// `whole`: every batch has `batch_size` slices, the last filled from the
/// epoch's first ones (more than once if the set is smaller than a batch);
/// on a GPU a short batch is a new shape, whose kernels tune for minutes.
/// Each copy is augmented on its own. The batch count is the same either way.
pub fn epoch_plan(
    ids: &[usize],
    batch_size: usize,
    whole: bool,
    rng: &mut Rng,
) -> Vec<(Vec<usize>, u64)> {
    let batch_size = batch_size.max(1);
    let mut order = ids.to_vec();
    rng.shuffle(&mut order);
    if whole && !order.is_empty() {
        let filled = order.len().div_ceil(batch_size) * batch_size;
        let fill: Vec<usize> = order
            .iter()
            .copied()
            .cycle()
            .take(filled - order.len())
            .collect();
        order.extend(fill);
    }
    order
        .chunks(batch_size)
        .map(|c| (c.to_vec(), rng.next_u64()))
        .collect()
}

/// Sources and options for producing batches.
pub struct BatchSource<'a> {
    pub store: &'a SliceStore,
    pub masks: Option<&'a dyn MaskSource>,
    pub augment: Option<&'a AugmentConfig>,
}

impl BatchSource<'_> {
    fn load(&self, ids: &[usize], seed: u64) -> Result<HostBatch, StoreError> {
        let meta = self.store.meta();
        let (c, h, w) = (meta.channels(), meta.height, meta.width);
        let mut images = Vec::new();
        self.store.read_batch(ids, &mut images, None)?;
        let mut masks = match self.masks {
            Some(source) => {
                let mut m = vec![0u8; ids.len() * h * w];
                for (chunk, &id) in m.chunks_exact_mut(h * w).zip(ids) {
                    source.mask(id, chunk)?;
                }
                Some(m)
            }
            None => None,
        };
        if let Some(config) = self.augment {
            let mut rng = Rng::new(seed, 0);
            for k in 0..ids.len() {
                let image = &mut images[k * c * h * w..(k + 1) * c * h * w];
                let label = masks.as_mut().map(|m| &mut m[k * h * w..(k + 1) * h * w]);
                augment(
                    Sample {
                        image,
                        label,
                        channels: c,
                        height: h,
                        width: w,
                    },
                    config,
                    &mut rng,
                );
            }
        }
        Ok(HostBatch {
            ids: ids.to_vec(),
            images,
            masks,
        })
    }

    /// Runs `consume` on each batch of `plan` in order while the next one is
    /// loaded on another thread. Stops early when `consume` returns false.
    pub fn stream<E: From<StoreError>>(
        &self,
        plan: &[(Vec<usize>, u64)],
        mut consume: impl FnMut(usize, HostBatch) -> Result<bool, E>,
    ) -> Result<(), E> {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Result<HostBatch, StoreError>>(2);
            let stop = &stop;
            scope.spawn(move || {
                for (ids, seed) in plan {
                    if stop.load(Ordering::Relaxed) || tx.send(self.load(ids, *seed)).is_err() {
                        return;
                    }
                }
            });
            let result = (|| {
                for (index, batch) in rx.iter().enumerate() {
                    if !consume(index, batch?)? {
                        break;
                    }
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            drop(rx);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(plan: &[(Vec<usize>, u64)]) -> Vec<usize> {
        plan.iter().map(|(ids, _)| ids.len()).collect()
    }

    #[test]
    fn whole_batches_fill_the_last_one_and_keep_every_slice_and_seed() {
        let ids: Vec<usize> = (10..20).collect();
        let short = epoch_plan(&ids, 4, false, &mut Rng::new(7, 0));
        let whole = epoch_plan(&ids, 4, true, &mut Rng::new(7, 0));
        assert_eq!(sizes(&short), [4, 4, 2]);
        assert_eq!(sizes(&whole), [4, 4, 4]);
        // The same shuffle and seeds; the last batch filled from the first.
        for (s, w) in short.iter().zip(&whole) {
            assert_eq!(w.0[..s.0.len()], s.0[..]);
            assert_eq!(s.1, w.1);
        }
        assert_eq!(whole[2].0[2..], short[0].0[..2]);

        // A set smaller than a batch repeats.
        let few = epoch_plan(&[3, 5, 8], 8, true, &mut Rng::new(1, 0));
        assert_eq!(sizes(&few), [8]);
        let mut seen = few[0].0.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [3, 5, 8]);
        // A set that divides into batches is left as it is.
        let even = epoch_plan(&ids[..8], 4, true, &mut Rng::new(2, 0));
        assert_eq!(even, epoch_plan(&ids[..8], 4, false, &mut Rng::new(2, 0)));
    }
}
