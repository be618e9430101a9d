//! What a crashed job tells its operator: the panic's message, the panic in
//! another thread that caused it, and what to do about it.
//!
//! A GPU allocation that fails does not panic in the job's thread. cubecl
//! reserves memory in its device thread (`DSD-…`) and unwraps the result
//! there (`initialize_memory` in cubecl-cuda and cubecl-wgpu 0.10); that
//! thread dies with "can't allocate buffer of size: N", and the job's
//! thread then fails on its next read with an error that names neither
//! memory nor size ("Memory page 0 doesn't exist", "Communication channel
//! with the server is down"). So the worker watches every thread's panics
//! while a job runs and, when the job panics, names the cause: an
//! out-of-memory panic elsewhere, else another thread's panic of the last
//! few seconds. Older panics elsewhere are not blamed: cubecl's device
//! thread survives a failed task, so one may have been harmless.

use std::collections::VecDeque;
use std::sync::{Mutex, Once};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// A panic in some thread of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadPanic {
    pub thread: String,
    pub message: String,
}

/// Panics recorded by the hook, numbered from the process's first.
struct Seen {
    first: u64,
    panics: VecDeque<Recorded>,
}

struct Recorded {
    thread: ThreadId,
    at: Instant,
    panic: ThreadPanic,
}

/// How long before a job's own panic another thread's (not out-of-memory)
/// panic is taken for its cause.
pub const RECENT_CAUSE: Duration = Duration::from_secs(10);

/// The newest panics kept: a job needs only the first after it started.
const KEPT: usize = 16;

static SEEN: Mutex<Seen> = Mutex::new(Seen {
    first: 0,
    panics: VecDeque::new(),
});
static HOOK: Once = Once::new();

/// Panics in this process from now on, in threads other than the one that
/// started watching.
pub struct PanicWatch {
    from: u64,
    thread: ThreadId,
}

impl PanicWatch {
    /// Starts watching; the first call installs a panic hook that records
    /// every panic and then prints it as before (into `worker.log`).
    pub fn start() -> Self {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                record(ThreadPanic {
                    thread: std::thread::current()
                        .name()
                        .unwrap_or("unnamed")
                        .to_string(),
                    message: panic_message(info.payload()),
                });
                previous(info);
            }));
        });
        let seen = lock();
        PanicWatch {
            from: seen.first + seen.panics.len() as u64,
            thread: std::thread::current().id(),
        }
    }

    /// The cause of a panic in the watching thread now, if another thread
    /// panicked since the watch started: the first out-of-memory panic,
    /// else the latest within [`RECENT_CAUSE`].
    pub fn cause(&self) -> Option<ThreadPanic> {
        let seen = lock();
        let skip = self.from.saturating_sub(seen.first) as usize;
        let since: Vec<&Recorded> = seen.panics.iter().skip(skip).collect();
        choose_cause(&since, self.thread)
    }
}

/// Of `panics` (oldest first), the cause of a panic in thread `watcher`
/// now (see [`PanicWatch::cause`]).
fn choose_cause(panics: &[&Recorded], watcher: ThreadId) -> Option<ThreadPanic> {
    let elsewhere = || panics.iter().filter(|r| r.thread != watcher);
    elsewhere()
        .find(|r| is_out_of_memory(&r.panic.message))
        .or_else(|| elsewhere().rev().find(|r| r.at.elapsed() <= RECENT_CAUSE))
        .map(|r| r.panic.clone())
}

fn lock() -> std::sync::MutexGuard<'static, Seen> {
    SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn record(panic: ThreadPanic) {
    let mut seen = lock();
    if seen.panics.len() == KEPT {
        seen.panics.pop_front();
        seen.first += 1;
    }
    seen.panics.push_back(Recorded {
        thread: std::thread::current().id(),
        at: Instant::now(),
        panic,
    });
}

/// A panic's message, whatever its payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Whether a panic's message (all of it: the cause may be on a later
/// line) says a device ran out of memory.
pub fn is_out_of_memory(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "out of memory",
        "out_of_memory",
        "outofmemory",
        // cubecl's `IoError::BufferTooBig`: what CUDA's out-of-memory
        // becomes, and what any runtime says past its largest buffer.
        "can't allocate buffer",
    ]
    .iter()
    .any(|s| lower.contains(s))
}

/// What an operator can do about a crash with this message.
pub fn crash_hint(message: &str) -> &'static str {
    if is_out_of_memory(message) {
        "the device ran out of memory: lower unet.batch_size (or vae.batch_size) in project.toml, then run the step again"
    } else {
        "worker.log in the project has the details; run the step again to resume from its last checkpoint"
    }
}

/// A message's first line, for one line in the job view (the whole panic,
/// backtrace and causes, is in `worker.log`): without the prefix an
/// `unwrap` adds, and with a buffer's size in GB.
pub fn headline(message: &str) -> String {
    const UNWRAPPED: &str = "called `Result::unwrap()` on an `Err` value: ";
    let first = message.lines().next().unwrap_or_default().trim();
    let first = first.strip_prefix(UNWRAPPED).unwrap_or(first);
    let size = first
        .split_once("can't allocate buffer of size: ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok());
    match size {
        Some(bytes) => format!("{first} ({:.1} GB)", bytes as f64 / 1e9),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_gets_the_batch_size_hint_and_nothing_else_does() {
        assert!(crash_hint("CUDA_ERROR_OUT_OF_MEMORY: out of memory").contains("batch_size"));
        assert!(crash_hint("OutOfMemory { size: 1 }").contains("batch_size"));
        assert!(
            crash_hint("failed\nCaused by: can't allocate buffer of size: 8")
                .contains("batch_size")
        );
        assert!(!crash_hint("no room to zoom").contains("batch_size"));
    }

    #[test]
    fn a_headline_is_the_first_line_without_unwraps_words_and_with_sizes_readable() {
        let cubecl = "called `Result::unwrap()` on an `Err` value: can't allocate buffer of size: 1073741824\nNo backtrace available";
        assert_eq!(
            headline(cubecl),
            "can't allocate buffer of size: 1073741824 (1.1 GB)"
        );
        assert_eq!(headline("index out of bounds\nat x"), "index out of bounds");
        assert_eq!(headline(""), "");
    }

    #[test]
    fn a_panic_in_another_thread_is_seen_and_the_watchers_own_is_not() {
        let watch = PanicWatch::start();
        let planted = "planted panic for a_panic_in_another_thread_is_seen";
        let own = std::panic::catch_unwind(|| panic!("the watcher's own panic"));
        assert!(own.is_err());
        let other = std::thread::Builder::new()
            .name("device-thread-test".into())
            .spawn(move || panic!("{planted}"))
            .unwrap()
            .join();
        assert!(other.is_err());
        // Other tests may panic on purpose meanwhile; ours must be among
        // those seen, and the watcher's own never.
        let seen = lock();
        let since: Vec<_> = seen
            .panics
            .iter()
            .skip(watch.from.saturating_sub(seen.first) as usize)
            .collect();
        assert!(since.iter().any(|r| r.thread != watch.thread
            && r.panic.thread == "device-thread-test"
            && r.panic.message == planted));
        drop(seen);
        assert!(
            watch
                .cause()
                .is_some_and(|p| p.message != "the watcher's own panic")
        );
    }

    #[test]
    fn an_out_of_memory_panic_is_the_cause_however_old_and_others_only_when_recent() {
        let at = |seconds_ago: u64| Instant::now() - Duration::from_secs(seconds_ago);
        let panic = |message: &str| ThreadPanic {
            thread: "DSD-0-0".into(),
            message: message.into(),
        };
        let (job, device) = (std::thread::current().id(), other_thread());
        let recorded = |thread, seconds_ago, message: &str| Recorded {
            thread,
            at: at(seconds_ago),
            panic: panic(message),
        };
        let cause_of = |panics: Vec<Recorded>| {
            choose_cause(&panics.iter().collect::<Vec<_>>(), job).map(|p| p.message)
        };
        let oom = "can't allocate buffer of size: 8";
        assert_eq!(
            cause_of(vec![
                recorded(device, 300, oom),
                recorded(device, 1, "later")
            ]),
            Some(oom.into())
        );
        assert_eq!(
            cause_of(vec![
                recorded(device, 300, "old, harmless"),
                recorded(device, 1, "recent")
            ]),
            Some("recent".into())
        );
        assert_eq!(cause_of(vec![recorded(device, 300, "old, harmless")]), None);
        assert_eq!(cause_of(vec![recorded(job, 1, "the job's own")]), None);
    }

    fn other_thread() -> ThreadId {
        std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap()
    }
}
