//! Percentile Hausdorff distance between the surfaces of two masks, in mm.
//!
//! Definition (MedPy's `hd95`): surface voxels are foreground voxels with a
//! 6-neighbour in the background or outside the volume; each surface voxel
//! of one mask gets its distance to the nearest surface voxel of the other,
//! in both directions; HD95 is the 95th percentile of the union of those
//! distances, interpolated linearly between order statistics (NumPy's default
//! `percentile`). Distances come from an exact EDT, not from pairs.
//!
//! Empty masks (BraTS convention): both empty → 0, the prediction is right;
//! exactly one empty → the diagonal of the field of view ([`Grid::diagonal_mm`],
//! 373.13 mm for BraTS). A finite sentinel rather than NaN because a missed
//! (or hallucinated) structure is the worst outcome, not a missing one:
//! NaN would be dropped from means and break the pairing of a Wilcoxon test,
//! flattering exactly the method that failed. Callers that want such volumes
//! excluded can compare against `diagonal_mm()`.

use super::edt::transform;
use super::{EvalError, Grid, Region};

/// HD95 in mm between two boolean masks on `grid`.
pub fn hd95(pred: &[bool], truth: &[bool], grid: &Grid) -> Result<f64, EvalError> {
    hausdorff_percentile(pred, truth, grid, 95.0)
}

/// HD95 in mm of one region (a set of label values) between two label
/// volumes, without building full-size masks.
pub fn hd95_region<L: Copy + Into<i64>>(
    pred: &[L],
    truth: &[L],
    grid: &Grid,
    region: &Region,
) -> Result<f64, EvalError> {
    grid.check("the prediction", pred.len())?;
    grid.check("the truth", truth.len())?;
    Ok(distance(
        grid,
        |i| region.contains(pred[i]),
        |i| region.contains(truth[i]),
        95.0,
    ))
}

/// The `percentile`-th (0..=100) percentile of the symmetric surface
/// distances: 100 is the classical Hausdorff distance, 95 is HD95.
pub fn hausdorff_percentile(
    pred: &[bool],
    truth: &[bool],
    grid: &Grid,
    percentile: f64,
) -> Result<f64, EvalError> {
    grid.check("the prediction", pred.len())?;
    grid.check("the truth", truth.len())?;
    if !(0.0..=100.0).contains(&percentile) {
        return Err(EvalError::Percentile(percentile));
    }
    Ok(distance(grid, |i| pred[i], |i| truth[i], percentile))
}

/// Both masks, cropped to the bounding box of their union: the nearest
/// surface voxel of one mask always lies inside it, and outside it is
/// background just as outside the volume is, so the result is unchanged
/// while a small tumour costs a small box instead of the whole volume.
struct Cropped {
    dims: [usize; 3],
    pred: Vec<bool>,
    truth: Vec<bool>,
}

fn distance(
    grid: &Grid,
    pred: impl Fn(usize) -> bool,
    truth: impl Fn(usize) -> bool,
    percentile: f64,
) -> f64 {
    let Some(crop) = crop(grid, &pred, &truth) else {
        return 0.0; // both empty
    };
    let pred_surface = surface(&crop.pred, crop.dims);
    let truth_surface = surface(&crop.truth, crop.dims);
    if !pred_surface.iter().any(|&s| s) || !truth_surface.iter().any(|&s| s) {
        return grid.diagonal_mm(); // exactly one empty
    }
    let spacing = grid.spacing();
    let mut distances = Vec::new();
    for (from, to) in [
        (&pred_surface, &truth_surface),
        (&truth_surface, &pred_surface),
    ] {
        let squared = transform(to, crop.dims, spacing);
        distances.extend(
            from.iter()
                .zip(&squared)
                .filter(|(on, _)| **on)
                .map(|(_, d)| d.sqrt()),
        );
    }
    linear_percentile(&mut distances, percentile)
}

/// `None` when both masks are empty.
fn crop(
    grid: &Grid,
    pred: &impl Fn(usize) -> bool,
    truth: &impl Fn(usize) -> bool,
) -> Option<Cropped> {
    let [nx, ny, nz] = grid.dims();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut i = 0;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                if pred(i) || truth(i) {
                    for (a, c) in [x, y, z].into_iter().enumerate() {
                        lo[a] = lo[a].min(c);
                        hi[a] = hi[a].max(c);
                    }
                }
                i += 1;
            }
        }
    }
    if lo[0] == usize::MAX {
        return None;
    }
    let dims = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let len = dims[0] * dims[1] * dims[2];
    let (mut p, mut t) = (Vec::with_capacity(len), Vec::with_capacity(len));
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            for x in lo[0]..=hi[0] {
                let i = x + nx * (y + ny * z);
                p.push(pred(i));
                t.push(truth(i));
            }
        }
    }
    Some(Cropped {
        dims,
        pred: p,
        truth: t,
    })
}

/// Foreground voxels with a background 6-neighbour, counting voxels beyond
/// the box as background.
fn surface(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let (sy, sz) = (nx, nx * ny);
    let mut out = vec![false; mask.len()];
    let mut i = 0;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                out[i] = mask[i]
                    && (x == 0
                        || y == 0
                        || z == 0
                        || x + 1 == nx
                        || y + 1 == ny
                        || z + 1 == nz
                        || !mask[i - 1]
                        || !mask[i + 1]
                        || !mask[i - sy]
                        || !mask[i + sy]
                        || !mask[i - sz]
                        || !mask[i + sz]);
                i += 1;
            }
        }
    }
    out
}

/// NumPy's default ("linear") percentile of non-empty, NaN-free `values`:
/// position q/100·(n − 1), interpolated between its two neighbours. O(n)
/// by selection rather than a sort.
fn linear_percentile(values: &mut [f64], percentile: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let pos = percentile / 100.0 * (values.len() - 1) as f64;
    let lo = (pos.floor() as usize).min(values.len() - 1);
    let frac = pos - lo as f64;
    let (_, &mut below, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let next = above.iter().copied().fold(f64::INFINITY, f64::min);
    if frac > 0.0 && next.is_finite() {
        below + (next - below) * frac
    } else {
        below
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn mask(dims: [usize; 3], inside: impl Fn(usize, usize, usize) -> bool) -> Vec<bool> {
        let mut out = Vec::with_capacity(dims.iter().product());
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    out.push(inside(x, y, z));
                }
            }
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn single_voxel_against_shifted_voxel() {
        let dims = [5, 6, 4];
        let grid = Grid::new(dims, [0.5, 2.0, 1.0]).unwrap();
        let a = mask(dims, |x, y, z| (x, y, z) == (1, 1, 1));
        let b = mask(dims, |x, y, z| (x, y, z) == (2, 3, 1));
        // √((1·0.5)² + (2·2)²) in both directions.
        let expected = (0.25f64 + 16.0).sqrt();
        assert!(close(hd95(&a, &b, &grid).unwrap(), expected));
        assert!(close(hd95(&b, &a, &grid).unwrap(), expected));
        assert_eq!(hd95(&a, &a, &grid).unwrap(), 0.0);
    }

    /// Two 3×3×3 cubes `d` voxels apart along one axis with spacing `s` on
    /// it. Every surface voxel's nearest partner is straight across, so the
    /// 52 distances are 18 × (d−2)s, 16 × (d−1)s (the middle layer lacks its
    /// centre) and 18 × d·s: the 95th percentile (position 48.45) is d·s,
    /// the median (position 25.5) is (d−1)s, the minimum (d−2)s.
    #[test]
    fn offset_cubes_with_anisotropic_spacing() {
        let cube = |o: [usize; 3]| {
            move |x: usize, y: usize, z: usize| {
                (o[0]..o[0] + 3).contains(&x)
                    && (o[1]..o[1] + 3).contains(&y)
                    && (o[2]..o[2] + 3).contains(&z)
            }
        };
        let dims = [12, 6, 14];
        let grid = Grid::new(dims, [2.5, 0.7, 3.0]).unwrap();
        // d = 4 along x (s = 2.5).
        let a = mask(dims, cube([1, 2, 5]));
        let b = mask(dims, cube([5, 2, 5]));
        assert!(close(hd95(&a, &b, &grid).unwrap(), 10.0));
        assert!(close(
            hausdorff_percentile(&a, &b, &grid, 50.0).unwrap(),
            7.5
        ));
        assert!(close(
            hausdorff_percentile(&a, &b, &grid, 0.0).unwrap(),
            5.0
        ));
        assert!(close(
            hausdorff_percentile(&a, &b, &grid, 100.0).unwrap(),
            10.0
        ));
        // d = 5 along z (s = 3), cubes touching the volume's far z face.
        let a = mask(dims, cube([4, 1, 6]));
        let b = mask(dims, cube([4, 1, 11]));
        assert!(close(hd95(&a, &b, &grid).unwrap(), 15.0));
        assert!(close(
            hausdorff_percentile(&b, &a, &grid, 50.0).unwrap(),
            12.0
        ));
    }

    #[test]
    fn empty_conventions() {
        let dims = [4, 3, 2];
        let grid = Grid::new(dims, [1.0, 2.0, 3.0]).unwrap();
        let none = vec![false; grid.len()];
        let some = mask(dims, |x, _, _| x == 2);
        assert_eq!(hd95(&none, &none, &grid).unwrap(), 0.0);
        let diagonal = (16.0f64 + 36.0 + 36.0).sqrt();
        assert_eq!(hd95(&none, &some, &grid).unwrap(), diagonal);
        assert_eq!(hd95(&some, &none, &grid).unwrap(), diagonal);
    }

    /// Reference values from MedPy's `hd95` algorithm run with SciPy 1.17.1
    /// (binary_erosion with the 6-connected structure, distance_transform_edt
    /// with `sampling`, numpy.percentile), arrays indexed [x, y, z]:
    ///   pred  = 9(x−6)² + 16(y−5)² + 36(z−4)² ≤ 180
    ///   truth = box x∈[4,10], y∈[3,8], z∈[2,6]  ∪  {x = 13, y ≤ 2, z ≤ 1}
    /// on a 14×12×9 grid with spacing (0.8, 1.0, 2.5).
    #[test]
    fn matches_medpy_reference() {
        let dims = [14, 12, 9];
        let grid = Grid::new(dims, [0.8, 1.0, 2.5]).unwrap();
        let (pred, truth) = reference_masks(dims);
        let at = |q| hausdorff_percentile(&pred, &truth, &grid, q).unwrap();
        assert!(close(at(95.0), 2.561_249_694_973_139_6), "{}", at(95.0));
        assert!(close(at(100.0), 8.002_499_609_497_024), "{}", at(100.0));
        assert!(close(at(50.0), 0.8), "{}", at(50.0));
        // The region route over label volumes gives the same number.
        let labels = |m: &[bool]| m.iter().map(|&v| u8::from(v) * 2).collect::<Vec<_>>();
        let region = Region::new("two", &[2]);
        let via_labels = hd95_region(&labels(&pred), &labels(&truth), &grid, &region).unwrap();
        assert_eq!(via_labels, at(95.0));
    }

    fn reference_masks(dims: [usize; 3]) -> (Vec<bool>, Vec<bool>) {
        let pred = mask(dims, |x, y, z| {
            let (x, y, z) = (x as i64, y as i64, z as i64);
            9 * (x - 6).pow(2) + 16 * (y - 5).pow(2) + 36 * (z - 4).pow(2) <= 180
        });
        let truth = mask(dims, |x, y, z| {
            ((4..=10).contains(&x) && (3..=8).contains(&y) && (2..=6).contains(&z))
                || (x == 13 && y <= 2 && z <= 1)
        });
        (pred, truth)
    }

    /// O(n²) surface distances on the full volume, sorted.
    fn brute(a: &[bool], b: &[bool], dims: [usize; 3], sp: [f64; 3]) -> Vec<f64> {
        let coords = |i: usize| {
            [
                i % dims[0],
                (i / dims[0]) % dims[1],
                i / (dims[0] * dims[1]),
            ]
        };
        let on_surface = |m: &[bool], i: usize| {
            let c = coords(i);
            m[i] && (0..3).any(|ax| {
                [-1i64, 1].iter().any(|&step| {
                    let mut n = c.map(|v| v as i64);
                    n[ax] += step;
                    if n[ax] < 0 || n[ax] >= dims[ax] as i64 {
                        return true;
                    }
                    let j = n[0] as usize + dims[0] * (n[1] as usize + dims[1] * n[2] as usize);
                    !m[j]
                })
            })
        };
        let sa: Vec<usize> = (0..a.len()).filter(|&i| on_surface(a, i)).collect();
        let sb: Vec<usize> = (0..b.len()).filter(|&i| on_surface(b, i)).collect();
        let dist = |i: usize, j: usize| {
            let (p, q) = (coords(i), coords(j));
            (0..3)
                .map(|ax| ((p[ax] as f64 - q[ax] as f64) * sp[ax]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mut out = Vec::new();
        for (from, to) in [(&sa, &sb), (&sb, &sa)] {
            for &i in from.iter() {
                out.push(to.iter().map(|&j| dist(i, j)).fold(f64::INFINITY, f64::min));
            }
        }
        out.sort_by(f64::total_cmp);
        out
    }

    fn sorted_percentile(sorted: &[f64], q: f64) -> f64 {
        let pos = q / 100.0 * (sorted.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    }

    #[test]
    fn matches_brute_force_on_random_masks() {
        let mut rng = Rng::new(5, 0);
        for case in 0..30 {
            let dims = [3 + rng.below(6), 3 + rng.below(6), 1 + rng.below(6)];
            let sp = [
                rng.range(0.4, 2.5),
                rng.range(0.4, 2.5),
                rng.range(0.4, 2.5),
            ];
            let grid = Grid::new(dims, sp).unwrap();
            let (da, db) = (rng.range(0.05, 0.6), rng.range(0.05, 0.6));
            let a: Vec<bool> = (0..grid.len()).map(|_| rng.chance(da)).collect();
            let b: Vec<bool> = (0..grid.len()).map(|_| rng.chance(db)).collect();
            if !a.contains(&true) || !b.contains(&true) {
                continue;
            }
            let sorted = brute(&a, &b, dims, sp);
            for q in [0.0, 50.0, 95.0, 100.0] {
                let fast = hausdorff_percentile(&a, &b, &grid, q).unwrap();
                let slow = sorted_percentile(&sorted, q);
                assert!(close(fast, slow), "case {case} q {q}: {fast} vs {slow}");
            }
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let grid = Grid::new([2, 2, 2], [1.0; 3]).unwrap();
        let m = vec![true; 8];
        assert!(hd95(&m[..7], &m, &grid).is_err());
        assert!(hd95(&m, &m[..7], &grid).is_err());
        assert_eq!(
            hausdorff_percentile(&m, &m, &grid, 101.0),
            Err(EvalError::Percentile(101.0))
        );
        assert!(hausdorff_percentile(&m, &m, &grid, f64::NAN).is_err());
    }

    /// A BraTS-sized volume: two offset spheres (radius 40 and 35 voxels,
    /// centres 10 voxels apart along x) must finish quickly and land near
    /// the geometric answer. Upper bound: the far sides are 15 mm apart.
    #[test]
    fn scales_to_brats_volumes() {
        let dims = [240, 240, 155];
        let grid = Grid::new(dims, [1.0; 3]).unwrap();
        let ball = |c: [f64; 3], r: f64| {
            move |x: usize, y: usize, z: usize| {
                let d = [x as f64 - c[0], y as f64 - c[1], z as f64 - c[2]];
                d.iter().map(|v| v * v).sum::<f64>() <= r * r
            }
        };
        let a = mask(dims, ball([120.0, 120.0, 77.0], 40.0));
        let b = mask(dims, ball([130.0, 120.0, 77.0], 35.0));
        let start = std::time::Instant::now();
        let d = hd95(&a, &b, &grid).unwrap();
        let took = start.elapsed();
        assert!(d > 5.0 && d <= 15.5, "{d}");
        assert!(took.as_secs_f64() < 30.0, "{took:?}");
    }
}
