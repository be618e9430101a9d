//! `nextslice simulate` end to end on tiny phantoms: a crash mid-run, the
//! resume, and the results, tables and curves it leaves.

use std::collections::{BTreeMap, BTreeSet};

use nextslice::project::RoundState;
use nextslice::simulate::results;

use crate::common::{fixture, nextslice, p, run_fails, run_ok};

#[test]
fn a_simulation_survives_a_crash_and_writes_its_tables() {
    let f = fixture(
        5,
        "[sampling]\nrounds = 1\n\
         [simulate]\nstrategies = [\"gradient\", \"random\"]\nseeds = 2\nfull_reference = true\n",
    );
    let project = &f.project;

    // A plan that does not validate is refused before anything is written.
    let twice = run_fails(&[
        "simulate",
        "--strategies",
        "random,random",
        "-p",
        p(project),
    ]);
    assert!(twice.contains("random twice"), "{twice}");
    assert!(!project.join("simulate/plan.toml").exists());

    // Killed as abruptly as `kill -9` right after the first annotation.
    let out = nextslice()
        .args(["simulate", "--foreground", "-p", p(project)])
        .env("NEXTSLICE_FAILPOINT", "simulate-after-annotate")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint aborts the simulation");
    let crashed: RoundState =
        RoundState::load(&project.join("simulate/runs/gradient-s0")).expect("state parses");
    assert_eq!(crashed.phase, nextslice::project::Phase::Training);
    assert!(!crashed.labelled.is_empty() && crashed.history.is_empty());

    // A different plan is refused while this one is unfinished.
    let refused = run_fails(&["simulate", "--seeds", "3", "-p", p(project)]);
    assert!(refused.contains("other settings"), "{refused}");
    // Without settings it resumes the stored plan, even after the
    // project's own settings changed.
    let toml = project.join("project.toml");
    let edited = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("seeds = 2", "seeds = 5");
    std::fs::write(&toml, edited).unwrap();

    let summary = run_ok(&["simulate", "--wait", "-p", p(project)]);
    let printed = String::from_utf8_lossy(&summary.stdout);
    assert!(printed.contains("## WT · Dice"), "{printed}");

    let rows = results::read(&project.join("simulate/results.csv")).expect("results.csv");
    let tests = RoundState::load(project).unwrap().test_cases.len();
    // 2 strategies × 2 seeds × 2 rounds + 2 reference runs, per test
    // volume and region.
    assert_eq!(rows.len(), (2 * 2 * 2 + 2) * tests * 3);
    let runs: BTreeSet<(String, usize, usize)> = rows
        .iter()
        .map(|r| (r.strategy.clone(), r.seed, r.round))
        .collect();
    assert_eq!(runs.len(), 2 * 2 * 2 + 2);
    assert!(
        rows.iter()
            .all(|r| (0.0..=1.0).contains(&r.dice) && r.hd95_mm >= 0.0)
    );

    // Round 0 is the seed batch, the same for every strategy of a seed; so
    // are the U-Net trained on it and its scores.
    let round0 = |strategy: &str, seed: usize| -> BTreeMap<(String, String), f64> {
        rows.iter()
            .filter(|r| r.strategy == strategy && r.seed == seed && r.round == 0)
            .map(|r| ((r.case.clone(), r.region.clone()), r.dice))
            .collect()
    };
    assert_eq!(round0("gradient", 1), round0("random", 1));
    let labelled = |run: &str| -> BTreeSet<String> {
        RoundState::load(&project.join("simulate/runs").join(run))
            .unwrap()
            .labelled
            .iter()
            .filter(|l| l.round == 0)
            .map(|l| l.key.to_string())
            .collect()
    };
    assert_eq!(labelled("gradient-s0"), labelled("random-s0"));
    assert_ne!(labelled("gradient-s0"), labelled("gradient-s1"));
    // The reference labels the whole pool.
    let pool = RoundState::load(&project.join("simulate/runs/full-data-s0"))
        .unwrap()
        .labelled
        .len();
    assert!(pool > labelled("gradient-s0").len() * 5);

    let tables = std::fs::read_to_string(project.join("simulate/summary.md")).unwrap();
    assert!(tables.contains("p (best vs second)"), "{tables}");
    assert!(tables.contains("Full data"), "{tables}");
    let png = std::fs::read(project.join("simulate/curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Resuming a finished simulation does no work and changes nothing.
    let before = std::fs::read(project.join("simulate/results.csv")).unwrap();
    run_ok(&["simulate", "--wait", "-p", p(project)]);
    assert_eq!(
        std::fs::read(project.join("simulate/results.csv")).unwrap(),
        before
    );
    let report = run_ok(&["simulate", "--report", "-p", p(project)]);
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("## WT · Dice") && printed.contains(&*report));
}

#[test]
fn arms_compare_step_rules_dal_both_ways_and_one_shot_clsmc() {
    let f = fixture(5, "[sampling]\nrounds = 1\n");
    let project = &f.project;
    let out = run_ok(&[
        "simulate",
        "--wait",
        "--strategies",
        "gradient,dal,clsmc,random",
        "--steps",
        "literal,calibrated",
        "--seeds",
        "1",
        "--no-reference",
        "-p",
        p(project),
    ]);
    // What it will run and keep, said before it starts: gradient ×2 step
    // rules, DAL, random (2 trainings each), one-shot ClsMC at 2 budgets.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("plan: 6 runs, 10 U-Net trainings; models kept ≈"),
        "{printed}"
    );
    let rows = results::read(&project.join("simulate/results.csv")).expect("results.csv");
    let arms: BTreeSet<(String, usize)> =
        rows.iter().map(|r| (r.strategy.clone(), r.round)).collect();
    for name in [
        "gradient-literal",
        "gradient-calibrated",
        "dal",
        "dal-first-member",
        "clsmc",
        "random",
    ] {
        for round in 0..2 {
            assert!(
                arms.contains(&(name.to_string(), round)),
                "{name} round {round}: {arms:?}"
            );
        }
    }
    assert_eq!(arms.len(), 12);

    // One-shot ClsMC labels each budget's whole set at once, as many
    // slices as the active-learning runs hold at that budget.
    let runs = project.join("simulate/runs");
    let state = |run: &str| RoundState::load(&runs.join(run)).unwrap();
    for round in 0..2 {
        let one_shot = state(&format!("clsmc-b{round}-s0"));
        assert_eq!(one_shot.history.len(), 1);
        let random = state("random-s0");
        assert_eq!(one_shot.history[0].labelled, random.history[round].labelled);
        assert!(one_shot.labelled.iter().all(|l| l.round == 0));
    }

    // The calibrated step moves z′ a nearest-neighbour distance (κ = 1);
    // the literal one does not move it measurably.
    let step = |run: &str| -> serde_json::Value {
        let path = runs.join(run).join("rounds/001/gradient-step.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let calibrated = step("gradient-calibrated-s0");
    let ratio =
        calibrated["median_step"].as_f64().unwrap() / calibrated["nn_median"].as_f64().unwrap();
    assert!((ratio - 1.0).abs() < 1e-3, "{calibrated}");
    assert_eq!(calibrated["calibrated"], true);
    let literal = step("gradient-literal-s0");
    assert_eq!(literal["alpha"].as_f64(), Some(1e-3));
    let literal_ratio =
        literal["median_step"].as_f64().unwrap() / literal["nn_median"].as_f64().unwrap();
    assert!(literal_ratio < 1e-3, "{literal}");

    let tables = std::fs::read_to_string(project.join("simulate/summary.md")).unwrap();
    assert!(
        tables.contains("| p (gradient-calibrated vs random) |"),
        "{tables}"
    );
    assert!(tables.contains("The shared VAE: VAE on"), "{tables}");
}
