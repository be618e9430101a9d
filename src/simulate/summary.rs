//! The comparison the paper reports in its Tables 3–5: per region and
//! budget, each strategy's mean ± std, the best in bold, and a Wilcoxon
//! signed-rank p-value between the best two. Values are pooled over seeds
//! and test volumes; the test pairs them by (seed, volume), which shares
//! the seed batch across strategies (the seed fixes the random first round).

use std::collections::{BTreeMap, BTreeSet};

use crate::eval::{Summary, summarize, wilcoxon_paired};

use super::plan::FULL_DATA;
use super::results::Row;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Dice,
    Hd95,
}

impl Metric {
    pub fn of(self, row: &Row) -> f64 {
        match self {
            Metric::Dice => row.dice,
            Metric::Hd95 => row.hd95_mm,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::Dice => "Dice",
            Metric::Hd95 => "HD95 (mm)",
        }
    }

    fn better(self, a: f64, b: f64) -> bool {
        match self {
            Metric::Dice => a > b,
            Metric::Hd95 => a < b,
        }
    }
}

/// Names in the order they first appear.
fn ordered<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

pub fn regions(rows: &[Row]) -> Vec<String> {
    ordered(rows.iter().map(|r| r.region.as_str()))
}

/// Strategies compared, the full-data reference left out.
pub fn strategies(rows: &[Row]) -> Vec<String> {
    ordered(
        rows.iter()
            .filter(|r| r.strategy != FULL_DATA)
            .map(|r| r.strategy.as_str()),
    )
}

/// (round, % of the pool labelled) of every round the strategies reached.
pub fn budgets(rows: &[Row]) -> Vec<(usize, f64)> {
    let mut by_round: BTreeMap<usize, f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.strategy != FULL_DATA) {
        by_round.insert(r.round, r.budget_percent);
    }
    by_round.into_iter().collect()
}

/// (seed, case) → value for one strategy, round and region.
fn paired(
    rows: &[Row],
    strategy: &str,
    round: Option<usize>,
    region: &str,
    metric: Metric,
) -> BTreeMap<(usize, String), f64> {
    rows.iter()
        .filter(|r| {
            r.strategy == strategy && r.region == region && round.is_none_or(|k| r.round == k)
        })
        .map(|r| ((r.seed, r.case.clone()), metric.of(r)))
        .collect()
}

pub fn cell(
    rows: &[Row],
    strategy: &str,
    round: Option<usize>,
    region: &str,
    metric: Metric,
) -> Summary {
    let values: Vec<f64> = paired(rows, strategy, round, region, metric)
        .into_values()
        .collect();
    summarize(&values)
}

/// One strategy's curve: (% labelled, summary) per round.
pub fn curve(rows: &[Row], strategy: &str, region: &str, metric: Metric) -> Vec<(f64, Summary)> {
    budgets(rows)
        .into_iter()
        .map(|(round, budget)| (budget, cell(rows, strategy, Some(round), region, metric)))
        .filter(|(_, s)| s.n > 0)
        .collect()
}

/// The best two strategies at one budget and the p-value of their paired
/// difference (NaN when it cannot be tested).
pub struct Contest {
    pub best: String,
    /// The best mean; strategies that tie with it share the bold.
    pub best_mean: f64,
    pub second: Option<(String, f64)>,
}

pub fn contest(rows: &[Row], round: usize, region: &str, metric: Metric) -> Option<Contest> {
    let mut ranked: Vec<(String, f64)> = strategies(rows)
        .into_iter()
        .map(|s| {
            let m = cell(rows, &s, Some(round), region, metric).mean;
            (s, m)
        })
        .filter(|(_, m)| !m.is_nan())
        .collect();
    ranked.sort_by(|a, b| {
        if metric.better(a.1, b.1) {
            std::cmp::Ordering::Less
        } else if metric.better(b.1, a.1) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let (best, best_mean) = ranked.first()?.clone();
    let second = ranked
        .get(1)
        .map(|(s, _)| (s.clone(), paired_p(rows, &best, s, round, region, metric)));
    Some(Contest {
        best,
        best_mean,
        second,
    })
}

/// Two-sided Wilcoxon signed-rank p of strategies `a` and `b` at one
/// round, paired by (seed, volume); NaN when it cannot be tested.
pub fn paired_p(rows: &[Row], a: &str, b: &str, round: usize, region: &str, metric: Metric) -> f64 {
    let a = paired(rows, a, Some(round), region, metric);
    let b = paired(rows, b, Some(round), region, metric);
    let (x, y): (Vec<f64>, Vec<f64>) = a
        .iter()
        .filter_map(|(k, va)| b.get(k).map(|vb| (*va, *vb)))
        .filter(|(va, vb)| va.is_finite() && vb.is_finite())
        .unzip();
    wilcoxon_paired(&x, &y).map_or(f64::NAN, |w| w.p_value)
}

/// The baseline every gradient arm is tested against, by name.
const RANDOM: &str = "random";

fn format_p(p: f64) -> String {
    if p.is_nan() {
        "—".into()
    } else if p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// Markdown: one table per region and metric.
pub fn markdown(rows: &[Row]) -> String {
    let budgets = budgets(rows);
    let strategies = strategies(rows);
    let seeds = rows.iter().map(|r| r.seed).collect::<BTreeSet<_>>().len();
    let cases = rows.iter().map(|r| &r.case).collect::<BTreeSet<_>>().len();
    let mut out = format!(
        "# Simulation summary\n\nMean ± std over {seeds} seed(s) × {cases} test volume(s); the best strategy per budget in bold; p: two-sided Wilcoxon signed-rank test of the best two, paired by (seed, volume).\n"
    );
    for region in regions(rows) {
        for metric in [Metric::Dice, Metric::Hd95] {
            out += &format!("\n## {region} · {}\n\n| strategy |", metric.label());
            for (_, b) in &budgets {
                out += &format!(" {b:.1}% |");
            }
            out += "\n|---|";
            out += &"---|".repeat(budgets.len());
            out += "\n";
            let contests: Vec<Option<Contest>> = budgets
                .iter()
                .map(|&(round, _)| contest(rows, round, &region, metric))
                .collect();
            for s in &strategies {
                out += &format!("| {s} |");
                for (&(round, _), c) in budgets.iter().zip(&contests) {
                    let v = cell(rows, s, Some(round), &region, metric);
                    let text = if v.n == 0 {
                        "—".to_string()
                    } else {
                        format!("{:.3} ± {:.3}", v.mean, v.std)
                    };
                    if c.as_ref().is_some_and(|c| v.n > 0 && v.mean == c.best_mean) {
                        out += &format!(" **{text}** |");
                    } else {
                        out += &format!(" {text} |");
                    }
                }
                out += "\n";
            }
            out += "| p (best vs second) |";
            for c in &contests {
                match c.as_ref().and_then(|c| c.second.as_ref()) {
                    Some((second, p)) => out += &format!(" {} (vs {second}) |", format_p(*p)),
                    None => out += " — |",
                }
            }
            out += "\n";
            // The paper's question, whoever is second: each gradient arm
            // against random, at every budget.
            if strategies.iter().any(|s| s == RANDOM) {
                for s in strategies.iter().filter(|s| s.starts_with("gradient")) {
                    out += &format!("| p ({s} vs {RANDOM}) |");
                    for &(round, _) in &budgets {
                        let p = paired_p(rows, s, RANDOM, round, &region, metric);
                        out += &format!(" {} |", format_p(p));
                    }
                    out += "\n";
                }
            }
            let reference = cell(rows, FULL_DATA, None, &region, metric);
            if reference.n > 0 {
                out += &format!(
                    "\nFull data (every pool slice labelled): {:.3} ± {:.3}\n",
                    reference.mean, reference.std
                );
                if metric == Metric::Dice && reference.mean > 0.0 {
                    out += &format!(
                        "\nShare of full-data {region} Dice (mean over mean):\n\n| strategy |"
                    );
                    for (_, b) in &budgets {
                        out += &format!(" {b:.1}% |");
                    }
                    out += "\n|---|";
                    out += &"---|".repeat(budgets.len());
                    out += "\n";
                    for s in &strategies {
                        out += &format!("| {s} |");
                        for &(round, _) in &budgets {
                            let v = cell(rows, s, Some(round), &region, metric);
                            if v.n == 0 {
                                out += " — |";
                            } else {
                                out += &format!(" {:.1}% |", 100.0 * v.mean / reference.mean);
                            }
                        }
                        out += "\n";
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(strategy: &str, seed: usize, round: usize, case: &str, dice: f64) -> Row {
        Row {
            strategy: strategy.into(),
            seed,
            round,
            labelled: 10 * (round + 1),
            budget_percent: 2.0 * (round + 1) as f64,
            case: case.into(),
            region: "WT".into(),
            dice,
            hd95_mm: 10.0 * (1.0 - dice),
        }
    }

    /// Gradient beats random on all six (seed, volume) pairs at round 1;
    /// they tie in round 0 (same seed batch).
    fn sample() -> Vec<Row> {
        let mut rows = Vec::new();
        for seed in 0..3 {
            for (k, case) in ["a", "b"].iter().enumerate() {
                let base = 0.3 + 0.1 * k as f64 + 0.01 * seed as f64;
                rows.push(row("gradient", seed, 0, case, base));
                rows.push(row("random", seed, 0, case, base));
                let better = base + 0.2 + 0.01 * k as f64 + 0.002 * seed as f64;
                rows.push(row("gradient", seed, 1, case, better));
                rows.push(row("random", seed, 1, case, base + 0.1));
            }
            rows.push(row(FULL_DATA, seed, 0, "a", 0.9));
        }
        rows
    }

    #[test]
    fn the_table_bolds_the_best_and_tests_it_against_the_second() {
        let rows = sample();
        let c = contest(&rows, 1, "WT", Metric::Dice).expect("a contest");
        assert_eq!(c.best, "gradient");
        let (second, p) = c.second.expect("a second");
        assert_eq!(second, "random");
        // Six pairs, all in gradient's favour: exact p = 2/2⁶.
        assert!((p - 2.0 / 64.0).abs() < 1e-12, "p = {p}");
        // Lower HD95 is better: the same winner.
        let h = contest(&rows, 1, "WT", Metric::Hd95).expect("a contest");
        assert_eq!(h.best, "gradient");
        let text = markdown(&rows);
        assert!(text.contains("| 2.0% | 4.0% |"), "{text}");
        assert!(text.contains("**0.567 ± 0.061**"), "{text}");
        assert!(text.contains("0.031 (vs random)"), "{text}");
        assert!(text.contains("Full data (every pool slice labelled): 0.900 ± 0.000"));
        // Gradient against random at each budget, whoever wins.
        assert!(
            text.contains("| p (gradient vs random) | — | 0.031 |"),
            "{text}"
        );
        // 0.567 / 0.9 of the full-data Dice at 4%.
        assert!(text.contains("| gradient | 40.0% | 63.0% |"), "{text}");
        // Round 0 is a tie on every pair: nothing to test, both in bold.
        let tie = contest(&rows, 0, "WT", Metric::Dice).expect("a contest");
        assert!(tie.second.expect("a second").1.is_nan());
        assert!(text.contains("| gradient | **0.360 ± 0.055** |"), "{text}");
        assert!(text.contains("| random | **0.360 ± 0.055** |"), "{text}");
    }

    #[test]
    fn curves_follow_the_budgets() {
        let rows = sample();
        let curve = curve(&rows, "random", "WT", Metric::Dice);
        assert_eq!(curve.len(), 2);
        assert_eq!(curve[0].0, 2.0);
        assert_eq!(curve[1].0, 4.0);
        assert!((curve[1].1.mean - curve[0].1.mean - 0.1).abs() < 1e-9);
        assert_eq!(budgets(&rows), vec![(0, 2.0), (1, 4.0)]);
        assert_eq!(strategies(&rows), vec!["gradient", "random"]);
    }
}
