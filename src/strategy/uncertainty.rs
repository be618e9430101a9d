//! Uncertainty sampling, the classic active-learning baselines: how unsure
//! the U-Net's softmax is about a slice, per pixel — least confidence,
//! margin or entropy — reduced by the mean over the slice. The engine scores
//! the candidates; `RankedByScore` takes the most uncertain.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// 1 − max_k p_k.
    LeastConfidence,
    /// 1 − (p_(1) − p_(2)): a small gap between the two likeliest classes.
    Margin,
    /// −Σ_k p_k ln p_k.
    Entropy,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::LeastConfidence => "least-confidence",
            Measure::Margin => "margin",
            Measure::Entropy => "entropy",
        }
    }

    /// Mean over the pixels of one slice; `probabilities` holds `classes`
    /// planes (class-major), as the U-Net's softmax lays them out. Higher is
    /// more uncertain.
    pub fn slice_score(self, probabilities: &[f32], classes: usize) -> f32 {
        let classes = classes.max(1);
        let pixels = probabilities.len() / classes;
        if pixels == 0 {
            return 0.0;
        }
        let mut total = 0.0f64;
        for p in 0..pixels {
            let at = |k: usize| probabilities[k * pixels + p];
            total += match self {
                Measure::LeastConfidence => {
                    1.0 - (0..classes).map(at).fold(0.0f32, f32::max) as f64
                }
                Measure::Margin => {
                    let (mut first, mut second) = (0.0f32, 0.0f32);
                    for v in (0..classes).map(at) {
                        if v > first {
                            second = first;
                            first = v;
                        } else if v > second {
                            second = v;
                        }
                    }
                    1.0 - (first - second) as f64
                }
                Measure::Entropy => (0..classes)
                    .map(at)
                    .filter(|&v| v > 0.0)
                    .map(|v| -(v as f64) * (v as f64).ln())
                    .sum(),
            };
        }
        (total / pixels as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pixels, three classes: one certain, one torn between two classes.
    const PROBS: [f32; 6] = [1.0, 0.5, 0.0, 0.5, 0.0, 0.0];

    #[test]
    fn scores_match_hand_computed_values() {
        let lc = Measure::LeastConfidence.slice_score(&PROBS, 3);
        assert!((lc - 0.25).abs() < 1e-6, "{lc}");
        let margin = Measure::Margin.slice_score(&PROBS, 3);
        assert!((margin - 0.5).abs() < 1e-6, "{margin}");
        let entropy = Measure::Entropy.slice_score(&PROBS, 3);
        assert!(
            (entropy - std::f32::consts::LN_2 / 2.0).abs() < 1e-6,
            "{entropy}"
        );
    }

    #[test]
    fn a_certain_slice_scores_zero_and_a_uniform_one_scores_highest() {
        let certain = [1.0, 1.0, 0.0, 0.0];
        let uniform = [0.5, 0.5, 0.5, 0.5];
        for m in [Measure::LeastConfidence, Measure::Margin, Measure::Entropy] {
            assert_eq!(m.slice_score(&certain, 2), 0.0, "{}", m.name());
            assert!(m.slice_score(&uniform, 2) > 0.49, "{}", m.name());
        }
    }
}
