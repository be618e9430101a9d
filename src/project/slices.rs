//! Naming slices across the store and the project: durable `SliceKey`s
//! (case, canonical slice index) to store indices and back, and which store
//! slices may be suggested.

use std::collections::{HashMap, HashSet};

use crate::store::SliceStore;

use super::state::{RoundState, SliceKey};

/// Both directions between keys and the current store's indices.
pub struct SliceIndex {
    keys: Vec<SliceKey>,
    ids: HashMap<SliceKey, usize>,
    /// Store index → whether its case is held out for testing.
    test: Vec<bool>,
}

impl SliceIndex {
    pub fn new(store: &SliceStore, test_cases: &[String]) -> SliceIndex {
        let meta = store.meta();
        let test_set: HashSet<&str> = test_cases.iter().map(String::as_str).collect();
        let keys: Vec<SliceKey> = store
            .entries()
            .iter()
            .map(|e| SliceKey {
                case: meta.volumes[e.volume as usize].case.clone(),
                slice: e.slice,
            })
            .collect();
        let ids = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let test = keys
            .iter()
            .map(|k| test_set.contains(k.case.as_str()))
            .collect();
        SliceIndex { keys, ids, test }
    }

    pub fn key(&self, id: usize) -> &SliceKey {
        &self.keys[id]
    }

    pub fn id(&self, key: &SliceKey) -> Option<usize> {
        self.ids.get(key).copied()
    }

    pub fn is_test(&self, id: usize) -> bool {
        self.test[id]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Slices outside the test set: the pool the budget is a fraction of.
    pub fn pool(&self) -> Vec<usize> {
        (0..self.keys.len()).filter(|&i| !self.test[i]).collect()
    }

    /// Pool slices neither labelled nor awaiting a mask.
    pub fn candidates(&self, state: &RoundState) -> Vec<usize> {
        let used: HashSet<&SliceKey> = state
            .labelled
            .iter()
            .map(|l| &l.key)
            .chain(state.pending.iter().map(|p| &p.key))
            .collect();
        self.pool()
            .into_iter()
            .filter(|&i| !used.contains(&self.keys[i]))
            .collect()
    }
}
