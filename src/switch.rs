//! A thread-local setting changed for the length of one call: the switches
//! that pick which kernels a thread's layers run (burn's own, steered
//! convolutions, folded weight gradients) for tests and benchmarks.
//!
//! Imports nothing of the crate.

use std::cell::Cell;
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
}
