//! Who uses which store. A store root can be shared by many projects (the
//! user's data dir by default), so a store is removed only when no project
//! uses it: each project registers itself in `<root>/<key>/users/` whenever
//! it opens a store, and leaves the other stores of that root as it does.
//! `gc` removes the stores whose registered projects are all gone.

use std::fs;
use std::path::{Path, PathBuf};

use super::format::{META_FILE, StoreMeta};
use super::{StoreError, lock_root};
use crate::fsutil::{bytes_under, write_atomic};

const USERS_DIR: &str = "users";

/// A project's name in a store's `users/`: a hash of its canonical path.
fn user_id(project: &Path) -> (String, PathBuf) {
    let path = fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf());
    let id = blake3::hash(path.to_string_lossy().as_bytes()).to_hex()[..16].to_string();
    (id, path)
}

/// Complete stores under `root` (builds in progress start with a dot).
fn stores(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.join(META_FILE).exists())
        .collect();
    out.sort();
    out
}

fn meta(store: &Path) -> Option<StoreMeta> {
    serde_json::from_slice(&fs::read(store.join(META_FILE)).ok()?).ok()
}

/// The projects registered as users of `store` (dead ones included).
pub fn users(store: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(store.join(USERS_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|text| PathBuf::from(text.trim_end()))
        .collect();
    out.sort();
    out
}

/// A registered project still exists (its directory holds a project).
fn alive(project: &Path) -> bool {
    project.join(crate::layout::CONFIG_FILE).exists()
}

/// Whether any live project uses `store`.
pub fn in_use(store: &Path) -> bool {
    users(store).iter().any(|p| alive(p))
}

/// Records `project` as the user of store `key` under `root`, taking the
/// root's lock (see `register_locked`).
pub fn register(root: &Path, key: &str, project: &Path) -> Result<(), StoreError> {
    let _lock = lock_root(root)?;
    register_locked(root, key, project)
}

/// Records `project` as the user of store `key` under `root`, and as no
/// longer a user of the root's other stores; a store of the same lineage
/// that it leaves with no live user (the same inputs, since rewritten) is
/// removed, as a private store root always did. The caller holds the
/// root's lock, so no `gc` or other project can remove the store between
/// its opening and this registration.
pub(super) fn register_locked(root: &Path, key: &str, project: &Path) -> Result<(), StoreError> {
    let store = root.join(key);
    // Never make a folder that looks like a store without one.
    if !store.join(META_FILE).exists() {
        return Ok(());
    }
    let (id, path) = user_id(project);
    let dir = store.join(USERS_DIR);
    let file = dir.join(&id);
    let text = path.to_string_lossy().into_owned();
    let registered = fs::read_to_string(&file).is_ok_and(|t| t.trim_end() == text);
    if !registered {
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        write_atomic(&file, text.as_bytes()).map_err(StoreError::io(&file))?;
    }
    let lineage = meta(&store).map(|m| m.lineage);
    for other in stores(root) {
        if other.file_name().is_some_and(|n| n == key) {
            continue;
        }
        let mine = other.join(USERS_DIR).join(&id);
        if !mine.exists() {
            continue;
        }
        fs::remove_file(&mine).map_err(StoreError::io(&mine))?;
        let same_lineage = lineage.is_some() && meta(&other).map(|m| m.lineage) == lineage;
        if same_lineage && !in_use(&other) {
            let _ = fs::remove_dir_all(&other);
        }
    }
    Ok(())
}

/// The store `project` uses under `root`: the one it is registered in; in
/// its private root (`<project>/store`) made before registration, the
/// newest complete store. In a shared root an unregistered store may be
/// another dataset's, so there is no guessing.
pub fn store_of(root: &Path, project: &Path) -> Option<PathBuf> {
    let (id, _) = user_id(project);
    let all = stores(root);
    if let Some(mine) = all.iter().find(|s| s.join(USERS_DIR).join(&id).exists()) {
        return Some(mine.clone());
    }
    let private = root == project.join(crate::layout::STORE_DIR);
    if !private || all.iter().any(|s| s.join(USERS_DIR).exists()) {
        return None;
    }
    all.into_iter()
        .filter_map(|s| {
            let modified = fs::metadata(s.join(META_FILE)).ok()?.modified().ok()?;
            Some((modified, s))
        })
        .max()
        .map(|(_, s)| s)
}

/// One store of a root, for `nextslice store`.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    pub key: String,
    pub dir: PathBuf,
    pub bytes: u64,
    pub cases: usize,
    pub slices: usize,
    /// Registered projects, and whether each still exists.
    pub users: Vec<(PathBuf, bool)>,
    /// Whether any project ever registered (stores made before
    /// registration, or by `nextslice store`, have no `users/`).
    pub registered: bool,
}

impl StoreInfo {
    pub fn live_users(&self) -> usize {
        self.users.iter().filter(|(_, alive)| *alive).count()
    }
}

/// Every complete store under `root`.
pub fn list(root: &Path) -> Vec<StoreInfo> {
    stores(root)
        .into_iter()
        .map(|dir| {
            let meta = meta(&dir);
            StoreInfo {
                key: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes: bytes_under(&dir),
                cases: meta.as_ref().map_or(0, |m| m.volumes.len()),
                slices: meta.as_ref().map_or(0, |m| m.slices),
                users: users(&dir)
                    .into_iter()
                    .map(|p| {
                        let alive = alive(&p);
                        (p, alive)
                    })
                    .collect(),
                registered: dir.join(USERS_DIR).is_dir(),
                dir,
            }
        })
        .collect()
}

/// Removes the stores under `root` that projects used and no existing
/// project uses now (stores no project ever registered in — made before
/// registration, or by `nextslice store` — are kept: whose they are is
/// unknown). Returns what was removed.
pub fn gc(root: &Path) -> Result<Vec<StoreInfo>, StoreError> {
    let _lock = lock_root(root)?;
    let mut removed = Vec::new();
    for info in list(root) {
        if !info.registered || info.live_users() > 0 {
            continue;
        }
        fs::remove_dir_all(&info.dir).map_err(StoreError::io(&info.dir))?;
        removed.push(info);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake complete store `key` of `lineage` under `root`.
    fn store(root: &Path, key: &str, lineage: &str) {
        let dir = root.join(key);
        fs::create_dir_all(&dir).unwrap();
        let meta = StoreMeta {
            format_version: 1,
            key: key.into(),
            lineage: lineage.into(),
            dtype: crate::config::StoreDtype::F32,
            modalities: Vec::new(),
            axis: crate::config::SliceAxis::Axial,
            height: 1,
            width: 1,
            label_values: Vec::new(),
            has_labels: false,
            slices: 3,
            volumes: Vec::new(),
        };
        fs::write(dir.join(META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
    }

    fn project(dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(crate::layout::CONFIG_FILE), "").unwrap();
        dir.to_path_buf()
    }

    #[test]
    fn two_projects_share_a_store_and_gc_removes_it_when_both_are_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("stores");
        store(&root, "k1", "a");
        let (p, q) = (
            project(&tmp.path().join("p")),
            project(&tmp.path().join("q")),
        );
        register(&root, "k1", &p).unwrap();
        register(&root, "k1", &q).unwrap();
        assert_eq!(store_of(&root, &p), Some(root.join("k1")));
        assert_eq!(store_of(&root, &q), Some(root.join("k1")));
        assert_eq!(list(&root)[0].live_users(), 2);

        fs::remove_dir_all(&p).unwrap();
        assert!(gc(&root).unwrap().is_empty(), "q still uses it");
        fs::remove_dir_all(&q).unwrap();
        let removed = gc(&root).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!root.join("k1").exists());
    }

    #[test]
    fn a_project_moving_on_frees_its_old_store_only_when_nobody_else_uses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("stores");
        let (p, q) = (
            project(&tmp.path().join("p")),
            project(&tmp.path().join("q")),
        );
        store(&root, "k1", "a");
        store(&root, "other", "b");
        register(&root, "k1", &p).unwrap();
        register(&root, "k1", &q).unwrap();
        // q moves to a store of another dataset: k1 stays, p uses it.
        register(&root, "other", &q).unwrap();
        assert!(root.join("k1").exists());
        // p's inputs were rewritten: a new store of the same lineage, and
        // k1, used by nobody now, goes as a private root's would.
        store(&root, "k2", "a");
        register(&root, "k2", &p).unwrap();
        assert!(!root.join("k1").exists());
        assert!(root.join("other").exists(), "another lineage is left alone");
        assert_eq!(store_of(&root, &p), Some(root.join("k2")));
        assert_eq!(store_of(&root, &q), Some(root.join("other")));

        // With a live user elsewhere, a superseded store stays.
        let tmp2 = tempfile::tempdir().unwrap();
        let root2 = tmp2.path().join("stores");
        store(&root2, "k1", "a");
        register(&root2, "k1", &p).unwrap();
        register(&root2, "k1", &q).unwrap();
        store(&root2, "k2", "a");
        register(&root2, "k2", &p).unwrap();
        assert!(root2.join("k1").exists(), "q still uses k1");
        register(&root2, "k2", &q).unwrap();
        assert!(!root2.join("k1").exists(), "the last user left k1");
    }

    #[test]
    fn a_store_every_project_left_is_collected() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("stores");
        let p = project(&tmp.path().join("p"));
        store(&root, "old", "a");
        store(&root, "new", "b");
        register(&root, "old", &p).unwrap();
        // Another dataset (cases added): another lineage, so `old` stays…
        register(&root, "new", &p).unwrap();
        assert!(root.join("old").exists());
        assert!(users(&root.join("old")).is_empty());
        // … until gc, since a project did use it and none does now.
        let removed = gc(&root).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!root.join("old").exists() && root.join("new").exists());
    }

    #[test]
    fn no_store_is_guessed_in_a_shared_root_or_made_up_for_a_missing_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("shared");
        store(&root, "someone-elses", "a");
        let p = project(&tmp.path().join("p"));
        assert_eq!(store_of(&root, &p), None);
        register(&root, "missing", &p).unwrap();
        assert!(!root.join("missing").exists(), "no half store appears");
    }

    #[test]
    fn stores_made_before_registration_are_found_and_never_collected() {
        // The project's own private root, as projects made before shared
        // stores have it.
        let tmp = tempfile::tempdir().unwrap();
        let p = project(&tmp.path().join("p"));
        let root = p.join("store");
        store(&root, "old", "a");
        assert_eq!(store_of(&root, &p), Some(root.join("old")));
        assert!(gc(&root).unwrap().is_empty());
        assert!(root.join("old").exists());
    }
}
