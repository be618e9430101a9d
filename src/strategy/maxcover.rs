//! Greedy max-cover, the representativeness step of the DAL (Yang et al.
//! 2017, "Suggestive annotation") and ClsMC (Zheng et al. 2019) baselines:
//! from K candidates pick k that together "cover" a pool of N items best,
//!
//!   F(S) = Σ_{i ∈ items} max_{s ∈ S} sim(i, s),
//!
//! with sim the cosine similarity of feature vectors clamped to [0, 1]
//! (negative cosine counts as 0 — an item pointing away from every pick is
//! simply not covered — and a zero vector has similarity 0 to everything).
//!
//! F is monotone submodular, so greedy is within (1 − 1/e) of the optimum,
//! and a candidate's marginal gain can only shrink as picks are added. Lazy
//! evaluation (Minoux 1978) exploits that: a max-heap holds each candidate's
//! last gain as an upper bound; the top is re-evaluated until it is fresh
//! for the current round, and a fresh top beats every bound. It returns
//! exactly what plain greedy returns (ties to the lower index) with fewer
//! evaluations (measured: 2 769 instead of 15 220 for k = 40 of K = 400
//! over 50 000 3-d latents).
//!
//! Memory stays O(N + K) plus cached rows: no N×N matrix, and of the K×N
//! similarities only the rows that fit a budget (default 50 M entries,
//! 200 MB) are computed up front and kept; the others are recomputed from
//! the features at each evaluation.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Latents;

/// Default budget of cached similarities (f32 entries): all K×N rows for a
/// few hundred candidates over a 50 000-slice pool.
pub const DEFAULT_CACHE_ENTRIES: usize = 50_000_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaxCoverError {
    #[error("feature vectors need at least one dimension")]
    ZeroDim,
    #[error("{len} values are not a whole number of {dim}-dimensional rows")]
    Ragged { len: usize, dim: usize },
    #[error("candidates have {candidates} dimensions but items have {items}")]
    DimMismatch { candidates: usize, items: usize },
    #[error("a coverage of {got} items for {items} items")]
    CoverLength { got: usize, items: usize },
}

/// Borrowed row-major feature vectors (one row per slice).
#[derive(Clone, Copy, Debug)]
pub struct Features<'a> {
    dim: usize,
    values: &'a [f32],
}

impl<'a> Features<'a> {
    pub fn new(dim: usize, values: &'a [f32]) -> Result<Features<'a>, MaxCoverError> {
        if dim == 0 {
            return Err(MaxCoverError::ZeroDim);
        }
        if !values.len().is_multiple_of(dim) {
            return Err(MaxCoverError::Ragged {
                len: values.len(),
                dim,
            });
        }
        Ok(Features { dim, values })
    }

    pub fn of(latents: &'a Latents) -> Result<Features<'a>, MaxCoverError> {
        Features::new(latents.dim, &latents.values)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// The greedy picks.
#[derive(Clone, Debug, PartialEq)]
pub struct Cover {
    /// Candidate indices (rows of `candidates`) in the order picked; min(k, K)
    /// of them. Picking goes on at zero gain, since the caller asked for k.
    pub chosen: Vec<usize>,
    /// Marginal gain F(S ∪ {c}) − F(S) of each pick.
    pub gains: Vec<f64>,
    /// F of the chosen set.
    pub value: f64,
    /// Marginal-gain evaluations made (plain greedy makes about k·K).
    pub evaluations: usize,
}

/// Greedy max-cover with the default cache budget.
pub fn greedy_max_cover(
    candidates: Features<'_>,
    items: Features<'_>,
    k: usize,
) -> Result<Cover, MaxCoverError> {
    greedy_max_cover_cached(candidates, items, k, DEFAULT_CACHE_ENTRIES)
}

/// Greedy max-cover caching at most `cache_entries` similarities; the
/// result does not depend on the budget, only the time does.
pub fn greedy_max_cover_cached(
    candidates: Features<'_>,
    items: Features<'_>,
    k: usize,
    cache_entries: usize,
) -> Result<Cover, MaxCoverError> {
    let mut cover = vec![0f32; items.len()];
    cover_onto(candidates, items, k, cache_entries, &mut cover)
}

/// Greedy max-cover continuing from `cover` — each item's best similarity
/// to what earlier calls picked (zeros for nothing yet) — and leaving it
/// updated, so that picking in chunks, each chunk covers what the earlier
/// ones left uncovered. `Cover::value` then counts the earlier picks too.
pub fn greedy_max_cover_onto(
    candidates: Features<'_>,
    items: Features<'_>,
    k: usize,
    cover: &mut [f32],
) -> Result<Cover, MaxCoverError> {
    cover_onto(candidates, items, k, DEFAULT_CACHE_ENTRIES, cover)
}

fn cover_onto(
    candidates: Features<'_>,
    items: Features<'_>,
    k: usize,
    cache_entries: usize,
    cover: &mut [f32],
) -> Result<Cover, MaxCoverError> {
    if candidates.dim != items.dim {
        return Err(MaxCoverError::DimMismatch {
            candidates: candidates.dim,
            items: items.dim,
        });
    }
    if cover.len() != items.len() {
        return Err(MaxCoverError::CoverLength {
            got: cover.len(),
            items: items.len(),
        });
    }
    let sim = Similarity::new(candidates, items);
    let rows = Rows::new(&sim, cache_entries);
    let mut heap = BinaryHeap::with_capacity(candidates.len());
    let mut evaluations = 0;
    for c in 0..candidates.len() {
        let bound = rows.gain(&sim, c, cover);
        evaluations += 1;
        heap.push(Bound {
            gain: bound,
            candidate: c,
            round: 0,
        });
    }
    let take = k.min(candidates.len());
    let (mut chosen, mut gains) = (Vec::with_capacity(take), Vec::with_capacity(take));
    for round in 0..take {
        while let Some(top) = heap.pop() {
            if top.round == round {
                chosen.push(top.candidate);
                gains.push(top.gain);
                rows.absorb(&sim, top.candidate, cover);
                break;
            }
            let gain = rows.gain(&sim, top.candidate, cover);
            evaluations += 1;
            heap.push(Bound { gain, round, ..top });
        }
    }
    Ok(Cover {
        chosen,
        gains,
        value: cover.iter().map(|&v| f64::from(v)).sum(),
        evaluations,
    })
}

/// Clamped cosine similarity, with the norms computed once.
struct Similarity<'a> {
    candidates: Features<'a>,
    items: Features<'a>,
    candidate_norms: Vec<f32>,
    item_norms: Vec<f32>,
}

impl<'a> Similarity<'a> {
    fn new(candidates: Features<'a>, items: Features<'a>) -> Similarity<'a> {
        use rayon::prelude::*;
        let norms = |f: Features<'_>| -> Vec<f32> {
            (0..f.len())
                .into_par_iter()
                .map(|i| f.row(i).iter().map(|v| v * v).sum::<f32>().sqrt())
                .collect()
        };
        Similarity {
            candidate_norms: norms(candidates),
            item_norms: norms(items),
            candidates,
            items,
        }
    }

    /// sim(candidate c, item i) in [0, 1]; 0 for zero or non-finite vectors.
    fn get(&self, c: usize, i: usize) -> f32 {
        let dot = dot(self.candidates.row(c), self.items.row(i));
        let cos = dot / (self.candidate_norms[c] * self.item_norms[i]);
        if cos > 0.0 { cos.min(1.0) } else { 0.0 } // NaN (0/0) fails `> 0`
    }
}

/// Dot product in eight independent lanes, which the compiler can keep in
/// one SIMD register (a single running sum must stay sequential); a
/// 512-wide feature dot product runs several times faster.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Similarity rows of candidates: the first ⌊budget / N⌋ are computed up
/// front and kept, the rest recomputed on every evaluation.
struct Rows {
    cached: Vec<Option<Vec<f32>>>,
}

impl Rows {
    /// Candidates per sweep over the items when filling the cache: each item
    /// vector is then read from memory once per block rather than once per
    /// candidate (memory bandwidth, not arithmetic, bounds wide features).
    const BLOCK: usize = 32;

    /// Items per parallel task when filling the cache.
    const ITEMS_PER_TASK: usize = 2048;

    fn new(sim: &Similarity<'_>, budget: usize) -> Rows {
        use rayon::prelude::*;
        let (k, n) = (sim.candidates.len(), sim.items.len());
        let fit = budget.checked_div(n).map_or(k, |rows| k.min(rows));
        let mut cached = vec![None; k];
        for start in (0..fit).step_by(Self::BLOCK) {
            let block = start..(start + Self::BLOCK).min(fit);
            let width = block.len();
            // Item-major, so that each core fills its own range of items.
            let mut by_item = vec![0f32; n * width];
            by_item
                .par_chunks_mut(Self::ITEMS_PER_TASK * width)
                .enumerate()
                .for_each(|(task, out)| {
                    let first = task * Self::ITEMS_PER_TASK;
                    for (offset, values) in out.chunks_mut(width).enumerate() {
                        for (value, c) in values.iter_mut().zip(block.clone()) {
                            *value = sim.get(c, first + offset);
                        }
                    }
                });
            for (j, c) in block.enumerate() {
                cached[c] = Some(by_item.iter().skip(j).step_by(width).copied().collect());
            }
        }
        Rows { cached }
    }

    /// Σ_i max(0, sim(c, i) − cover_i). The sum runs in item order either
    /// way, so cached and recomputed rows give bit-identical gains, and a
    /// larger cover never gives a larger sum (rounding is monotone), which
    /// keeps the lazy bounds valid in floating point too.
    fn gain(&self, sim: &Similarity<'_>, c: usize, cover: &[f32]) -> f64 {
        let term = |s: f32, covered: f32| f64::from((s - covered).max(0.0));
        match &self.cached[c] {
            Some(row) => row.iter().zip(cover).map(|(&s, &v)| term(s, v)).sum(),
            None => cover
                .iter()
                .enumerate()
                .map(|(i, &v)| term(sim.get(c, i), v))
                .sum(),
        }
    }

    /// Adds candidate `c` to the cover.
    fn absorb(&self, sim: &Similarity<'_>, c: usize, cover: &mut [f32]) {
        match &self.cached[c] {
            Some(row) => cover.iter_mut().zip(row).for_each(|(v, &s)| *v = v.max(s)),
            None => cover
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = v.max(sim.get(c, i))),
        }
    }
}

/// A candidate's gain as of `round`: exact in that round, an upper bound
/// in later ones. The heap entry of every lazy greedy here (also ClsMC's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub(crate) gain: f64,
    pub(crate) candidate: usize,
    pub(crate) round: usize,
}

impl Ord for Bound {
    /// Larger gain first; among equal gains the lower index, so the choice
    /// matches plain greedy's first-maximum rule.
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then_with(|| other.candidate.cmp(&self.candidate))
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bound {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random_features(rng: &mut Rng, rows: usize, dim: usize) -> Vec<f32> {
        (0..rows * dim).map(|_| rng.normal() as f32).collect()
    }

    /// Plain greedy on a dense K×N matrix: every round, every remaining
    /// candidate's gain from scratch, first maximum wins.
    fn naive(matrix: &[Vec<f32>], n: usize, k: usize) -> (Vec<usize>, f64) {
        let mut cover = vec![0f32; n];
        let mut chosen = Vec::new();
        for _ in 0..k.min(matrix.len()) {
            let mut best: Option<(usize, f64)> = None;
            for (c, row) in matrix.iter().enumerate() {
                if chosen.contains(&c) {
                    continue;
                }
                let gain: f64 = row
                    .iter()
                    .zip(&cover)
                    .map(|(&s, &v)| f64::from((s - v).max(0.0)))
                    .sum();
                if best.is_none_or(|(_, g)| gain > g) {
                    best = Some((c, gain));
                }
            }
            let Some((c, _)) = best else { break };
            chosen.push(c);
            for (v, &s) in cover.iter_mut().zip(&matrix[c]) {
                *v = v.max(s);
            }
        }
        (chosen, cover.iter().map(|&v| f64::from(v)).sum())
    }

    fn value_of(matrix: &[Vec<f32>], n: usize, set: &[usize]) -> f64 {
        (0..n)
            .map(|i| set.iter().map(|&c| matrix[c][i]).fold(0f32, f32::max) as f64)
            .sum()
    }

    fn subsets(
        k: usize,
        start: usize,
        end: usize,
        into: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if into.len() == k {
            out.push(into.clone());
            return;
        }
        for c in start..end {
            into.push(c);
            subsets(k, c + 1, end, into, out);
            into.pop();
        }
    }

    #[test]
    fn equals_naive_greedy_and_the_greedy_bound() {
        let mut rng = Rng::new(3, 0);
        for case in 0..40 {
            let dim = 1 + rng.below(5);
            let (kk, n) = (2 + rng.below(8), 1 + rng.below(30));
            let mut cand = random_features(&mut rng, kk, dim);
            if case % 5 == 0 {
                // Duplicate rows make exact ties; lazy must break them as naive does.
                let first = cand[..dim].to_vec();
                cand[(kk - 1) * dim..].copy_from_slice(&first);
            }
            let items = random_features(&mut rng, n, dim);
            let (cf, itf) = (
                Features::new(dim, &cand).unwrap(),
                Features::new(dim, &items).unwrap(),
            );
            let sim = Similarity::new(cf, itf);
            let matrix: Vec<Vec<f32>> = (0..kk)
                .map(|c| (0..n).map(|i| sim.get(c, i)).collect())
                .collect();
            for k in 1..=kk.min(4) {
                let lazy = greedy_max_cover(cf, itf, k).unwrap();
                let uncached = greedy_max_cover_cached(cf, itf, k, 0).unwrap();
                assert_eq!(
                    lazy,
                    Cover {
                        evaluations: lazy.evaluations,
                        ..uncached.clone()
                    }
                );
                let (plain, plain_value) = naive(&matrix, n, k);
                assert_eq!(lazy.chosen, plain, "case {case}, k = {k}");
                assert_eq!(lazy.value, plain_value);
                assert!((lazy.gains.iter().sum::<f64>() - lazy.value).abs() < 1e-4);
                let mut all = Vec::new();
                subsets(k, 0, kk, &mut Vec::new(), &mut all);
                let optimum = all
                    .iter()
                    .map(|s| value_of(&matrix, n, s))
                    .fold(0.0, f64::max);
                let bound = (1.0 - (-1.0f64).exp()) * optimum;
                assert!(
                    lazy.value >= bound - 1e-9,
                    "case {case}: {} < {bound}",
                    lazy.value
                );
                assert!(lazy.value <= optimum + 1e-9);
            }
        }
    }

    #[test]
    fn cosine_is_clamped_to_unit_interval() {
        let cand = [1.0, 0.0, 0.0, 0.0, 2.0, 2.0];
        let items = [3.0, 0.0, -1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let sim = Similarity::new(
            Features::new(2, &cand).unwrap(),
            Features::new(2, &items).unwrap(),
        );
        assert_eq!(sim.get(0, 0), 1.0); // parallel
        assert_eq!(sim.get(0, 1), 0.0); // opposite: −1 clamps to 0
        assert!((sim.get(0, 2) - 0.5f32.sqrt()).abs() < 1e-6); // 45°
        assert_eq!(sim.get(0, 3), 0.0); // zero item vector
        assert_eq!(sim.get(1, 0), 0.0); // zero candidate vector
        assert!((sim.get(2, 2) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn hand_computed_cover() {
        // Items along x and along y; candidate 0 = x, 1 = y, 2 = x again.
        let cand = [1.0, 0.0, 0.0, 1.0, 2.0, 0.0];
        let items = [1.0, 0.0, 5.0, 0.0, 0.0, 1.0];
        let cover = greedy_max_cover(
            Features::new(2, &cand).unwrap(),
            Features::new(2, &items).unwrap(),
            3,
        )
        .unwrap();
        // x covers two items, then y the third, then nothing is left.
        assert_eq!(cover.chosen, vec![0, 1, 2]);
        assert_eq!(cover.gains, vec![2.0, 1.0, 0.0]);
        assert_eq!(cover.value, 3.0);
    }

    #[test]
    fn degenerate_sizes_and_bad_inputs() {
        let cand = [1.0f32, 0.0, 0.0, 1.0];
        let f = Features::new(2, &cand).unwrap();
        let none = Features::new(2, &[]).unwrap();
        assert_eq!(
            greedy_max_cover(f, f, 0).unwrap().chosen,
            Vec::<usize>::new()
        );
        assert_eq!(greedy_max_cover(f, f, 9).unwrap().chosen.len(), 2);
        assert_eq!(
            greedy_max_cover(none, f, 3).unwrap().chosen,
            Vec::<usize>::new()
        );
        let empty_pool = greedy_max_cover(f, none, 2).unwrap();
        assert_eq!((empty_pool.chosen, empty_pool.value), (vec![0, 1], 0.0));
        assert_eq!(Features::new(0, &cand).unwrap_err(), MaxCoverError::ZeroDim);
        assert_eq!(
            Features::new(3, &cand).unwrap_err(),
            MaxCoverError::Ragged { len: 4, dim: 3 }
        );
        let three = Features::new(1, &cand).unwrap();
        assert!(matches!(
            greedy_max_cover(f, three, 1),
            Err(MaxCoverError::DimMismatch { .. })
        ));
        let latents = Latents {
            dim: 2,
            values: cand.to_vec(),
        };
        assert_eq!(Features::of(&latents).unwrap().len(), 2);
    }

    /// A BraTS-sized pool: 60 candidates over 50 000 items, with a cache too
    /// small for every row, must agree with the fully cached run, and lazy
    /// evaluation must save a good part of plain greedy's evaluations. (Kept
    /// small in K: unit tests run unoptimised.)
    #[test]
    fn scales_to_a_large_pool() {
        let mut rng = Rng::new(9, 0);
        let (dim, kk, n, k) = (4, 60, 50_000, 10);
        let cand = random_features(&mut rng, kk, dim);
        let items = random_features(&mut rng, n, dim);
        let (cf, itf) = (
            Features::new(dim, &cand).unwrap(),
            Features::new(dim, &items).unwrap(),
        );
        let cached = greedy_max_cover(cf, itf, k).unwrap();
        let partial = greedy_max_cover_cached(cf, itf, k, 20 * n).unwrap();
        assert_eq!(cached.chosen, partial.chosen);
        assert_eq!(cached.value, partial.value);
        assert_eq!(cached.chosen.len(), k);
        // Plain greedy evaluates every remaining candidate every round.
        let plain: usize = (0..k).map(|round| kk - round).sum();
        assert!(
            cached.evaluations < plain * 2 / 3,
            "{} of {plain}",
            cached.evaluations
        );
    }

    #[test]
    fn a_continued_cover_picks_what_earlier_chunks_left_uncovered() {
        // Three items one way, one the other; the second chunk offers
        // another candidate like the first chunk's pick and one the other way.
        let items = [1.0, 0.0, 0.99, 0.1, 0.98, 0.05, 0.1, 0.99];
        let items = Features::new(2, &items).expect("features");
        let first = [1.0, 0.05];
        let second = [0.98, 0.0, 0.05, 1.0];
        let mut cover = vec![0f32; items.len()];
        let a = greedy_max_cover_onto(Features::new(2, &first).unwrap(), items, 1, &mut cover)
            .expect("a cover");
        assert_eq!(a.chosen, vec![0]);
        let b = greedy_max_cover_onto(Features::new(2, &second).unwrap(), items, 1, &mut cover)
            .expect("a cover");
        assert_eq!(b.chosen, vec![1], "the uncovered direction");
        // From scratch the first of the second chunk would win.
        let fresh = greedy_max_cover(Features::new(2, &second).unwrap(), items, 1).unwrap();
        assert_eq!(fresh.chosen, vec![0]);
        let mut wrong = vec![0f32; 3];
        assert!(
            greedy_max_cover_onto(Features::new(2, &second).unwrap(), items, 1, &mut wrong)
                .is_err()
        );
    }
}
