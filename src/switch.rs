//! The switches that pick which kernels a process's layers run (burn's
//! own, steered convolutions, fixed matmuls, folded weight gradients): each
//! read once from its environment variable, overridable on one thread for
//! the length of a call (tests and benchmarks), and counted where a
//! steered kernel runs or refuses.
//!
//! Imports nothing of the crate.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::LocalKey;

/// Runs `f` with `key` set to `value` on this thread, and puts the old
/// value back after it, on a panic too.
pub fn with_thread_value<T: Copy + 'static, R>(
    key: &'static LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _restore = Restore(key, key.replace(value));
    f()
}

/// A switch's setting from environment variable `name`, read once into
/// `once` (see [`setting`]).
pub fn from_env<T: Copy>(
    once: &OnceLock<T>,
    name: &str,
    parse: fn(&str) -> Option<T>,
    unset: T,
    meaning: [&str; 2],
) -> T {
    *once.get_or_init(|| {
        let value = std::env::var(name).ok();
        setting(name, value.as_deref(), parse, unset, meaning)
    })
}

/// `unset` when the variable `name` is absent (`value` `None`), else what
/// `parse` makes of `value`. A value `parse` rejects is said on stderr
/// (`accepted` lists what it takes, `meaning` what `unset` does) and counts
/// as `unset`: a typo must not stop a job.
pub fn setting<T>(
    name: &str,
    value: Option<&str>,
    parse: fn(&str) -> Option<T>,
    unset: T,
    [accepted, meaning]: [&str; 2],
) -> T {
    let Some(value) = value else {
        return unset;
    };
    parse(value).unwrap_or_else(|| {
        eprintln!("{name}={value}: not {accepted}; {meaning}");
        unset
    })
}

/// Passes a steered kernel ran, and passes it refused (which ran burn's
/// default instead): whether a switch is in force, and where it is not.
#[derive(Debug, Default)]
pub struct PassCounts {
    ran: AtomicU64,
    refused: AtomicU64,
}

impl PassCounts {
    pub const fn new() -> PassCounts {
        PassCounts {
            ran: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn count(&self, ran: bool) {
        let counter = if ran { &self.ran } else { &self.refused };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (passes run, passes refused) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.ran.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SETTING: Cell<u8> = const { Cell::new(1) };
    }

    #[test]
    fn the_value_holds_inside_and_the_old_one_returns_after_a_panic_too() {
        let inner = with_thread_value(&SETTING, 2, || {
            with_thread_value(&SETTING, 3, || SETTING.get()) * 10 + SETTING.get()
        });
        assert_eq!((inner, SETTING.get()), (32, 1));
        let panicked = std::panic::catch_unwind(|| with_thread_value(&SETTING, 4, || panic!()));
        assert!(panicked.is_err());
        assert_eq!(SETTING.get(), 1);
    }

    #[test]
    fn passes_are_counted_as_run_or_refused() {
        let counts = PassCounts::new();
        counts.count(true);
        counts.count(true);
        counts.count(false);
        assert_eq!(counts.get(), (2, 1));
    }

    fn parse_flag(value: &str) -> Option<bool> {
        match value {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        }
    }

    #[test]
    fn a_setting_is_parsed_and_a_bad_or_absent_value_counts_as_unset() {
        let name = "NEXTSLICE_TEST_SWITCH";
        let meaning = ["on or off", "it stays off"];
        assert!(setting(name, Some("on"), parse_flag, false, meaning));
        assert!(!setting(name, Some("off"), parse_flag, true, meaning));
        assert!(!setting(name, Some("maybe"), parse_flag, false, meaning));
        assert!(setting(name, None, parse_flag, true, meaning));
    }

    #[test]
    fn the_environment_is_read_once() {
        let once = OnceLock::new();
        let meaning = ["on or off", "it stays off"];
        // A variable no one sets: unset, and the first reading stays.
        let name = "NEXTSLICE_TEST_SWITCH_NEVER_SET";
        assert!(from_env(&once, name, parse_flag, true, meaning));
        assert!(from_env(&once, name, parse_flag, false, meaning));
    }
}
