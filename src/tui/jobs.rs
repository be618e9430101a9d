//! What the TUI knows about jobs, folded from the journal's event log. The
//! log is the only source, so a TUI opened mid-job (or after it ended)
//! shows exactly what one that watched all along would.
//!
//! A leaf: imports only the worker's event types.

use crate::journal::{Event, Holder, Job, Logged, Overall};
use crate::project::forecast::{MeasuredRate, training_stage};

/// Most loss points kept per job; older ones are thinned two to one, so a
/// long run's chart keeps its shape at a fixed cost.
const MAX_LOSS_POINTS: usize = 600;
/// Finished jobs remembered.
const MAX_RUNS: usize = 32;
/// A job whose worker is gone is called dead only this long after it
/// started: the lock and the log are read at slightly different times.
const DEATH_GRACE_SECONDS: f64 = 2.0;

/// How a job run ended (or that it has not).
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Running,
    Finished(String),
    Failed(String),
    Cancelled,
}

/// One run of one job, as the log tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRun {
    pub job: Job,
    pub pid: Option<u32>,
    pub device: String,
    /// Seconds since the epoch.
    pub started: f64,
    pub updated: f64,
    pub ended: Option<f64>,
    pub stage: String,
    /// When the current stage began (for rate and ETA of stages that do
    /// not report them, e.g. building the store).
    pub stage_started: f64,
    pub epoch: Option<usize>,
    pub epochs: Option<usize>,
    pub done: u64,
    pub total: u64,
    /// What `done` counts, when the worker said.
    pub unit: Option<String>,
    /// Slices (or volumes) per second, as the worker measured it.
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// What the stage is on now, when the worker said.
    pub detail: Option<String>,
    /// (seconds since start, running loss) from progress reports.
    pub losses: Vec<(f64, f64)>,
    /// (epoch, mean loss) at each checkpoint.
    pub epoch_losses: Vec<(usize, f64)>,
    /// Where a many-step job (a simulation) stands as a whole.
    pub overall: Option<Overall>,
    /// (time, steps done) when this run first reported its overall
    /// position: a resumed job's pace counts only the steps it did itself.
    pub overall_start: Option<(f64, u64)>,
    pub outcome: JobOutcome,
}

impl JobRun {
    fn new(job: Job, pid: Option<u32>, device: &str, time: f64) -> JobRun {
        JobRun {
            job,
            pid,
            device: device.to_string(),
            started: time,
            updated: time,
            ended: None,
            stage: String::new(),
            stage_started: time,
            epoch: None,
            epochs: None,
            done: 0,
            total: 0,
            unit: None,
            rate: None,
            eta_seconds: None,
            detail: None,
            losses: Vec::new(),
            epoch_losses: Vec::new(),
            overall: None,
            overall_start: None,
            outcome: JobOutcome::Running,
        }
    }

    pub fn is_running(&self) -> bool {
        self.outcome == JobOutcome::Running
    }

    /// Wall time from start to end (or to `now` while running).
    pub fn elapsed(&self, now: f64) -> f64 {
        (self.ended.unwrap_or(now) - self.started).max(0.0)
    }

    /// Fraction of the whole job done: for a many-step job its steps plus
    /// the current step's share, else [`JobRun::step_fraction`].
    pub fn fraction(&self) -> f64 {
        match &self.overall {
            Some(o) if o.total > 0 => {
                let within = self.step_fraction().min(0.999);
                ((o.done as f64 + within) / o.total as f64).clamp(0.0, 1.0)
            }
            _ => self.step_fraction(),
        }
    }

    /// Seconds left for a many-step job, from the pace of the steps this
    /// run has done (a resumed job skips those done before).
    pub fn overall_eta(&self, now: f64) -> Option<f64> {
        let o = self.overall.as_ref()?;
        let (since, first) = self.overall_start?;
        let done = o.done.checked_sub(first)?;
        if done == 0 || o.total < o.done {
            return None;
        }
        let spent = (self.ended.unwrap_or(now) - since).max(0.0);
        Some(spent / done as f64 * (o.total - o.done) as f64)
    }

    /// Fraction of the current step done: epochs and batches together when
    /// it has epochs, else the current stage's count.
    pub fn step_fraction(&self) -> f64 {
        let within = if self.total > 0 {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        match (self.epoch, self.epochs) {
            (Some(e), Some(n)) if n > 0 => ((e.saturating_sub(1)) as f64 + within) / n as f64,
            _ => within,
        }
    }

    /// Items per second and seconds left: the worker's figures for
    /// training, else measured from this stage's progress so far.
    pub fn rate_and_eta(&self) -> (Option<f64>, Option<f64>) {
        if self.rate.is_some() || self.eta_seconds.is_some() {
            return (self.rate, self.eta_seconds);
        }
        let spent = self.updated - self.stage_started;
        if self.done == 0 || spent <= 0.0 {
            return (None, None);
        }
        let rate = self.done as f64 / spent;
        let left = self.total.saturating_sub(self.done) as f64 / rate;
        (Some(rate), Some(left))
    }

    fn push_loss(&mut self, t: f64, loss: f64) {
        if !loss.is_finite() {
            return;
        }
        if self.losses.len() >= MAX_LOSS_POINTS {
            let thinned: Vec<(f64, f64)> = self.losses.iter().copied().step_by(2).collect();
            self.losses = thinned;
        }
        self.losses.push((t, loss));
    }
}

/// The jobs of one project, newest last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobTracker {
    pub runs: Vec<JobRun>,
    /// (time, "Training → Suggesting: …") for the round log.
    pub transitions: Vec<(f64, String)>,
    /// The last training rate seen for the VAE and for the U-Net, with
    /// the device it was measured on: the next box's forecasts.
    pub vae_rate: Option<MeasuredRate>,
    pub unet_rate: Option<MeasuredRate>,
}

impl JobTracker {
    pub fn apply(&mut self, logged: &Logged) {
        let t = logged.time;
        match &logged.event {
            Event::JobStarted { job, pid, device } => {
                // A run still open here was killed without a word.
                self.runs.push(JobRun::new(*job, Some(*pid), device, t));
                if self.runs.len() > MAX_RUNS {
                    self.runs.remove(0);
                }
            }
            Event::Progress(p) => {
                let run = self.open_run(p.job, t);
                run.overall.clone_from(&p.overall);
                if let (None, Some(o)) = (run.overall_start, &p.overall) {
                    run.overall_start = Some((t, o.done));
                }
                run.updated = t;
                if run.stage != p.stage {
                    run.stage_started = t;
                    run.stage.clone_from(&p.stage);
                }
                run.epoch = p.epoch;
                run.epochs = p.epochs;
                run.done = p.done;
                run.total = p.total;
                run.unit.clone_from(&p.unit);
                run.rate = p.rate;
                run.eta_seconds = p.eta_seconds;
                run.detail.clone_from(&p.detail);
                if let Some(l) = p.loss {
                    let since = t - run.started;
                    run.push_loss(since, l);
                }
                let device = run.device.clone();
                if let Some(rate) = p.rate.filter(|r| *r > 0.0) {
                    let measured = Some(MeasuredRate {
                        slices_per_second: rate,
                        device,
                    });
                    if p.stage == training_stage(true) {
                        self.vae_rate = measured;
                    } else if p.stage == training_stage(false) {
                        self.unet_rate = measured;
                    }
                }
            }
            Event::Checkpoint {
                job,
                epoch,
                epochs,
                loss,
            } => {
                let run = self.open_run(*job, t);
                run.updated = t;
                run.epochs = Some(*epochs);
                run.epoch_losses.push((*epoch, *loss));
            }
            Event::JobFinished { job, summary } => {
                self.close(*job, t, JobOutcome::Finished(summary.clone()))
            }
            Event::JobFailed { job, error } => {
                self.close(*job, t, JobOutcome::Failed(error.clone()))
            }
            Event::JobCancelled { job } => self.close(*job, t, JobOutcome::Cancelled),
            Event::Transition {
                from,
                to,
                round,
                reason,
            } => self
                .transitions
                .push((t, format!("round {round}: {from} → {to} ({reason})"))),
        }
    }

    /// The open run of `job`, or a new one for events whose start we never
    /// saw (a log written by an older version, or cut).
    fn open_run(&mut self, job: Job, t: f64) -> &mut JobRun {
        let open = self
            .runs
            .iter()
            .rposition(|r| r.job == job && r.is_running());
        let index = match open {
            Some(i) => i,
            None => {
                self.runs.push(JobRun::new(job, None, "", t));
                self.runs.len() - 1
            }
        };
        &mut self.runs[index]
    }

    fn close(&mut self, job: Job, t: f64, outcome: JobOutcome) {
        // A failure logged for a dead worker names its job; it closes the
        // newest open run of that job (or is recorded on its own).
        let run = self.open_run(job, t);
        run.ended = Some(t);
        run.updated = t;
        run.outcome = outcome;
    }

    pub fn latest(&self) -> Option<&JobRun> {
        self.runs.last()
    }

    /// The run the worker holding the lock is doing, if any.
    pub fn active(&self, worker: Option<&Holder>) -> Option<&JobRun> {
        let worker = worker?;
        self.runs
            .iter()
            .rev()
            .find(|r| r.is_running() && r.pid == Some(worker.pid))
    }
}

/// How a run looks given who holds the worker lock now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Running,
    Ended,
    /// The log says running but its worker is gone: killed or crashed.
    Died,
}

pub fn liveness(run: &JobRun, worker: Option<&Holder>, now: f64) -> Liveness {
    if !run.is_running() {
        return Liveness::Ended;
    }
    let alive = worker.is_some_and(|w| Some(w.pid) == run.pid);
    if alive || now - run.started < DEATH_GRACE_SECONDS {
        Liveness::Running
    } else {
        Liveness::Died
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::ProgressReport;

    fn at(time: f64, event: Event) -> Logged {
        Logged { time, event }
    }

    fn progress(job: Job, epoch: usize, done: u64, loss: f64) -> Event {
        Event::Progress(ProgressReport {
            epoch: Some(epoch),
            epochs: Some(4),
            loss: Some(loss),
            rate: Some(20.0),
            eta_seconds: Some(30.0),
            ..ProgressReport::stage(job, "train", done, 10)
        })
    }

    #[test]
    fn folds_a_run_from_start_to_finish() {
        let mut t = JobTracker::default();
        t.apply(&at(
            100.0,
            Event::JobStarted {
                job: Job::Train,
                pid: 7,
                device: "CPU".into(),
            },
        ));
        t.apply(&at(101.0, progress(Job::Train, 2, 5, 0.5)));
        let run = t.latest().expect("a run");
        assert!(run.is_running());
        assert!((run.fraction() - 1.5 / 4.0).abs() < 1e-9);
        assert_eq!(run.losses, vec![(1.0, 0.5)]);
        t.apply(&at(
            103.0,
            Event::JobFinished {
                job: Job::Train,
                summary: "done".into(),
            },
        ));
        let run = t.latest().expect("a run");
        assert_eq!(run.outcome, JobOutcome::Finished("done".into()));
        assert_eq!(run.elapsed(1e9), 3.0);
    }

    #[test]
    fn a_run_without_its_worker_is_dead_after_the_grace() {
        let mut t = JobTracker::default();
        t.apply(&at(
            100.0,
            Event::JobStarted {
                job: Job::TrainVae,
                pid: 7,
                device: "CPU".into(),
            },
        ));
        let run = t.latest().expect("a run").clone();
        let holder = Holder {
            pid: 7,
            job: Job::TrainVae,
            device: "CPU".into(),
            started: 100.0,
        };
        assert_eq!(liveness(&run, Some(&holder), 500.0), Liveness::Running);
        assert_eq!(liveness(&run, None, 101.0), Liveness::Running);
        assert_eq!(liveness(&run, None, 500.0), Liveness::Died);
        assert!(t.active(Some(&holder)).is_some());
    }

    #[test]
    fn loss_history_is_thinned_not_unbounded() {
        let mut t = JobTracker::default();
        for i in 0..5000 {
            t.apply(&at(
                i as f64,
                progress(Job::Train, 1, 1, 1.0 / (1.0 + i as f64)),
            ));
        }
        let run = t.latest().expect("a run");
        assert!(run.losses.len() <= MAX_LOSS_POINTS);
        assert!(
            run.losses.first().expect("points").0 < 10.0,
            "keeps the start"
        );
    }
}
