//! Test fixtures shared by the ClsMC modules' tests.

use crate::rng::Rng;
use crate::strategy::Latents;

/// Well-separated isotropic blobs (spread 0.3, centres ≥ 6 apart) in
/// 3-d, members in random order; returns the latents and the blob of
/// each row.
pub(super) fn blobs(rng: &mut Rng, sizes: &[usize]) -> (Latents, Vec<usize>) {
    let dim = 3;
    let mut centres: Vec<[f64; 3]> = Vec::new();
    while centres.len() < sizes.len() {
        let c = [0; 3].map(|_| rng.range(-15.0, 15.0));
        let far = centres.iter().all(|o| {
            let d2: f64 = o.iter().zip(&c).map(|(a, b)| (a - b) * (a - b)).sum();
            d2 >= 36.0
        });
        if far {
            centres.push(c);
        }
    }
    let mut blob_of: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(b, &n)| std::iter::repeat_n(b, n))
        .collect();
    rng.shuffle(&mut blob_of);
    let mut values = Vec::with_capacity(blob_of.len() * dim);
    for &b in &blob_of {
        values.extend(centres[b].iter().map(|m| (m + rng.normal() * 0.3) as f32));
    }
    (Latents { dim, values }, blob_of)
}

/// Labels renumbered by first appearance.
pub(super) fn canonical(labels: &[usize]) -> Vec<usize> {
    let mut map = std::collections::HashMap::new();
    labels
        .iter()
        .map(|&l| {
            let next = map.len();
            *map.entry(l).or_insert(next)
        })
        .collect()
}
