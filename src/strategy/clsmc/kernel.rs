//! The Gaussian similarity kernel, cut off at 4σ, and its fast e^(−y).

/// Squared distances beyond this many σ² have similarity below e⁻¹⁶ and
/// count as 0.
const CUTOFF_SIGMAS2: f32 = 16.0;

/// exp(−d²/σ²), 0 beyond 4σ; for σ = 0, 1 at distance 0 and 0 elsewhere.
#[derive(Clone, Copy, Debug)]
pub(super) struct Kernel {
    inv: f32,
    pub(super) cutoff: f32,
}

impl Kernel {
    pub(super) fn new(sigma2: f32) -> Kernel {
        if sigma2 > 0.0 && sigma2.is_finite() {
            Kernel {
                inv: 1.0 / sigma2,
                cutoff: CUTOFF_SIGMAS2 * sigma2,
            }
        } else {
            Kernel {
                inv: 0.0,
                cutoff: 0.0,
            }
        }
    }

    /// Branch-free, so loops over it vectorise.
    pub(super) fn sim(&self, d2: f32) -> f32 {
        let e = exp_neg(d2 * self.inv);
        if d2 < self.cutoff || d2 == 0.0 {
            e
        } else {
            0.0
        }
    }
}

/// e^(−y) for y ≥ 0, within 1.5·10⁻⁷ absolute (10⁻⁶ relative for
/// y ≤ 20, where f32 rounding of y·log₂e dominates), exactly 1 at 0; branch-free
/// (`f32::exp` is a libm call per element and keeps loops scalar). 2^t with
/// t = −y·log₂e split into a rounded integer i and f ∈ [−½, ½]: 2^i from
/// the exponent bits, 2^f = e^(f·ln 2) by Taylor to the 6th power
/// (|f·ln 2| ≤ 0.35, remainder < 1.2·10⁻⁷). Large y (and NaN) give 2⁻¹⁰⁰.
fn exp_neg(y: f32) -> f32 {
    use std::f32::consts::{LN_2, LOG2_E};
    let t = (-y * LOG2_E).max(-100.0);
    let i = (t - 0.5) as i32; // t ≤ 0: truncation rounds to nearest
    let z = (t - i as f32) * LN_2;
    let p = 1.0
        + z * (1.0
            + z * (1.0 / 2.0
                + z * (1.0 / 6.0 + z * (1.0 / 24.0 + z * (1.0 / 120.0 + z * (1.0 / 720.0))))));
    p * f32::from_bits(((i + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_limits() {
        let k = Kernel::new(2.0);
        assert_eq!(k.sim(0.0), 1.0);
        assert!((k.sim(2.0) - (-1.0f32).exp()).abs() < 1e-7);
        assert_eq!(k.sim(32.0), 0.0); // 4σ
        let zero = Kernel::new(0.0);
        assert_eq!((zero.sim(0.0), zero.sim(1e-30)), (1.0, 0.0));
        assert_eq!(exp_neg(0.0), 1.0);
        let mut worst = (0f64, 0f64);
        for k in 0..=20_000 {
            let y = k as f32 * 1e-3;
            let (fast, exact) = (exp_neg(y), (-f64::from(y)).exp());
            let err = (f64::from(fast) - exact).abs();
            worst = (worst.0.max(err), worst.1.max(err / exact));
        }
        assert!(worst.0 < 2e-7 && worst.1 < 2e-6, "{worst:?}");
        assert!(exp_neg(1e9) < 1e-29 && exp_neg(f32::NAN) < 1e-29);
    }
}
