//! Keeps `events.jsonl` small over months of use. Progress reports are
//! almost all of its lines; once a job is over only its last report per
//! stage still says anything (where it got to, the rate it measured). So
//! when the log outgrows `COMPACT_ABOVE`, the worker — holding the
//! project's lock, before it logs its own start — rewrites it keeping every
//! other event, all of the most recent jobs' reports, and the last report
//! per (job, stage) of the older ones. The new log replaces the old by an
//! atomic rename; readers notice the new file and skip what they have seen
//! (`Cursor`).

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::FileExt;

use super::events::{Event, EventLog, EventLogError, Logged};

/// Logs above this size are compacted when a job starts.
pub const COMPACT_ABOVE: u64 = 8 << 20;
/// Jobs, counted back from the newest, whose progress is kept in full (the
/// TUI's loss curves of recent jobs).
pub const KEEP_FULL_JOBS: usize = 4;

/// The events worth keeping, in order.
pub fn compacted(events: &[Logged], keep_full_jobs: usize) -> Vec<&Logged> {
    let starts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.event, Event::JobStarted { .. }))
        .map(|(i, _)| i)
        .collect();
    let full_from = starts
        .len()
        .checked_sub(keep_full_jobs)
        .map_or(0, |k| starts[k]);
    // Walking backwards, the first report seen per (run, stage) is its last.
    let mut seen: HashSet<(usize, &str)> = HashSet::new();
    let mut keep = vec![true; events.len()];
    for (i, e) in events.iter().enumerate().rev() {
        if i >= full_from {
            continue;
        }
        if let Event::Progress(p) = &e.event {
            let run = starts.iter().rposition(|&s| s <= i).unwrap_or(usize::MAX);
            keep[i] = seen.insert((run, p.stage.as_str()));
        }
    }
    events
        .iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

impl EventLog {
    /// Compacts the log if it is larger than `above` bytes; returns the
    /// sizes before and after when it did. Call only while holding the
    /// worker lock: other writers then are at most a failing start, whose
    /// line — if it lands in the old file during the rewrite — is carried
    /// over after the rename.
    pub fn compact_if_larger(&self, above: u64) -> Result<Option<(u64, u64)>, EventLogError> {
        let fail = |source: std::io::Error| EventLogError {
            path: self.path().to_path_buf(),
            source,
        };
        let mut old = match std::fs::File::open(self.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let before = old.metadata().map_err(fail)?.len();
        if before <= above {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(before as usize);
        old.read_to_end(&mut bytes).map_err(fail)?;
        let read = bytes.len() as u64;
        let events: Vec<Logged> = bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        let mut text = Vec::new();
        for e in compacted(&events, KEEP_FULL_JOBS) {
            serde_json::to_writer(&mut text, e).map_err(|e| fail(e.into()))?;
            text.push(b'\n');
        }
        crate::fsutil::write_atomic(self.path(), &text).map_err(fail)?;
        // Anything appended to the old file meanwhile goes on the new one.
        let mut late = Vec::new();
        let end = old.metadata().map_err(fail)?.len();
        if end > read {
            late.resize((end - read) as usize, 0);
            old.read_exact_at(&mut late, read).map_err(fail)?;
            for line in late.split(|&b| b == b'\n') {
                if let Ok(e) = serde_json::from_slice::<Logged>(line) {
                    self.append_logged(&e)?;
                }
            }
        }
        let after = std::fs::metadata(self.path()).map_err(fail)?.len();
        Ok(Some((before, after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Job, ProgressReport};

    fn at(time: f64, event: Event) -> Logged {
        Logged { time, event }
    }

    fn progress(time: f64, stage: &str, done: u64) -> Logged {
        at(
            time,
            Event::Progress(ProgressReport::stage(Job::Train, stage, done, 10)),
        )
    }

    fn started(time: f64, pid: u32) -> Logged {
        at(
            time,
            Event::JobStarted {
                job: Job::Train,
                pid,
                device: "cpu".into(),
            },
        )
    }

    #[test]
    fn old_jobs_keep_their_last_report_per_stage_and_recent_jobs_everything() {
        let mut events = Vec::new();
        let mut t = 0.0;
        for pid in 1..=3 {
            t += 1.0;
            events.push(started(t, pid));
            for done in 1..=5 {
                t += 1.0;
                events.push(progress(t, "U-Net training", done));
                t += 1.0;
                events.push(progress(t, "evaluate", done));
            }
            t += 1.0;
            events.push(at(
                t,
                Event::JobFinished {
                    job: Job::Train,
                    summary: format!("run {pid}"),
                },
            ));
        }
        let kept = compacted(&events, 1);
        // Jobs 1 and 2: start, last training and last evaluate report,
        // finish; job 3 whole.
        assert_eq!(kept.len(), 2 * 4 + 12, "{kept:#?}");
        let last_of_first: Vec<u64> = kept[..4]
            .iter()
            .filter_map(|e| match &e.event {
                Event::Progress(p) => Some(p.done),
                _ => None,
            })
            .collect();
        assert_eq!(last_of_first, [5, 5]);
        assert!(kept.windows(2).all(|w| w[0].time < w[1].time), "order kept");
    }

    #[test]
    fn a_large_log_is_rewritten_smaller_and_followers_skip_what_they_saw() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        for pid in 1..=10 {
            log.append(started(0.0, pid).event).unwrap();
            for done in 0..50 {
                log.append(progress(0.0, "U-Net training", done).event)
                    .unwrap();
            }
        }
        let (seen, cursor) = log.follow(Default::default()).unwrap();
        assert_eq!(seen.len(), 10 * 51);
        assert_eq!(log.compact_if_larger(u64::MAX).unwrap(), None);
        let (before, after) = log.compact_if_larger(0).unwrap().expect("compacted");
        assert!(after < before / 2, "{before} → {after}");
        let all = log.read_all().unwrap();
        assert_eq!(all.len(), 6 * 2 + 4 * 51);
        // A follower from before the rewrite sees only what is new since.
        log.append(started(0.0, 11).event).unwrap();
        let (new, _) = log.follow(cursor).unwrap();
        assert_eq!(new.len(), 1, "{new:?}");
        assert!(matches!(new[0].event, Event::JobStarted { pid: 11, .. }));
    }
}
