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
/// most ten times a second (cheap over SSH); in a log file one line per 10%,
/// and between those, when the detail changes, one line per
/// [`LOG_HEARTBEAT`] at most: a step that runs for minutes (tuning a GPU's
/// kernels) says what it is doing instead of falling silent.
pub struct StderrProgress {
    state: Mutex<BarState>,
    terminal: bool,
}

/// The longest a log file waits for a changed detail between deciles.
pub const LOG_HEARTBEAT: Duration = Duration::from_secs(15);

struct BarState {
    stage: String,
    started: Instant,
    last_draw: Option<Instant>,
    last_decile: u64,
    last_detail: String,
}

impl BarState {
    /// Whether a log file gets `u` as a line at `now` (and if so, notes it).
    fn log_line_due(&mut self, u: &ProgressUpdate<'_>, now: Instant) -> bool {
        let decile = (10 * u.done).checked_div(u.total).unwrap_or(10);
        let news = u.detail != self.last_detail
            && self
                .last_draw
                .is_some_and(|t| now.saturating_duration_since(t) >= LOG_HEARTBEAT);
        if decile > self.last_decile || self.last_draw.is_none() || news {
            self.last_decile = self.last_decile.max(decile);
            self.last_draw = Some(now);
            self.last_detail = u.detail.to_string();
            return true;
        }
        false
    }
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
                last_detail: String::new(),
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
            s.last_detail.clear();
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
        } else if s.log_line_due(u, now) {
            let _ = writeln!(err, "{line}");
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

    #[test]
    fn a_log_gets_deciles_and_changed_details_at_most_once_per_heartbeat() {
        let start = Instant::now();
        let mut state = BarState {
            stage: "tuning GPU kernels".into(),
            started: start,
            last_draw: None,
            last_decile: 0,
            last_detail: String::new(),
        };
        let at = |done: u64, detail: &'static str| ProgressUpdate {
            stage: "tuning GPU kernels",
            done,
            total: 5,
            unit: "workloads",
            detail,
        };
        let secs = |s: u64| start + Duration::from_secs(s);
        // The first line, whatever it says.
        assert!(state.log_line_due(&at(0, "VAE"), secs(0)));
        // A changed detail waits for the heartbeat; an unchanged one never comes.
        assert!(!state.log_line_due(&at(0, "VAE; 3 kernels tuned"), secs(5)));
        assert!(state.log_line_due(&at(0, "VAE; 9 kernels tuned"), secs(16)));
        assert!(!state.log_line_due(&at(0, "VAE; 12 kernels tuned"), secs(20)));
        // A new decile comes at once, the detail changed or not.
        assert!(state.log_line_due(&at(1, "VAE; 12 kernels tuned"), secs(21)));
        assert!(!state.log_line_due(&at(1, "VAE; 12 kernels tuned"), secs(90)));
    }
}
