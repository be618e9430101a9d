//! The rows of the suggestions view, from the round state and the pool.

use crate::project::SliceKey;

use super::App;

/// A row of the suggestions list.
#[derive(Clone, Debug, PartialEq)]
pub struct SuggestionRow {
    pub key: SliceKey,
    pub source: Option<SliceKey>,
    pub distance: Option<f32>,
    pub angle: Option<f32>,
    pub angle_ok: bool,
    pub labelled: bool,
    /// Store id of the slice, when the pool is known.
    pub id: Option<usize>,
    pub z: Option<Vec<f32>>,
    pub z_prime: Option<Vec<f32>>,
    pub z_chosen: Option<Vec<f32>>,
}

impl App {
    /// The slices of the suggestions view: the pending batch, or when none
    /// is pending, the latest round's labelled slices.
    pub fn suggestion_rows(&self) -> Vec<SuggestionRow> {
        let Some(state) = self.state() else {
            return Vec::new();
        };
        let id = |k: &SliceKey| {
            self.snapshot
                .pool
                .as_ref()
                .and_then(|p| p.ids.get(k).copied())
        };
        if !state.pending.is_empty() {
            return state
                .pending
                .iter()
                .map(|p| SuggestionRow {
                    key: p.key.clone(),
                    source: p.source.clone(),
                    distance: p.detail.distance,
                    angle: p.detail.angle_deg,
                    angle_ok: p.detail.angle_ok,
                    labelled: false,
                    id: id(&p.key),
                    z: p.detail.z.clone(),
                    z_prime: p.detail.z_prime.clone(),
                    z_chosen: p.detail.z_chosen.clone(),
                })
                .collect();
        }
        let last = state.labelled.iter().map(|l| l.round).max();
        state
            .labelled
            .iter()
            .filter(|l| Some(l.round) == last)
            .map(|l| SuggestionRow {
                key: l.key.clone(),
                source: None,
                distance: None,
                angle: None,
                angle_ok: true,
                labelled: true,
                id: id(&l.key),
                z: None,
                z_prime: None,
                z_chosen: None,
            })
            .collect()
    }
}
