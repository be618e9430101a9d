//! Peak resident memory of building a slice store and of reading it back
//! (one full epoch in shuffled batches of 16) for a 20- and a 100-subject
//! pool. Each measurement runs in a fresh child process; the point is that
//! neither grows with the pool.
//!
//! `cargo bench --bench store_memory`

#[path = "common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use nextslice::config::{Config, Preset};
use nextslice::progress::Silent;
use nextslice::store::{SliceStore, open_or_build};
use nextslice::volume::dataset::discover;
use nextslice::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

const SIZE: usize = 128;

fn config() -> Config {
    // BraTS settings (f16 store) on 128² phantoms.
    Config::preset_with(
        Preset::Brats2019,
        "<bench>",
        "[slicing]\nsize = [128, 128]\n",
    )
    .expect("config")
}

fn data_dir(subjects: usize) -> PathBuf {
    common::bench_data().join(format!("phantom-{subjects}x{SIZE}"))
}

fn child_build(data: &Path, store: &Path) {
    let config = config();
    let cases = discover(&config.dataset, data).expect("discover").cases;
    let _ = std::fs::remove_dir_all(store);
    let start = Instant::now();
    let (s, _) =
        open_or_build(store, &config, &cases, &Silent, &AtomicBool::new(false)).expect("build");
    let bytes = s.meta().slices * s.meta().slice_values() * s.meta().bytes_per_value();
    println!(
        "{} {} {:.2} {:.1}",
        common::peak_rss_mib(),
        s.len(),
        start.elapsed().as_secs_f64(),
        bytes as f64 / 1048576.0
    );
}

fn child_read(store_root: &Path) {
    let dir = std::fs::read_dir(store_root)
        .expect("store root")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("meta.json").exists())
        .expect("a built store");
    let store = SliceStore::open(&dir).expect("open");
    // A shuffled epoch (fixed LCG permutation), batches of 16 with labels.
    let n = store.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 12345u64;
    for i in (1..n).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (state >> 33) as usize % (i + 1));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut sum = 0f64;
    for batch in order.chunks(16) {
        store
            .read_batch(batch, &mut images, Some(&mut labels))
            .expect("read");
        sum += f64::from(images[0]);
    }
    std::hint::black_box(sum);
    println!(
        "{} {:.1}",
        common::peak_rss_mib(),
        n as f64 / start.elapsed().as_secs_f64()
    );
}

fn run_child(args: &[&str]) -> Vec<f64> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        match args[i + 1].as_str() {
            "build" => child_build(Path::new(&args[i + 2]), Path::new(&args[i + 3])),
            _ => child_read(Path::new(&args[i + 2])),
        }
        return;
    }
    println!(
        "slice store peak RSS, phantoms {SIZE}×{SIZE}×{}, 4 modalities, f16",
        (SIZE as f64 * 155.0 / 240.0).round()
    );
    println!(
        "{:>9} {:>8} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "subjects", "slices", "store MiB", "build s", "build RSS", "epoch RSS", "read sl/s"
    );
    let mut rows = Vec::new();
    for subjects in [20, 100] {
        let data = data_dir(subjects);
        if !data.join(format!("phantom_{subjects:03}")).exists() {
            eprintln!("generating {subjects} phantoms …");
            let spec = PhantomSpec {
                kind: PhantomKind::Tumour,
                subjects,
                size: SIZE,
                seed: 0,
            };
            write_phantom(&data, &spec, &Silent).expect("phantoms");
        }
        let store = common::bench_data().join(format!("store-{subjects}"));
        let b = run_child(&[
            "build",
            data.to_str().expect("utf-8"),
            store.to_str().expect("utf-8"),
        ]);
        let r = run_child(&["read", store.to_str().expect("utf-8")]);
        println!(
            "{subjects:>9} {:>8} {:>10.0} {:>10.1} {:>9.0}MiB {:>9.0}MiB {:>12.0}",
            b[1], b[3], b[2], b[0], r[0], r[1]
        );
        rows.push((b[0], r[0], b[3]));
    }
    let (small, large) = (rows[0], rows[1]);
    println!(
        "100 vs 20 subjects: store ×{:.1}, build RSS ×{:.2}, epoch RSS ×{:.2}",
        large.2 / small.2,
        large.0 / small.0,
        large.1 / small.1
    );
}
