//! One store for many projects: two projects on the same data and settings
//! share one store under a common root, and `store --gc` removes it only
//! once no project uses it.

use std::sync::atomic::AtomicBool;

use nextslice::progress::Silent;
use nextslice::project::Project;

use super::common::{TINY, init_demo, p, run_ok, tumour_phantoms};

#[test]
fn two_projects_share_one_store_and_gc_frees_it_when_both_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tumour_phantoms(&data, 4, 32, 9);
    let tiny = dir.path().join("tiny.toml");
    std::fs::write(&tiny, TINY).unwrap();
    let root = dir.path().join("stores");
    let projects = [dir.path().join("a"), dir.path().join("b")];
    let mut keys = Vec::new();
    for project in &projects {
        let out = init_demo(project, &data, &[&tiny], &root);
        assert!(String::from_utf8_lossy(&out.stdout).contains("stores"));
        let opened = Project::open(project).unwrap();
        assert_eq!(opened.store_root(), root);
        let store = opened.store(&Silent, &AtomicBool::new(false)).unwrap();
        keys.push(store.meta().key.clone());
        assert!(
            !project.join("store").exists(),
            "nothing stored in the project"
        );
    }
    assert_eq!(keys[0], keys[1], "one store for both");
    let listed = String::from_utf8_lossy(&run_ok(&["store", "--list", "--out", p(&root)]).stdout)
        .into_owned();
    assert!(
        listed.contains("2 of 2 registered projects exist"),
        "{listed}"
    );

    std::fs::remove_dir_all(&projects[0]).unwrap();
    let gc =
        String::from_utf8_lossy(&run_ok(&["store", "--gc", "--out", p(&root)]).stdout).into_owned();
    assert!(gc.contains("0 of 1 stores removed"), "{gc}");
    assert!(root.join(&keys[0]).exists());
    // The project left goes on with the same store.
    let b = Project::open(&projects[1]).unwrap();
    assert_eq!(b.current_store_dir(), Some(root.join(&keys[1])));

    std::fs::remove_dir_all(&projects[1]).unwrap();
    let gc =
        String::from_utf8_lossy(&run_ok(&["store", "--gc", "--out", p(&root)]).stdout).into_owned();
    assert!(gc.contains("1 of 1 stores removed"), "{gc}");
    assert!(!root.join(&keys[0]).exists());
}
