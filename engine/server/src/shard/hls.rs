//! HLS serving on a shard: the snapshot of every stream's playlist and segments that
//! requests here are answered from (the owner's, installed here and announced everywhere),
//! playlist requests waiting for a first segment, (edge mode) when this shard last told an
//! owner that its HLS viewers want a stream, and, for HLS-pulled streams, the segments still
//! on their way and the streams whose origin fails.
//!
//! Must not: send anything but the announcements of what changes here (through the
//! shard's mesh port), fetch from origins (the owner's pull does), or grow without bound
//! (in-flight and unavailable records are capped).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use edge_core::hls::catalog::HlsCatalog;
use edge_core::hls::HlsSnapshot;
use edge_core::pull::DemandLimiter;
use edge_core::{SegmentSeq, StreamKey};

use super::mesh_port::MeshPort;
use crate::net::mesh::{MeshMsg, SegmentEvent};
use crate::shard::pulled::{Inflight, Lookup, Progress};

/// How often a shard tells an owner that its HLS viewers still want a stream.
const DEMAND_EVERY_MS: u64 = 1000;
/// The longest a first playlist request waits for the pull's first segment.
const FIRST_WAIT_MAX_MS: u64 = 10_000;
/// How long an origin error is remembered (a segment's, or a playlist that never loaded).
pub(crate) const NEGATIVE_MS: u64 = 1_000;
/// Segments in flight (or remembered as failed) a shard keeps at most: past it, expired
/// failures are dropped, and a new miss is refused while none has expired. Requests for
/// made-up segment numbers cannot grow the map without bound.
const MAX_INFLIGHT: usize = 16_384;
/// Streams a shard remembers as unavailable at most (likewise).
const MAX_UNAVAILABLE: usize = 16_384;

pub(crate) struct HlsServing {
    /// Every stream's snapshot, as last announced by its owner.
    catalog: RefCell<HlsCatalog>,
    /// Playlist requests waiting for a stream's first segment (edge mode).
    waiters: RefCell<HashMap<StreamKey, Vec<Waker>>>,
    demand: RefCell<DemandLimiter>,
    /// Pulled segments on their way, as this shard hears them.
    inflight: RefCell<HashMap<(StreamKey, u64), Rc<Inflight>>>,
    /// Pulled streams whose playlist could not be loaded: the status, until when.
    unavailable: RefCell<HashMap<StreamKey, (u16, u64)>>,
}

/// Waits until `ready()` (checked when the task is woken through `waiters`' entry for `key`,
/// as the first playlist of a pull or a relay arrives, or its origin fails), at most
/// [`FIRST_WAIT_MAX_MS`].
pub(crate) async fn wait_first(
    waiters: &RefCell<HashMap<StreamKey, Vec<Waker>>>,
    key: &StreamKey,
    ready: impl Fn() -> bool,
) {
    let until = poll_fn(|cx| {
        if ready() {
            return Poll::Ready(());
        }
        waiters
            .borrow_mut()
            .entry(key.clone())
            .or_default()
            .push(cx.waker().clone());
        Poll::Pending
    });
    let _ = monoio::time::timeout(Duration::from_millis(FIRST_WAIT_MAX_MS), until).await;
}

impl HlsServing {
    /// `linger_ms`: how long an ended stream stays listed; `idle_ms`: how long a demand
    /// record is kept.
    pub(crate) fn new(linger_ms: u64, idle_ms: u64) -> Self {
        HlsServing {
            catalog: RefCell::new(HlsCatalog::new(linger_ms)),
            waiters: RefCell::new(HashMap::new()),
            demand: RefCell::new(DemandLimiter::new(DEMAND_EVERY_MS, idle_ms)),
            inflight: RefCell::new(HashMap::new()),
            unavailable: RefCell::new(HashMap::new()),
        }
    }

    /// The snapshot a request for `key` is answered from.
    pub(crate) fn get(&self, key: &StreamKey) -> Option<Arc<HlsSnapshot>> {
        self.catalog.borrow().get(key).cloned()
    }

    /// The newest segment listed for `key`.
    pub(crate) fn newest_seq(&self, key: &StreamKey) -> Option<SegmentSeq> {
        let catalog = self.catalog.borrow();
        catalog
            .get(key)
            .and_then(|s| s.segments.last().map(|s| s.seq))
    }

    /// Installs a snapshot of a stream this shard owns, here and (through `port`) on every
    /// other shard; returns whether it lists a new segment.
    pub(crate) fn install_own(
        &self,
        port: &MeshPort,
        key: &StreamKey,
        snapshot: HlsSnapshot,
        now_ms: u64,
    ) -> bool {
        let newest = snapshot.segments.last().map(|s| s.seq);
        let new_segment = newest.is_some() && newest != self.newest_seq(key) && !snapshot.ended;
        let snapshot = Arc::new(snapshot);
        self.catalog
            .borrow_mut()
            .install_own(key.clone(), Arc::clone(&snapshot), now_ms);
        self.wake(key);
        port.broadcast(|| MeshMsg::Hls {
            key: key.clone(),
            snapshot: Some(Arc::clone(&snapshot)),
        });
        new_segment
    }

    /// Drops a stream's HLS state here and on every other shard.
    pub(crate) fn forget(&self, port: &MeshPort, key: &StreamKey) {
        self.remove(key);
        announce_forgotten(port, key);
    }

    /// A step of a pulled segment's download (the owner's), here and on every other shard.
    pub(crate) fn announce_segment(
        &self,
        port: &MeshPort,
        key: &StreamKey,
        seq: u64,
        event: SegmentEvent,
        now_ms: u64,
    ) {
        port.broadcast(|| MeshMsg::HlsSegment {
            key: key.clone(),
            seq,
            event: event.clone(),
        });
        self.segment_event(key, seq, event, now_ms);
    }

    /// Playlist requests for `key` get `status` for a while, here and on every other shard.
    pub(crate) fn announce_unavailable(
        &self,
        port: &MeshPort,
        key: &StreamKey,
        status: u16,
        now_ms: u64,
    ) {
        port.broadcast(|| MeshMsg::HlsUnavailable {
            key: key.clone(),
            status,
        });
        self.mark_unavailable(key, status, now_ms);
    }

    /// Another shard's snapshot (`None`: forgotten there).
    pub(crate) fn install(&self, key: &StreamKey, snapshot: Option<Arc<HlsSnapshot>>) {
        match snapshot {
            Some(s) => {
                self.catalog.borrow_mut().install(key.clone(), s);
                self.wake(key);
            }
            None => {
                self.catalog.borrow_mut().remove(key);
                self.inflight.borrow_mut().retain(|(k, _), _| k != key);
            }
        }
    }

    pub(crate) fn remove(&self, key: &StreamKey) {
        self.catalog.borrow_mut().remove(key);
    }

    /// Forgets the segments of `key` on their way.
    pub(crate) fn forget_inflight(&self, key: &StreamKey) {
        self.inflight.borrow_mut().retain(|(k, _), _| k != key);
    }

    /// Drops the oldest ended stream here and on every other shard; its key, if there was
    /// one.
    pub(crate) fn evict_oldest_ended(&self, port: &MeshPort) -> Option<StreamKey> {
        let key = self.catalog.borrow_mut().evict_oldest_ended()?;
        announce_forgotten(port, &key);
        Some(key)
    }

    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.catalog.borrow().poll_timeout()
    }

    /// Ended playlists whose linger is over: dropped here and on every other shard.
    pub(crate) fn handle_timeout(&self, port: &MeshPort, now_ms: u64) {
        let gone = self.catalog.borrow_mut().handle_timeout(now_ms);
        for key in gone {
            announce_forgotten(port, &key);
        }
    }

    /// Wakes the requests waiting for `key`.
    fn wake(&self, key: &StreamKey) {
        if let Some(ws) = self.waiters.borrow_mut().remove(key) {
            for w in ws {
                w.wake();
            }
        }
    }

    /// Waits until `key` has a playlist here, or its origins are known not to give it;
    /// woken by either, not by polling, and bounded by [`FIRST_WAIT_MAX_MS`].
    pub(crate) async fn wait_for(&self, key: &StreamKey, now_ms: impl Fn() -> u64) {
        let ready = || {
            self.catalog.borrow().get(key).is_some() || self.unavailable(key, now_ms()).is_some()
        };
        wait_first(&self.waiters, key, ready).await;
    }

    /// A playlist request for `key`: whether the owner is to be told (at most once per
    /// [`DEMAND_EVERY_MS`]).
    pub(crate) fn demand(&self, key: &StreamKey, now_ms: u64) -> bool {
        self.demand.borrow_mut().handle_request(key, now_ms)
    }

    pub(crate) fn demand_poll_timeout(&self) -> Option<u64> {
        self.demand.borrow().poll_timeout()
    }

    pub(crate) fn demand_timeout(&self, now_ms: u64) {
        self.demand.borrow_mut().handle_timeout(now_ms);
    }

    /// A step of a pulled segment's download, as the owner reports it.
    pub(crate) fn segment_event(
        &self,
        key: &StreamKey,
        seq: u64,
        event: SegmentEvent,
        now_ms: u64,
    ) {
        let id = (key.clone(), seq);
        let mut inflight = self.inflight.borrow_mut();
        let until = now_ms + NEGATIVE_MS;
        super::pulled::apply(&mut inflight, id, event, until, MAX_INFLIGHT, false);
    }

    /// `key`'s playlist cannot be loaded now: requests get `status` for a while.
    pub(crate) fn mark_unavailable(&self, key: &StreamKey, status: u16, now_ms: u64) {
        {
            let mut map = self.unavailable.borrow_mut();
            if map.len() >= MAX_UNAVAILABLE {
                map.retain(|_, (_, until)| now_ms < *until);
            }
            if map.len() < MAX_UNAVAILABLE {
                map.insert(key.clone(), (status, now_ms + NEGATIVE_MS));
            }
        }
        self.wake(key);
    }

    /// The status playlist requests for `key` get while its origin fails.
    pub(crate) fn unavailable(&self, key: &StreamKey, now_ms: u64) -> Option<u16> {
        let mut map = self.unavailable.borrow_mut();
        match map.get(key) {
            Some(&(status, until)) if now_ms < until => Some(status),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// A request for pulled segment `seq` that is not in the snapshot: the download under
    /// way (or failed recently), or a new record of it, or none while [`MAX_INFLIGHT`] are
    /// in flight here.
    pub(crate) fn lookup(&self, key: &StreamKey, seq: u64, now_ms: u64) -> Lookup {
        let id = (key.clone(), seq);
        let expired = |s: &Inflight| matches!(s.progress(), Progress::Failed { until_ms, .. } if now_ms >= until_ms);
        let mut inflight = self.inflight.borrow_mut();
        if let Some(s) = inflight.get(&id).filter(|s| !expired(s)) {
            return Lookup::Known(Rc::clone(s));
        }
        if inflight.len() >= MAX_INFLIGHT {
            inflight.retain(|_, s| !expired(s));
            if inflight.len() >= MAX_INFLIGHT {
                return Lookup::Full;
            }
        }
        let s = Rc::new(Inflight::new(Progress::Requested));
        inflight.insert(id, Rc::clone(&s));
        Lookup::Ask(s)
    }
}

/// Tells every other shard to forget `key`'s snapshot.
fn announce_forgotten(port: &MeshPort, key: &StreamKey) {
    port.broadcast(|| MeshMsg::Hls {
        key: key.clone(),
        snapshot: None,
    });
}
