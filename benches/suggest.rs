//! Suggestion latency of the latent-space search (no gradients): a
//! BraTS-sized pool of 50 000 slices, 250 labelled sources, z = 3, 500
//! suggestions (BraTS's 1% per round), with and without the angular
//! condition, the ClsMC baseline (Ward clustering + max-cover, no
//! gradients), the score ranking shared by uncertainty sampling and the
//! oracle (scores synthetic here), DAL's chunked max-cover over 4 × 512
//! bottleneck features (uncertainties and features synthetic: the ensemble
//! inference that makes them is U-Net inference, timed by the models
//! bench), plus random sampling for scale. Goal: well under 1 s for the
//! latent-space strategies.
//!
//! `cargo bench --bench suggest`

#[path = "common.rs"]
mod common;

use nextslice::rng::Rng;
use nextslice::strategy::{
    ClusterMaxCover, Dal, GradientGuided, GradientSource, Latents, RandomSampling, RankedByScore,
    Request, SamplingStrategy,
};

fn main() {
    let (pool, labelled, dim, count) = (50_000usize, 250usize, 3usize, 500usize);
    let mut rng = Rng::new(42, 0);
    // Clustered latents, like a VAE's: a few blobs of different spread.
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..dim).map(|_| (rng.normal() * 2.0) as f32).collect())
        .collect();
    let mut values = Vec::with_capacity(pool * dim);
    for i in 0..pool {
        let c = &centres[i % centres.len()];
        values.extend(c.iter().map(|m| m + (rng.normal() * 0.4) as f32));
    }
    let latents = Latents { dim, values };
    let labelled_ids: Vec<usize> = (0..labelled).map(|i| i * (pool / labelled)).collect();
    let sources: Vec<GradientSource> = labelled_ids
        .iter()
        .map(|&id| {
            let step = (0..dim).map(|_| (rng.normal() * 0.05) as f32).collect();
            GradientSource::new(id, latents.of(id).to_vec(), step)
        })
        .collect();
    let candidates: Vec<usize> = (0..pool).filter(|i| !labelled_ids.contains(i)).collect();

    println!(
        "suggestion latency: pool {pool}, {labelled} labelled sources, z = {dim}, {count} suggestions (median of 5)"
    );
    // Uncertainty and oracle scores come from U-Net inference over the pool
    // (see `cargo bench --bench models` for its rate); this times the ranking.
    let scores: Vec<f32> = (0..pool).map(|_| rng.unit() as f32).collect();
    // DAL's features: 4 members' 512-wide bottlenecks side by side (the
    // paper's U-Net), the same blobs in 2048 non-negative dimensions.
    let width = 4 * 512;
    let feature_centres: Vec<Vec<f32>> = (0..centres.len())
        .map(|_| (0..width).map(|_| rng.normal().abs() as f32).collect())
        .collect();
    let mut features = Vec::with_capacity(pool * width);
    for i in 0..pool {
        let c = &feature_centres[i % feature_centres.len()];
        features.extend(c.iter().map(|m| (m + (rng.normal() * 0.5) as f32).max(0.0)));
    }
    let strategies: Vec<Box<dyn SamplingStrategy + '_>> = vec![
        Box::new(GradientGuided {
            max_angle_deg: Some(60.0),
        }),
        Box::new(GradientGuided {
            max_angle_deg: None,
        }),
        Box::new(ClusterMaxCover::default()),
        Box::new(RankedByScore {
            name: "score-ranked",
            scores: &scores,
        }),
        Box::new(Dal {
            uncertainty: &scores,
            features: &features,
            dim: width,
            candidates: 20,
            picks: 10,
        }),
        Box::new(RandomSampling),
    ];
    for strategy in strategies {
        let mut picked = 0;
        let seconds = common::median_seconds(5, || {
            let mut rng = Rng::new(1, 1);
            let request = Request {
                candidates: &candidates,
                count,
                latents: Some(&latents),
                sources: &sources,
                rng: &mut rng,
            };
            picked = strategy.suggest(request).map(|s| s.len()).unwrap_or(0);
        });
        println!(
            "{:<20} {:>9.1} ms  ({picked} suggested)",
            strategy.name(),
            seconds * 1e3
        );
    }
}
