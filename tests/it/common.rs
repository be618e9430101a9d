//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nextslice::volume::phantom::{PhantomKind, PhantomSpec, write_phantom};

/// The `nextslice` binary built for this test run.
/// The binary, with new projects' shared slice stores in a directory of
/// this test process rather than the user's data dir.
pub fn nextslice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nextslice"));
    let stores = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nextslice-it-stores-{}", std::process::id()));
    command.env("NEXTSLICE_STORE_ROOT", stores);
    command
}

/// Runs the binary and returns its output, failing the test with stderr on error.
pub fn run_ok(args: &[&str]) -> Output {
    let out = nextslice().args(args).output().expect("run nextslice");
    assert!(
        out.status.success(),
        "nextslice {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes small tumour phantoms and returns the spec used.
pub fn tumour_phantoms(dir: &Path, subjects: usize, size: usize, seed: u64) -> PhantomSpec {
    let spec = PhantomSpec {
        kind: PhantomKind::Tumour,
        subjects,
        size,
        seed,
    };
    write_phantom(dir, &spec, &nextslice::progress::Silent).expect("write phantoms");
    spec
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Tiny networks and budgets so a round takes seconds on two cores.
pub const TINY: &str = "\
[slicing]\nsize = [32, 32]\nmin_brain_fraction = 0.05\n\
[split]\ntest_fraction = 0.25\nseed = 1\n\
[vae]\nwidths = [4, 8]\nz_dim = 3\nepochs = 2\nbatch_size = 16\n\
[unet]\nwidths = [4, 8]\nbottleneck = 16\nepochs_per_round = 2\nmin_steps_per_round = 0\nbatch_size = 8\n\
[sampling]\ninitial_fraction = 0.05\nround_fraction = 0.05\nrounds = 2\n\
[device]\nkind = \"cpu\"\n";

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Tiny phantoms and a project on them (TINY + `extra` over the demo preset).
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub project: PathBuf,
}

pub fn fixture(subjects: usize, extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tumour_phantoms(&data, subjects, 32, 5);
    let (tiny, more) = (dir.path().join("tiny.toml"), dir.path().join("extra.toml"));
    std::fs::write(&tiny, TINY).unwrap();
    std::fs::write(&more, extra).unwrap();
    let project = dir.path().join("project");
    // Each fixture its own store root: tests run in parallel, and one that
    // rewrites its data must not meet another's store.
    init_demo(&project, &data, &[&tiny, &more], &dir.path().join("stores"));
    Fixture {
        _dir: dir,
        data,
        project,
    }
}

/// `init` of a demo-preset project with `configs` laid over it and its
/// stores under `stores`; returns what init printed.
pub fn init_demo(project: &Path, data: &Path, configs: &[&Path], stores: &Path) -> Output {
    let mut args = vec!["init", p(project), "--data", p(data), "--preset", "demo"];
    for config in configs {
        args.extend(["--config", p(config)]);
    }
    args.extend(["--store-root", p(stores)]);
    run_ok(&args)
}

/// Runs the binary, expecting it to fail; returns stdout and stderr.
pub fn run_fails(args: &[&str]) -> String {
    let out = nextslice().args(args).output().expect("run nextslice");
    assert!(
        !out.status.success(),
        "nextslice {args:?} should have failed"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
