//! One line per event of the journal, as `logs`, `status` and `--wait`
//! print them.

use std::time::Duration;

use nextslice::journal::{Event, Logged, ProgressReport};
use nextslice::progress::format_duration;

/// One line per event, as `logs` prints them.
pub fn describe(e: &Logged) -> String {
    match &e.event {
        Event::JobStarted { job, pid, device } => format!("{job}: started (pid {pid}, {device})"),
        Event::Progress(ProgressReport {
            job,
            stage,
            epoch,
            epochs,
            done,
            total,
            unit,
            loss,
            rate,
            eta_seconds,
            overall,
            detail,
        }) => {
            let mut s = match overall {
                Some(o) => format!("{job} [{}/{} trainings · {}]", o.done, o.total, o.what),
                None => job.to_string(),
            };
            if !stage.is_empty() {
                s += &format!(": {stage}");
            }
            if let (Some(e), Some(n)) = (epoch, epochs) {
                s += &format!(" epoch {e}/{n}");
            }
            if *total > 0 {
                s += &format!(" {done}/{total}");
            }
            if let Some(l) = loss {
                s += &format!(" loss {l:.4}");
            }
            if let Some(r) = rate {
                s += &format!(" {r:.1} {}/s", unit.as_deref().unwrap_or("slices"));
            }
            if let Some(eta) = eta_seconds {
                s += &format!(
                    " ETA {}",
                    format_duration(Duration::from_secs_f64(eta.max(0.0)))
                );
            }
            if let Some(d) = detail {
                s += &format!(" ({d})");
            }
            s
        }
        Event::Checkpoint {
            job,
            epoch,
            epochs,
            loss,
        } => format!("{job}: epoch {epoch}/{epochs} done, mean loss {loss:.4} (checkpoint saved)"),
        Event::JobFinished { job, summary } => format!("{job}: finished — {summary}"),
        Event::JobFailed { job, error } => format!("{job}: FAILED — {error}"),
        Event::JobCancelled { job } => format!("{job}: cancelled"),
        Event::Transition {
            from,
            to,
            round,
            reason,
        } => format!("round {round}: {from} → {to} ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextslice::journal::Job;

    #[test]
    fn a_progress_line_carries_its_detail() {
        let logged = Logged {
            time: 0.0,
            event: Event::Progress(ProgressReport {
                unit: Some("workloads".into()),
                rate: Some(0.5),
                eta_seconds: Some(6.0),
                detail: Some("VAE encoding, batch 32; 3 kernels tuned".into()),
                ..ProgressReport::stage(Job::Train, "tuning GPU kernels", 2, 5)
            }),
        };
        assert_eq!(
            describe(&logged),
            "train: tuning GPU kernels 2/5 0.5 workloads/s ETA 6s (VAE encoding, batch 32; 3 kernels tuned)"
        );
    }
}
