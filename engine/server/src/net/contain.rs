//! Panic containment. Peer input is parsed by edge-core code that returns errors, and the fuzz
//! targets in `fuzz/` hold it to that; if a panic gets through anyway, it must cost only the
//! peer whose bytes caused it, and never the shard that serves everyone else.
//!
//! [`peer_input`] runs one synchronous step over a peer's bytes (a session's `handle_input`,
//! a request parse) and turns a panic into an error naming it. The caller then drops that
//! peer's session, whose state may be half-updated, and closes the connection: nothing of it
//! is used again. Shard-wide state must never be borrowed inside the step.
//!
//! A panic anywhere else on a shard is a bug in state shared by every viewer there:
//! [`shard_thread`] ends the whole process with [`SHARD_PANIC_EXIT`], so systemd or
//! Kubernetes restart it, instead of leaving listeners nobody accepts on.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Exit status of a process whose shard thread panicked.
pub(crate) const SHARD_PANIC_EXIT: i32 = 70;

/// Runs `f` over one peer's input; a panic becomes `Err(message)`.
pub(crate) fn peer_input<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // AssertUnwindSafe: the caller discards everything `f` touched when it panics.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        format!("panic while parsing its input: {what}")
    })
}

/// Runs a shard thread's body; if it panics, the process exits with [`SHARD_PANIC_EXIT`] at once.
pub(crate) fn shard_thread(id: usize, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        // The panic message is already on stderr (the default hook printed it).
        tracing::error!(
            shard = id,
            "shard thread panicked; exiting so the service restarts"
        );
        std::process::exit(SHARD_PANIC_EXIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(peer_input(|| 7), Ok(7));
        let e = peer_input(|| -> u8 { panic!("index out of bounds") }).unwrap_err();
        assert!(e.contains("index out of bounds"), "{e}");
        let owned = String::from("formatted 3");
        let e = peer_input(move || -> u8 { panic!("{owned}") }).unwrap_err();
        assert!(e.contains("formatted 3"), "{e}");
    }
}
