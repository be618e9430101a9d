//! What cubecl's autotuner is doing, counted as it happens. cubecl has no
//! progress callback, but it announces each kernel shape it starts tuning
//! (`log::info!("Tuning {key}")`) and, with its autotune logger routed to
//! the `log` crate, each result ("Fastest result …"). A `log::Log` here
//! counts both, so a job can show "tuning GPU kernels" with a count instead
//! of minutes of silence; cubecl's warnings (a damaged cache file, a kernel
//! it could not save) go to stderr, which is the worker's log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest key shown; cubecl's keys spell out every dimension.
const KEY_CHARS: usize = 72;

/// Counts of tuning events in this process.
#[derive(Debug, Default)]
pub struct TuningMonitor {
    started: AtomicU64,
    finished: AtomicU64,
    current: Mutex<String>,
    /// Every key announced, in order (a process tunes a few hundred).
    keys: Mutex<Vec<String>>,
}

/// The monitor at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TuningSnapshot {
    /// Kernel shapes whose tuning began (single-candidate ones included).
    pub started: u64,
    /// Kernel shapes benchmarked to a winner.
    pub finished: u64,
    /// The last shape announced, shortened.
    pub current: String,
}

impl TuningSnapshot {
    /// "12 kernels tuned · latest Conv2d 64×128×128 …", or "" before any.
    pub fn describe(&self, since: &TuningSnapshot) -> String {
        let started = self.started.saturating_sub(since.started);
        if started == 0 {
            return String::new();
        }
        let tuned = self.finished.saturating_sub(since.finished);
        let plural = if tuned == 1 { "" } else { "s" };
        if self.current.is_empty() {
            format!("{tuned} kernel{plural} tuned")
        } else {
            format!("{tuned} kernel{plural} tuned · latest {}", self.current)
        }
    }
}

impl TuningMonitor {
    pub fn snapshot(&self) -> TuningSnapshot {
        TuningSnapshot {
            started: self.started.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            current: self.current.lock().map(|c| c.clone()).unwrap_or_default(),
        }
    }

    /// The keys announced after the first `skip`, each on one line: what a
    /// job tuned that its warm-up did not.
    pub fn keys_after(&self, skip: u64) -> Vec<String> {
        self.keys
            .lock()
            .map(|keys| keys.iter().skip(skip as usize).cloned().collect())
            .unwrap_or_default()
    }

    /// Counts one log message, if it is a tuning event.
    pub fn observe(&self, message: &str) {
        if let Some(key) = message.strip_prefix("Tuning ") {
            // Pushed before the count moves, so `keys_after(started)` of a
            // snapshot never misses one.
            if let Ok(mut keys) = self.keys.lock() {
                keys.push(key.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            self.started.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut current) = self.current.lock() {
                *current = shorten(key);
            }
        } else if message.starts_with("Fastest result ") {
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The process's monitor, fed by [`TuningLog`].
pub fn monitor() -> &'static TuningMonitor {
    static MONITOR: std::sync::OnceLock<TuningMonitor> = std::sync::OnceLock::new();
    MONITOR.get_or_init(TuningMonitor::default)
}

/// One line, at most [`KEY_CHARS`] characters.
fn shorten(key: &str) -> String {
    let line = key.lines().next().unwrap_or("").trim();
    if line.chars().count() <= KEY_CHARS {
        line.to_string()
    } else {
        let cut: String = line.chars().take(KEY_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// The `log` sink: feeds the monitor, prints warnings and errors.
struct TuningLog;

impl log::Log for TuningLog {
    /// cubecl's information (its tuning events), everyone's warnings; other
    /// crates' information is dropped before it is formatted.
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
            || (metadata.level() == log::Level::Info && metadata.target().starts_with("cubecl"))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        monitor().observe(&message);
        if record.level() <= log::Level::Warn {
            eprintln!("gpu: {}: {}", record.target(), shorten(&message));
        }
    }

    fn flush(&self) {}
}

/// Routes the `log` crate here, once per process. Another logger installed
/// first (a library caller's) wins, and tuning then goes uncounted.
pub fn install_log() -> bool {
    let installed = log::set_boxed_logger(Box::new(TuningLog)).is_ok();
    if installed {
        log::set_max_level(log::LevelFilter::Info);
    }
    installed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages as cubecl 0.10 formats them (`tune/tuner.rs`).
    const STARTED: &str = "Tuning MatmulAutotuneKey - Definition: m: 128, n: 256, k: 64, lhs_pow2_factor: 4, rhs_pow2_factor: 4, elem_lhs: f32, elem_rhs: f32, elem_out: f32";
    const FINISHED: &str = "Fastest result simple_unit_max-MatmulAutotuneKey - Definition: m: 128. \n Top 3 times: [(1, 10µs)], context: ";

    #[test]
    fn tuning_events_are_counted_and_other_messages_are_not() {
        let monitor = TuningMonitor::default();
        let before = monitor.snapshot();
        assert_eq!(before.describe(&before), "");
        monitor.observe(STARTED);
        monitor.observe("Compiling kernel");
        monitor.observe("Using PTX cache");
        let now = monitor.snapshot();
        assert_eq!((now.started, now.finished), (1, 0));
        assert!(
            now.current
                .starts_with("MatmulAutotuneKey - Definition: m: 128")
        );
        assert!(now.current.ends_with('…') && now.current.chars().count() == KEY_CHARS);
        monitor.observe(FINISHED);
        monitor.observe(STARTED);
        let later = monitor.snapshot();
        assert_eq!((later.started, later.finished), (2, 1));
        assert_eq!(monitor.keys_after(before.started).len(), 2);
        assert_eq!(
            monitor.keys_after(now.started),
            [STARTED.trim_start_matches("Tuning ")]
        );
        assert!(
            later
                .describe(&before)
                .starts_with("1 kernel tuned · latest MatmulAutotuneKey"),
            "{}",
            later.describe(&before)
        );
        assert_eq!(later.describe(&later), "", "nothing since then");
    }

    #[test]
    fn the_log_sink_feeds_the_process_monitor() {
        install_log();
        let before = monitor().snapshot();
        log::info!(target: "cubecl_runtime::tune::tuner", "{STARTED}");
        log::info!(target: "cubecl_common::config::logger", "{FINISHED}");
        log::debug!(target: "cubecl_runtime::tune::tuner", "Tuning below the level");
        let between = monitor().snapshot();
        log::info!(target: "burn_fusion", "Tuning announced by another crate");
        assert_eq!(
            monitor().snapshot().started,
            between.started,
            "only cubecl's"
        );
        let after = monitor().snapshot();
        // Other tests may log at the same time, so at least ours.
        assert!(after.started > before.started, "{after:?}");
        assert!(after.finished > before.finished, "{after:?}");
    }
}
