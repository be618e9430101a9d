//! The project's event log, `events.jsonl`: one JSON object per line, only
//! ever appended. The worker writes job and round events; the CLI and the
//! TUI read (and follow) it. A line cut short by a crash is skipped on read.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub const EVENTS_FILE: &str = "events.jsonl";

/// Something that happened in a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    JobStarted {
        job: String,
        pid: u32,
        device: String,
    },
    Progress {
        job: String,
        stage: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epochs: Option<usize>,
        done: u64,
        total: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_seconds: Option<f64>,
        /// Where a many-step job (a simulation) stands as a whole.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overall: Option<Overall>,
    },
    Checkpoint {
        job: String,
        epoch: usize,
        epochs: usize,
        loss: f64,
    },
    JobFinished {
        job: String,
        summary: String,
    },
    JobFailed {
        job: String,
        error: String,
    },
    JobCancelled {
        job: String,
    },
    /// The round state machine moved.
    Transition {
        from: String,
        to: String,
        round: usize,
        reason: String,
    },
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

    /// Appends one event as a single `write` of a whole line, so concurrent
    /// writers and crashes never interleave or half-write a record that a
    /// reader would take as valid.
    pub fn append(&self, event: Event) -> Result<(), EventLogError> {
        let fail = |source| EventLogError {
            path: self.path.clone(),
            source,
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line = serde_json::to_vec(&Logged { time, event }).map_err(|e| fail(e.into()))?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        file.write_all(&line).map_err(fail)
    }

    /// Events from byte `offset` on; returns them and the offset after the
    /// last complete line (pass it back to follow the log).
    pub fn read_from(&self, offset: u64) -> Result<(Vec<Logged>, u64), EventLogError> {
        let fail = |source| EventLogError {
            path: self.path.clone(),
            source,
        };
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(fail(e)),
        };
        file.seek(SeekFrom::Start(offset)).map_err(fail)?;
        let mut reader = BufReader::new(file);
        let mut events = Vec::new();
        let mut position = offset;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(fail)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // end, or a line still being written / cut by a crash
            }
            position += n as u64;
            if let Ok(e) = serde_json::from_slice::<Logged>(&line) {
                events.push(e);
            }
        }
        Ok((events, position))
    }

    pub fn read_all(&self) -> Result<Vec<Logged>, EventLogError> {
        Ok(self.read_from(0)?.0)
    }
}
