//! Mixed resolutions in one project: 3.75 mm and 7.5 mm phantoms resampled
//! to one 7.5 mm store grid (`slicing.spacing`), while the experts see and
//! return slices at each volume's own resolution, and evaluation scores on
//! each volume's own grid.

use std::path::Path;

use nextslice::config::SliceAxis;
use nextslice::masks::plane::plane;
use nextslice::project::{Phase, Project, RoundState};
use nextslice::store::SliceStore;
use nextslice::volume::{NiftiWriter, read_labels, read_volume, to_canonical};

use super::common::{TINY, init_demo, p, run_ok, tumour_phantoms};

/// Copies `from`'s cases into `to`, their ids (and file names) given `suffix`.
fn gather(from: &Path, to: &Path, suffix: &str) {
    for case in std::fs::read_dir(from).unwrap() {
        let case = case.unwrap().path();
        let id = case.file_name().unwrap().to_string_lossy().into_owned();
        let new = format!("{id}{suffix}");
        std::fs::create_dir_all(to.join(&new)).unwrap();
        for file in std::fs::read_dir(&case).unwrap() {
            let file = file.unwrap().path();
            let name = file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(&id, &new);
            std::fs::copy(&file, to.join(&new).join(name)).unwrap();
        }
    }
}

#[test]
fn two_resolutions_share_one_store_grid_and_experts_work_at_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let (fine, coarse, data) = (
        dir.path().join("fine"),
        dir.path().join("coarse"),
        dir.path().join("data"),
    );
    tumour_phantoms(&fine, 3, 64, 3); // 3.75 mm in-plane
    tumour_phantoms(&coarse, 3, 32, 4); // 7.5 mm
    gather(&fine, &data, "f");
    gather(&coarse, &data, "c");
    let (tiny, extra) = (dir.path().join("tiny.toml"), dir.path().join("extra.toml"));
    std::fs::write(&tiny, TINY).unwrap();
    std::fs::write(
        &extra,
        "[slicing]\nspacing = [7.5, 7.5]\n[sampling]\ninitial_fraction = 0.5\n",
    )
    .unwrap();
    let project = dir.path().join("project");
    init_demo(
        &project,
        &data,
        &[&tiny, &extra],
        &dir.path().join("stores"),
    );
    run_ok(&["train-vae", "--wait", "-p", p(&project)]);

    // One 32 × 32 store grid: the fine volumes resampled by 2, the coarse
    // ones as they are.
    let opened = Project::open(&project).unwrap();
    let store = SliceStore::open(&opened.current_store_dir().unwrap()).unwrap();
    let meta = store.meta();
    assert_eq!((meta.height, meta.width), (32, 32));
    for record in &meta.volumes {
        let factor = record.resampled.map(|r| r.factor);
        if record.case.ends_with('f') {
            assert_eq!(factor, Some([2.0, 2.0]), "{}", record.case);
            assert_eq!(record.grid_affine.spacing()[..2], [7.5, 7.5]);
        } else {
            assert_eq!(factor, None, "{}", record.case);
        }
    }

    run_ok(&["suggest", "--wait", "-p", p(&project)]);
    run_ok(&["export", "-p", p(&project)]);
    let state = RoundState::load(&project).unwrap();
    let export = project.join("rounds/000/export");
    let masks = dir.path().join("masks");
    std::fs::create_dir_all(&masks).unwrap();
    let mut kinds = (0, 0);
    for pending in &state.pending {
        let key = &pending.key;
        // The exported slice: the volume's own in-plane size and geometry.
        let image =
            read_volume(&export.join(format!("{}_s{:03}_flair.nii.gz", key.case, key.slice)))
                .unwrap();
        let source = to_canonical(
            read_volume(
                &data
                    .join(&key.case)
                    .join(format!("{}_flair.nii.gz", key.case)),
            )
            .unwrap(),
        );
        let expected = plane(&source, SliceAxis::Axial, key.slice as usize);
        assert_eq!(image.dims, expected.dims);
        assert!(
            image.affine.approx_eq(&expected.affine, 1e-4),
            "{}",
            key.case
        );
        if key.case.ends_with('f') {
            assert_eq!(&image.dims[..2], &[64, 64]);
            kinds.0 += 1;
        } else {
            assert_eq!(&image.dims[..2], &[32, 32]);
            kinds.1 += 1;
        }
        let mask = masks.join(format!("{}_s{:03}_mask.nii.gz", key.case, key.slice));
        if key.case.ends_with('f') && kinds.0 == 1 {
            // One mask drawn on the stored slice itself: 32 × 32 at 7.5 mm,
            // where the store keeps it (its label values from the store).
            let record = meta.volumes.iter().find(|v| v.case == key.case).unwrap();
            let index = nextslice::store::SliceIndex::new(&store, &state.test_cases);
            let mut classes = vec![0u8; 32 * 32];
            store
                .read_label(index.id(key).unwrap(), &mut classes)
                .unwrap();
            let values: Vec<u8> = classes
                .iter()
                .map(|&c| meta.label_values[c as usize])
                .collect();
            let on_store = record
                .grid_affine
                .translated_voxels([0.0, 0.0, f64::from(key.slice)]);
            NiftiWriter::new([32, 32, 1, 1], on_store)
                .write(&mask, &values)
                .unwrap();
            continue;
        }
        // The expert's mask, on the exported slice's grid.
        let truth = to_canonical(
            read_labels(
                &data
                    .join(&key.case)
                    .join(format!("{}_seg.nii.gz", key.case)),
            )
            .unwrap(),
        );
        let drawn = plane(&truth, SliceAxis::Axial, key.slice as usize);
        NiftiWriter::new(image.dims, image.affine)
            .write(&mask, &drawn.data)
            .unwrap();
    }
    assert!(
        kinds.0 > 0 && kinds.1 > 0,
        "both resolutions suggested: {kinds:?}"
    );
    run_ok(&["import", "-p", p(&project), p(&masks)]);

    // Native masks map onto the store grid exactly as the store's own
    // labels were resampled.
    let state = RoundState::load(&project).unwrap();
    assert_eq!(state.phase, Phase::Training);
    let index = nextslice::store::SliceIndex::new(&store, &state.test_cases);
    let mut stored = vec![0u8; 32 * 32];
    for labelled in &state.labelled {
        let derived =
            std::fs::read(nextslice::masks::derived_path(&project, &labelled.key)).unwrap();
        store
            .read_label(index.id(&labelled.key).unwrap(), &mut stored)
            .unwrap();
        assert_eq!(derived, stored, "{}", labelled.key);
    }

    run_ok(&["train", "--wait", "-p", p(&project)]);
    let out = run_ok(&["evaluate", "--wait", "-p", p(&project)]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("test-set Dice"), "{said}");
    let csv = std::fs::read_to_string(project.join("rounds/000/evaluation.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * state.test_cases.len(), "{csv}");
}
