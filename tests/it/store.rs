//! The slice store holds exactly what direct reads give, is rebuilt only when
//! inputs or settings change, and never trusts a half-built directory.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use nextslice::config::{Config, Preset, StoreDtype};
use nextslice::progress::Silent;
use nextslice::store::{BuildOutcome, SliceStore, open_or_build, store_key};
use nextslice::volume::dataset::{Case, discover};
use nextslice::volume::{NiftiWriter, read_labels, read_volume, to_canonical};

fn demo_config(extra: &str) -> Config {
    Config::preset_with(Preset::Demo, "<test>", extra).unwrap()
}

/// Phantom subjects on disk with the demo preset plus `overlay`.
struct Pool {
    dir: tempfile::TempDir,
    config: Config,
    cases: Vec<Case>,
}

impl Pool {
    fn new(subjects: usize, size: usize, seed: u64, overlay: &str) -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        super::common::tumour_phantoms(&data, subjects, size, seed);
        let mut config = demo_config(overlay);
        config.dataset.root = Some(data.clone());
        let cases = discover(&config.dataset, &data).unwrap().cases;
        Pool { dir, config, cases }
    }

    fn root(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// A case's images, read independently and reoriented.
fn canonical_images(case: &Case) -> Vec<nextslice::volume::Volume> {
    case.images
        .iter()
        .map(|p| to_canonical(read_volume(p).unwrap()))
        .collect()
}

fn build(root: &Path, config: &Config, cases: &[Case]) -> (SliceStore, BuildOutcome) {
    open_or_build(root, config, cases, &Silent, &AtomicBool::new(false)).unwrap()
}

/// Independent reference: canonical, z-scored over non-zero voxels, padded.
fn reference_slice(case: &Case, pad: i64, size: usize, slice: usize) -> Vec<f32> {
    let vols = canonical_images(case);
    let n = vols[0].data.len();
    let brain: Vec<bool> = (0..n)
        .map(|i| vols.iter().any(|v| v.data[i] != 0.0))
        .collect();
    let mut out = Vec::new();
    for v in &vols {
        let inside: Vec<f64> = (0..n)
            .filter(|&i| brain[i])
            .map(|i| v.data[i] as f64)
            .collect();
        let mean = inside.iter().sum::<f64>() / inside.len() as f64;
        let var = inside.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / inside.len() as f64;
        let std = var.sqrt();
        let [nx, ny, _, _] = v.dims;
        for r in 0..size as i64 {
            for c in 0..size as i64 {
                let (x, y) = (c + pad, r + pad);
                let value = if x < 0 || y < 0 || x >= nx as i64 || y >= ny as i64 {
                    0.0
                } else {
                    let i = v.index(x as usize, y as usize, slice);
                    if brain[i] {
                        ((v.data[i] as f64 - mean) / std) as f32
                    } else {
                        0.0
                    }
                };
                out.push(value);
            }
        }
    }
    out
}

#[test]
fn store_contents_equal_direct_reads() {
    // 32-voxel phantoms padded to 48: stored (row 0, col 0) is canonical (-8, -8).
    let pool = Pool::new(
        3,
        32,
        11,
        "[slicing]\nsize = [48, 48]\nmin_brain_fraction = 0.05\n",
    );
    let (config, cases) = (pool.config.clone(), &pool.cases);
    let (store, outcome) = build(&pool.root("store"), &config, cases);
    assert_eq!(outcome, BuildOutcome::Built);
    let meta = store.meta();
    assert_eq!((meta.channels(), meta.height, meta.width), (4, 48, 48));
    assert_eq!(meta.volumes.len(), 3);

    let mut image = vec![0f32; meta.slice_values()];
    let mut label = vec![0u8; meta.pixels()];
    let mut checked = 0;
    for (i, entry) in store.entries().iter().enumerate() {
        let record = &meta.volumes[entry.volume as usize];
        assert_eq!(record.crop_origin, [-8, -8]);
        assert!(
            entry.brain_fraction >= 0.05,
            "a slice below the brain threshold was kept"
        );
        if i % 5 != 0 {
            continue; // a sample keeps the test fast
        }
        let case = &cases[entry.volume as usize];
        store.read_image(i, &mut image).unwrap();
        let want = reference_slice(case, -8, 48, entry.slice as usize);
        let worst = image
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "slice {i}: max difference {worst}");

        assert!(store.read_label(i, &mut label).unwrap());
        let seg = to_canonical(read_labels(case.label.as_ref().unwrap()).unwrap());
        let class_of = |v: u8| [0u8, 1, 2, 0, 3][v as usize];
        for r in 0..48 {
            for c in 0..48 {
                let (x, y) = (c as i64 - 8, r as i64 - 8);
                let want = if (0..32).contains(&x) && (0..32).contains(&y) {
                    class_of(seg.data[seg.index(x as usize, y as usize, entry.slice as usize)])
                } else {
                    0
                };
                assert_eq!(label[r * 48 + c], want);
            }
        }
        let fg = label.iter().filter(|&&l| l > 0).count() as f32 / 2304.0;
        assert_eq!(entry.foreground_fraction, Some(fg));
        checked += 1;
    }
    assert!(checked >= 5);

    // Dropped slices are exactly those below the brain threshold.
    for (v, case) in cases.iter().enumerate() {
        let vols = canonical_images(case);
        let kept: Vec<u32> = store
            .entries()
            .iter()
            .filter(|e| e.volume as usize == v)
            .map(|e| e.slice)
            .collect();
        for z in 0..21 {
            let brain = (0..32 * 32)
                .filter(|&i| vols.iter().any(|vol| vol.data[z * 1024 + i] != 0.0))
                .count();
            let fraction = brain as f64 / (48.0 * 48.0);
            assert_eq!(
                kept.contains(&(z as u32)),
                fraction >= 0.05,
                "volume {v} slice {z}: {fraction}"
            );
        }
    }

    // A batch read equals single reads.
    let ids = [3, 0, store.len() - 1];
    let (mut batch, mut labels) = (Vec::new(), Vec::new());
    store
        .read_batch(&ids, &mut batch, Some(&mut labels))
        .unwrap();
    for (k, &i) in ids.iter().enumerate() {
        store.read_image(i, &mut image).unwrap();
        assert_eq!(&batch[k * image.len()..(k + 1) * image.len()], &image[..]);
    }
    assert_eq!(labels.len(), 3 * 48 * 48);
}

#[test]
fn cropping_centres_on_the_brain_and_the_grid_maps_to_world() {
    let pool = Pool::new(1, 40, 2, "[slicing]\nsize = [32, 32]\n");
    let (config, cases) = (pool.config.clone(), &pool.cases);
    let (store, _) = build(&pool.root("store"), &config, cases);
    let record = &store.meta().volumes[0];
    let [r0, c0] = record.crop_origin;
    // The window is centred on the brain's bounding box (40 voxels, window 32).
    let vols = canonical_images(&cases[0]);
    let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
    for z in 0..26 {
        for y in 0..40 {
            for x in 0..40 {
                if vols.iter().any(|v| v.data[v.index(x, y, z)] != 0.0) {
                    lo = [lo[0].min(y), lo[1].min(x)];
                    hi = [hi[0].max(y), hi[1].max(x)];
                }
            }
        }
    }
    let centred = |lo: usize, hi: usize| ((lo + hi) as i64 / 2 - 16).clamp(0, 8);
    assert_eq!([r0, c0], [centred(lo[0], hi[0]), centred(lo[1], hi[1])]);
    // Stored pixel (col, row) of slice s sits where canonical voxel (col+c0, row+r0, s) is.
    let world = record.grid_affine.apply([3.0, 5.0, 7.0]);
    let expected = record
        .canonical_affine
        .apply([3.0 + c0 as f64, 5.0 + r0 as f64, 7.0]);
    for k in 0..3 {
        assert!((world[k] - expected[k]).abs() < 1e-9);
    }
}

#[test]
fn store_is_reused_until_inputs_or_settings_change() {
    let pool = Pool::new(2, 32, 1, "[slicing]\nsize = [32, 32]\n");
    let (config, cases) = (pool.config.clone(), &pool.cases);
    let root = pool.root("store");
    let (first, outcome) = build(&root, &config, cases);
    assert_eq!(outcome, BuildOutcome::Built);
    let key = first.meta().key.clone();
    drop(first);
    assert_eq!(build(&root, &config, cases).1, BuildOutcome::Reused);

    // A changed setting gives a new store.
    let mut other = config.clone();
    other.slicing.min_brain_fraction = 0.2;
    assert_ne!(store_key(&root, &other, cases).unwrap(), key);

    // The same bytes written again (a `touch`, a copy): the same store.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seg = cases[1].label.clone().unwrap();
    let mut labels = read_labels(&seg).unwrap();
    NiftiWriter::new(labels.dims, labels.affine)
        .write(&seg, &labels.data)
        .unwrap();
    assert_eq!(build(&root, &config, cases).1, BuildOutcome::Reused);

    // New content gives a new store, and the old one is removed.
    let voxel = labels.data.iter().position(|&v| v == 0).unwrap();
    labels.data[voxel] = 1;
    NiftiWriter::new(labels.dims, labels.affine)
        .write(&seg, &labels.data)
        .unwrap();
    let (rebuilt, outcome) = build(&root, &config, cases);
    assert_eq!(outcome, BuildOutcome::Built);
    assert_ne!(rebuilt.meta().key, key);
    assert!(!root.join(&key).exists(), "stale store kept");

    // A store of other settings in the same root is left alone.
    let (kept, _) = build(&root, &other, cases);
    let kept_key = kept.meta().key.clone();
    build(&root, &config, cases);
    assert!(
        root.join(&kept_key).exists(),
        "another setting's store was deleted"
    );
}

#[test]
fn a_store_follows_its_data_to_another_directory() {
    let pool = Pool::new(2, 32, 3, "[slicing]\nsize = [32, 32]\n");
    let root = pool.root("store");
    let (first, _) = build(&root, &pool.config, &pool.cases);
    let key = first.meta().key.clone();
    drop(first);
    // The dataset copied to another disk (new paths, new mtimes).
    let moved = pool.root("elsewhere");
    copy_tree(&pool.root("data"), &moved);
    let mut config = pool.config.clone();
    config.dataset.root = Some(moved.clone());
    let cases = discover(&config.dataset, &moved).unwrap().cases;
    let (store, outcome) = build(&root, &config, &cases);
    assert_eq!(outcome, BuildOutcome::Reused);
    assert_eq!(store.meta().key, key);
    // The hashes are cached: a second look reads no file again (their
    // stamps are unchanged).
    let hashing = HashingSeen::default();
    let (again, _) =
        open_or_build(&root, &config, &cases, &hashing, &AtomicBool::new(false)).unwrap();
    assert_eq!(again.meta().key, key);
    assert!(!hashing.0.load(std::sync::atomic::Ordering::Relaxed));
}

/// Whether any input file was read to hash it.
#[derive(Default)]
struct HashingSeen(std::sync::atomic::AtomicBool);

impl nextslice::progress::Progress for HashingSeen {
    fn update(&self, update: &nextslice::progress::ProgressUpdate<'_>) {
        if update.stage == "hashing inputs" {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
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

#[test]
fn half_built_stores_are_never_used() {
    let pool = Pool::new(1, 32, 1, "[slicing]\nsize = [32, 32]\n");
    let (config, cases) = (pool.config.clone(), &pool.cases);
    let root = pool.root("store");
    let key = store_key(&root, &config, cases).unwrap();
    // What a kill -9 mid-build leaves: a temp build directory; and a
    // final-name directory without meta.json (we never make one, but a
    // manual copy could).
    std::fs::create_dir_all(root.join(format!(".build-{key}"))).unwrap();
    std::fs::write(root.join(format!(".build-{key}/images.bin")), b"partial").unwrap();
    std::fs::create_dir_all(root.join(&key)).unwrap();
    std::fs::write(root.join(&key).join("images.bin"), b"partial").unwrap();
    let (store, outcome) = build(&root, &config, cases);
    assert_eq!(outcome, BuildOutcome::Built);
    assert!(!store.is_empty());
    assert!(!root.join(format!(".build-{key}")).exists());

    // A truncated data file is detected on open.
    drop(store);
    let images = root.join(&key).join("images.bin");
    let len = std::fs::metadata(&images).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&images)
        .unwrap()
        .set_len(len - 4)
        .unwrap();
    let err = SliceStore::open(&root.join(&key))
        .err()
        .expect("truncated store must not open");
    assert!(err.to_string().contains("expected"), "{err}");
    // ... and open_or_build rebuilds it from the sources.
    assert_eq!(build(&root, &config, cases).1, BuildOutcome::Built);

    // A meta.json with impossible numbers is an error, not a panic.
    let meta_path = root.join(&key).join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["modalities"] = serde_json::json!([]);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = SliceStore::open(&root.join(&key))
        .err()
        .expect("bad meta must not open");
    assert!(err.to_string().contains("dimensions"), "{err}");
}

#[test]
fn f16_store_matches_f32_store() {
    let pool = Pool::new(1, 32, 9, "[slicing]\nsize = [32, 32]\n");
    let (f32_config, cases) = (pool.config.clone(), &pool.cases);
    let mut f16_config = f32_config.clone();
    f16_config.store.dtype = StoreDtype::F16;
    let (a, _) = build(&pool.root("a"), &f32_config, cases);
    let (b, _) = build(&pool.root("b"), &f16_config, cases);
    assert_eq!(a.len(), b.len());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let ids: Vec<usize> = (0..a.len()).collect();
    a.read_batch(&ids, &mut x, None).unwrap();
    b.read_batch(&ids, &mut y, None).unwrap();
    let worst = x
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs() / p.abs().max(1.0))
        .fold(0.0, f32::max);
    assert!(worst < 2e-3, "f16 error {worst}");
}

#[test]
fn unexpected_label_values_and_misaligned_modalities_are_explained() {
    let pool = Pool::new(2, 32, 4, "[slicing]\nsize = [32, 32]\n");
    let (config, cases) = (pool.config.clone(), &pool.cases);

    // A BraTS-2023-style label map: enhancing tumour as 3.
    let seg = cases[0].label.clone().unwrap();
    let mut labels = read_labels(&seg).unwrap();
    labels
        .data
        .iter_mut()
        .filter(|v| **v == 4)
        .for_each(|v| *v = 3);
    let tumour = labels
        .data
        .iter()
        .position(|v| *v > 0)
        .expect("phantoms have tumours");
    labels.data[tumour] = 3;
    NiftiWriter::new(labels.dims, labels.affine)
        .write(&seg, &labels.data)
        .unwrap();
    let err = open_or_build(
        &pool.root("s"),
        &config,
        cases,
        &Silent,
        &AtomicBool::new(false),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("phantom_001") && err.contains("label value 3") && err.contains("BraTS 2021"),
        "{err}"
    );

    // A modality on another grid.
    let t2 = &cases[1].images[3];
    let v = read_volume(t2).unwrap();
    let shifted = v.affine.translated_voxels([2.0, 0.0, 0.0]);
    let raw: Vec<i16> = v.data.iter().map(|x| *x as i16).collect();
    NiftiWriter::new(v.dims, shifted).write(t2, &raw).unwrap();
    let err = open_or_build(
        &pool.root("s"),
        &config,
        &cases[1..],
        &Silent,
        &AtomicBool::new(false),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("phantom_002") && err.contains("same voxel grid"),
        "{err}"
    );
}
