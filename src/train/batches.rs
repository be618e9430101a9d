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
    pub images: Vec<f32>,
    pub masks: Option<Vec<u8>>,
    pub len: usize,
}

/// An epoch's batches: shuffled slice ids and one augmentation seed each,
/// all drawn from the run's generator so a resumed run repeats them.
pub fn epoch_plan(ids: &[usize], batch_size: usize, rng: &mut Rng) -> Vec<(Vec<usize>, u64)> {
    let mut order = ids.to_vec();
    rng.shuffle(&mut order);
    order
        .chunks(batch_size.max(1))
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
            images,
            masks,
            len: ids.len(),
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
