//! A U-Net worth asking before it is asked: a few labelled slices are held
//! out of training (`unet.validation_fraction`), and each round's U-Net is
//! scored on them, so an operator sees how good the network steering the
//! next suggestions is before `suggest` runs.
//!
//! Slices join the held-out set only in the round they were suggested in,
//! before any U-Net has trained on them, and never leave it: no held-out
//! mask has ever been seen by the network it measures.

use burn::prelude::*;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, UNET_BATCH, class_map, predict};
use crate::eval::Region;
use crate::masks::ProjectMasks;
use crate::model::UNet;
use crate::project::{Labelled, SliceKey, ValidationScore};
use crate::store::SliceStore;
use crate::train::MaskSource;

/// The held-out set after round `round`'s import: the slices held out so
/// far, topped up to round(`fraction` × labelled) from this round's new
/// slices (in an order fixed by `seed`), always leaving one to train on.
pub fn held_out(
    labelled: &[Labelled],
    held: &[SliceKey],
    round: usize,
    fraction: f64,
    seed: u64,
) -> Vec<SliceKey> {
    let mut out: Vec<SliceKey> = held
        .iter()
        .filter(|k| labelled.iter().any(|l| &l.key == *k))
        .cloned()
        .collect();
    let target =
        ((fraction * labelled.len() as f64).round() as usize).min(labelled.len().saturating_sub(1));
    let mut fresh: Vec<(blake3::Hash, &SliceKey)> = labelled
        .iter()
        .filter(|l| l.round == round && !out.contains(&l.key))
        .map(|l| {
            let id = format!("{seed}:{}:{}", l.key.case, l.key.slice);
            (blake3::hash(id.as_bytes()), &l.key)
        })
        .collect();
    fresh.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (_, key) in fresh {
        if out.len() >= target {
            break;
        }
        out.push(key.clone());
    }
    out
}

/// Dice per region of `models` on the held-out slices `ids`, against the
/// experts' masks, pooled over the slices' pixels.
pub fn score_held_out<Bk: Backend>(
    models: &[UNet<Bk>],
    store: &SliceStore,
    masks: &ProjectMasks<'_>,
    ids: &[usize],
    regions: &[Region],
    ctx: &StepContext<'_>,
    device: &Bk::Device,
) -> Result<ValidationScore, EngineError> {
    let meta = store.meta();
    let plane = meta.height * meta.width;
    let mut overlap = Overlap::new(regions, &meta.label_values);
    let mut truth = vec![0u8; plane];
    let pass = Pass::new("validate", "held-out labelled slices", UNET_BATCH);
    pass.run::<Bk>(store, ids, ctx, device, |batch, x| {
        let predicted = class_map(predict(models, x)?)?;
        for (j, &id) in batch.ids.iter().enumerate() {
            masks.mask(id, &mut truth)?;
            overlap.add(&predicted[j * plane..(j + 1) * plane], &truth);
        }
        Ok(())
    })?;
    Ok(ValidationScore {
        slices: ids.len(),
        dice: overlap.dice(),
    })
}

/// Per region, |P ∩ T|, |P| and |T| summed over the slices seen: pooled
/// Dice, steady on slices where a region is small or absent.
struct Overlap<'a> {
    regions: &'a [Region],
    /// Class index → label value.
    values: &'a [u8],
    counts: Vec<[u64; 3]>,
}

impl<'a> Overlap<'a> {
    fn new(regions: &'a [Region], values: &'a [u8]) -> Self {
        Overlap {
            regions,
            values,
            counts: vec![[0; 3]; regions.len()],
        }
    }

    /// One slice's predicted and true class indices.
    fn add(&mut self, predicted: &[u8], truth: &[u8]) {
        let value = |class: u8| self.values.get(class as usize).copied().unwrap_or(0);
        for (region, counts) in self.regions.iter().zip(&mut self.counts) {
            for (&p, &t) in predicted.iter().zip(truth) {
                let (p, t) = (region.contains(value(p)), region.contains(value(t)));
                counts[0] += u64::from(p && t);
                counts[1] += u64::from(p);
                counts[2] += u64::from(t);
            }
        }
    }

    /// Dice per region; 1 where the region is absent from both.
    fn dice(&self) -> Vec<(String, f64)> {
        self.regions
            .iter()
            .zip(&self.counts)
            .map(|(region, &[both, p, t])| {
                let d = if p + t == 0 {
                    1.0
                } else {
                    2.0 * both as f64 / (p + t) as f64
                };
                (region.name.clone(), d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn labelled(n: usize, round: usize, from: u32) -> Vec<Labelled> {
        (0..n as u32)
            .map(|i| Labelled {
                key: SliceKey {
                    case: "c".into(),
                    slice: from + i,
                },
                mask: PathBuf::new(),
                round,
            })
            .collect()
    }

    #[test]
    fn the_held_out_set_grows_from_new_slices_only_and_never_shrinks() {
        let mut all = labelled(10, 0, 0);
        let round0 = held_out(&all, &[], 0, 0.2, 7);
        assert_eq!(round0.len(), 2);
        assert_eq!(held_out(&all, &[], 0, 0.2, 7), round0, "deterministic");
        all.extend(labelled(10, 1, 100));
        let round1 = held_out(&all, &round0, 1, 0.2, 7);
        assert_eq!(round1.len(), 4);
        assert_eq!(&round1[..2], &round0[..], "once held out, always");
        assert!(
            round1[2..].iter().all(|k| k.slice >= 100),
            "only new slices join"
        );
        // A fraction lowered later keeps what is held out: those masks were
        // never trained on, and the U-Net has moved on without them.
        assert_eq!(held_out(&all, &round1, 1, 0.0, 7), round1);
    }

    #[test]
    fn dice_is_pooled_over_the_held_out_slices() {
        // Classes 0..3 carry BraTS values 0, 1, 2, 4; WT = {1, 2, 4}, ET = {4}.
        let regions = [Region::new("WT", &[1, 2, 4]), Region::new("ET", &[4])];
        let values = [0u8, 1, 2, 4];
        let mut overlap = Overlap::new(&regions, &values);
        // Slice 1: truth 2 WT pixels (one ET); prediction finds one WT pixel.
        overlap.add(&[0, 1, 0, 0], &[0, 1, 3, 0]);
        // Slice 2: no tumour in the truth; one false-positive ET pixel.
        overlap.add(&[3, 0, 0, 0], &[0, 0, 0, 0]);
        let dice = overlap.dice();
        // WT: |P∩T| = 1, |P| = 2, |T| = 2 → 0.5. ET: 0, 1, 1 → 0.
        assert_eq!(dice, vec![("WT".into(), 0.5), ("ET".into(), 0.0)]);
        // A region absent from both everywhere is perfect.
        let mut clean = Overlap::new(&regions, &values);
        clean.add(&[0, 0], &[0, 0]);
        assert_eq!(clean.dice()[1], ("ET".into(), 1.0));
    }

    #[test]
    fn one_slice_is_always_left_to_train_on() {
        assert!(held_out(&labelled(1, 0, 0), &[], 0, 0.4, 1).is_empty());
        assert_eq!(held_out(&labelled(2, 0, 0), &[], 0, 0.4, 1).len(), 1);
        assert!(held_out(&labelled(7, 0, 0), &[], 0, 0.0, 1).is_empty());
    }
}
