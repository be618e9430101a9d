//! Take the candidates with the highest score — what uncertainty sampling
//! and the oracle share once the engine has scored the pool with the U-Net.

use super::{Request, SamplingStrategy, StrategyError, Suggestion};

pub struct RankedByScore<'a> {
    pub name: &'static str,
    /// Score of every store slice (by store id); higher is asked first.
    /// Non-finite scores are never suggested.
    pub scores: &'a [f32],
}

impl SamplingStrategy for RankedByScore<'_> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn suggest(&self, request: Request<'_>) -> Result<Vec<Suggestion>, StrategyError> {
        let mut ranked: Vec<(f32, usize)> = Vec::with_capacity(request.candidates.len());
        for &id in request.candidates {
            let score = *self.scores.get(id).ok_or(StrategyError::Missing {
                strategy: "score-ranked",
                what: "a score for every candidate slice",
            })?;
            if score.is_finite() {
                ranked.push((score, id));
            }
        }
        // Highest first; ties to the lower store id, so runs repeat.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.dedup_by_key(|r| r.1);
        Ok(ranked
            .into_iter()
            .take(request.count)
            .map(|(_, id)| Suggestion::plain(id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn takes_the_highest_scoring_candidates_only() {
        let scores = [0.9, 0.1, 0.8, f32::NAN, 0.8, 0.95];
        // Slice 5 scores highest but is not a candidate (labelled or test).
        let candidates = [0, 1, 2, 3, 4, 2];
        let mut rng = Rng::new(0, 0);
        let picked: Vec<usize> = RankedByScore {
            name: "entropy",
            scores: &scores,
        }
        .suggest(Request {
            candidates: &candidates,
            count: 3,
            latents: None,
            sources: &[],
            rng: &mut rng,
        })
        .expect("suggest")
        .iter()
        .map(|s| s.slice)
        .collect();
        assert_eq!(picked, vec![0, 2, 4]);
    }

    #[test]
    fn a_candidate_without_a_score_is_an_error() {
        let mut rng = Rng::new(0, 0);
        let result = RankedByScore {
            name: "oracle",
            scores: &[0.5],
        }
        .suggest(Request {
            candidates: &[0, 7],
            count: 1,
            latents: None,
            sources: &[],
            rng: &mut rng,
        });
        assert!(result.is_err());
    }
}
