//! Mean ± sample standard deviation of a metric over test volumes, the way
//! segmentation papers report it. NaN marks a value that could not be
//! computed; it is left out and counted, so a table can say how many.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// NaN when no values remain.
    pub mean: f64,
    /// Sample (n − 1) standard deviation; NaN when fewer than two values
    /// remain, as it is undefined there (NumPy's `std(ddof=1)` agrees).
    pub std: f64,
    /// Values used.
    pub n: usize,
    /// NaN values left out.
    pub ignored: usize,
}

/// Summarises `values`, ignoring NaN. Infinities are kept: they are values,
/// and a mean of +∞ is the honest answer.
pub fn summarize(values: &[f64]) -> Summary {
    let kept = || values.iter().copied().filter(|v| !v.is_nan());
    let n = kept().count();
    let ignored = values.len() - n;
    let mean = if n == 0 {
        f64::NAN
    } else {
        kept().sum::<f64>() / n as f64
    };
    // Two passes: the deviations are summed after the mean is known, which
    // avoids the cancellation of Σx² − n·mean².
    let std = if n < 2 {
        f64::NAN
    } else {
        (kept().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    Summary {
        mean,
        std,
        n,
        ignored,
    }
}

impl fmt::Display for Summary {
    /// `0.8123 ± 0.0456 (n = 75)`, with `, 2 NaN ignored` when any were;
    /// the precision flag sets the digits (4 by default).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = f.precision().unwrap_or(4);
        write!(
            f,
            "{:.digits$} ± {:.digits$} (n = {}",
            self.mean, self.std, self.n
        )?;
        if self.ignored > 0 {
            write!(f, ", {} NaN ignored", self.ignored)?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        // Mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; 32/7.
        let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
        assert_eq!((s.n, s.ignored), (8, 0));
    }

    #[test]
    fn nan_is_ignored_and_counted() {
        let s = summarize(&[1.0, f64::NAN, 3.0, f64::NAN]);
        assert_eq!((s.mean, s.n, s.ignored), (2.0, 2, 2));
        assert!((s.std - 2.0f64.sqrt()).abs() < 1e-15);
        assert_eq!(format!("{s:.2}"), "2.00 ± 1.41 (n = 2, 2 NaN ignored)");
    }

    #[test]
    fn too_few_values() {
        let one = summarize(&[0.7]);
        assert_eq!((one.mean, one.n), (0.7, 1));
        assert!(one.std.is_nan());
        let none = summarize(&[f64::NAN]);
        assert!(none.mean.is_nan() && none.std.is_nan());
        assert_eq!((none.n, none.ignored), (0, 1));
        let empty = summarize(&[]);
        assert_eq!((empty.n, empty.ignored), (0, 0));
    }
}
