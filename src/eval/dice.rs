//! Dice overlap, 2|P∩T| / (|P| + |T|), of a predicted and a true mask.
//!
//! Empty masks follow the BraTS evaluation: when the structure is absent
//! from both the truth and the prediction the answer is perfect, Dice = 1
//! (the formula would be 0/0); when exactly one is empty the formula already
//! gives 0.

use super::{EvalError, Region};

/// Dice of two boolean masks of equal length.
pub fn dice(pred: &[bool], truth: &[bool]) -> Result<f64, EvalError> {
    same_length(pred.len(), truth.len())?;
    Ok(from_pairs(pred.iter().zip(truth).map(|(&p, &t)| (p, t))))
}

/// Dice of one region (a set of label values) between two label volumes,
/// without building the masks.
pub fn dice_region<L: Copy + Into<i64>>(
    pred: &[L],
    truth: &[L],
    region: &Region,
) -> Result<f64, EvalError> {
    same_length(pred.len(), truth.len())?;
    Ok(from_pairs(
        pred.iter()
            .zip(truth)
            .map(|(&p, &t)| (region.contains(p), region.contains(t))),
    ))
}

fn same_length(pred: usize, truth: usize) -> Result<(), EvalError> {
    if pred == truth {
        Ok(())
    } else {
        Err(EvalError::Length {
            what: "the prediction",
            expected: truth,
            got: pred,
        })
    }
}

fn from_pairs(pairs: impl Iterator<Item = (bool, bool)>) -> f64 {
    let (mut both, mut sizes) = (0u64, 0u64);
    for (p, t) in pairs {
        both += u64::from(p && t);
        sizes += u64::from(p) + u64::from(t);
    }
    if sizes == 0 {
        1.0
    } else {
        2.0 * both as f64 / sizes as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_overlap() {
        // |P| = 3, |T| = 2, |P∩T| = 1 → 2/5.
        let pred = [true, true, true, false, false];
        let truth = [false, false, true, true, false];
        assert_eq!(dice(&pred, &truth).unwrap(), 0.4);
        assert_eq!(dice(&truth, &truth).unwrap(), 1.0);
    }

    #[test]
    fn empty_conventions() {
        let none = [false; 4];
        let some = [false, true, false, false];
        assert_eq!(dice(&none, &none).unwrap(), 1.0);
        assert_eq!(dice(&none, &some).unwrap(), 0.0);
        assert_eq!(dice(&some, &none).unwrap(), 0.0);
    }

    #[test]
    fn brats_regions_from_labels() {
        // truth: 2 2 1 4 0 0   pred: 2 1 1 4 4 0
        let truth: [u8; 6] = [2, 2, 1, 4, 0, 0];
        let pred: [u8; 6] = [2, 1, 1, 4, 4, 0];
        let [wt, tc, et] = <[Region; 3]>::try_from(Region::brats()).unwrap();
        // WT: truth {0,1,2,3}, pred {0,1,2,3,4} → 2·4/9.
        assert_eq!(dice_region(&pred, &truth, &wt).unwrap(), 8.0 / 9.0);
        // TC: truth {2,3}, pred {1,2,3,4} → 2·2/6.
        assert_eq!(dice_region(&pred, &truth, &tc).unwrap(), 4.0 / 6.0);
        // ET: truth {3}, pred {3,4} → 2/3.
        assert_eq!(dice_region(&pred, &truth, &et).unwrap(), 2.0 / 3.0);
        // A region absent from both: 1. Same answer with i32 labels.
        let absent = Region::new("none", &[7]);
        let (p32, t32) = (pred.map(i32::from), truth.map(i32::from));
        assert_eq!(dice_region(&p32, &t32, &absent).unwrap(), 1.0);
        assert_eq!(dice_region(&p32, &t32, &et).unwrap(), 2.0 / 3.0);
    }

    #[test]
    fn length_mismatch_is_an_error() {
        assert!(matches!(
            dice(&[true], &[true, false]),
            Err(EvalError::Length {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(dice_region(&[1u8, 2], &[1u8], &Region::new("x", &[1])).is_err());
    }
}
