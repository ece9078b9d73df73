//! The drain's state as the shards see it: flags they read (`/readyz`, HLS migration,
//! keep-alive, accept loops), the one request they may make (`POST /api/v1/drain`), every
//! shard's listening sockets (shut down by a drain, or handed to a successor), and the
//! machine-level gauges the control loop keeps.
//!
//! Must not: make a shard wait (shards only load and store atomics; the listeners' mutex is
//! taken at bind, handover and drain), or decide when to stop (the control loop's
//! lifecycle does).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::net::listeners::Service;

/// What the shards and the control loop share.
#[derive(Default)]
pub(crate) struct Control {
    draining: AtomicBool,
    drain_requested: AtomicBool,
    /// The listeners were shut down by a drain: an accept loop that fails ends.
    closed: AtomicBool,
    /// The listeners are being shut down (set before the first, `closed` after the last): an
    /// accept that fails meanwhile is the shutdown's, not an error to report.
    closing: AtomicBool,
    /// A successor took the listeners over (`--upgrade-socket`): the shards stop accepting.
    handed_over: AtomicBool,
    listeners: Mutex<Listeners>,
    pub idle_seconds: AtomicU64,
    pub egress_bps: AtomicU64,
    pub ingest_bps: AtomicU64,
    /// This engine's relay listener (`--upgrade-socket` on an origin), told to a successor.
    pub relay_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

/// Every shard's listening sockets, and who may act on them.
#[derive(Default)]
struct Listeners {
    fds: Vec<(Service, RawFd)>,
    phase: Phase,
    /// A drain wanted them closed while a handover was under way.
    stop_pending: bool,
}

/// Where the listening sockets stand. Only `Serving` sockets are shut down, and a
/// handover starts only from `Serving`, so a socket a successor holds is never shut down.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Serving,
    HandingOver,
    HandedOver,
    Closed,
}

impl Control {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The control loop: the node drains (readiness fails from now on).
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The control loop: whether `POST /api/v1/drain` asked for a drain since it last
    /// looked.
    pub(crate) fn take_drain_request(&self) -> bool {
        self.drain_requested.swap(false, Ordering::AcqRel)
    }

    /// `POST /api/v1/drain`: readiness fails at once; the control loop starts the drain at
    /// its next tick.
    pub(crate) fn request_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.drain_requested.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A listening socket (registered when bound, before it accepts).
    pub(crate) fn add_listener(&self, service: Service, fd: RawFd) {
        self.lock().fds.push((service, fd));
    }

    /// An accept loop that fails now ends instead of retrying: a drain shut the listeners
    /// down, or a successor holds them.
    pub(crate) fn accepting_ended(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.handed_over()
    }

    /// The listeners are being shut down, or are: a failed accept is expected.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// A successor holds the listeners: every shard cancels its accepts.
    pub(crate) fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Starts handing the listeners to a successor: their descriptors, which stay open
    /// (the accept loops own them) until [`Control::finish_handover`] or
    /// [`Control::abort_handover`]. Refused once they are closed or handed over.
    pub(crate) fn begin_handover(&self) -> Result<Vec<(Service, RawFd)>, &'static str> {
        let mut l = self.lock();
        match l.phase {
            Phase::Serving => {
                l.phase = Phase::HandingOver;
                Ok(l.fds.clone())
            }
            Phase::HandingOver => Err("another handover is under way"),
            Phase::HandedOver => Err("the listeners were handed over already"),
            Phase::Closed => Err("a drain closed the listeners"),
        }
    }

    /// The successor accepts on the listeners: stop accepting here and drain.
    pub(crate) fn finish_handover(&self) {
        self.lock().phase = Phase::HandedOver;
        self.handed_over.store(true, Ordering::Release);
        self.request_drain();
    }

    /// The successor went away before it was ready: the listeners are ours again, and are
    /// shut down now if a drain asked for that meanwhile.
    pub(crate) fn abort_handover(&self) {
        let pending = {
            let mut l = self.lock();
            l.phase = Phase::Serving;
            std::mem::take(&mut l.stop_pending)
        };
        if pending {
            self.stop_accepting();
        }
    }

    /// Shuts every listening socket down: pending and new connections are refused, and the
    /// accept loops' waits end with an error. Listeners that a successor holds, or is being
    /// given, are left alone: they are its sockets.
    pub(crate) fn stop_accepting(&self) {
        let mut l = self.lock();
        match l.phase {
            Phase::Serving => {}
            Phase::HandingOver => {
                l.stop_pending = true;
                return;
            }
            Phase::HandedOver | Phase::Closed => return,
        }
        l.phase = Phase::Closed;
        self.closing.store(true, Ordering::Release);
        for (_, fd) in &l.fds {
            // SAFETY: shutdown(2) has no memory effects. Every listener is still open here:
            // one closes only when its accept loop ends, which needs `closed` or
            // `handed_over` (the first is set only after this loop, and `Serving` excludes
            // the second), or at process shutdown; and this runs once (the phase is now
            // `Closed`), so no descriptor number reused since is touched.
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
        self.closed.store(true, Ordering::Release);
    }
}
