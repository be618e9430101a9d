//! Crash injection for the crash-safety tests: `NEXTSLICE_FAILPOINT=<name>`
//! makes the process abort (as abruptly as `kill -9`) when it reaches the
//! point of that name; `<name>:panic` makes it panic there instead (as a
//! backend error would); `<name>:device-panic` first panics in another
//! thread with cubecl's out-of-memory message, as a GPU's device thread
//! does, then here with a consequence, as the job's thread then does;
//! `<name>:hang` makes it stop there for good, as a job waiting on a GPU
//! kernel's first tuning seems to. Unset, a failpoint costs one
//! environment lookup.
//!
//! Imports nothing of the crate.

/// Aborts (or panics) here if `NEXTSLICE_FAILPOINT` names this point.
pub fn hit(name: &str) {
    let Ok(wanted) = std::env::var("NEXTSLICE_FAILPOINT") else {
        return;
    };
    if wanted == name {
        eprintln!("failpoint `{name}`: aborting");
        std::process::abort();
    }
    if wanted.strip_suffix(":panic") == Some(name) {
        panic!("failpoint `{name}`: a stand-in for a backend error");
    }
    if wanted.strip_suffix(":hang") == Some(name) {
        eprintln!("failpoint `{name}`: hanging");
        loop {
            std::thread::park();
        }
    }
    if wanted.strip_suffix(":device-panic") == Some(name) {
        let device = std::thread::Builder::new()
            .name("failpoint-device".into())
            .spawn(|| panic!("can't allocate buffer of size: 4294967296"));
        if let Ok(thread) = device {
            let _ = thread.join();
        }
        panic!("failpoint `{name}`: the device's memory page is gone");
    }
}
