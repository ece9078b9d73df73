//! What an upgrade's successor knows of its predecessor: the streams it held at the
//! handover, where it serves them (its relay, an RTMP listener on loopback that it keeps while
//! it drains), and whether it still runs.
//!
//! A publisher is not moved by a handover (ffmpeg offers no reconnect): it stays on the
//! predecessor. Until it moves, or the predecessor exits, this node pulls each such stream
//! from the relay, once per machine, as an edge pulls from its origin, so that new viewers
//! (who reach this node now) are served instead of getting a 404.
//!
//! Must not: run on a shard (the watcher is a thread of its own), or decide about pulls (the
//! stream's owner does, with the relay as its origin).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_core::upstream::OriginUrl;
use edge_core::StreamKey;
use tracing::{info, warn};

/// How often the fallback watcher looks for the predecessor (without pidfd).
const POLL: Duration = Duration::from_millis(200);

/// The predecessor, as its handover described it.
pub(crate) struct Predecessor {
    /// Its relay, as an origin whose app is each stream's own (`*`).
    pub origin: OriginUrl,
    streams: HashSet<StreamKey>,
    alive: AtomicBool,
}

impl Predecessor {
    pub(crate) fn new(relay: SocketAddr, streams: impl IntoIterator<Item = StreamKey>) -> Self {
        Self {
            origin: OriginUrl {
                host: relay.ip().to_string(),
                port: relay.port(),
                app: "*".into(),
                tls: false,
            },
            streams: streams.into_iter().collect(),
            alive: AtomicBool::new(true),
        }
    }

    /// The streams it held at the handover.
    pub(crate) fn streams(&self) -> impl Iterator<Item = &StreamKey> {
        self.streams.iter()
    }

    /// Whether `key` is pulled from the predecessor: it held the stream at the handover and
    /// still runs.
    pub(crate) fn serves(&self, key: &StreamKey) -> bool {
        self.alive.load(Ordering::Acquire) && self.streams.contains(key)
    }

    /// Watches process `pid` from a thread of its own; once it has exited, no stream is
    /// pulled from it any more (a play for one is answered as an origin answers).
    pub(crate) fn watch(self: &Arc<Self>, pid: u32) {
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("edge-predecessor".into())
            .spawn(move || {
                wait_for_exit(pid);
                me.alive.store(false, Ordering::Release);
                info!(
                    predecessor = pid,
                    "upgrade: the predecessor has exited; its streams are no longer pulled from it"
                );
            });
        if let Err(e) = spawned {
            warn!("upgrade: cannot watch the predecessor ({e}); its streams stay relayed");
        }
    }
}

/// Returns once process `pid` has exited: a pidfd becomes readable then (no pid reuse can
/// fool it); without pidfd (kernels before 5.3), `kill(pid, 0)` is asked every [`POLL`].
fn wait_for_exit(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        let fd = fd as libc::c_int;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd we own.
            let n = unsafe { libc::poll(&mut pfd, 1, -1) };
            if n > 0
                || (n < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
            {
                break;
            }
        }
        // SAFETY: `fd` is ours and closed once.
        unsafe { libc::close(fd) };
        return;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 {
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_serves_its_streams_until_it_exits() {
        let key = StreamKey::new("live", "x").unwrap();
        let p = Arc::new(Predecessor::new(
            "127.0.0.1:4000".parse().unwrap(),
            [key.clone()],
        ));
        assert_eq!(p.origin.to_string(), "rtmp://127.0.0.1:4000/*");
        assert!(p.serves(&key));
        assert!(!p.serves(&StreamKey::new("live", "y").unwrap()));
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        p.watch(child.id());
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.serves(&key) {
            assert!(
                std::time::Instant::now() < deadline,
                "never noticed the exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
