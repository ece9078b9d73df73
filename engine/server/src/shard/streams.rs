//! The streams on a shard: the owners of the streams it owns (edge-core [`Owner`]s, with what
//! `/api/v1/streams` shows of each and the forward's queue) and the replicas of the streams
//! its viewers watch (edge-core [`Replica`]s), with the configuration new ones get.
//!
//! Each state machine is borrowed for one call, which appends effects to a vector; the
//! borrow ends before the dispatcher runs them, so running an effect may call in again.
//!
//! Must not: run effects (the dispatcher does), hold a borrow across an `.await`, or decide
//! anything itself.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use edge_core::media::Frame;
use edge_core::owner::Owner;
use edge_core::queue::PushOutcome;
use edge_core::replica::{Replica, ReplicaEffect};
use edge_core::{LinkId, StreamKey};
use tracing::warn;

use super::stream_config::StreamConfig;
use crate::config::Config;
use crate::machine::stats::{Counter, ShardStats, StreamView};
use crate::net::arena::ArenaStore;
use crate::shard::outlet::{Close, Outlet};
use crate::upstream::rtmp::ForwardQueue;

/// A stream this shard owns.
pub(crate) struct Owned {
    pub(crate) owner: Owner<ArenaStore>,
    /// What `/api/v1/streams` shows of it.
    pub(crate) view: Arc<StreamView>,
    /// The forward's current connection and the frames waiting for it.
    pub(crate) forward: Option<(LinkId, Rc<ForwardQueue>)>,
}

pub(crate) type ViewerReplica = Replica<Rc<Outlet>>;

pub(crate) struct Streams {
    me: edge_core::ShardId,
    owners: RefCell<HashMap<StreamKey, Owned>>,
    replicas: RefCell<HashMap<StreamKey, ViewerReplica>>,
    pub(crate) config: StreamConfig,
}

impl Streams {
    pub(crate) fn new(me: edge_core::ShardId, config: StreamConfig) -> Self {
        Streams {
            me,
            owners: RefCell::new(HashMap::new()),
            replicas: RefCell::new(HashMap::new()),
            config,
        }
    }

    pub(crate) fn owns(&self, key: &StreamKey) -> bool {
        self.owners.borrow().contains_key(key)
    }

    /// The streams this shard owns.
    pub(crate) fn owned_keys(&self) -> Vec<StreamKey> {
        self.owners.borrow().keys().cloned().collect()
    }

    pub(crate) fn insert_owner(&self, key: StreamKey, owned: Owned) {
        self.owners.borrow_mut().insert(key, owned);
    }

    pub(crate) fn remove_owner(&self, key: &StreamKey) -> Option<Owned> {
        self.owners.borrow_mut().remove(key)
    }

    /// Calls `f` on `key`'s owner, if this shard owns it.
    pub(crate) fn with_owner<R>(
        &self,
        key: &StreamKey,
        f: impl FnOnce(&mut Owned) -> R,
    ) -> Option<R> {
        self.owners.borrow_mut().get_mut(key).map(f)
    }

    /// Reads `key`'s owner, if this shard owns it.
    pub(crate) fn read_owner<R>(&self, key: &StreamKey, f: impl FnOnce(&Owned) -> R) -> Option<R> {
        self.owners.borrow().get(key).map(f)
    }

    /// The view of `key`, if this shard owns it.
    pub(crate) fn view(&self, key: &StreamKey) -> Option<Arc<StreamView>> {
        self.read_owner(key, |o| Arc::clone(&o.view))
    }

    /// The forward's connection and queue of `key`.
    pub(crate) fn forward_queue(&self, key: &StreamKey) -> Option<(LinkId, Rc<ForwardQueue>)> {
        self.read_owner(key, |o| o.forward.as_ref().map(|(l, q)| (*l, Rc::clone(q))))
            .flatten()
    }

    /// Whether a replica of `key` exists; creates it when not. Returns whether it was
    /// created.
    pub(crate) fn ensure_replica(&self, key: &StreamKey) -> bool {
        let mut replicas = self.replicas.borrow_mut();
        if replicas.contains_key(key) {
            return false;
        }
        replicas.insert(key.clone(), Replica::new(self.config.replica(key)));
        true
    }

    pub(crate) fn remove_replica(&self, key: &StreamKey) -> bool {
        self.replicas.borrow_mut().remove(key).is_some()
    }

    /// Calls `f` on `key`'s replica, if there is one.
    pub(crate) fn with_replica<R>(
        &self,
        key: &StreamKey,
        f: impl FnOnce(&mut ViewerReplica) -> R,
    ) -> Option<R> {
        self.replicas.borrow_mut().get_mut(key).map(f)
    }

    /// Reads `key`'s replica, if there is one.
    pub(crate) fn read_replica<R>(
        &self,
        key: &StreamKey,
        f: impl FnOnce(&ViewerReplica) -> R,
    ) -> Option<R> {
        self.replicas.borrow().get(key).map(f)
    }

    /// The earliest deadline of `key`'s owner and replica on this shard.
    pub(crate) fn poll_timeout(&self, key: &StreamKey) -> Option<u64> {
        let owner = self.read_owner(key, |o| o.owner.poll_timeout()).flatten();
        let replica = self.read_replica(key, |r| r.poll_timeout()).flatten();
        match (owner, replica) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs a replica's effect on its viewers: joins from the GOP cache, frames fanned out,
    /// resyncs, the replica released. (Subscriptions and finishes are the dispatcher's.)
    pub(crate) fn deliver(
        &self,
        key: &StreamKey,
        effect: ReplicaEffect<Rc<Outlet>>,
        now: u64,
        counters: &ShardStats,
        config: &Config,
    ) {
        let me = self.me;
        let push = |v: &Outlet, f: &Frame| push(me, v, f, now, counters, config);
        match effect {
            ReplicaEffect::Join {
                viewer,
                needs_keyframe,
            } => {
                viewer.start_join();
                self.read_replica(key, |r| {
                    for f in r.join_frames() {
                        push(&viewer, f);
                    }
                });
                if needs_keyframe {
                    viewer.require_sync_point();
                }
            }
            ReplicaEffect::Fanout(f) => {
                self.read_replica(key, |r| {
                    for v in r.joined() {
                        push(v, &f);
                    }
                });
            }
            ReplicaEffect::Resync {
                viewer,
                frames,
                gop_empty,
            } => {
                if gop_empty {
                    viewer.require_sync_point();
                }
                for f in frames.iter().filter(|f| !viewer.already_has(f)) {
                    push(&viewer, f);
                }
            }
            ReplicaEffect::RequireKeyframe { viewer } => viewer.require_sync_point(),
            ReplicaEffect::Released => {
                if self.remove_replica(key) {
                    counters.replicas.dec();
                }
            }
            ReplicaEffect::Subscribe { .. }
            | ReplicaEffect::Unsubscribe
            | ReplicaEffect::Finish { .. } => {
                debug_assert!(false, "the dispatcher runs subscriptions and finishes");
            }
        }
    }
}

/// One frame into one viewer's queue, which applies its own overflow policy.
fn push(
    me: edge_core::ShardId,
    v: &Outlet,
    f: &Frame,
    now: u64,
    counters: &ShardStats,
    config: &Config,
) {
    match v.push_frame(f, now) {
        PushOutcome::Queued => {}
        PushOutcome::Dropped => counters.frames_dropped.inc(),
        PushOutcome::Disconnect => {
            warn!(
                shard = %me,
                viewer = v.id,
                "closing slow viewer: over its queue limit for {} ms",
                config.queue.slow_viewer_ms
            );
            counters.slow_viewer_disconnects.inc();
            v.close(Close::Abort);
        }
    }
}
