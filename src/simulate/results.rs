//! The simulation's measurements, one row per (arm, seed, round, test
//! volume, region), gathered from each run's `rounds/NNN/evaluation.csv` and
//! written to `simulate/results.csv`.

use std::path::Path;

use crate::fsutil::write_atomic;
use crate::project::Project;

use super::SimulateError;
use super::plan::{Arm, DAL_FIRST_MEMBER, RunSpec};
use crate::config::Strategy;
use crate::layout::{EVALUATION_FILE, EVALUATION_FIRST_MEMBER_FILE};

pub const RESULTS_FILE: &str = "results.csv";
const HEADER: &str = "strategy,seed,round,labelled,budget_percent,case,region,dice,hd95_mm";

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub strategy: String,
    pub seed: usize,
    pub round: usize,
    pub labelled: usize,
    /// Labelled slices as a percentage of the pool.
    pub budget_percent: f64,
    pub case: String,
    pub region: String,
    pub dice: f64,
    pub hd95_mm: f64,
}

/// The evaluated rounds of one run; a DAL run also gives its first
/// member's scores as rows of their own.
pub fn of_run(run: &Project, spec: &RunSpec) -> Result<Vec<Row>, SimulateError> {
    let state = run.state()?;
    let mut rows = Vec::new();
    for record in state.history.iter().filter(|r| !r.dice.is_empty()) {
        let dir = run.round_dir(record.round);
        let mut files = vec![(spec.arm.name(), dir.join(EVALUATION_FILE))];
        let first = dir.join(EVALUATION_FIRST_MEMBER_FILE);
        if spec.arm == Arm::Strategy(Strategy::Dal) && first.exists() {
            files.push((DAL_FIRST_MEMBER.to_string(), first));
        }
        for (strategy, path) in files {
            let text = std::fs::read_to_string(&path).map_err(|source| SimulateError::Io {
                path: path.clone(),
                source,
            })?;
            for (n, line) in text.lines().enumerate().skip(1) {
                let bad =
                    || SimulateError::Invalid(format!("{}:{}: unreadable", path.display(), n + 1));
                let fields: Vec<&str> = line.split(',').collect();
                let [case, region, dice, hd95] = fields[..] else {
                    return Err(bad());
                };
                rows.push(Row {
                    strategy: strategy.clone(),
                    seed: spec.seed,
                    round: spec.reported_round(record.round),
                    labelled: record.labelled,
                    budget_percent: 100.0 * record.budget,
                    case: case.to_string(),
                    region: region.to_string(),
                    dice: dice.parse().map_err(|_| bad())?,
                    hd95_mm: hd95.parse().map_err(|_| bad())?,
                });
            }
        }
    }
    Ok(rows)
}

pub fn to_csv(rows: &[Row]) -> String {
    let mut csv = format!("{HEADER}\n");
    for r in rows {
        csv += &format!(
            "{},{},{},{},{:.4},{},{},{},{}\n",
            r.strategy,
            r.seed,
            r.round,
            r.labelled,
            r.budget_percent,
            r.case,
            r.region,
            r.dice,
            r.hd95_mm
        );
    }
    csv
}

pub fn write(path: &Path, rows: &[Row]) -> Result<(), SimulateError> {
    write_atomic(path, to_csv(rows).as_bytes()).map_err(|source| SimulateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a results file written by `write`.
pub fn read(path: &Path) -> Result<Vec<Row>, SimulateError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimulateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|line| {
        SimulateError::Invalid(format!("{}:{line}: unreadable row", path.display()))
    })
}

/// Rows of a results file; `Err(line number)` at the first bad row.
pub fn parse(text: &str) -> Result<Vec<Row>, usize> {
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, l)| l.trim()) != Some(HEADER) {
        return Err(1);
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| parse_row(line).ok_or(n + 1))
        .collect()
}

fn parse_row(line: &str) -> Option<Row> {
    let f: Vec<&str> = line.split(',').collect();
    let [
        strategy,
        seed,
        round,
        labelled,
        budget,
        case,
        region,
        dice,
        hd95,
    ] = f[..]
    else {
        return None;
    };
    Some(Row {
        strategy: strategy.to_string(),
        seed: seed.parse().ok()?,
        round: round.parse().ok()?,
        labelled: labelled.parse().ok()?,
        budget_percent: budget.parse().ok()?,
        case: case.to_string(),
        region: region.to_string(),
        dice: dice.parse().ok()?,
        hd95_mm: hd95.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_round_trip_through_csv() {
        let rows = vec![Row {
            strategy: "gradient".into(),
            seed: 2,
            round: 1,
            labelled: 14,
            budget_percent: 4.0,
            case: "phantom_003".into(),
            region: "WT".into(),
            dice: 0.625,
            hd95_mm: 12.5,
        }];
        assert_eq!(parse(&to_csv(&rows)), Ok(rows));
        assert_eq!(parse("strategy,seed\n"), Err(1));
        assert_eq!(parse(&format!("{HEADER}\nx,1,2\n")), Err(2));
    }
}
