//! The shards' side of the registry: a bounded request channel to the registry thread
//! ([`ShardRegistry::register`], never blocking), each shard's [`Inbox`] of cluster updates
//! (woken like a socket), the registry's status as `/metrics` and `/healthz` show it, and
//! the process's [`Leaver`]. The Redis client itself runs on threads of its own
//! ([`crate::node::registry`]).
//!
//! Must not: block a shard (requests are `try_send`s; an inbox lock is held for a queue
//! push or a drain).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use edge_core::cluster::ClusterUpdate;
use edge_core::resp::Value;
use edge_core::StreamKey;

/// Requests from shards waiting for the registry thread, at most.
pub(crate) const MAX_REQUESTS: usize = 65_536;
/// Updates waiting in one shard's inbox, at most (beyond it the oldest go; the periodic full
/// snapshots repair what was lost).
const MAX_INBOX: usize = 65_536;

/// What the registry thread is told.
pub(crate) enum Input {
    Register(StreamKey),
    Unregister(StreamKey),
    /// A reply on command connection number `.0`.
    Reply(u64, Value),
    Lost(u64, String),
    Event(Vec<u8>),
    Subscribed,
    /// The process stops: delete this node's streams and record, then answer.
    Leave(mpsc::Sender<()>),
}

/// How long a graceful stop waits for Redis to take the deletions, at most.
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// The process's handle on the registry thread.
pub(crate) struct Leaver {
    pub tx: SyncSender<Input>,
}

impl Leaver {
    /// Deletes this node's registrations and record now (a graceful stop), instead of
    /// leaving them to expire: edges and origins hear `down` at once. Waits at most
    /// [`LEAVE_WAIT`].
    pub(crate) fn leave(self) {
        let (ack, done) = mpsc::channel();
        if self.tx.try_send(Input::Leave(ack)).is_ok() {
            let _ = done.recv_timeout(LEAVE_WAIT);
        }
    }
}

/// Updates for one shard.
#[derive(Default)]
pub(crate) struct Inbox {
    queue: Mutex<VecDeque<ClusterUpdate>>,
    waker: AtomicWaker,
}

impl Inbox {
    pub(crate) fn push(&self, update: ClusterUpdate) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= MAX_INBOX {
                q.pop_front();
            }
            q.push_back(update);
        }
        self.waker.wake();
    }

    /// Waits for updates and takes them all.
    pub(crate) async fn next_batch(&self) -> Vec<ClusterUpdate> {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(q.drain(..).collect())
            }
        })
        .await
    }
}

/// What `/metrics`, `/healthz` and `/api/v1/cluster` show of the registry.
#[derive(Default)]
pub(crate) struct RegistryStatus {
    pub reachable: AtomicBool,
    pub commands: AtomicU64,
    pub errors: AtomicU64,
    pub conflicts: AtomicU64,
    pub reconnects: AtomicU64,
    pub events: AtomicU64,
    pub requests_dropped: AtomicU64,
    /// `/api/v1/cluster`, rendered on the registry thread when the picture changes.
    pub cluster_json: Mutex<String>,
}

impl RegistryStatus {
    pub(crate) fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let metrics: [(&str, &str, &str, &AtomicU64); 6] = [
            (
                "registry_commands",
                "counter",
                "Registry: commands sent to Redis",
                &self.commands,
            ),
            (
                "registry_errors",
                "counter",
                "Registry: error replies from Redis",
                &self.errors,
            ),
            (
                "registry_conflicts",
                "counter",
                "Registry: publishes refused because another live node holds the stream",
                &self.conflicts,
            ),
            (
                "registry_reconnects",
                "counter",
                "Registry: connections to Redis lost",
                &self.reconnects,
            ),
            (
                "registry_events",
                "counter",
                "Registry: stream events received on edge:events",
                &self.events,
            ),
            (
                "registry_requests_dropped",
                "counter",
                "Registry: shard requests dropped, the registry thread's queue full",
                &self.requests_dropped,
            ),
        ];
        for (name, kind, help, v) in metrics {
            let _ = writeln!(
                out,
                "# HELP edge_{name} {help}\n# TYPE edge_{name} {kind}\nedge_{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP edge_registry_up Registry: Redis reachable (1) or not (0)\n# TYPE edge_registry_up gauge\nedge_registry_up {}",
            u8::from(self.reachable.load(Ordering::Relaxed))
        );
    }
}

/// A shard's handle on the registry.
#[derive(Clone)]
pub(crate) struct ShardRegistry {
    pub tx: SyncSender<Input>,
    pub inbox: Arc<Inbox>,
    pub status: Arc<RegistryStatus>,
    pub me: Arc<str>,
}

impl ShardRegistry {
    /// A stream went live here.
    pub(crate) fn register(&self, key: &StreamKey) {
        self.request(Input::Register(key.clone()));
    }

    /// A stream ended here.
    pub(crate) fn unregister(&self, key: &StreamKey) {
        self.request(Input::Unregister(key.clone()));
    }

    fn request(&self, input: Input) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(input) {
            self.status.requests_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
