//! The oracle (the paper's upper bound): with ground truth at hand, ask for
//! the slices the current U-Net segments worst. Only for simulations — a
//! real annotator's masks do not exist before they are asked for.

/// 1 − the mean Dice over the foreground classes present in the prediction
/// or the truth. A slice empty in both scores 0: nothing to learn from it.
pub fn oracle_score(predicted: &[u8], truth: &[u8], classes: usize) -> f32 {
    let mut both = vec![0u64; classes];
    let mut in_pred = vec![0u64; classes];
    let mut in_truth = vec![0u64; classes];
    for (&p, &t) in predicted.iter().zip(truth) {
        let (p, t) = (p as usize, t as usize);
        if p < classes {
            in_pred[p] += 1;
        }
        if t < classes {
            in_truth[t] += 1;
        }
        if p == t && p < classes {
            both[p] += 1;
        }
    }
    let dice: Vec<f64> = (1..classes)
        .filter(|&k| in_pred[k] + in_truth[k] > 0)
        .map(|k| 2.0 * both[k] as f64 / (in_pred[k] + in_truth[k]) as f64)
        .collect();
    if dice.is_empty() {
        return 0.0;
    }
    (1.0 - dice.iter().sum::<f64>() / dice.len() as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worse_segmentations_score_higher() {
        let truth = [0, 1, 1, 2, 2, 0];
        assert_eq!(oracle_score(&truth, &truth, 3), 0.0);
        // Class 1 right, class 2 missed entirely: mean Dice (1 + 0) / 2.
        let half = [0, 1, 1, 0, 0, 0];
        assert!((oracle_score(&half, &truth, 3) - 0.5).abs() < 1e-6);
        // All wrong.
        let wrong = [1, 2, 2, 1, 1, 2];
        assert_eq!(oracle_score(&wrong, &truth, 3), 1.0);
        // Empty in both: nothing to learn.
        assert_eq!(oracle_score(&[0; 6], &[0; 6], 3), 0.0);
    }
}
