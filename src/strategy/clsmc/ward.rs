//! Ward agglomeration of weighted centroids by the nearest-neighbour
//! chain, and the k-cluster cut of its dendrogram.

/// One Ward merge: the clusters holding leaves `a` and `b` join, raising
/// the SSE by `cost`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Merge {
    a: usize,
    b: usize,
    pub(super) cost: f64,
}

/// Ward's SSE increase for joining clusters of sizes `na`, `nb`.
fn ward_cost(na: f64, ca: &[f64], nb: f64, cb: &[f64]) -> f64 {
    let d2: f64 = ca.iter().zip(cb).map(|(x, y)| (x - y) * (x - y)).sum();
    d2 * (na * nb / (na + nb))
}

/// The full Ward dendrogram over weighted centroids (leaf `k` has `sizes[k]`
/// points at `centroids[k]`) by the nearest-neighbour chain: O(M²·d) time,
/// O(M·d) memory. Merges come sorted by cost (ties in the order made, so a
/// merge always follows those that built its two clusters), i.e. in the
/// order the greedy algorithm makes them.
pub(super) fn ward(centroids: &[f64], sizes: &[f64], dim: usize) -> Vec<Merge> {
    let m = sizes.len();
    let mut centre = centroids.to_vec();
    let mut size = sizes.to_vec();
    let mut active: Vec<usize> = (0..m).collect();
    let mut chain: Vec<usize> = Vec::new();
    let mut merges = Vec::with_capacity(m.saturating_sub(1));
    let row = |centre: &[f64], k: usize| centre[k * dim..(k + 1) * dim].to_vec();
    while active.len() > 1 {
        if chain.is_empty() {
            chain.push(active[0]);
        }
        let a = chain[chain.len() - 1];
        let prev = (chain.len() >= 2).then(|| chain[chain.len() - 2]);
        let ca = row(&centre, a);
        let cost = |b: usize| ward_cost(size[a], &ca, size[b], &centre[b * dim..(b + 1) * dim]);
        // Nearest to `a`; ties keep the chain's previous element (which
        // guarantees termination), then the lower index.
        let mut best = prev;
        let mut best_cost = prev.map_or(f64::INFINITY, cost);
        for &b in &active {
            if b == a {
                continue;
            }
            let d = cost(b);
            let better = match best {
                None => true,
                Some(cur) => d < best_cost || (d == best_cost && Some(cur) != prev && b < cur),
            };
            if better {
                best = Some(b);
                best_cost = d;
            }
        }
        let b = best.expect("two or more active clusters");
        if Some(b) == prev {
            chain.truncate(chain.len() - 2);
            let (keep, gone) = (a.min(b), a.max(b));
            let total = size[a] + size[b];
            for j in 0..dim {
                centre[keep * dim + j] =
                    (size[a] * centre[a * dim + j] + size[b] * centre[b * dim + j]) / total;
            }
            size[keep] = total;
            active.retain(|&k| k != gone);
            merges.push(Merge {
                a,
                b,
                cost: best_cost,
            });
        } else {
            chain.push(b);
        }
    }
    // Stable: equal costs stay in the order made.
    merges.sort_by(|x, y| x.cost.total_cmp(&y.cost));
    merges
}

/// Cluster label (0.., numbered by lowest leaf) of each of `m` leaves after
/// the cheapest m − k merges: the k-cluster cut.
pub(super) fn cut(m: usize, merges: &[Merge], k: usize) -> Vec<usize> {
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..m).collect();
    for g in merges.iter().take(m.saturating_sub(k)) {
        let (ra, rb) = (root(&mut parent, g.a), root(&mut parent, g.b));
        parent[ra.max(rb)] = ra.min(rb);
    }
    let mut label = vec![usize::MAX; m];
    let mut next = 0;
    (0..m)
        .map(|leaf| {
            let r = root(&mut parent, leaf);
            if label[r] == usize::MAX {
                label[r] = next;
                next += 1;
            }
            label[r]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::cells::micro_cells;
    use super::super::test_support::canonical;
    use super::*;
    use crate::rng::Rng;

    /// Brute-force Ward from given initial groups: at each step, join the
    /// pair whose union raises the SSE (computed from the raw points) least.
    /// Returns the partition (label per point) at each number of groups,
    /// from the initial one down to 1, and the merge costs.
    fn brute_ward(
        points: &[f32],
        dim: usize,
        groups: Vec<Vec<usize>>,
    ) -> (Vec<Vec<usize>>, Vec<f64>) {
        let sse = |set: &[usize]| -> f64 {
            let mut mean = vec![0f64; dim];
            for &i in set {
                for j in 0..dim {
                    mean[j] += f64::from(points[i * dim + j]) / set.len() as f64;
                }
            }
            set.iter()
                .map(|&i| {
                    (0..dim)
                        .map(|j| (f64::from(points[i * dim + j]) - mean[j]).powi(2))
                        .sum::<f64>()
                })
                .sum()
        };
        let n = points.len() / dim;
        let labels_of = |groups: &[Vec<usize>]| {
            let mut l = vec![0; n];
            for (g, set) in groups.iter().enumerate() {
                for &i in set {
                    l[i] = g;
                }
            }
            canonical(&l)
        };
        let mut groups = groups;
        let mut partitions = vec![labels_of(&groups)];
        let mut costs = Vec::new();
        while groups.len() > 1 {
            let mut best = (f64::INFINITY, 0, 0);
            for a in 0..groups.len() {
                for b in a + 1..groups.len() {
                    let union: Vec<usize> = groups[a].iter().chain(&groups[b]).copied().collect();
                    let cost = sse(&union) - sse(&groups[a]) - sse(&groups[b]);
                    if cost < best.0 {
                        best = (cost, a, b);
                    }
                }
            }
            let (cost, a, b) = best;
            let gone = groups.remove(b);
            groups[a].extend(gone);
            costs.push(cost);
            partitions.push(labels_of(&groups));
        }
        (partitions, costs)
    }

    #[test]
    fn ward_matches_brute_force() {
        let mut rng = Rng::new(5, 0);
        for case in 0..30 {
            let dim = 1 + rng.below(3);
            let n = 2 + rng.below(24);
            let points: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
            // Singletons, through the whole clustering path: the cells of
            // distinct points are the points, and the result exact Ward.
            let cells = micro_cells(&points, dim, 1024, 1024);
            assert_eq!(cells.sizes, vec![1; n], "case {case}");
            assert_eq!((cells.coarse, cells.sse_at(n)), (n, 0.0));
            let (sizes, centroids) = cells.coarse_cells(dim);
            let merges = ward(&centroids, &sizes, dim);
            let singletons = (0..n).map(|i| vec![i]).collect();
            let (partitions, costs) = brute_ward(&points, dim, singletons);
            for (level, expected) in partitions.iter().enumerate() {
                let k = n - level;
                let by_cell = cut(n, &merges, k);
                let got: Vec<usize> = (0..n)
                    .map(|i| by_cell[cells.coarse_of[cells.cell_of[i]]])
                    .collect();
                assert_eq!(&canonical(&got), expected, "case {case}, {k} clusters");
            }
            for (m, c) in merges.iter().zip(&costs) {
                assert!((m.cost - c).abs() <= 1e-9 * c.max(1.0), "case {case}");
            }
            // Weighted: from random groups, the centroid formula must agree
            // with the SSE of the raw points.
            let n_groups = 1 + rng.below(n);
            let mut group_of: Vec<usize> = (0..n).map(|i| i % n_groups).collect();
            rng.shuffle(&mut group_of);
            let groups: Vec<Vec<usize>> = (0..n_groups)
                .map(|g| (0..n).filter(|&i| group_of[i] == g).collect())
                .collect();
            let mut centroids = Vec::new();
            for set in &groups {
                for j in 0..dim {
                    let s: f64 = set.iter().map(|&i| f64::from(points[i * dim + j])).sum();
                    centroids.push(s / set.len() as f64);
                }
            }
            let weights: Vec<f64> = groups.iter().map(|s| s.len() as f64).collect();
            let merges = ward(&centroids, &weights, dim);
            let (partitions, costs) = brute_ward(&points, dim, groups);
            for (level, expected) in partitions.iter().enumerate() {
                let by_group = cut(n_groups, &merges, n_groups - level);
                let got: Vec<usize> = (0..n).map(|i| by_group[group_of[i]]).collect();
                assert_eq!(&canonical(&got), expected, "case {case} weighted");
            }
            for (m, c) in merges.iter().zip(&costs) {
                assert!((m.cost - c).abs() <= 1e-9 * c.max(1.0), "case {case}");
            }
        }
    }
}
