//! Dataset discovery: exact BraTS tokens, nesting, incomplete and duplicate
//! cases, and the generic glob layout.

use std::path::Path;

use nextslice::config::{Config, Preset};
use nextslice::volume::dataset::{DatasetError, discover};

fn touch(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"").unwrap();
}

fn brats_case(root: &Path, group: &str, id: &str, mods: &[&str]) {
    let dir = if group.is_empty() {
        id.to_string()
    } else {
        format!("{group}/{id}")
    };
    for m in mods {
        touch(root, &format!("{dir}/{id}_{m}.nii.gz"));
    }
}

#[test]
fn brats_tokens_match_exactly_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    brats_case(
        root,
        "HGG",
        "BraTS19_A_1",
        &["flair", "t1", "t1ce", "t2", "seg"],
    );
    brats_case(root, "LGG", "BraTS19_B_2", &["t1ce", "t1", "t2", "flair"]);
    touch(root, "README.txt");
    let config = Config::preset(Preset::Brats2019);
    let found = discover(&config.dataset, root).unwrap();
    assert_eq!(found.cases.len(), 2);
    let a = &found.cases[0];
    assert_eq!(a.id, "BraTS19_A_1");
    let names: Vec<String> = a
        .images
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "BraTS19_A_1_flair.nii.gz",
            "BraTS19_A_1_t1.nii.gz",
            "BraTS19_A_1_t1ce.nii.gz",
            "BraTS19_A_1_t2.nii.gz"
        ]
    );
    assert!(a.label.is_some());
    assert!(found.cases[1].label.is_none(), "labels are optional");
}

#[test]
fn a_missing_t1_is_not_covered_by_t1ce() {
    let dir = tempfile::tempdir().unwrap();
    brats_case(dir.path(), "", "c1", &["flair", "t1ce", "t2"]);
    let mut config = Config::preset(Preset::Brats2019);
    let err = discover(&config.dataset, dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Incomplete { missing, .. } if missing == "t1"),
        "{err}"
    );
    assert!(err.to_string().contains("skip_incomplete"));

    brats_case(dir.path(), "", "c2", &["flair", "t1", "t1ce", "t2"]);
    config.dataset.skip_incomplete = true;
    let found = discover(&config.dataset, dir.path()).unwrap();
    assert_eq!(found.cases.len(), 1);
    assert_eq!(
        found.skipped,
        vec![("c1".to_string(), "no t1 file".to_string())]
    );
}

#[test]
fn duplicates_and_empty_datasets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::preset(Preset::Brats2019);
    let err = discover(&config.dataset, dir.path()).unwrap_err();
    assert!(err.to_string().contains("no cases found"), "{err}");

    brats_case(dir.path(), "", "c1", &["flair", "t1", "t1ce", "t2"]);
    touch(dir.path(), "copy/c1_t2.nii");
    let err = discover(&config.dataset, dir.path()).unwrap_err();
    assert!(matches!(err, DatasetError::Duplicate { .. }), "{err}");
}

#[test]
fn generic_layout_pairs_images_and_labels_by_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for id in ["1000", "1001", "1002"] {
        touch(root, &format!("training-images/{id}_3.nii.gz"));
        if id != "1002" {
            touch(root, &format!("training-labels/{id}_3_glm.nii.gz"));
        }
    }
    let config = Config::preset(Preset::Malc);
    let found = discover(&config.dataset, root).unwrap();
    let ids: Vec<&str> = found.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["1000", "1001", "1002"]);
    assert!(
        found.cases[0]
            .label
            .as_ref()
            .unwrap()
            .ends_with("training-labels/1000_3_glm.nii.gz")
    );
    assert!(found.cases[2].label.is_none());
}
