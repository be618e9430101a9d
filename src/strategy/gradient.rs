//! Gradient-guided sampling (§2.3, Eq. 3–6).
//!
//! For each labelled slice x_i the engine supplies z_i = g(x_i) and
//! z_i' = g(x_i + α·∂L_Dice/∂x_i). Here, for each source, candidates are
//! visited by increasing distance ‖z_j − z_i'‖ (Eq. 5); the first one whose
//! direction from z_i' lies within `max_angle` of the gradient direction
//! z_i' − z_i (Eq. 6) is suggested — else the next nearest, as the paper
//! says. No slice is suggested twice.
//!
//! How many per source (a documented rule; the paper suggests one per
//! labelled slice): sources are ranked by the length of their latent step
//! ‖z_i' − z_i‖, largest first, and take turns — one suggestion each per
//! pass — until `count` are chosen. Fewer wanted than sources: the sources
//! with the strongest gradients win. More wanted: later passes give each
//! source its next admissible neighbour. A source with no admissible
//! candidate left takes its nearest one and the suggestion is flagged
//! `angle_ok = false`. A source whose step is zero has no direction; its
//! nearest candidate is taken.

use super::{Request, SamplingStrategy, StrategyError, Suggestion};

pub struct GradientGuided {
    /// Eq. 6's bound in degrees; `None` drops the condition (the ablation).
    pub max_angle_deg: Option<f64>,
}

impl SamplingStrategy for GradientGuided {
    fn name(&self) -> &'static str {
        if self.max_angle_deg.is_some() {
            "gradient"
        } else {
            "gradient-no-angle"
        }
    }

    fn suggest(&self, request: Request<'_>) -> Result<Vec<Suggestion>, StrategyError> {
        let latents = request.latents.ok_or(StrategyError::Missing {
            strategy: "gradient",
            what: "the VAE latents of the pool (train the VAE first)",
        })?;
        if request.sources.is_empty() {
            return Err(StrategyError::Missing {
                strategy: "gradient",
                what: "labelled slices with input gradients (train the U-Net first)",
            });
        }
        let dim = latents.dim;
        // Candidate latents, contiguous for a tight distance loop.
        let mut points = Vec::with_capacity(request.candidates.len() * dim);
        for &c in request.candidates {
            points.extend_from_slice(latents.of(c));
        }
        let mut taken = vec![false; request.candidates.len()];
        let mut order: Vec<usize> = (0..request.sources.len()).collect();
        let step_len = |i: usize| {
            request.sources[i]
                .step
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
        };
        order.sort_by(|&a, &b| step_len(b).total_cmp(&step_len(a)).then(a.cmp(&b)));
        let cos_limit = self.max_angle_deg.map(|d| d.to_radians().cos() as f32);

        let want = request.count.min(request.candidates.len());
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            let before = out.len();
            for &si in &order {
                if out.len() == want {
                    break;
                }
                let source = &request.sources[si];
                if let Some(pick) = best_candidate(&points, dim, &taken, source, cos_limit) {
                    taken[pick.index] = true;
                    out.push(Suggestion {
                        slice: request.candidates[pick.index],
                        source: Some(source.slice),
                        z: Some(source.z.clone()),
                        z_prime: Some(source.z_prime.clone()),
                        step: Some(source.step.clone()),
                        z_chosen: Some(points[pick.index * dim..(pick.index + 1) * dim].to_vec()),
                        distance: Some(pick.distance),
                        angle_deg: pick.angle_deg,
                        angle_ok: pick.angle_ok,
                    });
                }
            }
            if out.len() == before {
                break; // every candidate taken
            }
        }
        Ok(out)
    }
}

struct Pick {
    index: usize,
    distance: f32,
    angle_deg: Option<f32>,
    angle_ok: bool,
}

/// The nearest untaken candidate to z' that satisfies the angular condition,
/// or the nearest untaken one if none does.
fn best_candidate(
    points: &[f32],
    dim: usize,
    taken: &[bool],
    source: &super::GradientSource,
    cos_limit: Option<f32>,
) -> Option<Pick> {
    let zp = &source.z_prime;
    let step = &source.step;
    let step_norm = step.iter().map(|v| v * v).sum::<f32>().sqrt();
    let directional = step_norm > 1e-12;
    let mut best_ok: Option<(f32, usize, f32)> = None; // (squared distance, index, cos)
    let mut best_any: Option<(f32, usize, f32)> = None;
    for (i, p) in points.chunks_exact(dim).enumerate() {
        if taken[i] {
            continue;
        }
        let (mut d2, mut dot) = (0f32, 0f32);
        for k in 0..dim {
            let v = p[k] - zp[k];
            d2 += v * v;
            dot += v * step[k];
        }
        let cos = if directional && d2 > 0.0 {
            dot / (d2.sqrt() * step_norm)
        } else {
            1.0
        };
        if best_any.is_none_or(|(b, _, _)| d2 < b) {
            best_any = Some((d2, i, cos));
        }
        let admissible = match cos_limit {
            Some(limit) => !directional || cos >= limit,
            None => true,
        };
        if admissible && best_ok.is_none_or(|(b, _, _)| d2 < b) {
            best_ok = Some((d2, i, cos));
        }
    }
    let angle = |cos: f32| directional.then(|| cos.clamp(-1.0, 1.0).acos().to_degrees());
    match (best_ok, best_any) {
        (Some((d2, i, cos)), _) => Some(Pick {
            index: i,
            distance: d2.sqrt(),
            angle_deg: angle(cos),
            angle_ok: true,
        }),
        (None, Some((d2, i, cos))) => Some(Pick {
            index: i,
            distance: d2.sqrt(),
            angle_deg: angle(cos),
            angle_ok: false,
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GradientSource, Latents, Request};
    use super::*;
    use crate::rng::Rng;

    fn latents(points: &[[f32; 2]]) -> Latents {
        Latents {
            dim: 2,
            values: points.iter().flatten().copied().collect(),
        }
    }

    fn run(
        strategy: &GradientGuided,
        points: &[[f32; 2]],
        candidates: &[usize],
        sources: &[GradientSource],
        count: usize,
    ) -> Vec<Suggestion> {
        let l = latents(points);
        let mut rng = Rng::new(0, 0);
        strategy
            .suggest(Request {
                candidates,
                count,
                latents: Some(&l),
                sources,
                rng: &mut rng,
            })
            .unwrap()
    }

    fn source(slice: usize, z: [f32; 2], zp: [f32; 2]) -> GradientSource {
        GradientSource::new(slice, z.to_vec(), vec![zp[0] - z[0], zp[1] - z[1]])
    }

    #[test]
    fn the_angular_condition_skips_the_nearest_point_behind() {
        // z = (0,0), z' = (1,0): the gradient points along +x.
        // Point 1 at (0.8, 0) is nearest to z' but behind it (180°);
        // point 2 at (1.5, 0.3) is ahead (~31°); point 3 at (1, 1) is at 90°.
        let points = [[0.0, 0.0], [0.8, 0.0], [1.5, 0.3], [1.0, 1.0]];
        let sources = [source(0, [0.0, 0.0], [1.0, 0.0])];
        let with = run(
            &GradientGuided {
                max_angle_deg: Some(60.0),
            },
            &points,
            &[1, 2, 3],
            &sources,
            1,
        );
        assert_eq!(with[0].slice, 2);
        assert!(with[0].angle_ok);
        assert!((with[0].angle_deg.unwrap() - 30.96).abs() < 0.1);
        assert!((with[0].distance.unwrap() - (0.25f32 + 0.09).sqrt()).abs() < 1e-6);
        let without = run(
            &GradientGuided {
                max_angle_deg: None,
            },
            &points,
            &[1, 2, 3],
            &sources,
            1,
        );
        assert_eq!(without[0].slice, 1);
    }

    #[test]
    fn strongest_gradients_go_first_and_nothing_is_suggested_twice() {
        let points: Vec<[f32; 2]> = (0..10).map(|i| [i as f32, 0.0]).collect();
        let sources = [
            source(0, [0.0, 0.0], [0.5, 0.0]),
            source(1, [5.0, 0.0], [7.2, 0.0]),
        ];
        let candidates: Vec<usize> = (1..10).collect();
        let one = run(
            &GradientGuided {
                max_angle_deg: Some(60.0),
            },
            &points,
            &candidates,
            &sources,
            1,
        );
        assert_eq!(one[0].source, Some(1), "the longer step wins");
        assert_eq!(one[0].slice, 8);
        let all = run(
            &GradientGuided {
                max_angle_deg: Some(60.0),
            },
            &points,
            &candidates,
            &sources,
            9,
        );
        let mut slices: Vec<usize> = all.iter().map(|s| s.slice).collect();
        slices.sort();
        assert_eq!(slices, candidates, "every candidate exactly once");
        assert!(
            all.iter().any(|s| !s.angle_ok),
            "behind-only leftovers are flagged"
        );
    }

    #[test]
    fn steps_far_below_f32_spacing_keep_their_direction() {
        // z' − z = 1e-9 along +y: z' rounds to z, but the direction survives.
        let points = [[1000.0, 999.0], [1000.0, 1001.0]];
        let sources = [GradientSource::new(
            9,
            vec![1000.0, 1000.0],
            vec![0.0, 1e-9],
        )];
        let picked = run(
            &GradientGuided {
                max_angle_deg: Some(60.0),
            },
            &points,
            &[0, 1],
            &sources,
            1,
        );
        assert_eq!(picked[0].slice, 1);
    }

    #[test]
    fn missing_inputs_are_explained() {
        let mut rng = Rng::new(0, 0);
        let err = GradientGuided {
            max_angle_deg: Some(60.0),
        }
        .suggest(Request {
            candidates: &[1],
            count: 1,
            latents: None,
            sources: &[],
            rng: &mut rng,
        })
        .unwrap_err();
        assert!(err.to_string().contains("VAE"));
    }
}
