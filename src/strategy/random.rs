//! Uniformly random suggestions: the paper's baseline, and the seed round.

use super::{Request, SamplingStrategy, StrategyError, Suggestion};

pub struct RandomSampling;

impl SamplingStrategy for RandomSampling {
    fn name(&self) -> &'static str {
        "random"
    }

    fn suggest(&self, request: Request<'_>) -> Result<Vec<Suggestion>, StrategyError> {
        let mut pool = request.candidates.to_vec();
        let take = request.count.min(pool.len());
        // Partial Fisher–Yates: the first `take` entries become the sample.
        for i in 0..take {
            let j = i + request.rng.below(pool.len() - i);
            pool.swap(i, j);
        }
        Ok(pool[..take].iter().map(|&s| Suggestion::plain(s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn draws_distinct_candidates_only() {
        let candidates: Vec<usize> = (100..150).collect();
        let mut rng = Rng::new(1, 0);
        let request = super::super::Request {
            candidates: &candidates,
            count: 20,
            latents: None,
            sources: &[],
            rng: &mut rng,
        };
        let picked: Vec<usize> = RandomSampling
            .suggest(request)
            .unwrap()
            .iter()
            .map(|s| s.slice)
            .collect();
        assert_eq!(picked.len(), 20);
        let mut unique = picked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 20);
        assert!(picked.iter().all(|p| candidates.contains(p)));
    }
}
