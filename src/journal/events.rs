//! The project's event log, `events.jsonl`: one JSON object per line, only
//! ever appended. Workers write job and round events; the CLI and the TUI
//! read (and follow) it. A line cut short by a crash is skipped on read,
//! and the next append starts on a fresh line so it never glues onto it.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Job, Phase, now};
use crate::layout::EVENTS_FILE;

/// Something that happened in a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    JobStarted {
        job: Job,
        pid: u32,
        device: String,
    },
    Progress(ProgressReport),
    Checkpoint {
        job: Job,
        epoch: usize,
        epochs: usize,
        loss: f64,
    },
    JobFinished {
        job: Job,
        summary: String,
    },
    JobFailed {
        job: Job,
        error: String,
    },
    JobCancelled {
        job: Job,
    },
    /// The round state machine moved.
    Transition {
        from: Phase,
        to: Phase,
        round: usize,
        reason: String,
    },
}

impl Event {
    /// The job this event belongs to (none for a transition).
    pub fn job(&self) -> Option<Job> {
        match self {
            Event::JobStarted { job, .. }
            | Event::Progress(ProgressReport { job, .. })
            | Event::Checkpoint { job, .. }
            | Event::JobFinished { job, .. }
            | Event::JobFailed { job, .. }
            | Event::JobCancelled { job } => Some(*job),
            Event::Transition { .. } => None,
        }
    }
}

/// Where a running job stands: `done` of `total` steps of its current
/// stage, with the training figures while a model trains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    pub job: Job,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    pub done: u64,
    pub total: u64,
    /// What `done` and `total` count (slices, volumes…); slices if unsaid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Units per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Where a many-step job (a simulation) stands as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall: Option<Overall>,
    /// What the stage is on now, e.g. "U-Net training step, batch 8; 12
    /// kernels tuned" while GPU kernels are tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ProgressReport {
    /// `done` of `total` of `stage`, nothing else known yet.
    pub fn stage(job: Job, stage: impl Into<String>, done: u64, total: u64) -> ProgressReport {
        ProgressReport {
            job,
            stage: stage.into(),
            epoch: None,
            epochs: None,
            done,
            total,
            unit: None,
            loss: None,
            rate: None,
            eta_seconds: None,
            overall: None,
            detail: None,
        }
    }
}

/// `done` of `total` steps of a many-step job, now doing `what`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overall {
    pub done: u64,
    pub total: u64,
    pub what: String,
}

/// An event with the time it was written (seconds since the epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    pub time: f64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
#[error("event log {}: {source}", path.display())]
pub struct EventLogError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    pub fn new(project: &Path) -> EventLog {
        EventLog {
            path: project.join(EVENTS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, source: std::io::Error) -> EventLogError {
        EventLogError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one event as a single `write` of a whole line, so concurrent
    /// writers never interleave a record. After a crash cut the last line
    /// short, the new line starts after a newline of its own.
    pub fn append(&self, event: Event) -> Result<(), EventLogError> {
        self.append_logged(&Logged { time: now(), event })
    }

    /// Appends an event with its time already set (compaction carrying a
    /// late line over).
    pub(super) fn append_logged(&self, logged: &Logged) -> Result<(), EventLogError> {
        let mut line = serde_json::to_vec(logged).map_err(|e| self.fail(e.into()))?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| self.fail(e))?;
        let len = file.metadata().map_err(|e| self.fail(e))?.len();
        if len > 0 {
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)
                .map_err(|e| self.fail(e))?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        file.write_all(&line).map_err(|e| self.fail(e))
    }

    /// Events from byte `offset` on; returns them and the offset after the
    /// last complete line (pass it back to follow the log).
    pub fn read_from(&self, offset: u64) -> Result<(Vec<Logged>, u64), EventLogError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(self.fail(e)),
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| self.fail(e))?;
        let mut reader = BufReader::new(file);
        let mut events = Vec::new();
        let mut position = offset;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| self.fail(e))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // end, or a line still being written
            }
            position += n as u64;
            // A line cut by a crash (now followed by a newline) is not JSON.
            if let Ok(e) = serde_json::from_slice::<Logged>(&line) {
                events.push(e);
            }
        }
        Ok((events, position))
    }

    pub fn read_all(&self) -> Result<Vec<Logged>, EventLogError> {
        Ok(self.read_from(0)?.0)
    }

    /// Events since `cursor`, and the cursor to pass next time. When the
    /// log was rewritten (compaction renames a new file into place) it is
    /// read again from the start, skipping the events the follower has
    /// already seen, by time.
    pub fn follow(&self, cursor: Cursor) -> Result<(Vec<Logged>, Cursor), EventLogError> {
        let inode = match std::fs::metadata(&self.path) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), cursor)),
            Err(e) => return Err(self.fail(e)),
        };
        let rewritten = cursor.inode != 0 && cursor.inode != inode;
        let start = if rewritten { 0 } else { cursor.offset };
        let (mut events, offset) = self.read_from(start)?;
        if rewritten {
            events.retain(|e| e.time > cursor.last_time);
        }
        let last_time = events.last().map_or(cursor.last_time, |e| e.time);
        Ok((
            events,
            Cursor {
                inode,
                offset,
                last_time,
            },
        ))
    }
}

/// Where a follower of the log is: which file (a compaction makes a new
/// one), how far into it, and the time of the last event it saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cursor {
    inode: u64,
    offset: u64,
    last_time: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(summary: &str) -> Event {
        Event::JobFinished {
            job: Job::Train,
            summary: summary.into(),
        }
    }

    #[test]
    fn appended_events_read_back_in_order_and_can_be_followed() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        assert!(log.read_all().unwrap().is_empty());
        log.append(finished("one")).unwrap();
        let (first, offset) = log.read_from(0).unwrap();
        assert_eq!(first.len(), 1);
        log.append(Event::Transition {
            from: Phase::Training,
            to: Phase::Suggesting,
            round: 2,
            reason: "U-Net trained".into(),
        })
        .unwrap();
        let (rest, end) = log.read_from(offset).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(matches!(
            rest[0].event,
            Event::Transition {
                from: Phase::Training,
                to: Phase::Suggesting,
                round: 2,
                ..
            }
        ));
        assert_eq!(end, std::fs::metadata(log.path()).unwrap().len());
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            text.contains(r#""from":"training","to":"suggesting""#),
            "{text}"
        );
        assert!(text.contains(r#""job":"train""#), "{text}");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_never_glues_onto_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        log.append(finished("before the crash")).unwrap();
        // A crash in the middle of a write: half a record, no newline.
        let mut file = OpenOptions::new().append(true).open(log.path()).unwrap();
        file.write_all(br#"{"time":1.0,"event":"job-fini"#).unwrap();
        drop(file);
        let (events, offset) = log.read_from(0).unwrap();
        assert_eq!(events.len(), 1, "the torn line is not read yet");
        log.append(finished("after the restart")).unwrap();
        let all = log.read_all().unwrap();
        let summaries: Vec<&str> = all
            .iter()
            .filter_map(|e| match &e.event {
                Event::JobFinished { summary, .. } => Some(summary.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(summaries, ["before the crash", "after the restart"]);
        // A follower that stopped before the torn line sees only the new event.
        let (later, _) = log.read_from(offset).unwrap();
        assert_eq!(later.len(), 1);
    }

    #[test]
    fn logs_written_before_events_were_typed_still_parse() {
        let dir = tempfile::tempdir().unwrap();
        let old = concat!(
            r#"{"time":1.0,"event":"job-started","job":"train-vae","pid":7,"device":"cpu"}"#,
            "\n",
            r#"{"time":2.0,"event":"transition","from":"AwaitingMasks","to":"Training","round":0,"reason":"7 masks imported"}"#,
            "\n",
            r#"{"time":3.0,"event":"progress","job":"train","stage":"U-Net training","epoch":2,"epochs":10,"done":5,"total":38,"loss":-0.4}"#,
            "\n"
        );
        std::fs::write(dir.path().join(EVENTS_FILE), old).unwrap();
        let events = EventLog::new(dir.path()).read_all().unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.job(), Some(Job::TrainVae));
        assert!(matches!(
            events[1].event,
            Event::Transition {
                from: Phase::AwaitingMasks,
                to: Phase::Training,
                ..
            }
        ));
        let Event::Progress(p) = &events[2].event else {
            panic!("not progress: {:?}", events[2]);
        };
        assert_eq!(
            (p.job, p.epoch, p.done, p.loss),
            (Job::Train, Some(2), 5, Some(-0.4))
        );
    }
}
