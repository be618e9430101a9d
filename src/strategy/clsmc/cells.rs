//! The deterministic cell split of the pool: variance bisection into
//! coarse cells (what Ward agglomerates) and fine cells (the items of
//! step 2).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The pool cut into compact cells, at two resolutions: the first
/// `coarse` cells of the bisection (what Ward agglomerates) and their
/// refinement into `fine` cells (the items of step 2).
#[derive(Debug)]
pub(super) struct Cells {
    /// Fine cell of each point.
    pub(super) cell_of: Vec<usize>,
    /// Points per fine cell.
    pub(super) sizes: Vec<usize>,
    /// Fine cell means, row-major.
    pub(super) centroids: Vec<f64>,
    /// Coarse cell of each fine cell.
    pub(super) coarse_of: Vec<usize>,
    pub(super) coarse: usize,
    /// `sse[k − 1]`: Σ of the cells' SSE when there were k cells.
    sse: Vec<f64>,
}

impl Cells {
    /// Total SSE of the bisection into k cells (clamped to those made).
    pub(super) fn sse_at(&self, k: usize) -> f64 {
        self.sse[k.clamp(1, self.sse.len()) - 1]
    }

    /// Sizes and centroids of the coarse cells.
    pub(super) fn coarse_cells(&self, dim: usize) -> (Vec<f64>, Vec<f64>) {
        let mut sizes = vec![0f64; self.coarse];
        let mut centroids = vec![0f64; self.coarse * dim];
        for (k, &g) in self.coarse_of.iter().enumerate() {
            let w = self.sizes[k] as f64;
            sizes[g] += w;
            for j in 0..dim {
                centroids[g * dim + j] += w * self.centroids[k * dim + j];
            }
        }
        for (g, &w) in sizes.iter().enumerate() {
            centroids[g * dim..(g + 1) * dim]
                .iter_mut()
                .for_each(|c| *c /= w);
        }
        (sizes, centroids)
    }
}

/// A cell during bisection: `order[start..end]` are its points.
struct Cell {
    start: usize,
    end: usize,
    mean: Vec<f64>,
    sse: f64,
    /// Coordinate of largest spread.
    widest: usize,
}

impl Cell {
    fn new(points: &[f32], dim: usize, order: &[u32], start: usize, end: usize) -> Cell {
        let rows = &order[start..end];
        let mut mean = vec![0f64; dim];
        for &i in rows {
            let x = &points[i as usize * dim..(i as usize + 1) * dim];
            for (m, &v) in mean.iter_mut().zip(x) {
                *m += f64::from(v);
            }
        }
        let len = rows.len().max(1) as f64;
        mean.iter_mut().for_each(|m| *m /= len);
        let mut spread = vec![0f64; dim];
        for &i in rows {
            let x = &points[i as usize * dim..(i as usize + 1) * dim];
            for ((s, &m), &v) in spread.iter_mut().zip(&mean).zip(x) {
                let d = f64::from(v) - m;
                *s += d * d;
            }
        }
        let widest = (0..dim).fold(0, |w, j| if spread[j] > spread[w] { j } else { w });
        Cell {
            start,
            end,
            mean,
            sse: spread.iter().sum(),
            widest,
        }
    }
}

/// A heap entry: larger key first, then the lower id.
#[derive(Clone, Copy, Debug)]
struct Keyed {
    key: f64,
    id: usize,
}

impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Keyed {}

/// Moves the rows satisfying `keep` to the front; returns how many.
fn partition(rows: &mut [u32], keep: impl Fn(u32) -> bool) -> usize {
    let mut front = 0;
    for i in 0..rows.len() {
        if keep(rows[i]) {
            rows.swap(i, front);
            front += 1;
        }
    }
    front
}

/// Variance bisection: split the cell of largest SSE at the mean of its
/// widest coordinate until there are `fine` cells, or no cell with spread
/// is left (identical latents share a cell); the partition when there were
/// `coarse` (≤ `fine`) cells is kept too. With `coarse` ≥ the number of
/// distinct points, every coarse cell is one distinct point.
pub(super) fn micro_cells(points: &[f32], dim: usize, coarse: usize, fine: usize) -> Cells {
    let n = points.len() / dim;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut cells = vec![Cell::new(points, dim, &order, 0, n)];
    let mut coarse_of = vec![0];
    let mut sse = vec![cells[0].sse];
    let mut heap = BinaryHeap::new();
    if cells[0].sse > 0.0 {
        heap.push(Keyed {
            key: cells[0].sse,
            id: 0,
        });
    }
    while cells.len() < fine {
        let Some(top) = heap.pop() else { break };
        let cell = &cells[top.id];
        let (start, end, axis) = (cell.start, cell.end, cell.widest);
        let t = cell.mean[axis];
        let coord = |i: u32| f64::from(points[i as usize * dim + axis]);
        let rows = &mut order[start..end];
        let mut mid = partition(rows, |i| coord(i) < t);
        if mid == 0 {
            // The mean rounded onto the minimum.
            mid = partition(rows, |i| coord(i) <= t);
        }
        if mid == 0 || mid == rows.len() {
            continue; // spread only in rounding: leave it whole
        }
        let left = Cell::new(points, dim, &order, start, start + mid);
        let right = Cell::new(points, dim, &order, start + mid, end);
        let right_id = cells.len();
        for (id, cell) in [(top.id, &left), (right_id, &right)] {
            if cell.sse > 0.0 {
                heap.push(Keyed { key: cell.sse, id });
            }
        }
        let total = sse[sse.len() - 1] - cells[top.id].sse + left.sse + right.sse;
        sse.push(total.max(0.0));
        coarse_of.push(if right_id < coarse {
            right_id
        } else {
            coarse_of[top.id]
        });
        cells[top.id] = left;
        cells.push(right);
    }
    // The running total drifts by rounding; the final one is summed afresh
    // (exactly 0 when every cell is one distinct point).
    let last = sse.len() - 1;
    sse[last] = cells.iter().map(|c| c.sse).sum();
    let mut cell_of = vec![0; n];
    for (k, cell) in cells.iter().enumerate() {
        for &i in &order[cell.start..cell.end] {
            cell_of[i as usize] = k;
        }
    }
    Cells {
        cell_of,
        sizes: cells.iter().map(|c| c.end - c.start).collect(),
        centroids: cells.iter().flat_map(|c| c.mean.iter().copied()).collect(),
        coarse: coarse.clamp(1, cells.len()),
        coarse_of,
        sse,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::blobs;
    use super::*;
    use crate::rng::Rng;

    /// The fine cells refine the coarse ones, which are the bisection's
    /// first cells; SSE falls as cells split, and sizes add up.
    #[test]
    fn fine_cells_refine_the_coarse_ones() {
        let mut rng = Rng::new(9, 0);
        let (latents, _) = blobs(&mut rng, &[300, 500, 200]);
        let points = &latents.values;
        let both = micro_cells(points, 3, 40, 300);
        let coarse = micro_cells(points, 3, 40, 40);
        assert_eq!(
            (both.sizes.len(), both.coarse, coarse.sizes.len()),
            (300, 40, 40)
        );
        let via_fine: Vec<usize> = both.cell_of.iter().map(|&k| both.coarse_of[k]).collect();
        assert_eq!(via_fine, coarse.cell_of);
        assert!((both.sse_at(40) - coarse.sse_at(40)).abs() < 1e-9 * coarse.sse_at(40));
        assert!(both.sse.windows(2).all(|w| w[1] <= w[0] + 1e-9));
        assert_eq!(both.sizes.iter().sum::<usize>(), 1000);
        let (sizes, centroids) = both.coarse_cells(3);
        let direct: Vec<f64> = coarse.sizes.iter().map(|&s| s as f64).collect();
        assert_eq!(sizes, direct);
        for (a, b) in centroids.iter().zip(&coarse.centroids) {
            assert!((a - b).abs() < 1e-9);
        }
        // Recomputed from the points, the recorded SSE is right.
        let mut sse = 0.0;
        for (i, &k) in both.cell_of.iter().enumerate() {
            for j in 0..3 {
                sse += (f64::from(points[i * 3 + j]) - both.centroids[k * 3 + j]).powi(2);
            }
        }
        assert!((sse - both.sse_at(300)).abs() < 1e-6 * sse);
    }
}
