//! Progress of slow work, reported through a small trait so the same code can
//! feed a terminal bar, the worker's event log or nothing at all.
//!
//! Imports nothing of the crate.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One step of a long task: `done` of `total` `unit`s of `stage`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressUpdate<'a> {
    pub stage: &'a str,
    pub done: u64,
    pub total: u64,
    pub unit: &'a str,
    /// What was just finished, e.g. a case id.
    pub detail: &'a str,
}

pub trait Progress: Sync {
    fn update(&self, update: &ProgressUpdate<'_>);
    /// Where a job made of many steps stands as a whole (`done` of `total`
    /// steps, now doing `what`), for an overall ETA above each step's own
    /// progress. Reporters that show one bar may ignore it.
    fn overall(&self, _done: u64, _total: u64, _what: &str) {}
}

/// Discards progress (tests, library callers that do not care).
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _: &ProgressUpdate<'_>) {}
}

/// Progress on stderr with rate and ETA: on a terminal one line redrawn at
/// most ten times a second (cheap over SSH); in a log file one line per 10%.
pub struct StderrProgress {
    state: Mutex<BarState>,
    terminal: bool,
}

struct BarState {
    stage: String,
    started: Instant,
    last_draw: Option<Instant>,
    last_decile: u64,
}

impl Default for StderrProgress {
    fn default() -> Self {
        use std::io::IsTerminal;
        StderrProgress {
            state: Mutex::new(BarState {
                stage: String::new(),
                started: Instant::now(),
                last_draw: None,
                last_decile: 0,
            }),
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for StderrProgress {
    fn update(&self, u: &ProgressUpdate<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        let now = Instant::now();
        if s.stage != u.stage {
            s.stage = u.stage.to_string();
            s.started = now;
            s.last_draw = None;
            s.last_decile = 0;
        }
        let finished = u.done >= u.total;
        let line = format_line(u, now - s.started);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            if !finished
                && s.last_draw
                    .is_some_and(|t| now - t < Duration::from_millis(100))
            {
                return;
            }
            s.last_draw = Some(now);
            let _ = write!(err, "\r\x1b[2K{line}");
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let decile = (10 * u.done).checked_div(u.total).unwrap_or(10);
            if decile > s.last_decile || s.last_draw.is_none() {
                s.last_decile = decile;
                s.last_draw = Some(now);
                let _ = writeln!(err, "{line}");
            }
        }
        let _ = err.flush();
    }
}

/// "stage  12/40 volumes  30%  4.1 volumes/s  ETA 7s  (case_012)".
pub fn format_line(u: &ProgressUpdate<'_>, elapsed: Duration) -> String {
    let pct = (100 * u.done).checked_div(u.total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let mut line = format!("{}  {}/{} {}  {pct}%", u.stage, u.done, u.total, u.unit);
    if u.done > 0 && secs > 0.0 {
        let rate = u.done as f64 / secs;
        line += &format!("  {rate:.1} {}/s", u.unit);
        if u.done < u.total {
            let eta = (u.total - u.done) as f64 / rate;
            line += &format!("  ETA {}", format_duration(Duration::from_secs_f64(eta)));
        } else {
            line += &format!("  in {}", format_duration(elapsed));
        }
    }
    if !u.detail.is_empty() {
        line += &format!("  ({})", u.detail);
    }
    line
}

/// Short human durations: "42s", "3m05s", "1h02m".
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!(
            "{:.0}s",
            d.as_secs_f64().max(if s == 0 { 0.0 } else { 1.0 })
        )
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_rate_and_eta() {
        let u = ProgressUpdate {
            stage: "store",
            done: 5,
            total: 20,
            unit: "volumes",
            detail: "c5",
        };
        let line = format_line(&u, Duration::from_secs(10));
        assert_eq!(
            line,
            "store  5/20 volumes  25%  0.5 volumes/s  ETA 30s  (c5)"
        );
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }
}
