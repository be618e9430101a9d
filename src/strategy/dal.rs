//! DAL (Yang et al. 2017, "Suggestive annotation"), as the paper adapted
//! it (§3): an ensemble of U-Nets trained on bootstrap resamples of the
//! labelled slices gives each unlabelled slice an uncertainty — how much the
//! members disagree — and its bottleneck features. The batch is filled in
//! chunks: the `candidates` most uncertain slices not yet considered, of
//! which greedy max-cover keeps the `picks` that best represent the whole
//! unlabelled pool (cosine similarity of bottleneck features), counting
//! what earlier chunks' picks already cover. The engine computes
//! uncertainties and features; this file only searches.

use super::maxcover::{Features, greedy_max_cover_onto};
use super::{Request, SamplingStrategy, StrategyError, Suggestion};

/// Disagreement of an ensemble on one slice: the variance of each class
/// probability across the members, summed over classes and averaged over
/// pixels. `members[m]` holds member m's softmax, `classes` planes.
pub fn disagreement(members: &[&[f32]], classes: usize) -> f32 {
    let m = members.len();
    let Some(first) = members.first() else {
        return 0.0;
    };
    let values = first.len();
    if m < 2 || values == 0 || members.iter().any(|p| p.len() != values) {
        return 0.0;
    }
    let mut total = 0.0f64;
    for v in 0..values {
        let mean = members.iter().map(|p| f64::from(p[v])).sum::<f64>() / m as f64;
        total += members
            .iter()
            .map(|p| (f64::from(p[v]) - mean).powi(2))
            .sum::<f64>()
            / m as f64;
    }
    let pixels = values / classes.max(1);
    (total / pixels.max(1) as f64) as f32
}

pub struct Dal<'a> {
    /// Disagreement of every store slice (by store id); NaN where unknown.
    pub uncertainty: &'a [f32],
    /// Bottleneck features of every store slice, `dim` per slice.
    pub features: &'a [f32],
    pub dim: usize,
    /// Uncertain candidates taken per chunk (the paper: 20).
    pub candidates: usize,
    /// Of which max-cover keeps (the paper: 10).
    pub picks: usize,
}

impl SamplingStrategy for Dal<'_> {
    fn name(&self) -> &'static str {
        "dal"
    }

    fn suggest(&self, request: Request<'_>) -> Result<Vec<Suggestion>, StrategyError> {
        let missing = |what| StrategyError::Missing {
            strategy: "dal",
            what,
        };
        let dim = self.dim.max(1);
        let mut pool: Vec<usize> = request.candidates.to_vec();
        pool.sort_unstable();
        pool.dedup();
        if pool
            .iter()
            .any(|&id| id >= self.uncertainty.len() || (id + 1) * dim > self.features.len())
        {
            return Err(missing("an uncertainty and features for every candidate"));
        }
        // Items to cover: the whole unlabelled pool.
        let pool_features: Vec<f32> = pool
            .iter()
            .flat_map(|&id| self.features[id * dim..(id + 1) * dim].iter().copied())
            .collect();
        let items = Features::new(dim, &pool_features)
            .map_err(|_| missing("bottleneck features of one width"))?;
        // Most uncertain first; ties to the lower id so runs repeat.
        let mut ranked: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&id| self.uncertainty[id].is_finite())
            .collect();
        ranked.sort_by(|&a, &b| {
            self.uncertainty[b]
                .total_cmp(&self.uncertainty[a])
                .then(a.cmp(&b))
        });
        let picks = self.picks.max(1);
        let per_chunk = self.candidates.max(picks);
        let mut chosen: Vec<usize> = Vec::with_capacity(request.count);
        // How well the picks so far cover each pool slice: every chunk
        // adds what best covers the rest.
        let mut cover = vec![0f32; pool.len()];
        // Passes down the ranking until the batch is full: a small pool can
        // run out of chunks before it runs out of slices.
        while chosen.len() < request.count && !ranked.is_empty() {
            for chunk in ranked.chunks(per_chunk) {
                if chosen.len() >= request.count {
                    break;
                }
                let want = picks.min(request.count - chosen.len());
                let chunk_features: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&id| self.features[id * dim..(id + 1) * dim].iter().copied())
                    .collect();
                let candidates = Features::new(dim, &chunk_features)
                    .map_err(|_| missing("bottleneck features of one width"))?;
                let picked = greedy_max_cover_onto(candidates, items, want, &mut cover)
                    .map_err(|_| missing("features of one width"))?;
                chosen.extend(picked.chosen.iter().map(|&row| chunk[row]));
            }
            ranked.retain(|id| !chosen.contains(id));
        }
        Ok(chosen.into_iter().map(Suggestion::plain).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn disagreement_is_the_mean_class_variance_across_members() {
        // Two classes, two pixels. Members agree on pixel 0 and split 0.2
        // against 0.8 on pixel 1: variance 0.09 per class there.
        let a = [0.9, 0.2, 0.1, 0.8];
        let b = [0.9, 0.8, 0.1, 0.2];
        let d = disagreement(&[&a, &b], 2);
        assert!((d - 0.09).abs() < 1e-6, "{d}");
        assert_eq!(disagreement(&[&a, &a], 2), 0.0);
        assert_eq!(disagreement(&[&a], 2), 0.0);
    }

    /// Slices 0–5: 0, 1 and 2 are the most uncertain, but 0 and 1 have the
    /// same features; the pool is mostly like 0/1, some like 2.
    fn fixture() -> (Vec<f32>, Vec<f32>) {
        let uncertainty = vec![0.9, 0.85, 0.8, 0.1, 0.2, 0.05];
        let features = vec![
            1.0, 0.0, // 0
            1.0, 0.0, // 1 (same as 0)
            0.0, 1.0, // 2
            0.9, 0.1, // 3
            0.1, 0.9, // 4
            0.95, 0.05, // 5
        ];
        (uncertainty, features)
    }

    fn suggest(dal: &Dal<'_>, candidates: &[usize], count: usize) -> Vec<usize> {
        let mut rng = Rng::new(0, 0);
        dal.suggest(Request {
            candidates,
            count,
            latents: None,
            sources: &[],
            rng: &mut rng,
        })
        .expect("suggestions")
        .into_iter()
        .map(|s| s.slice)
        .collect()
    }

    #[test]
    fn max_cover_keeps_representative_uncertain_slices_not_duplicates() {
        let (u, f) = fixture();
        let dal = Dal {
            uncertainty: &u,
            features: &f,
            dim: 2,
            candidates: 3,
            picks: 2,
        };
        // Chunk 1 = {0, 1, 2}: max-cover keeps 0 (covers the 0/1/3/5 side)
        // and 2, not the duplicate 1.
        assert_eq!(suggest(&dal, &[0, 1, 2, 3, 4, 5], 2), vec![0, 2]);
        // A second chunk {4, 3, 5} fills the rest of a batch of 4.
        let four = suggest(&dal, &[0, 1, 2, 3, 4, 5], 4);
        assert_eq!(four.len(), 4);
        assert_eq!(&four[..2], &[0, 2]);
        assert!(four[2..].iter().all(|id| [3, 4, 5].contains(id)));
    }

    #[test]
    fn returns_the_requested_number_of_distinct_candidates() {
        let (u, f) = fixture();
        let dal = Dal {
            uncertainty: &u,
            features: &f,
            dim: 2,
            candidates: 2,
            picks: 1,
        };
        for count in 1..=6 {
            let picked = suggest(&dal, &[5, 4, 3, 2, 1, 0, 3], count);
            let mut distinct = picked.clone();
            distinct.sort_unstable();
            distinct.dedup();
            // One pick per chunk of two, then further passes.
            assert_eq!(picked.len(), count, "{picked:?}");
            assert_eq!(distinct.len(), picked.len());
        }
        // Only candidates are suggested.
        assert!(suggest(&dal, &[3, 4, 5], 3).iter().all(|id| *id >= 3));
    }
}
