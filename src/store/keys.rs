//! Naming stored slices durably: a `SliceKey` (case, canonical slice
//! index) survives a store rebuild where a store index does not;
//! `SliceIndex` maps keys to the current store's indices and back, and
//! says which slices belong to held-out test cases.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::SliceStore;

/// A slice, named durably: by case and canonical slice index (store indices
/// change whenever the store is rebuilt).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SliceKey {
    pub case: String,
    pub slice: u32,
}

impl std::fmt::Display for SliceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.case, self.slice)
    }
}

impl std::str::FromStr for SliceKey {
    type Err = String;

    /// `CASE:SLICE`, as printed.
    fn from_str(s: &str) -> Result<Self, String> {
        let (case, slice) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not CASE:SLICE"))?;
        let slice = slice
            .parse()
            .map_err(|_| format!("`{slice}` is not a slice number"))?;
        Ok(SliceKey {
            case: case.to_string(),
            slice,
        })
    }
}

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

    /// Pool slices other than `used` (those labelled or awaiting a mask).
    pub fn candidates<'a>(&self, used: impl IntoIterator<Item = &'a SliceKey>) -> Vec<usize> {
        let used: HashSet<&SliceKey> = used.into_iter().collect();
        self.pool()
            .into_iter()
            .filter(|&i| !used.contains(&self.keys[i]))
            .collect()
    }
}
