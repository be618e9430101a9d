//! The worker's reporter: progress and training events into the journal,
//! at most a few per second, with a measured rate and ETA for stages that
//! report only counts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::gpu::TuningSnapshot;
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
    /// The last progress event the job itself reported, for the tuning
    /// heartbeat to repeat.
    last_report: Mutex<Option<ProgressReport>>,
    /// The tuning counts the heartbeat last saw, and when they last moved.
    tuning_moved: Mutex<Option<((u64, u64), Instant)>>,
}

/// How long after cubecl last started or finished tuning a shape the
/// heartbeat still speaks: longer than one shape's candidates take to
/// compile and time (tens of seconds on an H200), shorter than a job.
pub const TUNING_RECENT: Duration = Duration::from_secs(60);

/// How long a job may fall silent while GPU kernels are tuned before the
/// heartbeat says so, and how often it says it again.
pub const TUNING_HEARTBEAT: Duration = Duration::from_secs(3);

impl<'a> LogReporter<'a> {
    pub fn new(log: &'a EventLog, job: Job) -> Self {
        LogReporter {
            log,
            job,
            last: Mutex::new(None),
            stage: Mutex::new(None),
            overall: Mutex::new(None),
            last_report: Mutex::new(None),
            tuning_moved: Mutex::new(None),
        }
    }

    /// Appends a progress event, remembered for the heartbeat.
    fn report(&self, report: ProgressReport) {
        if let Ok(mut last) = self.last_report.lock() {
            *last = Some(report.clone());
        }
        let _ = self.log.append(Event::Progress(report));
    }

    /// Whether cubecl's tuning counts moved within [`TUNING_RECENT`],
    /// noting `now`'s. The first call only notes them: counts that never
    /// move after it (a warm-up long over) are not tuning now.
    fn tuned_lately(&self, now: &TuningSnapshot) -> bool {
        let Ok(mut moved) = self.tuning_moved.lock() else {
            return false;
        };
        let counts = (now.started, now.finished);
        match moved.as_ref() {
            Some((seen, at)) if *seen == counts => at.elapsed() < TUNING_RECENT,
            Some(_) => {
                *moved = Some((counts, Instant::now()));
                true
            }
            None => {
                *moved = Some((counts, Instant::now() - TUNING_RECENT));
                false
            }
        }
    }

    /// While the job is silent and cubecl tunes kernels it has not met
    /// before (a batch of a new size mid-job, after the warm-up), repeats
    /// the job's last progress with how many it has tuned between `since`
    /// (the job's start) and `now` and the latest shape, every
    /// [`TUNING_HEARTBEAT`]: minutes of tuning inside one batch are never
    /// minutes of silence. Does nothing where nothing was tuned (the CPU, a
    /// warm cache).
    pub fn tuning_heartbeat(&self, since: &TuningSnapshot, now: &TuningSnapshot) {
        let tuning = now.describe(since);
        let lately = self.tuned_lately(now);
        if tuning.is_empty() || !lately {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now - t < TUNING_HEARTBEAT) {
            return;
        }
        let Some(report) = self.last_report.lock().ok().and_then(|r| r.clone()) else {
            return;
        };
        *last = Some(now);
        let detail = match report.detail.as_deref() {
            Some(d) if !d.is_empty() => format!("{d}; GPU tuning: {tuning}"),
            _ => format!("GPU tuning: {tuning}"),
        };
        // The rate is not repeated: it is no new measurement (a forecast
        // takes the median of the logged rates) and not the pace while a
        // kernel tunes. The ETA stands: the work left at the measured pace.
        let _ = self.log.append(Event::Progress(ProgressReport {
            detail: Some(detail),
            rate: None,
            ..report
        }));
    }

    fn overall_now(&self) -> Option<Overall> {
        self.overall.lock().ok().and_then(|o| o.clone())
    }

    /// Whether `stage` is not the one last reported: its start is always
    /// written, or a slow first batch (a GPU tuning its kernels) would
    /// leave the job view on the last stage, done, with an ETA of 0 s.
    fn is_new_stage(&self, stage: &str) -> bool {
        self.last_report
            .lock()
            .ok()
            .is_none_or(|last| last.as_ref().is_none_or(|r| r.stage != stage))
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
        if self.due(u.done >= u.total || self.is_new_stage(u.stage)) {
            self.report(ProgressReport {
                unit: Some(u.unit.to_string()),
                rate,
                eta_seconds,
                overall: self.overall_now(),
                detail: (!u.detail.is_empty()).then(|| u.detail.to_string()),
                ..ProgressReport::stage(self.job, u.stage, u.done, u.total)
            });
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
            TrainEvent::Batch(b) => {
                let stage = format!("{} training", b.network.name());
                if !self.due(b.batch == b.batches || self.is_new_stage(&stage)) {
                    return;
                }
                self.report(ProgressReport {
                    epoch: Some(b.epoch),
                    epochs: Some(b.epochs),
                    loss: Some(b.loss),
                    rate: Some(b.slices_per_second),
                    eta_seconds: Some(b.eta_seconds),
                    overall: self.overall_now(),
                    ..ProgressReport::stage(self.job, stage, b.batch as u64, b.batches as u64)
                });
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

    /// The progress events in `log`, oldest first.
    fn progress_in(log: &EventLog) -> Vec<ProgressReport> {
        log.read_all()
            .unwrap()
            .into_iter()
            .filter_map(|l| match l.event {
                Event::Progress(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_silent_job_that_tunes_kernels_says_so_and_one_that_does_not_stays_quiet() {
        let project = tempfile::tempdir().unwrap();
        let log = EventLog::new(project.path());
        let reporter = LogReporter::new(&log, Job::Train);
        let progress_events = || progress_in(&log);
        reporter.update(&ProgressUpdate {
            stage: "U-Net training",
            done: 3,
            total: 10,
            unit: "batches",
            detail: "epoch 1",
        });
        let since = TuningSnapshot::default();
        // Nothing tuned: no heartbeat, however long the silence.
        *reporter.last.lock().unwrap() = Some(Instant::now() - TUNING_HEARTBEAT);
        reporter.tuning_heartbeat(&since, &since);
        assert_eq!(progress_events().len(), 1);
        // cubecl tunes a shape mid-job (the counts move).
        let tuning = TuningSnapshot {
            started: 2,
            finished: 1,
            current: "MatmulAutotuneKey m: 7".into(),
        };
        reporter.tuning_heartbeat(&since, &tuning);
        let events = progress_events();
        assert_eq!(events.len(), 2, "{events:?}");
        let beat = &events[1];
        assert_eq!(
            (beat.stage.as_str(), beat.done, beat.total),
            ("U-Net training", 3, 10)
        );
        let detail = beat.detail.clone().unwrap();
        assert_eq!(
            detail,
            "epoch 1; GPU tuning: 1 kernel tuned · latest MatmulAutotuneKey m: 7"
        );
        // Not again before the next heartbeat is due.
        reporter.tuning_heartbeat(&since, &tuning);
        assert_eq!(progress_events().len(), 2);
        // Counts that stopped moving long ago are not tuning now.
        *reporter.last.lock().unwrap() = Some(Instant::now() - TUNING_HEARTBEAT);
        *reporter.tuning_moved.lock().unwrap() = Some(((2, 1), Instant::now() - TUNING_RECENT));
        reporter.tuning_heartbeat(&since, &tuning);
        assert_eq!(progress_events().len(), 2);
    }

    #[test]
    fn the_tuning_heartbeat_repeats_a_trainings_eta_but_not_its_rate() {
        let project = tempfile::tempdir().unwrap();
        let log = EventLog::new(project.path());
        let reporter = LogReporter::new(&log, Job::Train);
        reporter.event(&TrainEvent::Batch(crate::train::BatchProgress {
            network: crate::train::Network::Unet,
            epoch: 1,
            epochs: 2,
            batch: 1,
            batches: 4,
            loss: 0.5,
            slices_per_second: 40.0,
            eta_seconds: 1.4,
        }));
        let since = TuningSnapshot::default();
        let tuning = TuningSnapshot {
            started: 1,
            finished: 0,
            current: "ConvAutotuneKey".into(),
        };
        reporter.tuning_heartbeat(&since, &since);
        *reporter.last.lock().unwrap() = Some(Instant::now() - TUNING_HEARTBEAT);
        reporter.tuning_heartbeat(&since, &tuning);
        let events = progress_in(&log);
        assert_eq!(events.len(), 2, "{events:?}");
        let (first, beat) = (&events[0], &events[1]);
        assert_eq!(first.rate, Some(40.0));
        assert_eq!(beat.rate, None);
        assert_eq!(beat.eta_seconds, Some(1.4));
        assert_eq!((beat.done, beat.total, beat.loss), (1, 4, Some(0.5)));
    }

    #[test]
    fn a_new_stage_is_reported_at_once_and_repeats_within_half_a_second_are_not() {
        let project = tempfile::tempdir().unwrap();
        let log = EventLog::new(project.path());
        let reporter = LogReporter::new(&log, Job::TrainVae);
        let stages = || {
            progress_in(&log)
                .into_iter()
                .map(|p| (p.stage, p.done))
                .collect::<Vec<_>>()
        };
        let update = |stage, done| {
            reporter.update(&ProgressUpdate {
                stage,
                done,
                total: 10,
                unit: "slices",
                detail: "",
            })
        };
        update("VAE training", 3);
        update("VAE training", 4);
        // The next stage starts within the same half second.
        update("VAE quality", 0);
        update("VAE quality", 1);
        assert_eq!(
            stages(),
            [
                ("VAE training".to_string(), 3),
                ("VAE quality".to_string(), 0)
            ]
        );
    }

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
