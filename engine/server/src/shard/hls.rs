//! HLS on a shard: installing the owner's snapshots here and announcing them everywhere,
//! forgetting ended ones, evicting for space, waking playlist requests that wait for a first
//! segment, and (edge mode) telling owners that HLS viewers want a stream.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use edge_core::hls::HlsSnapshot;
use edge_core::{ShardId, StreamKey};
use tracing::info;

use super::{Shard, TimerKey, HLS_FIRST_WAIT_MAX_MS};
use crate::mesh::MeshMsg;
use crate::stats::Counter;

impl Shard {
    pub(super) fn install_own_hls(self: &Rc<Self>, key: &StreamKey, snapshot: HlsSnapshot) {
        let newest = snapshot.segments.last().map(|s| s.seq);
        let known = self
            .hls
            .borrow()
            .get(key)
            .and_then(|s| s.segments.last().map(|s| s.seq));
        let new_segment = newest.is_some() && newest != known && !snapshot.ended;
        let snapshot = Arc::new(snapshot);
        self.hls
            .borrow_mut()
            .install_own(key.clone(), Arc::clone(&snapshot), self.now_ms());
        for to in (0..self.shards).map(ShardId).filter(|&s| s != self.id) {
            self.send_control(
                to,
                MeshMsg::Hls {
                    key: key.clone(),
                    snapshot: Some(Arc::clone(&snapshot)),
                },
            );
        }
        self.wake_hls_waiters(key);
        self.timers
            .arm(TimerKey::Hls, self.hls.borrow().poll_timeout());
        if new_segment {
            self.stats().hls_segments.inc();
            // Memory only changes at segment boundaries; the per-frame path stays free of
            // this. Under an eighth free: make room before a segment has to be refused.
            if self.arena.free_chunks() * 8 < self.arena.chunks() {
                self.evict_ended_hls();
            }
        }
    }

    /// Drops a stream's HLS state on every shard.
    pub(super) fn forget_hls(&self, key: &StreamKey) {
        self.hls.borrow_mut().remove(key);
        self.announce_forgotten(key);
    }

    pub(super) fn announce_forgotten(&self, key: &StreamKey) {
        for to in (0..self.shards).map(ShardId).filter(|&s| s != self.id) {
            self.send_control(
                to,
                MeshMsg::Hls {
                    key: key.clone(),
                    snapshot: None,
                },
            );
        }
    }

    /// Frees the oldest ended stream's segments (memory returns once every shard has let go).
    /// Returns whether there was one.
    pub(super) fn evict_ended_hls(&self) -> bool {
        let Some(key) = self.hls.borrow_mut().evict_oldest_ended() else {
            return false;
        };
        info!(shard = %self.id, %key, "evicting an ended stream's segments for space");
        self.stats().hls_evictions.inc();
        self.announce_forgotten(&key);
        true
    }

    pub(super) fn wake_hls_waiters(&self, key: &StreamKey) {
        if let Some(ws) = self.hls_waiters.borrow_mut().remove(key) {
            for w in ws {
                w.wake();
            }
        }
    }

    /// An HLS playlist request for `key` on this shard (edge mode): starts or keeps the pull.
    pub fn hls_demand(self: &Rc<Self>, key: &StreamKey, query: Option<&str>) {
        if !self.pulls_stream(key) && !self.pulls_hls() {
            return;
        }
        let now = self.now_ms();
        if !self.demand.borrow_mut().handle_request(key, now) {
            return;
        }
        self.timers
            .arm(TimerKey::Demand, self.demand.borrow().poll_timeout());
        let query: Option<Arc<str>> = query.map(Arc::from);
        let owner = self.owner_of(key);
        if owner == self.id && self.pulls_hls() {
            self.hls_pull_demand(key, query.as_deref());
        } else if owner == self.id {
            self.with_owner(key, true, |o, fx| o.handle_demand(query, now, fx));
        } else {
            self.send_control(
                owner,
                MeshMsg::Demand {
                    key: key.clone(),
                    query,
                },
            );
        }
    }

    /// Waits while a pull is under way until `key` has an HLS playlist here (the first
    /// segment of a pull), or its origins are known not to give it; woken by either, not by
    /// polling, and bounded by [`HLS_FIRST_WAIT_MAX_MS`]. Not by the play-wait: a pull that
    /// works needs a whole first segment, longer than a play-before-publish wait.
    pub async fn wait_for_hls(&self, key: &StreamKey) {
        let wait = HLS_FIRST_WAIT_MAX_MS;
        let ready = poll_fn(|cx| {
            if self.hls.borrow().get(key).is_some() || self.hls_unavailable(key).is_some() {
                return Poll::Ready(());
            }
            self.hls_waiters
                .borrow_mut()
                .entry(key.clone())
                .or_default()
                .push(cx.waker().clone());
            Poll::Pending
        });
        let _ = monoio::time::timeout(Duration::from_millis(wait), ready).await;
    }
}
