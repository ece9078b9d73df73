//! One shard: the per-core state and the mesh dispatcher.
//!
//! A shard owns the streams whose `hash(app/stream) % shards` is its id (their
//! [`StreamMaster`]: the publisher or the single upstream, timestamps, frames built once), and
//! keeps a [`LocalStream`] replica of every stream its own viewers watch. All of it is `!Send`
//! (`Rc`, `RefCell`) and touched only by this shard's thread; other shards are reached through
//! the [`Mesh`] alone.
//!
//! Subscribing, in steps:
//! 1. A viewer on shard j asks for `key`; j creates a waiting replica and sends `Subscribe`.
//! 2. The owner adds j to the stream's subscribers and answers with a `Snapshot`.
//! 3. j applies it: waiting viewers join (headers, GOP), then live `Update`s follow.
//! 4. When j's last viewer leaves, j drops the replica and sends `Unsubscribe`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use edge_core::hls::{HlsSnapshot, Segmenter};
use edge_core::media::Frame;
use edge_core::queue::PushOutcome;
use edge_core::rtmp::chunk;
use edge_core::stream::{
    PublishError, PublisherId, ReplicaState, StreamMaster, StreamReplica, StreamUpdate,
};
use edge_core::{http, StreamKey};
use tracing::{debug, info, warn};

mod edge;

use crate::arena::{Arena, ArenaStore};
use crate::config::Config;
use crate::mesh::{Mesh, MeshMsg, ShardId};
use crate::outlet::{Close, Outlet, Wire};
use crate::stats::{ShardStats, Stats, StreamView};

/// Control messages waiting for channel space, at most (beyond it they are dropped, logged).
const MAX_OUTBOX: usize = 65_536;
/// Mesh messages handled per source shard per wake-up.
const DRAIN_PER_SOURCE: usize = 1024;
/// How long a publisher waits for the owner's answer.
const PUBLISH_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The per-core state.
pub struct Shard {
    pub id: ShardId,
    pub shards: usize,
    pub config: Arc<Config>,
    pub mesh: Arc<Mesh>,
    pub stats: Arc<Stats>,
    epoch: Instant,
    next_id: Cell<u64>,
    /// Replicas for this shard's viewers (and, for owned streams, the owner's cache).
    streams: RefCell<HashMap<StreamKey, Rc<LocalStream>>>,
    /// Streams this shard is the local origin of.
    owned: RefCell<HashMap<StreamKey, Owned>>,
    pending_publish: RefCell<HashMap<PublisherId, Rc<Reply>>>,
    outbox: RefCell<VecDeque<(ShardId, MeshMsg)>>,
    /// This shard's segment memory (segments of the streams it owns).
    arena: Arc<Arena>,
    /// HLS state of every stream on the machine, as last announced by its owner: requests
    /// are answered here, on the shard that accepted them.
    hls: RefCell<HashMap<StreamKey, Arc<HlsSnapshot>>>,
    /// Owned streams whose HLS ended, oldest first: evicted first when the arena is full.
    ended_hls: RefCell<VecDeque<StreamKey>>,
    /// Edge mode: generation numbers of upstream connections.
    next_gen: Cell<u64>,
    /// Edge mode: when this shard last told an owner that HLS viewers want a stream.
    hls_demand_sent: RefCell<HashMap<StreamKey, u64>>,
}

/// Master state of a stream this shard owns.
struct Owned {
    master: StreamMaster,
    /// Remote shards with viewers, and whether each missed updates (channel full).
    subscribers: Vec<(ShardId, bool)>,
    /// The stream's one HLS segmenter (while a publisher is live or in grace).
    segmenter: Option<Segmenter<ArenaStore>>,
    /// Edge mode: the stream's one upstream pull.
    pull: Option<edge::Pull>,
    /// Edge mode: the forwarding of a publish made here to an origin.
    forward: Option<edge::Forward>,
    /// What `/api/v1/streams` shows of it.
    view: Arc<StreamView>,
}

/// One shard's replica of a stream and the viewers attached to it here.
pub struct LocalStream {
    key: StreamKey,
    replica: RefCell<StreamReplica>,
    viewers: RefCell<Vec<Rc<Outlet>>>,
}

/// A one-shot slot for the owner's publish answer.
#[derive(Default)]
struct Reply {
    value: Cell<Option<Result<(), PublishError>>>,
    waker: Cell<Option<Waker>>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        config: Arc<Config>,
        mesh: Arc<Mesh>,
        stats: Arc<Stats>,
        epoch: Instant,
        arena: Arc<Arena>,
    ) -> Rc<Self> {
        let shard = Rc::new(Self {
            id,
            shards: config.shards(),
            config,
            mesh,
            stats,
            epoch,
            next_id: Cell::new(1),
            streams: RefCell::new(HashMap::new()),
            owned: RefCell::new(HashMap::new()),
            pending_publish: RefCell::new(HashMap::new()),
            outbox: RefCell::new(VecDeque::new()),
            arena,
            hls: RefCell::new(HashMap::new()),
            ended_hls: RefCell::new(VecDeque::new()),
            next_gen: Cell::new(1),
            hls_demand_sent: RefCell::new(HashMap::new()),
        });
        shard.update_cache_gauges();
        shard
    }

    /// The HLS snapshot a request on this shard is answered from.
    pub fn hls(&self, key: &StreamKey) -> Option<Arc<HlsSnapshot>> {
        self.hls.borrow().get(key).cloned()
    }

    /// Refreshes the segment-cache gauges.
    fn update_cache_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let chunk = crate::arena::CHUNK_BYTES as u64;
        self.stats()
            .cache_bytes_total
            .store(self.arena.chunks() as u64 * chunk, Relaxed);
        self.stats()
            .cache_bytes_free
            .store(self.arena.free_chunks() as u64 * chunk, Relaxed);
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats.shards[self.id]
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A machine-unique id for a connection.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        ((self.id as u64) << 48) | n
    }

    pub fn owner_of(&self, key: &StreamKey) -> ShardId {
        (key.stable_hash() % self.shards as u64) as usize
    }

    // ----- the mesh -------------------------------------------------------------------------

    /// Sends a control message; when the channel is full it waits in the outbox (FIFO).
    fn send_control(&self, to: ShardId, msg: MeshMsg) {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.is_empty() {
            if let Err(m) = self.mesh.try_send(self.id, to, msg) {
                outbox.push_back((to, m));
            }
        } else if outbox.len() < MAX_OUTBOX {
            outbox.push_back((to, msg));
        } else {
            warn!(
                shard = self.id,
                to, "mesh outbox full; dropping control message {msg:?}"
            );
        }
    }

    fn flush_outbox(&self) {
        let mut outbox = self.outbox.borrow_mut();
        while let Some((to, msg)) = outbox.pop_front() {
            if let Err(m) = self.mesh.try_send(self.id, to, msg) {
                outbox.push_front((to, m));
                break;
            }
        }
    }

    /// Sends publisher media to the owner, waiting while the channel is full: the publisher
    /// is pushed back over TCP instead of anything being dropped.
    pub async fn send_media(&self, to: ShardId, mut msg: MeshMsg) {
        loop {
            match self.mesh.try_send(self.id, to, msg) {
                Ok(()) => return,
                Err(m) => {
                    msg = m;
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// Receives mesh messages until shutdown.
    pub async fn run_dispatcher(self: Rc<Self>) {
        loop {
            let outbox_waiting = !self.outbox.borrow().is_empty();
            if outbox_waiting {
                monoio::select! {
                    _ = poll_fn(|cx| self.mesh.poll_ready(self.id, cx)) => {}
                    _ = monoio::time::sleep(Duration::from_millis(2)) => {}
                }
            } else {
                poll_fn(|cx| self.mesh.poll_ready(self.id, cx)).await;
            }
            if self.mesh.is_shutting_down() {
                return;
            }
            self.flush_outbox();
            let mut batch = Vec::new();
            self.mesh
                .drain(self.id, DRAIN_PER_SOURCE, |_, m| batch.push(m));
            for msg in batch {
                self.handle_mesh(msg);
            }
            // Yielding is not fair in monoio 0.2.4 (a woken task is polled again at once), so
            // when more is pending we go through the timer wheel to let sockets run first.
            if self.mesh_pending() {
                monoio::time::sleep(Duration::ZERO).await;
            }
        }
    }

    fn mesh_pending(&self) -> bool {
        let waker = Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        self.mesh.poll_ready(self.id, &mut cx).is_ready()
    }

    fn handle_mesh(self: &Rc<Self>, msg: MeshMsg) {
        match msg {
            MeshMsg::Subscribe { key, from, query } => self.owner_subscribe(key, from, query),
            MeshMsg::Demand { key, query } => self.owner_demand(&key, query),
            MeshMsg::Unsubscribe { key, from } => {
                if let Some(o) = self.owned.borrow_mut().get_mut(&key) {
                    o.subscribers.retain(|(s, _)| *s != from);
                }
                self.maybe_free(&key);
            }
            MeshMsg::Update { key, update } => {
                let stream = self.streams.borrow().get(&key).cloned();
                if let Some(ls) = stream {
                    self.apply(&ls, &update);
                }
            }
            MeshMsg::PublishRequest {
                key,
                publisher,
                from,
                query,
            } => {
                let result = self.owner_publish(&key, publisher, query);
                if result.is_err() {
                    self.stats().publish_rejected.inc();
                }
                self.send_control(from, MeshMsg::PublishReply { publisher, result });
            }
            MeshMsg::PublishReply { publisher, result } => {
                if let Some(slot) = self.pending_publish.borrow_mut().remove(&publisher) {
                    slot.value.set(Some(result));
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            MeshMsg::Media {
                key,
                publisher,
                kind,
                timestamp,
                body,
            } => {
                let frame = match self.owned.borrow_mut().get_mut(&key) {
                    Some(o) => o.master.handle_media(publisher, kind, timestamp, body),
                    None => Ok(None),
                };
                match frame {
                    Ok(Some(f)) => self.broadcast(&key, [StreamUpdate::Frame(f)]),
                    Ok(None) => {}
                    // The publisher's shard validated the tag already; this is a late race.
                    Err(e) => debug!(shard = self.id, %key, "dropping media: {e}"),
                }
            }
            MeshMsg::Metadata {
                key,
                publisher,
                body,
            } => {
                let frame = self
                    .owned
                    .borrow_mut()
                    .get_mut(&key)
                    .and_then(|o| o.master.handle_metadata(publisher, body));
                if let Some(f) = frame {
                    self.broadcast(&key, [StreamUpdate::Frame(f)]);
                }
            }
            MeshMsg::Hls { key, snapshot } => match snapshot {
                Some(s) => {
                    self.hls.borrow_mut().insert(key, s);
                }
                None => {
                    self.hls.borrow_mut().remove(&key);
                }
            },
            MeshMsg::Unpublish { key, publisher } => {
                let now = self.now_ms();
                let updates = match self.owned.borrow_mut().get_mut(&key) {
                    Some(o) => o.master.handle_unpublish(publisher, now),
                    None => Vec::new(),
                };
                if !updates.is_empty() {
                    info!(shard = self.id, %key, grace_ms = self.config.republish_grace_ms, "publisher left; waiting for a republish");
                    self.broadcast(&key, updates);
                    self.refresh_view(&key);
                    self.arm_grace_timer(key);
                }
            }
        }
    }

    // ----- owner side -----------------------------------------------------------------------

    fn owned_entry<'a>(
        &self,
        owned: &'a mut HashMap<StreamKey, Owned>,
        key: &StreamKey,
    ) -> &'a mut Owned {
        if !owned.contains_key(key) {
            self.stats().streams_owned.inc();
            // The owner always keeps a replica: it is the join cache snapshots come from.
            self.local_stream(key, None);
        }
        owned.entry(key.clone()).or_insert_with(|| {
            let view = Arc::new(StreamView::new(key.to_string(), self.id));
            self.stats.add_stream(Arc::clone(&view));
            Owned {
                master: StreamMaster::new(self.config.republish_grace_ms),
                subscribers: Vec::new(),
                segmenter: None,
                pull: None,
                forward: None,
                view,
            }
        })
    }

    fn owner_subscribe(self: &Rc<Self>, key: StreamKey, from: ShardId, query: Option<Arc<str>>) {
        {
            let mut owned = self.owned.borrow_mut();
            let o = self.owned_entry(&mut owned, &key);
            if !o.subscribers.iter().any(|(s, _)| *s == from) {
                o.subscribers.push((from, false));
            }
        }
        let snapshot = self
            .streams
            .borrow()
            .get(&key)
            .map(|ls| ls.replica.borrow().snapshot());
        if let Some(update) = snapshot {
            if self
                .mesh
                .try_send(
                    self.id,
                    from,
                    MeshMsg::Update {
                        key: key.clone(),
                        update,
                    },
                )
                .is_err()
            {
                self.mark_lagging(&key, from);
            }
        }
        self.owner_demand(&key, query);
    }

    fn owner_publish(
        self: &Rc<Self>,
        key: &StreamKey,
        publisher: PublisherId,
        query: Option<Arc<str>>,
    ) -> Result<(), PublishError> {
        let now = self.now_ms();
        let updates = {
            let mut owned = self.owned.borrow_mut();
            self.owned_entry(&mut owned, key)
                .master
                .handle_publish(publisher, now)?
        };
        info!(shard = self.id, %key, "publish accepted");
        // Edge mode: the local publisher replaces a pull that had nothing, and goes upstream.
        self.stop_pull(key, false);
        self.broadcast(key, updates);
        self.start_forward(key, query);
        self.refresh_view(key);
        Ok(())
    }

    fn arm_grace_timer(self: &Rc<Self>, key: StreamKey) {
        let shard = Rc::clone(self);
        let delay = Duration::from_millis(self.config.republish_grace_ms + 1);
        monoio::spawn(async move {
            monoio::time::sleep(delay).await;
            let now = shard.now_ms();
            let updates = match shard.owned.borrow_mut().get_mut(&key) {
                Some(o) => o.master.handle_timeout(now),
                None => Vec::new(),
            };
            if !updates.is_empty() {
                info!(shard = shard.id, %key, "grace period over; stream ended");
                shard.broadcast(&key, updates);
                shard.refresh_view(&key);
                shard.maybe_free(&key);
            }
        });
    }

    fn mark_lagging(&self, key: &StreamKey, shard: ShardId) {
        self.stats().mesh_lagging.inc();
        if let Some(o) = self.owned.borrow_mut().get_mut(key) {
            for s in o.subscribers.iter_mut().filter(|(s, _)| *s == shard) {
                s.1 = true;
            }
        }
    }

    /// Applies updates to the owner's replica and sends them to every subscribed shard.
    fn broadcast(
        self: &Rc<Self>,
        key: &StreamKey,
        updates: impl IntoIterator<Item = StreamUpdate>,
    ) {
        let local = self.streams.borrow().get(key).cloned();
        let Some(local) = local else { return };
        for update in updates {
            self.feed_hls(key, &update);
            self.apply(&local, &update);
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else { return };
            match &update {
                StreamUpdate::Frame(f) => {
                    if let Some(fw) = &o.forward {
                        fw.push(f);
                    }
                }
                StreamUpdate::Ended => {
                    if let Some(fw) = o.forward.take() {
                        fw.stop();
                    }
                }
                _ => {}
            }
            let resync_point = match &update {
                StreamUpdate::Frame(f) => f.flags.sync_point,
                _ => true,
            };
            for (shard, lagging) in o.subscribers.iter_mut() {
                if *lagging {
                    // Resynchronise at a keyframe or state change with a fresh snapshot.
                    if resync_point {
                        let snap = local.replica.borrow().snapshot();
                        if self
                            .mesh
                            .try_send(
                                self.id,
                                *shard,
                                MeshMsg::Update {
                                    key: key.clone(),
                                    update: snap,
                                },
                            )
                            .is_ok()
                        {
                            *lagging = false;
                        }
                    }
                    continue;
                }
                let msg = MeshMsg::Update {
                    key: key.clone(),
                    update: update.clone(),
                };
                if self.mesh.try_send(self.id, *shard, msg).is_err() {
                    *lagging = true;
                    self.stats.shards[self.id].mesh_lagging.inc();
                }
            }
        }
    }

    /// Feeds the owner's segmenter and announces finished segments to every shard.
    fn feed_hls(self: &Rc<Self>, key: &StreamKey, update: &StreamUpdate) {
        let mut owned = self.owned.borrow_mut();
        let Some(o) = owned.get_mut(key) else { return };
        let refused_before = o.segmenter.as_ref().map_or(0, |s| s.refused_segments);
        let result = match update {
            StreamUpdate::Started { republish: false } => {
                let name = key.stream();
                let store = ArenaStore {
                    arena: Arc::clone(&self.arena),
                };
                o.segmenter = Some(Segmenter::new(self.config.hls, store, name));
                Ok(None)
            }
            StreamUpdate::Started { republish: true } => {
                Ok(o.segmenter.as_mut().and_then(|s| s.handle_republish()))
            }
            // The segmenter parses the publisher's codec data (AVCC, HEVC, ASC): a panic in
            // it is contained like a connection's, and costs this stream its HLS only.
            StreamUpdate::Frame(f) => match &mut o.segmenter {
                Some(s) => match crate::contain::peer_input(|| s.handle_frame(f)) {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(panic) => {
                        self.stats().peer_panics.inc();
                        Err(panic)
                    }
                },
                None => Ok(None),
            },
            StreamUpdate::Ended => Ok(o.segmenter.take().map(|mut s| s.handle_end())),
            StreamUpdate::Unpublished | StreamUpdate::Snapshot { .. } => Ok(None),
        };
        let refused = o.segmenter.as_ref().map_or(0, |s| s.refused_segments) > refused_before;
        if let Err(e) = &result {
            warn!(shard = self.id, %key, "HLS stopped for this stream: {e}");
            o.segmenter = None;
        }
        drop(owned);
        let mut shed = None;
        if refused {
            self.stats().hls_segments_refused.inc();
            tracing::error!(shard = self.id, %key, "segment cache full (--cache-mb): segment refused");
            // Streams without a publisher go first; if none is left, this stream gives up
            // its oldest segments so that its next segment fits once readers let go.
            if !self.evict_ended_hls() {
                shed = self
                    .owned
                    .borrow_mut()
                    .get_mut(key)
                    .and_then(|o| o.segmenter.as_mut())
                    .and_then(|s| s.shed());
            }
        }
        if let Some(snapshot) = shed {
            self.publish_hls(key, snapshot);
        }
        let finished = matches!(result, Ok(Some(_)));
        if let Ok(Some(snapshot)) = result {
            if !snapshot.ended {
                self.stats().hls_segments.inc();
            }
            self.publish_hls(key, snapshot);
        }
        // Memory only changes at segment boundaries; the per-frame path stays free of this.
        if finished || refused {
            if !refused && self.arena.free_chunks() * 8 < self.arena.chunks() {
                // Under an eighth free: make room before a segment has to be refused.
                self.evict_ended_hls();
            }
            self.update_cache_gauges();
        }
    }

    /// Installs a snapshot here and sends it to every other shard.
    fn publish_hls(self: &Rc<Self>, key: &StreamKey, snapshot: HlsSnapshot) {
        let ended = snapshot.ended;
        let snapshot = Arc::new(snapshot);
        self.hls
            .borrow_mut()
            .insert(key.clone(), Arc::clone(&snapshot));
        for to in (0..self.shards).filter(|&s| s != self.id) {
            self.send_control(
                to,
                MeshMsg::Hls {
                    key: key.clone(),
                    snapshot: Some(Arc::clone(&snapshot)),
                },
            );
        }
        if !ended {
            return;
        }
        // Players keep an ended playlist for a while; then its segments go.
        self.ended_hls.borrow_mut().push_back(key.clone());
        let shard = Rc::clone(self);
        let key = key.clone();
        let linger = Duration::from_millis(
            (self.config.hls.segment_ms * self.config.hls.window as u64).max(30_000),
        );
        monoio::spawn(async move {
            monoio::time::sleep(linger).await;
            let same = shard
                .hls
                .borrow()
                .get(&key)
                .is_some_and(|s| Arc::ptr_eq(s, &snapshot));
            if same {
                shard.forget_hls(&key);
            }
        });
    }

    /// Drops a stream's HLS state on every shard.
    fn forget_hls(&self, key: &StreamKey) {
        self.hls.borrow_mut().remove(key);
        self.ended_hls.borrow_mut().retain(|k| k != key);
        for to in (0..self.shards).filter(|&s| s != self.id) {
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
    fn evict_ended_hls(&self) -> bool {
        loop {
            let Some(key) = self.ended_hls.borrow_mut().pop_front() else {
                return false;
            };
            let still_ended = self.hls.borrow().get(&key).is_some_and(|s| s.ended);
            if still_ended {
                info!(shard = self.id, %key, "evicting an ended stream's segments for space");
                self.stats().hls_evictions.inc();
                self.forget_hls(&key);
                return true;
            }
        }
    }

    /// On the owner shard, frees a stream nobody uses: no publisher, no grace, no viewers on
    /// any shard. (A viewer on the owner shard may have created only the replica.)
    fn maybe_free(&self, key: &StreamKey) {
        let local_viewers = self
            .streams
            .borrow()
            .get(key)
            .map_or(0, |ls| ls.viewers.borrow().len());
        let mut owned = self.owned.borrow_mut();
        let unused = owned.get(key).is_none_or(|o| {
            o.master.is_idle()
                && o.subscribers.is_empty()
                && o.pull.is_none()
                && o.forward.is_none()
        });
        if !unused || local_viewers > 0 {
            return;
        }
        if owned.remove(key).is_some() {
            self.stats().streams_owned.dec();
            self.stats.remove_stream(self.id, key.as_str());
        }
        if self.streams.borrow_mut().remove(key).is_some() {
            self.stats().replicas.dec();
        }
        debug!(shard = self.id, %key, "stream state freed");
    }

    // ----- replica side ---------------------------------------------------------------------

    fn local_stream(&self, key: &StreamKey, query: Option<Arc<str>>) -> Rc<LocalStream> {
        if let Some(ls) = self.streams.borrow().get(key) {
            return Rc::clone(ls);
        }
        let ls = Rc::new(LocalStream {
            key: key.clone(),
            replica: RefCell::new(StreamReplica::new(self.config.gop)),
            viewers: RefCell::new(Vec::new()),
        });
        self.streams
            .borrow_mut()
            .insert(key.clone(), Rc::clone(&ls));
        self.stats().replicas.inc();
        let owner = self.owner_of(key);
        if owner != self.id {
            self.send_control(
                owner,
                MeshMsg::Subscribe {
                    key: key.clone(),
                    from: self.id,
                    query,
                },
            );
        }
        ls
    }

    /// Applies an update to a replica and to its viewers.
    fn apply(&self, ls: &LocalStream, update: &StreamUpdate) {
        let now = self.now_ms();
        ls.replica.borrow_mut().handle_update(update);
        match update {
            StreamUpdate::Frame(f) => {
                let viewers = ls.viewers.borrow();
                for v in viewers.iter().filter(|v| v.joined()) {
                    self.push(v, f, now);
                }
            }
            StreamUpdate::Started { republish } => {
                for v in ls.viewers.borrow().iter() {
                    if !v.joined() {
                        self.join(ls, v);
                    } else if *republish {
                        // Fresh headers come as frames; pictures resume at the new keyframe.
                        v.require_sync_point();
                    }
                }
            }
            StreamUpdate::Snapshot { live, frames } => {
                let gop_empty = !frames.iter().any(|f| !f.flags.header);
                for v in ls.viewers.borrow().iter() {
                    if !v.joined() {
                        if *live {
                            self.join(ls, v);
                        }
                        continue;
                    }
                    // A resync after lag: fill the hole from the GOP, skipping what it has.
                    if gop_empty {
                        v.require_sync_point();
                    }
                    for f in frames.iter().filter(|f| !v.already_has(f)) {
                        self.push(v, f, now);
                    }
                }
            }
            StreamUpdate::Unpublished => {}
            StreamUpdate::Ended => {
                let viewers: Vec<Rc<Outlet>> = ls.viewers.borrow_mut().drain(..).collect();
                for v in viewers {
                    self.finish_viewer(&v, "NetStream.Play.UnpublishNotify", "stream ended");
                    self.viewer_gone(&v);
                }
                self.release_replica(&ls.key);
            }
        }
    }

    fn push(&self, v: &Outlet, f: &Frame, now: u64) {
        match v.push_frame(f, now) {
            PushOutcome::Queued => {}
            PushOutcome::Dropped => self.stats().frames_dropped.inc(),
            PushOutcome::Disconnect => {
                warn!(
                    shard = self.id,
                    viewer = v.id,
                    "closing slow viewer: over its queue limit for {} ms",
                    self.config.queue.slow_viewer_ms
                );
                self.stats().slow_viewer_disconnects.inc();
                v.close(Close::Abort);
            }
        }
    }

    /// Delivers the join sequence to a viewer: response head (FLV), headers, GOP.
    fn join(&self, ls: &LocalStream, v: &Outlet) {
        if v.wire == Wire::Flv {
            v.push_control(http::flv_response_head());
            v.push_control(bytes::Bytes::from_static(
                edge_core::flv::FILE_HEADER_CHUNKED,
            ));
        }
        v.set_joined();
        let now = self.now_ms();
        let replica = ls.replica.borrow();
        for f in replica.join_frames() {
            self.push(v, f, now);
        }
        if replica.join_needs_keyframe() {
            v.require_sync_point();
        }
    }

    /// Ends a viewer politely: a status for RTMP, a close for FLV (404 if it never started).
    fn finish_viewer(&self, v: &Outlet, code: &str, description: &str) {
        match v.wire {
            Wire::Rtmp => {
                let level = if code.ends_with("StreamNotFound") {
                    "error"
                } else {
                    "status"
                };
                let body = edge_core::rtmp::amf::status_body(level, code, description);
                v.push_control(chunk::serialize_message(
                    chunk::CSID_DATA,
                    0,
                    20,
                    chunk::PLAY_STREAM_ID,
                    &body,
                    chunk::OUT_CHUNK_SIZE,
                ));
            }
            Wire::Flv if !v.joined() => {
                let body = format!("{description}\n");
                v.push_control(http::response_head(
                    404,
                    "text/plain",
                    Some(body.len()),
                    "no-cache",
                    false,
                ));
                v.push_control(bytes::Bytes::from(body));
            }
            Wire::Flv => v.push_control(bytes::Bytes::from_static(edge_core::flv::LAST_CHUNK)),
        }
        v.close(Close::Flush);
    }

    /// Attaches a viewer to `key` on this shard. Starts its play-wait timer if the stream is
    /// not live yet. `query` (the viewer's `?…`) goes upstream if this starts an edge pull.
    pub fn add_viewer(self: &Rc<Self>, key: &StreamKey, v: &Rc<Outlet>, query: Option<Arc<str>>) {
        let ls = self.local_stream(key, query.clone());
        if self.owner_of(key) == self.id {
            self.owner_demand(key, query);
        }
        ls.viewers.borrow_mut().push(Rc::clone(v));
        match v.wire {
            Wire::Rtmp => self.stats().rtmp_players.inc(),
            Wire::Flv => self.stats().flv_players.inc(),
        }
        let state = ls.replica.borrow().state();
        if matches!(state, ReplicaState::Live | ReplicaState::Unpublished) {
            self.join(&ls, v);
            return;
        }
        let shard = Rc::clone(self);
        let key = key.clone();
        let v = Rc::clone(v);
        let wait = Duration::from_millis(self.config.play_wait_ms);
        monoio::spawn(async move {
            monoio::time::sleep(wait).await;
            if !v.joined() && !v.is_closing() {
                info!(shard = shard.id, %key, viewer = v.id, "no publisher within play-wait; not found");
                shard.finish_viewer(&v, "NetStream.Play.StreamNotFound", "stream not found");
                shard.remove_viewer(&key, &v);
            }
        });
    }

    /// Detaches a viewer (connection closed, play stopped, not found).
    pub fn remove_viewer(&self, key: &StreamKey, v: &Rc<Outlet>) {
        let Some(ls) = self.streams.borrow().get(key).cloned() else {
            return;
        };
        let empty = {
            let mut viewers = ls.viewers.borrow_mut();
            let before = viewers.len();
            viewers.retain(|x| !Rc::ptr_eq(x, v));
            if viewers.len() == before {
                return;
            }
            viewers.is_empty()
        };
        self.viewer_gone(v);
        if empty {
            self.release_replica(key);
        }
    }

    fn viewer_gone(&self, v: &Outlet) {
        match v.wire {
            Wire::Rtmp => self.stats().rtmp_players.dec(),
            Wire::Flv => self.stats().flv_players.dec(),
        }
    }

    /// Drops a replica without viewers; the owner keeps its own until `maybe_free`.
    fn release_replica(&self, key: &StreamKey) {
        let owner = self.owner_of(key);
        if owner == self.id {
            self.maybe_free(key);
            return;
        }
        let has_viewers = self
            .streams
            .borrow()
            .get(key)
            .is_some_and(|ls| !ls.viewers.borrow().is_empty());
        if has_viewers {
            return;
        }
        if self.streams.borrow_mut().remove(key).is_some() {
            self.stats().replicas.dec();
            self.send_control(
                owner,
                MeshMsg::Unsubscribe {
                    key: key.clone(),
                    from: self.id,
                },
            );
        }
    }

    /// Sweeps viewers that are over their limit while no frames arrive to notice it.
    pub async fn run_housekeeping(self: Rc<Self>) {
        loop {
            monoio::time::sleep(Duration::from_millis(500)).await;
            // Chunks come back from any shard's last reader; show it.
            self.update_cache_gauges();
            let now = self.now_ms();
            let streams: Vec<Rc<LocalStream>> = self.streams.borrow().values().cloned().collect();
            for ls in streams {
                for v in ls
                    .viewers
                    .borrow()
                    .iter()
                    .filter(|v| v.is_overdue(now) && !v.is_closing())
                {
                    warn!(
                        shard = self.id,
                        viewer = v.id,
                        "closing slow viewer (sweep)"
                    );
                    self.stats().slow_viewer_disconnects.inc();
                    v.close(Close::Abort);
                }
            }
        }
    }

    // ----- publishers -----------------------------------------------------------------------

    /// Asks the owner for `key`; resolves with its answer.
    pub async fn request_publish(
        &self,
        key: &StreamKey,
        publisher: PublisherId,
        query: Option<Arc<str>>,
    ) -> Result<(), PublishError> {
        let slot = Rc::new(Reply::default());
        self.pending_publish
            .borrow_mut()
            .insert(publisher, Rc::clone(&slot));
        let owner = self.owner_of(key);
        self.send_control(
            owner,
            MeshMsg::PublishRequest {
                key: key.clone(),
                publisher,
                from: self.id,
                query,
            },
        );
        let answer = monoio::time::timeout(
            PUBLISH_REPLY_TIMEOUT,
            poll_fn(|cx| match slot.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    slot.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }),
        )
        .await;
        self.pending_publish.borrow_mut().remove(&publisher);
        match answer {
            Ok(r) => r,
            Err(_) => {
                warn!(shard = self.id, %key, "owner shard {owner} did not answer a publish in time");
                // Treat as busy; if the owner accepted late, the unpublish below releases it.
                self.unpublish(key, publisher);
                Err(PublishError::AlreadyPublishing)
            }
        }
    }

    pub fn unpublish(&self, key: &StreamKey, publisher: PublisherId) {
        self.send_control(
            self.owner_of(key),
            MeshMsg::Unpublish {
                key: key.clone(),
                publisher,
            },
        );
    }
}

/// Increments and decrements on relaxed atomics (each counter has one writer: its shard).
pub trait Counter {
    fn inc(&self);
    fn dec(&self);
}

impl Counter for std::sync::atomic::AtomicU64 {
    fn inc(&self) {
        self.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn dec(&self) {
        self.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
