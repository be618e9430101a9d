//! Patient-wise suggestion (`sampling.unit = "volume"`) end to end through
//! the binary: whole volumes suggested, exported as 3D images in their own
//! geometry, annotated as one 3D mask each, trained on, and the next round
//! suggesting other volumes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nextslice::project::{Phase, Project, RoundState};
use nextslice::store::SliceKey;
use nextslice::volume::read_volume;

use super::common::{fixture, p, run_ok};

fn state(project: &Path) -> RoundState {
    RoundState::load(project).expect("state.json parses")
}

/// Pool slices per case, from the project's store.
fn pool_by_case(project: &Path) -> BTreeMap<String, BTreeSet<u32>> {
    let project = Project::open(project).unwrap();
    let state = project.state().unwrap();
    let store = project
        .store(
            &nextslice::progress::Silent,
            &std::sync::atomic::AtomicBool::new(false),
        )
        .unwrap();
    let index = nextslice::store::SliceIndex::new(&store, &state.test_cases);
    let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for id in index.pool() {
        let key: &SliceKey = index.key(id);
        out.entry(key.case.clone()).or_default().insert(key.slice);
    }
    out
}

/// Every case with a pending slice has all its unlabelled pool slices
/// pending; returns those cases.
fn pending_volumes(project: &Path) -> BTreeSet<String> {
    let s = state(project);
    let pool = pool_by_case(project);
    let labelled: BTreeSet<&SliceKey> = s.labelled.iter().map(|l| &l.key).collect();
    let cases: BTreeSet<String> = s.pending.iter().map(|p| p.key.case.clone()).collect();
    for case in &cases {
        let pending: BTreeSet<u32> = s
            .pending
            .iter()
            .filter(|p| &p.key.case == case)
            .map(|p| p.key.slice)
            .collect();
        let unlabelled: BTreeSet<u32> = pool[case]
            .iter()
            .copied()
            .filter(|&slice| {
                !labelled.contains(&SliceKey {
                    case: case.clone(),
                    slice,
                })
            })
            .collect();
        assert_eq!(pending, unlabelled, "case {case} is suggested whole");
        assert!(
            !s.test_cases.contains(case),
            "test cases are never suggested"
        );
    }
    cases
}

#[test]
fn whole_volumes_are_suggested_exported_imported_and_trained() {
    let f = fixture(6, "[sampling]\nunit = \"volume\"\n");
    let project = &f.project;
    run_ok(&["train-vae", "--wait", "-p", p(project)]);
    let out = run_ok(&["suggest", "--wait", "-p", p(project)]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("whole volumes"), "{said}");
    let first = pending_volumes(project);
    assert!(!first.is_empty());

    // Export: each modality whole, in the file's own geometry.
    run_ok(&["export", "-p", p(project)]);
    let export = project.join("rounds/000/export");
    let manifest = std::fs::read_to_string(export.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), first.len() + 1, "{manifest}");
    let masks = tempfile::tempdir().unwrap();
    for case in &first {
        let original =
            read_volume(&f.data.join(case).join(format!("{case}_flair.nii.gz"))).unwrap();
        let exported = read_volume(&export.join(format!("{case}_flair.nii.gz"))).unwrap();
        assert_eq!(exported.dims, original.dims);
        assert_eq!(exported.affine, original.affine);
        assert_eq!(exported.data, original.data);
        assert!(manifest.contains(&format!("{case}_mask.nii.gz")));
        // The expert returns one 3D mask per case, named as the manifest says.
        std::fs::copy(
            f.data.join(case).join(format!("{case}_seg.nii.gz")),
            masks.path().join(format!("{case}_mask.nii.gz")),
        )
        .unwrap();
    }
    let pending = state(project).pending.len();
    run_ok(&["import", "-p", p(project), p(masks.path())]);
    let s = state(project);
    assert_eq!(
        (s.phase, s.labelled.len(), s.pending.len()),
        (Phase::Training, pending, 0)
    );

    // The next round suggests other volumes; the budget counts slices.
    run_ok(&["train", "--wait", "-p", p(project)]);
    let record = state(project).history[0].clone();
    assert_eq!(record.labelled, pending);
    run_ok(&["suggest", "--wait", "-p", p(project)]);
    let second = pending_volumes(project);
    assert!(!second.is_empty());
    assert!(
        second.is_disjoint(&first),
        "volumes labelled whole are not suggested again: {first:?} then {second:?}"
    );
}
