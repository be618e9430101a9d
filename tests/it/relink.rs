//! A project whose data moved: `relink` keeps its store, latents, masks and
//! round when the content is the same, and refuses (changing nothing) when
//! it is not.

use nextslice::project::{Phase, RoundState};

use crate::common::{fixture, p, run_fails, run_ok};

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn stores(project: &std::path::Path) -> Vec<String> {
    let root = nextslice::project::Project::open(project)
        .unwrap()
        .store_root();
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn moved_data_is_relinked_and_the_project_goes_on_where_it_was() {
    let f = fixture(4, "");
    let project = &f.project;
    run_ok(&["train-vae", "--wait", "-p", p(project)]);
    run_ok(&["suggest", "--wait", "-p", p(project)]);
    let before = RoundState::load(project).unwrap();
    assert_eq!(before.phase, Phase::AwaitingMasks);
    let store = stores(project);
    assert_eq!(store.len(), 1, "{store:?}");
    let latents = std::fs::read(project.join("models/latents.bin")).unwrap();
    let toml = project.join("project.toml");

    // Copied to another disk; the old place is gone.
    let moved = f.data.with_file_name("moved-data");
    copy_tree(&f.data, &moved);
    std::fs::rename(&f.data, f.data.with_file_name("gone")).unwrap();

    // A copy with one changed file is refused, and nothing changes.
    let altered = f.data.with_file_name("altered-data");
    copy_tree(&moved, &altered);
    let seg = std::fs::read_dir(altered.join("phantom_001"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_seg.nii.gz"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 9; // inside the gzip stream, before its trailer
    bytes[last] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let text = std::fs::read_to_string(&toml).unwrap();
    let refused = run_fails(&["relink", "--data", p(&altered), "-p", p(project)]);
    assert!(refused.contains("differ in content"), "{refused}");
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), text);

    let said = run_ok(&["relink", "--data", p(&moved), "-p", p(project)]);
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(said.contains("relinked"), "{said}");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(
        text.contains(&*moved.canonicalize().unwrap().to_string_lossy()),
        "{text}"
    );

    // The same store, latents and round; the next round's steps work.
    assert_eq!(stores(project), store);
    assert_eq!(
        std::fs::read(project.join("models/latents.bin")).unwrap(),
        latents
    );
    assert_eq!(RoundState::load(project).unwrap(), before);
    run_ok(&["export", "-p", p(project)]);
    run_ok(&["status", "-p", p(project)]);
    let truth: Vec<String> = std::fs::read_dir(&moved)
        .unwrap()
        .flat_map(|case| std::fs::read_dir(case.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with("_seg.nii.gz"))
        .collect();
    let mut import: Vec<&str> = vec!["import", "-p", p(project)];
    import.extend(truth.iter().map(String::as_str));
    run_ok(&import);
    run_ok(&["train", "--wait", "-p", p(project)]);
    run_ok(&["suggest", "--wait", "-p", p(project)]);
    assert_eq!(stores(project), store, "no store rebuilt");
    assert_eq!(RoundState::load(project).unwrap().round, 1);
}

/// A case copied under a new name (its files renamed to match).
fn copy_case(data: &std::path::Path, from: &str, to: &str) {
    let target = data.join(to);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(data.join(from)).unwrap() {
        let path = entry.unwrap().path();
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(from, to);
        std::fs::copy(&path, target.join(name)).unwrap();
    }
}

#[test]
fn a_store_that_truly_changed_is_re_encoded_and_keeps_every_mask() {
    let f = fixture(6, "");
    let project = &f.project;
    run_ok(&["train-vae", "--wait", "-p", p(project)]);
    run_ok(&["suggest", "--wait", "-p", p(project)]);
    let mut import = vec!["import".to_string(), "-p".into(), p(project).into()];
    for case in std::fs::read_dir(&f.data).unwrap() {
        let case = case.unwrap().path();
        let id = case.file_name().unwrap().to_string_lossy().into_owned();
        import.push(p(&case.join(format!("{id}_seg.nii.gz"))).into());
    }
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    run_ok(&import);
    run_ok(&["train", "--wait", "-p", p(project)]);
    let before = RoundState::load(project).unwrap();
    let old_key = nextslice::project::latents::key_of(&project.join("models/latents.bin")).unwrap();
    let derived: Vec<_> = before
        .labelled
        .iter()
        .map(|l| nextslice::masks::derived_path(project, &l.key))
        .collect();
    let maps: Vec<Vec<u8>> = derived.iter().map(|d| std::fs::read(d).unwrap()).collect();

    // The lab adds a scan: a new store, and latents of the old one.
    let first = before.labelled[0].key.case.clone();
    copy_case(&f.data, &first, &format!("{first}x"));
    std::fs::remove_file(&derived[0]).unwrap();
    let out = run_ok(&["suggest", "--wait", "-p", p(project)]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("the slice store changed"), "{said}");
    assert!(said.contains("re-encoded with the existing VAE"), "{said}");
    let new_key = nextslice::project::latents::key_of(&project.join("models/latents.bin")).unwrap();
    assert_ne!(new_key, old_key);
    let store = nextslice::project::Project::open(project)
        .unwrap()
        .current_store_dir()
        .unwrap();
    assert!(store.ends_with(&new_key), "{store:?} vs {new_key}");
    // Every labelled slice's class map, derived again from its kept file.
    for (d, map) in derived.iter().zip(&maps) {
        assert_eq!(&std::fs::read(d).unwrap(), map, "{d:?}");
    }
    let after = RoundState::load(project).unwrap();
    assert_eq!(after.labelled, before.labelled);
    assert_eq!(after.phase, Phase::AwaitingMasks);
}
