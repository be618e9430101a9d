//! Wilcoxon signed-rank test, paired and two-sided: does one strategy score
//! consistently higher than another on the same test volumes?
//!
//! Conventions (SciPy's `wilcoxon` defaults, so numbers can be checked
//! against it):
//! - Zero differences are dropped before ranking (Wilcoxon's original
//!   method, SciPy's `zero_method="wilcox"`); `n` counts the rest. A zero
//!   is an exact floating-point tie, as are tied magnitudes.
//! - Tied magnitudes share the average of their ranks.
//! - The statistic is W = min(W+, W−), the one small-sample tables list.
//! - The p-value is exact when n ≤ 25 and no magnitudes tie: the null
//!   distribution of W+ (each rank's sign a fair coin) is counted by dynamic
//!   programming over subset sums, and p = min(1, 2·P(W+ ≤ W)). Otherwise
//!   the normal approximation with the tie-corrected variance
//!   n(n+1)(2n+1)/24 − Σ(t³ − t)/48 and a continuity correction of ½
//!   towards the mean (never past it).

use super::{EvalError, normal_sf};

/// Largest n for which the exact null distribution is used.
const EXACT_MAX_N: usize = 25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PValueMethod {
    Exact,
    Normal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Wilcoxon {
    /// W = min(W+, W−).
    pub statistic: f64,
    /// Sum of the ranks of the positive differences (x > y).
    pub w_plus: f64,
    /// Sum of the ranks of the negative differences.
    pub w_minus: f64,
    /// Non-zero differences, the sample size the test used.
    pub n: usize,
    /// Zero differences dropped.
    pub zeros: usize,
    /// Two-sided. NaN when every difference is zero (n = 0): there is
    /// nothing to test, and NaN keeps it from reading as a result.
    pub p_value: f64,
    pub method: PValueMethod,
    /// The continuity-corrected z (≤ 0) of the normal approximation.
    pub z: Option<f64>,
}

/// Tests the paired differences `x[i] − y[i]` (e.g. Dice of strategy A and
/// of strategy B on test volume i).
pub fn wilcoxon_paired(x: &[f64], y: &[f64]) -> Result<Wilcoxon, EvalError> {
    if x.len() != y.len() {
        return Err(EvalError::Length {
            what: "the second sample",
            expected: x.len(),
            got: y.len(),
        });
    }
    finite("the first sample", x)?;
    finite("the second sample", y)?;
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    wilcoxon_differences(&d)
}

/// Tests differences directly (null: symmetric about zero).
pub fn wilcoxon_differences(d: &[f64]) -> Result<Wilcoxon, EvalError> {
    finite("the differences", d)?;
    Ok(run(d, None))
}

fn finite(what: &'static str, values: &[f64]) -> Result<(), EvalError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(EvalError::NotFinite {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

/// `force` picks the p-value method regardless of n (tests only; exact with
/// ties is never forced).
fn run(d: &[f64], force: Option<PValueMethod>) -> Wilcoxon {
    let mut nonzero: Vec<f64> = d.iter().copied().filter(|&v| v != 0.0).collect();
    let n = nonzero.len();
    let zeros = d.len() - n;
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));

    // Average ranks over runs of equal magnitude; Σ(t³ − t) for the variance.
    let (mut w_plus, mut w_minus, mut tie_term) = (0.0, 0.0, 0.0);
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && nonzero[end].abs() == nonzero[start].abs() {
            end += 1;
        }
        let rank = (start + 1 + end) as f64 / 2.0;
        for &v in &nonzero[start..end] {
            if v > 0.0 {
                w_plus += rank;
            } else {
                w_minus += rank;
            }
        }
        let t = (end - start) as f64;
        tie_term += t * t * t - t;
        start = end;
    }
    let statistic = w_plus.min(w_minus);
    let ties = tie_term > 0.0;
    let method = match force {
        Some(PValueMethod::Exact) if !ties => PValueMethod::Exact,
        Some(PValueMethod::Normal) => PValueMethod::Normal,
        _ if n <= EXACT_MAX_N && !ties => PValueMethod::Exact,
        _ => PValueMethod::Normal,
    };
    let (p_value, z) = if n == 0 {
        (f64::NAN, None)
    } else if method == PValueMethod::Exact {
        // Without ties the ranks are 1..=n, so W is a whole number.
        (exact_p(n, statistic as usize), None)
    } else {
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
        let z = -((mean - statistic) - 0.5).max(0.0) / var.sqrt();
        ((2.0 * normal_sf(-z)).min(1.0), Some(z))
    };
    Wilcoxon {
        statistic,
        w_plus,
        w_minus,
        n,
        zeros,
        p_value,
        method,
        z,
    }
}

/// Two-sided exact p-value of W = `w` with ranks 1..=n: counts of rank
/// subsets by sum (at most 2^25 each, so u64 is exact) give P(W+ ≤ w).
fn exact_p(n: usize, w: usize) -> f64 {
    let total = n * (n + 1) / 2;
    let mut counts = vec![0u64; total + 1];
    counts[0] = 1;
    for rank in 1..=n {
        for sum in (rank..=total).rev() {
            counts[sum] += counts[sum - rank];
        }
    }
    let tail: u64 = counts[..=w.min(total)].iter().sum();
    (2.0 * tail as f64 / (n as f64).exp2()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    /// The example of scipy.stats.wilcoxon's documentation (Cushny &
    /// Peebles' data as used by Fisher); SciPy 1.17.1 gives statistic 24,
    /// exact p = 0.041259765625, and with method="approx" (continuity
    /// correction on) p = 0.043772323763041174.
    #[test]
    fn scipy_documentation_example() {
        let d = [
            6.0, 8.0, 14.0, 16.0, 23.0, 24.0, 28.0, 29.0, 41.0, -48.0, 49.0, 56.0, 60.0, -67.0,
            75.0,
        ];
        let r = wilcoxon_differences(&d).unwrap();
        assert_eq!(r.statistic, 24.0);
        assert_eq!((r.w_minus, r.w_plus), (24.0, 96.0));
        assert_eq!((r.n, r.zeros, r.method), (15, 0, PValueMethod::Exact));
        assert_eq!(r.p_value, 0.041_259_765_625);
        let approx = run(&d, Some(PValueMethod::Normal));
        assert!(
            close(approx.p_value, 0.043_772_323_763_041_174, 1e-12),
            "{approx:?}"
        );
        // Flipping every sign swaps W+ and W− and changes nothing else.
        let flipped: Vec<f64> = d.iter().map(|v| -v).collect();
        let f = wilcoxon_differences(&flipped).unwrap();
        assert_eq!((f.statistic, f.p_value, f.w_plus), (24.0, r.p_value, 24.0));
    }

    /// Critical values of W for a two-sided test at α = 0.05, as printed in
    /// the standard tables (e.g. Zar, Biostatistical Analysis) and checked
    /// here against the exact null distribution recomputed with NumPy: reject when
    /// W ≤ c, so p(c) ≤ 0.05 < p(c + 1). For n = 5 no W is significant.
    #[test]
    fn exact_p_reproduces_critical_value_table() {
        let table = [
            (6, 0),
            (7, 2),
            (8, 3),
            (9, 5),
            (10, 8),
            (11, 10),
            (12, 13),
            (13, 17),
            (14, 21),
            (15, 25),
            (16, 29),
            (17, 34),
            (18, 40),
            (19, 46),
            (20, 52),
            (21, 58),
            (22, 65),
            (23, 73),
            (24, 81),
            (25, 89),
        ];
        for (n, c) in table {
            let at = |w: usize| {
                let r = wilcoxon_differences(&with_w_minus(n, w)).unwrap();
                assert_eq!(
                    (r.statistic, r.n, r.method),
                    (w as f64, n, PValueMethod::Exact)
                );
                r.p_value
            };
            assert!(at(c) <= 0.05, "n = {n}: p(W = {c}) = {}", at(c));
            assert!(
                at(c + 1) > 0.05,
                "n = {n}: p(W = {}) = {}",
                c + 1,
                at(c + 1)
            );
        }
        // n = 5: the smallest p is 2/2^5.
        assert_eq!(
            wilcoxon_differences(&with_w_minus(5, 0)).unwrap().p_value,
            0.0625
        );
    }

    /// Differences of magnitudes 1..=n whose negative ranks sum to `w`.
    fn with_w_minus(n: usize, w: usize) -> Vec<f64> {
        let mut left = w;
        let mut d: Vec<f64> = (1..=n).map(|r| r as f64).collect();
        for r in (1..=n).rev() {
            if r <= left {
                d[r - 1] = -d[r - 1];
                left -= r;
            }
        }
        assert_eq!(left, 0);
        d
    }

    /// Zeros and ties. SciPy 1.17.1, wilcoxon(d, zero_method="wilcox",
    /// method="approx", correction=True) on
    /// d = [1,2,2,−3,0,3,3,4,−5,0,5,6,6,6,−7,8,9]: statistic 26.5,
    /// p = 0.06037236968394283, zstatistic = −1.8780642976407582;
    /// without correction p = 0.056582797050223406.
    #[test]
    fn ties_and_zeros_match_scipy() {
        let d = [
            1.0, 2.0, 2.0, -3.0, 0.0, 3.0, 3.0, 4.0, -5.0, 0.0, 5.0, 6.0, 6.0, 6.0, -7.0, 8.0, 9.0,
        ];
        let r = wilcoxon_differences(&d).unwrap();
        assert_eq!((r.n, r.zeros, r.method), (15, 2, PValueMethod::Normal));
        assert_eq!(r.statistic, 26.5);
        assert!(close(r.p_value, 0.060_372_369_683_942_83, 1e-12), "{r:?}");
        let z = r.z.unwrap();
        assert!(close(z, -1.878_064_297_640_758_2, 1e-12), "{z}");
    }

    /// n = 30 > 25 without ties uses the normal approximation. SciPy 1.17.1,
    /// method="approx": statistic 150, p = 0.09167955558323944 (the exact
    /// p would be 0.09194962680339813).
    #[test]
    fn large_n_uses_normal_approximation() {
        let d = [
            13.0, -15.0, -5.0, 29.0, 23.0, 25.0, 18.0, 4.0, 28.0, -20.0, -19.0, -14.0, 1.0, -26.0,
            24.0, -11.0, 9.0, -8.0, -2.0, 16.0, 7.0, 17.0, 21.0, 6.0, -30.0, 27.0, 3.0, 22.0, 10.0,
            12.0,
        ];
        let r = wilcoxon_differences(&d).unwrap();
        assert_eq!((r.statistic, r.method), (150.0, PValueMethod::Normal));
        assert!(close(r.p_value, 0.091_679_555_583_239_44, 1e-12), "{r:?}");
        let exact = run(&d, Some(PValueMethod::Exact));
        assert!(
            close(exact.p_value, 0.091_949_626_803_398_13, 1e-12),
            "{exact:?}"
        );
    }

    #[test]
    fn paired_samples_and_bad_inputs() {
        let x = [0.9, 0.8, 0.7, 0.6, 0.5, 0.95];
        let y = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
        // Differences 0.4, 0.3, 0.2, 0.1, 0, 0.45: n = 5, all positive.
        let r = wilcoxon_paired(&x, &y).unwrap();
        assert_eq!((r.n, r.zeros, r.statistic, r.w_plus), (5, 1, 0.0, 15.0));
        assert_eq!(r.p_value, 0.0625);
        assert!(wilcoxon_paired(&x, &y[..5]).is_err());
        assert!(matches!(
            wilcoxon_paired(&[1.0, f64::NAN], &[0.0, 0.0]),
            Err(EvalError::NotFinite { index: 1, .. })
        ));
        let same = wilcoxon_paired(&x, &x).unwrap();
        assert_eq!((same.n, same.zeros), (0, 6));
        assert!(same.p_value.is_nan());
    }
}
