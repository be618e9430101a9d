//! The worker's reporter: progress and training events into the journal,
//! at most a few per second, with a measured rate and ETA for stages that
//! report only counts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::journal::{Event, EventLog, Job, Overall, ProgressReport};
use crate::progress::{Progress, ProgressUpdate};
use crate::train::{TrainEvent, TrainObserver};

/// Forwards progress and training events to the event log, at most a few
/// per second (plus every stage's end and every epoch end), so the log
/// stays small. Stages that report only counts (encoding, scoring,
/// evaluation, input gradients) get their rate and ETA measured here.
pub struct LogReporter<'a> {
    log: &'a EventLog,
    job: Job,
    last: Mutex<Option<Instant>>,
    /// The stage being measured.
    stage: Mutex<Option<StagePace>>,
    /// The job's overall position, carried on every progress event.
    overall: Mutex<Option<Overall>>,
}

impl<'a> LogReporter<'a> {
    pub fn new(log: &'a EventLog, job: Job) -> Self {
        LogReporter {
            log,
            job,
            last: Mutex::new(None),
            stage: Mutex::new(None),
            overall: Mutex::new(None),
        }
    }

    fn overall_now(&self) -> Option<Overall> {
        self.overall.lock().ok().and_then(|o| o.clone())
    }

    fn due(&self, force: bool) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = Instant::now();
        if force || last.is_none_or(|t| now - t >= Duration::from_millis(500)) {
            *last = Some(now);
            true
        } else {
            false
        }
    }

    /// (rate per second, seconds left) of `stage` at `done` of `total`,
    /// once it has moved since it started.
    fn pace(&self, stage: &str, done: u64, total: u64) -> (Option<f64>, Option<f64>) {
        let Ok(mut slot) = self.stage.lock() else {
            return (None, None);
        };
        // A stage starts over when its name changes, or when its count goes
        // back (a simulation evaluates every round under one name). Reports
        // that repeat the count (a slow first item, heard twice a second)
        // keep the clock running from the stage's start.
        let restarted = slot
            .as_ref()
            .is_none_or(|s| s.name != stage || done < s.last);
        if restarted {
            *slot = Some(StagePace {
                name: stage.to_string(),
                started: Instant::now(),
                from: done,
                last: done,
            });
            return (None, None);
        }
        let Some(pace) = slot.as_mut() else {
            return (None, None);
        };
        pace.last = done;
        let elapsed = pace.started.elapsed().as_secs_f64();
        if done <= pace.from || elapsed <= 0.0 {
            return (None, None);
        }
        let rate = (done - pace.from) as f64 / elapsed;
        (Some(rate), Some(total.saturating_sub(done) as f64 / rate))
    }
}

/// The stage being measured.
struct StagePace {
    name: String,
    started: Instant,
    /// Steps done when it started.
    from: u64,
    /// Steps done at the last report.
    last: u64,
}

impl Progress for LogReporter<'_> {
    fn update(&self, u: &ProgressUpdate<'_>) {
        let (rate, eta_seconds) = self.pace(u.stage, u.done, u.total);
        if self.due(u.done >= u.total) {
            let _ = self.log.append(Event::Progress(ProgressReport {
                unit: Some(u.unit.to_string()),
                rate,
                eta_seconds,
                overall: self.overall_now(),
                detail: (!u.detail.is_empty()).then(|| u.detail.to_string()),
                ..ProgressReport::stage(self.job, u.stage, u.done, u.total)
            }));
        }
    }

    fn overall(&self, done: u64, total: u64, what: &str) {
        let overall = Overall {
            done,
            total,
            what: what.to_string(),
        };
        if let Ok(mut slot) = self.overall.lock() {
            *slot = Some(overall.clone());
        }
        let _ = self.log.append(Event::Progress(ProgressReport {
            overall: Some(overall),
            ..ProgressReport::stage(self.job, "", 0, 0)
        }));
    }
}

impl TrainObserver for LogReporter<'_> {
    fn event(&self, event: &TrainEvent) {
        match event {
            TrainEvent::Batch(b) if self.due(b.batch == b.batches) => {
                let stage = format!("{} training", b.network.name());
                let _ = self.log.append(Event::Progress(ProgressReport {
                    epoch: Some(b.epoch),
                    epochs: Some(b.epochs),
                    loss: Some(b.loss),
                    rate: Some(b.slices_per_second),
                    eta_seconds: Some(b.eta_seconds),
                    overall: self.overall_now(),
                    ..ProgressReport::stage(self.job, stage, b.batch as u64, b.batches as u64)
                }));
            }
            TrainEvent::EpochDone {
                epoch,
                epochs,
                mean_loss,
                ..
            } => {
                let _ = self.log.append(Event::Checkpoint {
                    job: self.job,
                    epoch: *epoch,
                    epochs: *epochs,
                    loss: *mean_loss,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_pace_counts_from_the_stage_start_not_from_the_last_repeated_count() {
        let project = tempfile::tempdir().unwrap();
        let log = EventLog::new(project.path());
        let reporter = LogReporter::new(&log, Job::Train);
        // A slow first item, reported at 0 again and again.
        assert_eq!(reporter.pace("tuning", 0, 10), (None, None));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(reporter.pace("tuning", 0, 10), (None, None));
        std::thread::sleep(Duration::from_millis(50));
        let (rate, eta) = reporter.pace("tuning", 1, 10);
        // 1 item in ≥ 200 ms, not in the 50 ms since the last report at 0.
        let rate = rate.unwrap();
        assert!(rate <= 5.0, "{rate}");
        assert!(eta.unwrap() >= 9.0 / 5.0);
        // A count that goes back starts the stage over (a simulation's
        // next evaluation), as does another stage.
        assert_eq!(reporter.pace("tuning", 0, 10), (None, None));
        assert_eq!(reporter.pace("encoding", 3, 10), (None, None));
        std::thread::sleep(Duration::from_millis(20));
        assert!(reporter.pace("encoding", 4, 10).0.is_some());
    }
}
