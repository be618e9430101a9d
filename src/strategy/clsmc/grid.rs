//! A uniform spatial grid for finding the items within the kernel's
//! cutoff of a point.

/// A uniform grid over the first (up to) three coordinates of the items,
/// cells at least as wide as the kernel's cutoff radius 4σ: everything
/// within the cutoff of a point lies in the 3 × 3 × 3 cells around it.
/// Cells are capped at twice the items (coarser cells only scan more).
pub(super) struct Grid {
    axes: usize,
    lo: [f32; 3],
    inv_width: f32,
    cells: [usize; 3],
    /// Items of cell k (in cell order) are `starts[k]..starts[k + 1]`.
    starts: Vec<usize>,
}

impl Grid {
    /// The grid and the item order it sorts them into.
    pub(super) fn new(dim: usize, items: &[f32], cutoff: f32) -> (Grid, Vec<usize>) {
        let n = items.len() / dim;
        let axes = dim.min(3);
        let (mut lo, mut hi) = ([0f32; 3], [0f32; 3]);
        for a in 0..axes {
            let coords = items.iter().skip(a).step_by(dim);
            lo[a] = coords.clone().fold(f32::INFINITY, |m, &v| m.min(v));
            hi[a] = coords.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        }
        let extent = (0..axes).fold(0f32, |m, a| m.max(hi[a] - lo[a]));
        let mut width = cutoff.sqrt();
        if !(width > 0.0 && width.is_finite()) {
            width = extent;
        }
        let cap = (2 * n).max(1) as f64;
        let mut cells = [1usize; 3];
        if width > 0.0 {
            loop {
                for a in 0..axes {
                    cells[a] = (((hi[a] - lo[a]) / width) as usize).saturating_add(1);
                }
                if cells.iter().map(|&c| c as f64).product::<f64>() <= cap {
                    break;
                }
                width *= 2.0;
            }
        }
        let mut grid = Grid {
            axes,
            lo,
            inv_width: if width > 0.0 { 1.0 / width } else { 0.0 },
            cells,
            starts: Vec::new(),
        };
        let cell_of: Vec<usize> = (0..n)
            .map(|i| {
                let at = grid.at(&items[i * dim..(i + 1) * dim]);
                grid.index(at)
            })
            .collect();
        let total = cells.iter().product::<usize>();
        let mut starts = vec![0usize; total + 1];
        for &k in &cell_of {
            starts[k + 1] += 1;
        }
        for k in 0..total {
            starts[k + 1] += starts[k];
        }
        let mut next = starts.clone();
        let mut order = vec![0; n];
        for (i, &k) in cell_of.iter().enumerate() {
            order[next[k]] = i;
            next[k] += 1;
        }
        grid.starts = starts;
        (grid, order)
    }

    /// Cell coordinates of a point (clamped into the grid).
    fn at(&self, x: &[f32]) -> [usize; 3] {
        let mut at = [0usize; 3];
        for a in 0..self.axes {
            // Saturating: below the grid (or NaN) is 0.
            at[a] = (((x[a] - self.lo[a]) * self.inv_width) as usize).min(self.cells[a] - 1);
        }
        at
    }

    fn index(&self, at: [usize; 3]) -> usize {
        at[0] + self.cells[0] * (at[1] + self.cells[1] * at[2])
    }

    /// Calls `f` with the item ranges of the cells around `x`, ascending.
    pub(super) fn near(&self, x: &[f32], mut f: impl FnMut(std::ops::Range<usize>)) {
        let at = self.at(x);
        let span = |a: usize| (at[a].saturating_sub(1), (at[a] + 1).min(self.cells[a] - 1));
        let ((x0, x1), (y0, y1), (z0, z1)) = (span(0), span(1), span(2));
        for z in z0..=z1 {
            for y in y0..=y1 {
                // Cells along the first axis are adjacent in item order.
                let first = self.index([x0, y, z]);
                let last = self.index([x1, y, z]);
                let range = self.starts[first]..self.starts[last + 1];
                if !range.is_empty() {
                    f(range);
                }
            }
        }
    }
}
