//! Weighted lazy greedy max-cover under the kernel similarity.

use std::borrow::Cow;
use std::collections::BinaryHeap;

use super::grid::Grid;
use super::kernel::Kernel;
use crate::strategy::maxcover::Bound;

/// Most similarity entries (index + value, 8 bytes each) cached per
/// max-cover run: 128 MB.
pub(super) const ROW_BUDGET: usize = 16_000_000;

/// Pick from `candidates` (row-major) to cover weighted items. The items
/// are kept sorted by grid cell (`Grid`), and rows, cover and weights are
/// indexed in that order.
pub(super) struct CoverProblem<'a> {
    dim: usize,
    candidates: &'a [f32],
    /// The items by coordinate: `columns[j][i]` is coordinate j of item i,
    /// so the distance loops run over contiguous memory and vectorise.
    columns: Vec<Vec<f32>>,
    weights: Vec<f32>,
    kernel: Kernel,
    grid: Grid,
    /// The caller's index of each item.
    #[cfg_attr(not(test), allow(dead_code))]
    order: Vec<usize>,
}

impl<'a> CoverProblem<'a> {
    /// `items` row-major, one weight each.
    pub(super) fn new(
        dim: usize,
        candidates: &'a [f32],
        items: &[f32],
        weights: &[f32],
        kernel: Kernel,
    ) -> CoverProblem<'a> {
        let (grid, order) = Grid::new(dim, items, kernel.cutoff);
        let columns = (0..dim)
            .map(|j| order.iter().map(|&i| items[i * dim + j]).collect())
            .collect();
        CoverProblem {
            dim,
            candidates,
            columns,
            weights: order.iter().map(|&i| weights[i]).collect(),
            kernel,
            grid,
            order,
        }
    }

    fn len(&self) -> usize {
        self.candidates.len() / self.dim
    }

    /// (item, similarity) for every item with similarity > 0, ascending.
    fn row(&self, c: usize) -> Vec<(u32, f32)> {
        const BLOCK: usize = 1024;
        let x = &self.candidates[c * self.dim..(c + 1) * self.dim];
        let mut buf = [0f32; BLOCK];
        let mut row = Vec::new();
        self.grid.near(x, |range| {
            for start in range.clone().step_by(BLOCK) {
                let block = &mut buf[..BLOCK.min(range.end - start)];
                block.fill(0.0);
                for (&xj, column) in x.iter().zip(&self.columns) {
                    for (acc, &y) in block.iter_mut().zip(&column[start..]) {
                        let d = y - xj;
                        *acc += d * d;
                    }
                }
                for v in block.iter_mut() {
                    *v = self.kernel.sim(*v);
                }
                for (k, &s) in block.iter().enumerate() {
                    if s > 0.0 {
                        row.push(((start + k) as u32, s));
                    }
                }
            }
        });
        row
    }

    /// Σ_i w_i · max(0, sim − cover_i), always summed in the same order
    /// (four lanes over the row, then the tail), so cached and recomputed
    /// rows agree to the bit and a larger cover never gives a larger sum
    /// (which keeps the lazy bounds valid). Starts from +0: an empty `sum`
    /// is −0, which `total_cmp` ranks below a +0 gain.
    fn gain(&self, row: &[(u32, f32)], cover: &[f32]) -> f64 {
        let term = |&(i, s): &(u32, f32)| {
            let i = i as usize;
            f64::from(self.weights[i]) * f64::from((s - cover[i]).max(0.0))
        };
        let mut lanes = [0f64; 4];
        let quads = row.chunks_exact(4);
        let tail = quads.remainder();
        for quad in quads {
            for (lane, entry) in lanes.iter_mut().zip(quad) {
                *lane += term(entry);
            }
        }
        let mut total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for entry in tail {
            total += term(entry);
        }
        total
    }
}

/// Lazy greedy max-cover (Minoux): min(k, K) candidate indices in pick
/// order, exactly those of plain greedy with ties to the lower index; the
/// rows of candidates that fit `budget` entries are kept, the others
/// recomputed when evaluated.
pub(super) fn lazy_greedy(problem: &CoverProblem<'_>, k: usize, budget: usize) -> Vec<usize> {
    let n_items = problem.weights.len();
    let mut cover = vec![0f32; n_items];
    let mut cached: Vec<Option<Vec<(u32, f32)>>> = Vec::with_capacity(problem.len());
    let mut room = budget;
    let mut heap = BinaryHeap::with_capacity(problem.len());
    for c in 0..problem.len() {
        let row = problem.row(c);
        heap.push(Bound {
            gain: problem.gain(&row, &cover),
            candidate: c,
            round: 0,
        });
        if row.len() <= room {
            room -= row.len();
            cached.push(Some(row));
        } else {
            cached.push(None);
        }
    }
    let row_of = |c: usize| match &cached[c] {
        Some(row) => Cow::Borrowed(row.as_slice()),
        None => Cow::Owned(problem.row(c)),
    };
    let take = k.min(problem.len());
    let mut chosen = Vec::with_capacity(take);
    for round in 0..take {
        while let Some(top) = heap.pop() {
            if top.round == round {
                chosen.push(top.candidate);
                for &(i, s) in row_of(top.candidate).iter() {
                    let v = &mut cover[i as usize];
                    *v = v.max(s);
                }
                break;
            }
            let gain = problem.gain(&row_of(top.candidate), &cover);
            heap.push(Bound { gain, round, ..top });
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Plain greedy on the dense weighted similarity matrix, first maximum.
    fn naive_greedy(p: &CoverProblem<'_>, k: usize) -> Vec<usize> {
        let n = p.weights.len();
        let dense: Vec<Vec<f32>> = (0..p.len())
            .map(|c| {
                let mut row = vec![0f32; n];
                for (i, s) in p.row(c) {
                    row[i as usize] = s;
                }
                row
            })
            .collect();
        let mut cover = vec![0f32; n];
        let mut chosen: Vec<usize> = Vec::new();
        for _ in 0..k.min(p.len()) {
            let mut best: Option<(usize, f64)> = None;
            for c in 0..p.len() {
                if chosen.contains(&c) {
                    continue;
                }
                // Summed as the lazy greedy sums (the order is `gain`'s).
                let gain = p.gain(&p.row(c), &cover);
                if best.is_none_or(|(_, g)| gain > g) {
                    best = Some((c, gain));
                }
            }
            let (c, _) = best.unwrap();
            chosen.push(c);
            for (v, &s) in cover.iter_mut().zip(&dense[c]) {
                *v = v.max(s);
            }
        }
        chosen
    }

    #[test]
    fn lazy_greedy_equals_plain_greedy() {
        let mut rng = Rng::new(7, 0);
        for case in 0..40 {
            let dim = 1 + rng.below(3);
            let (kk, n) = (1 + rng.below(12), 1 + rng.below(40));
            let mut cand: Vec<f32> = (0..kk * dim).map(|_| rng.normal() as f32).collect();
            if case % 4 == 0 && kk > 1 {
                let first = cand[..dim].to_vec();
                cand[(kk - 1) * dim..].copy_from_slice(&first); // an exact tie
            }
            let items: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
            let weights: Vec<f32> = (0..n).map(|_| 1.0 + rng.below(5) as f32).collect();
            let sigma2 = [0.0, 0.1, 1.0, 10.0][case % 4];
            let p = CoverProblem::new(dim, &cand, &items, &weights, Kernel::new(sigma2));
            for k in 1..=kk {
                let lazy = lazy_greedy(&p, k, ROW_BUDGET);
                assert_eq!(lazy, naive_greedy(&p, k), "case {case}, k {k}");
                assert_eq!(lazy, lazy_greedy(&p, k, 3), "case {case}: budget");
            }
        }
    }

    /// The grid finds every item with nonzero similarity: rows equal the
    /// all-pairs computation, for candidates inside and outside the items'
    /// box, 1 to 5 dimensions, wide and narrow kernels.
    #[test]
    fn rows_equal_all_pairs() {
        let mut rng = Rng::new(8, 0);
        for case in 0..60 {
            let dim = 1 + rng.below(5);
            let (kk, n) = (1 + rng.below(10), 1 + rng.below(300));
            let cand: Vec<f32> = (0..kk * dim).map(|_| 3.0 * rng.normal() as f32).collect();
            let items: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
            let weights = vec![1.0; n];
            let sigma2 = [0.0, 1e-4, 0.01, 0.3, 5.0, 1e4][case % 6];
            let kernel = Kernel::new(sigma2);
            let p = CoverProblem::new(dim, &cand, &items, &weights, kernel);
            for c in 0..kk {
                let x = &cand[c * dim..(c + 1) * dim];
                let mut expected: Vec<(usize, f32)> = (0..n)
                    .filter_map(|i| {
                        let y = &items[i * dim..(i + 1) * dim];
                        let d2: f32 = x.iter().zip(y).map(|(a, b)| (b - a) * (b - a)).sum();
                        let s = kernel.sim(d2);
                        (s > 0.0).then_some((i, s))
                    })
                    .collect();
                let row = p.row(c);
                assert!(row.windows(2).all(|w| w[0].0 < w[1].0));
                let mut got: Vec<(usize, f32)> =
                    row.iter().map(|&(i, s)| (p.order[i as usize], s)).collect();
                got.sort_by_key(|e| e.0);
                expected.sort_by_key(|e| e.0);
                assert_eq!(got.len(), expected.len(), "case {case}");
                for (g, e) in got.iter().zip(&expected) {
                    assert_eq!(g.0, e.0, "case {case}");
                    assert!((g.1 - e.1).abs() <= 1e-6, "case {case}");
                }
            }
        }
    }
}
