//! One shard: a dispatcher between its events and edge-core's state machines. It decides
//! nothing itself.
//!
//! ```text
//!  mesh message ─┐                         ┌─▶ Owner (streams this shard owns: master, join
//!  connection  ──┼──▶ dispatch (this file) ─┤      cache, subscribers, segmenter, pull, forward)
//!  link report ──┤                         └─▶ Replica (streams its viewers watch)
//!  timer       ──┘            │                            │
//!                             ◀──────── effects ───────────┘
//!     run them: mesh sends, frames to outlets, links started/stopped, HLS installed;
//!     then re-arm the one timer from the state machines' poll_timeout()
//! ```
//!
//! Borrow discipline: `owners`, `replicas`, `hls` and `links` are each borrowed only for
//! one state-machine call (which appends effects to a vector) and released before the
//! effects run; running an effect may borrow any of them again. Nothing is borrowed across an
//! `.await`: the async parts (publish requests, the HLS wait) hold no borrow while pending.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use edge_core::forward::ForwardNote;
use edge_core::hls::catalog::HlsCatalog;
use edge_core::hls::HlsSnapshot;
use edge_core::media::{Frame, TagInfo};
use edge_core::owner::{EdgeConfig, LinkRole, Owner, OwnerConfig, OwnerEffect, OwnerNote};
use edge_core::pull::{DemandLimiter, PullNote};
use edge_core::queue::PushOutcome;
use edge_core::replica::{FinishReason, Replica, ReplicaConfig, ReplicaEffect};
use edge_core::stream::{PublishError, PublisherId, StreamUpdate};
use edge_core::upstream::LinkEvent;
use edge_core::{LinkId, ShardId, StreamKey, ViewerId};
use tracing::{debug, error, info, warn};

use crate::arena::{Arena, ArenaStore};
use crate::clock::Clock;
use crate::config::Config;
use crate::contain;
use crate::mesh::{Mesh, MeshMsg};
use crate::outlet::{Close, Outlet, Wire};
use crate::stats::{ShardStats, Stats, StreamView};
use crate::timer::Timers;
use crate::upstream::{self, Cancel, ForwardQueue, LinkParams, LinkSink};

/// Control messages waiting for channel space, at most (beyond it they are dropped, logged).
const MAX_OUTBOX: usize = 65_536;
/// Mesh messages handled per source shard per wake-up.
const DRAIN_PER_SOURCE: usize = 1024;
/// How long a publisher waits for the owner's answer.
const PUBLISH_REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a shard tells an owner that its HLS viewers still want a stream.
const HLS_DEMAND_EVERY_MS: u64 = 1000;
/// The longest a first playlist request waits for the pull's first segment.
const HLS_FIRST_WAIT_MAX_MS: u64 = 10_000;

/// What the timer is armed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKey {
    /// A stream's owner and replica deadlines on this shard.
    Stream(StreamKey),
    /// Ended HLS playlists' linger.
    Hls,
    /// Forgetting old HLS demand records.
    Demand,
}

/// A stream this shard owns.
struct Owned {
    owner: Owner<ArenaStore>,
    /// What `/api/v1/streams` shows of it.
    view: Arc<StreamView>,
    /// The forward's current connection and the frames waiting for it.
    forward: Option<(LinkId, Rc<ForwardQueue>)>,
}

/// A running upstream connection task.
struct LinkTask {
    key: StreamKey,
    cancel: Rc<Cancel>,
}

/// A one-shot slot for the owner's publish answer.
#[derive(Default)]
struct Reply {
    value: Cell<Option<Result<(), PublishError>>>,
    waker: Cell<Option<Waker>>,
}

/// The per-core state.
pub struct Shard {
    pub id: ShardId,
    pub shards: usize,
    pub config: Arc<Config>,
    pub mesh: Arc<Mesh>,
    pub stats: Arc<Stats>,
    pub clock: Clock,
    next_id: Cell<u64>,
    owner_config: Arc<OwnerConfig>,
    replica_config: ReplicaConfig,
    owners: RefCell<HashMap<StreamKey, Owned>>,
    replicas: RefCell<HashMap<StreamKey, Replica<Rc<Outlet>>>>,
    links: RefCell<HashMap<LinkId, LinkTask>>,
    pending_publish: RefCell<HashMap<PublisherId, Rc<Reply>>>,
    outbox: RefCell<VecDeque<(ShardId, MeshMsg)>>,
    /// This shard's segment memory (segments of the streams it owns).
    arena: Arc<Arena>,
    /// HLS state of every stream on the machine, as last announced by its owner: requests
    /// are answered here, on the shard that accepted them.
    hls: RefCell<HlsCatalog>,
    /// Playlist requests waiting for a stream's first segment (edge mode).
    hls_waiters: RefCell<HashMap<StreamKey, Vec<Waker>>>,
    /// Edge mode: when this shard last told an owner that HLS viewers want a stream.
    demand: RefCell<DemandLimiter>,
    timers: Timers<TimerKey>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        config: Arc<Config>,
        mesh: Arc<Mesh>,
        stats: Arc<Stats>,
        clock: Clock,
        arena: Arc<Arena>,
    ) -> Rc<Self> {
        let edge = (!config.origins.is_empty()).then(|| EdgeConfig {
            origins: config.origins.clone(),
            upstream_timeout_ms: config.upstream_timeout_ms,
            upstream_idle_ms: config.upstream_idle_ms,
        });
        let owner_config = Arc::new(OwnerConfig {
            me: id,
            grace_ms: config.republish_grace_ms,
            gop: config.gop,
            hls: config.hls,
            edge,
        });
        let replica_config = ReplicaConfig {
            play_wait_ms: config.play_wait_ms,
            gop: config.gop,
        };
        let linger_ms = (config.hls.segment_ms * config.hls.window as u64).max(30_000);
        let demand = DemandLimiter::new(HLS_DEMAND_EVERY_MS, config.upstream_idle_ms);
        Rc::new(Self {
            id,
            shards: config.shards(),
            config,
            mesh,
            stats,
            clock,
            next_id: Cell::new(1),
            owner_config,
            replica_config,
            owners: RefCell::new(HashMap::new()),
            replicas: RefCell::new(HashMap::new()),
            links: RefCell::new(HashMap::new()),
            pending_publish: RefCell::new(HashMap::new()),
            outbox: RefCell::new(VecDeque::new()),
            arena,
            hls: RefCell::new(HlsCatalog::new(linger_ms)),
            hls_waiters: RefCell::new(HashMap::new()),
            demand: RefCell::new(demand),
            timers: Timers::default(),
        })
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats.shards[self.id.0]
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// A machine-unique id for a connection (or an owner state).
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        ((self.id.0 as u64) << 48) | n
    }

    pub fn owner_of(&self, key: &StreamKey) -> ShardId {
        ShardId((key.stable_hash() % self.shards as u64) as usize)
    }

    pub fn is_edge(&self) -> bool {
        self.owner_config.edge.is_some()
    }

    /// The HLS snapshot a request on this shard is answered from.
    pub fn hls(&self, key: &StreamKey) -> Option<Arc<HlsSnapshot>> {
        self.hls.borrow().get(key).cloned()
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
            warn!(shard = %self.id, %to, "mesh outbox full; dropping control message {msg:?}");
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
        let now = self.now_ms();
        match msg {
            MeshMsg::Subscribe { key, from, query } => {
                self.with_owner(&key, true, |o, fx| o.handle_subscribe(from, query, now, fx));
            }
            MeshMsg::Demand { key, query } => {
                if self.is_edge() {
                    self.with_owner(&key, true, |o, fx| o.handle_demand(query, now, fx));
                }
            }
            MeshMsg::Unsubscribe { key, from } => {
                self.with_owner(&key, false, |o, fx| o.handle_unsubscribe(from, now, fx));
            }
            MeshMsg::Update { key, update } => self.apply_update(&key, &update),
            MeshMsg::PublishRequest {
                key,
                publisher,
                from,
                query,
            } => {
                self.with_owner(&key, true, |o, fx| {
                    o.handle_publish(publisher, from, query, now, fx)
                });
            }
            MeshMsg::PublishReply { publisher, result } => self.publish_answered(publisher, result),
            MeshMsg::Media {
                key,
                publisher,
                tag,
                timestamp,
                body,
            } => self.owner_media(&key, |o, fx| {
                o.handle_media(publisher, timestamp, body, tag, fx)
            }),
            MeshMsg::Metadata {
                key,
                publisher,
                body,
            } => self.owner_media(&key, |o, fx| o.handle_metadata(publisher, body, fx)),
            MeshMsg::Hls { key, snapshot } => match snapshot {
                Some(s) => {
                    self.hls.borrow_mut().install(key.clone(), s);
                    self.wake_hls_waiters(&key);
                }
                None => self.hls.borrow_mut().remove(&key),
            },
            MeshMsg::Unpublish { key, publisher } => {
                self.with_owner(&key, false, |o, fx| o.handle_unpublish(publisher, now, fx));
            }
        }
    }

    // ----- running owners -------------------------------------------------------------------

    /// Calls `f` on `key`'s owner state (creating it when `create`), then runs its effects
    /// and re-arms the timer.
    fn with_owner<R>(
        self: &Rc<Self>,
        key: &StreamKey,
        create: bool,
        f: impl FnOnce(&mut Owner<ArenaStore>, &mut Vec<OwnerEffect>) -> R,
    ) -> Option<R> {
        let mut fx = Vec::new();
        let r = {
            let mut owners = self.owners.borrow_mut();
            if create && !owners.contains_key(key) {
                owners.insert(key.clone(), self.new_owned(key));
            }
            let o = owners.get_mut(key)?;
            f(&mut o.owner, &mut fx)
        };
        self.run_owner_effects(key, fx);
        self.rearm(key);
        Some(r)
    }

    /// [`Shard::with_owner`] for calls that parse peer media (the segmenter reads the
    /// publisher's codec data): a panic in it abandons the stream instead of the shard.
    fn owner_media(
        self: &Rc<Self>,
        key: &StreamKey,
        f: impl FnOnce(&mut Owner<ArenaStore>, &mut Vec<OwnerEffect>),
    ) {
        let mut fx = Vec::new();
        let result = {
            let mut owners = self.owners.borrow_mut();
            let Some(o) = owners.get_mut(key) else { return };
            contain::peer_input(|| f(&mut o.owner, &mut fx))
        };
        match result {
            Ok(()) => {
                self.run_owner_effects(key, fx);
                self.rearm(key);
            }
            Err(panic) => self.abandon_owner(key, &panic),
        }
    }

    fn new_owned(&self, key: &StreamKey) -> Owned {
        self.stats().streams_owned.inc();
        let view = Arc::new(StreamView::new(key.clone(), self.id));
        self.stats.add_stream(Arc::clone(&view));
        let store = ArenaStore {
            arena: Arc::clone(&self.arena),
        };
        Owned {
            owner: Owner::new(
                key.clone(),
                Arc::clone(&self.owner_config),
                store,
                self.next_conn_id(),
            ),
            view,
            forward: None,
        }
    }

    /// After a panic inside `key`'s owner state: drop it, end the stream for every shard
    /// that watched it, close its upstream connections.
    fn abandon_owner(self: &Rc<Self>, key: &StreamKey, why: &str) {
        self.stats().peer_panics.inc();
        error!(shard = %self.id, %key, "stream state abandoned after {why}");
        let Some(o) = self.owners.borrow_mut().remove(key) else {
            return;
        };
        let subscribers: Vec<ShardId> = o.owner.subscribers().collect();
        self.free_owned(key, o);
        for to in subscribers {
            self.update_to(key, to, StreamUpdate::Ended);
        }
        self.forget_hls(key);
    }

    fn run_owner_effects(self: &Rc<Self>, key: &StreamKey, effects: Vec<OwnerEffect>) {
        for e in effects {
            match e {
                OwnerEffect::Update { to, update } => self.update_to(key, to, update),
                OwnerEffect::PublishReply {
                    to,
                    publisher,
                    result,
                } => {
                    if result.is_err() {
                        self.stats().publish_rejected.inc();
                    }
                    if to == self.id {
                        self.publish_answered(publisher, result);
                    } else {
                        self.send_control(to, MeshMsg::PublishReply { publisher, result });
                    }
                }
                OwnerEffect::Hls(snapshot) => self.install_own_hls(key, snapshot),
                OwnerEffect::HlsRefused => {
                    self.stats().hls_segments_refused.inc();
                    error!(shard = %self.id, %key, "segment cache full (--cache-mb): segment refused");
                    // Streams without a publisher go first; if none is left, this stream
                    // gives up its oldest segments so that its next one fits.
                    if !self.evict_ended_hls() {
                        self.with_owner(key, false, |o, fx| o.handle_shed(fx));
                    }
                }
                OwnerEffect::ForgetHls => self.forget_hls(key),
                OwnerEffect::Connect {
                    link,
                    role,
                    url,
                    stream_name,
                } => self.start_link(key, link, role, url, stream_name),
                OwnerEffect::Disconnect(link) => self.stop_link(key, link),
                OwnerEffect::ForwardJoin(frames) => {
                    if let Some((_, q)) = self.forward_queue(key) {
                        q.reset(frames);
                    }
                }
                OwnerEffect::ForwardFrame(f) => {
                    if let Some((_, q)) = self.forward_queue(key) {
                        q.push(&f);
                    }
                }
                OwnerEffect::Note(n) => self.note(key, n),
                OwnerEffect::ViewChanged => {
                    if let Some(o) = self.owners.borrow().get(key) {
                        let clock = self.clock;
                        o.view.set(o.owner.view(), |ms| clock.unix_ms(ms));
                    }
                }
                OwnerEffect::Free => {
                    let gone = self.owners.borrow_mut().remove(key);
                    if let Some(o) = gone {
                        self.free_owned(key, o);
                        debug!(shard = %self.id, %key, "stream state freed");
                    }
                }
            }
        }
    }

    fn free_owned(&self, key: &StreamKey, o: Owned) {
        self.stats().streams_owned.dec();
        self.stats.remove_stream(self.id, key);
        self.links.borrow_mut().retain(|_, t| {
            let mine = t.key == *key;
            if mine {
                t.cancel.cancel();
            }
            !mine
        });
        if let Some((_, q)) = o.forward {
            q.close();
        }
    }

    /// An owner's update for shard `to`: applied here, or sent; a full channel makes `to`
    /// lag (the owner resynchronises it at the next keyframe).
    fn update_to(self: &Rc<Self>, key: &StreamKey, to: ShardId, update: StreamUpdate) {
        if to == self.id {
            self.apply_update(key, &update);
            return;
        }
        let msg = MeshMsg::Update {
            key: key.clone(),
            update,
        };
        if self.mesh.try_send(self.id, to, msg).is_err() {
            self.stats().mesh_lagging.inc();
            if let Some(o) = self.owners.borrow_mut().get_mut(key) {
                o.owner.handle_send_failed(to);
            }
        }
    }

    fn forward_queue(&self, key: &StreamKey) -> Option<(LinkId, Rc<ForwardQueue>)> {
        self.owners
            .borrow()
            .get(key)
            .and_then(|o| o.forward.as_ref().map(|(l, q)| (*l, Rc::clone(q))))
    }

    fn start_link(
        self: &Rc<Self>,
        key: &StreamKey,
        link: LinkId,
        role: LinkRole,
        url: edge_core::upstream::OriginUrl,
        stream_name: String,
    ) {
        let Some(view) = self.owners.borrow().get(key).map(|o| Arc::clone(&o.view)) else {
            return;
        };
        let cancel = Cancel::new();
        let params = LinkParams {
            key: key.clone(),
            link,
            url,
            stream_name,
            timeout: Duration::from_millis(self.config.upstream_timeout_ms),
            view,
            stats: Arc::clone(&self.stats),
            shard: self.id,
        };
        let sink: Rc<dyn LinkSink> = Rc::clone(self) as Rc<dyn LinkSink>;
        match role {
            LinkRole::Pull | LinkRole::Probe => {
                self.stats().upstream_connects.inc();
                monoio::spawn(upstream::run_pull(sink, params, Rc::clone(&cancel)));
            }
            LinkRole::Forward => {
                let queue = ForwardQueue::new(self.config.queue.max_queue_bytes);
                if let Some(o) = self.owners.borrow_mut().get_mut(key) {
                    if let Some((_, old)) = o.forward.replace((link, Rc::clone(&queue))) {
                        old.close();
                    }
                }
                monoio::spawn(upstream::run_forward(
                    sink,
                    params,
                    queue,
                    Rc::clone(&cancel),
                ));
            }
        }
        self.links.borrow_mut().insert(
            link,
            LinkTask {
                key: key.clone(),
                cancel,
            },
        );
    }

    fn stop_link(&self, key: &StreamKey, link: LinkId) {
        if let Some(t) = self.links.borrow_mut().remove(&link) {
            t.cancel.cancel();
        }
        if let Some(o) = self.owners.borrow_mut().get_mut(key) {
            if o.forward.as_ref().is_some_and(|(l, _)| *l == link) {
                if let Some((_, q)) = o.forward.take() {
                    q.close();
                }
            }
        }
    }

    /// Logs and counts what an owner reports.
    fn note(&self, key: &StreamKey, n: OwnerNote) {
        let s = self.stats();
        let id = self.id;
        match n {
            OwnerNote::PublishAccepted => info!(shard = %id, %key, "publish accepted"),
            OwnerNote::PublisherLeft { grace_ms } => {
                info!(shard = %id, %key, grace_ms, "publisher left; waiting for a republish")
            }
            OwnerNote::GraceOver => info!(shard = %id, %key, "grace period over; stream ended"),
            OwnerNote::PullStarted => {
                s.upstream_pulls_started.inc();
                s.upstream_pulls_active.inc();
                info!(shard = %id, %key, "pulling from upstream");
            }
            OwnerNote::PullStopped => s.upstream_pulls_active.dec(),
            OwnerNote::PullIdle { idle_ms } => {
                info!(shard = %id, %key, idle_ms, "no viewers left: closing the upstream pull")
            }
            OwnerNote::Pull(PullNote::Flowing { origin }) => {
                info!(shard = %id, %key, %origin, "upstream media flowing")
            }
            OwnerNote::Pull(PullNote::Failed { origin, error }) => {
                s.upstream_failovers.inc();
                warn!(shard = %id, %key, %origin, "upstream failed: {error}");
            }
            OwnerNote::Pull(PullNote::Redirected { from, to }) => {
                s.upstream_failovers.inc();
                info!(shard = %id, %key, %from, %to, "origin redirects the pull");
            }
            OwnerNote::Pull(PullNote::PreferredBack { origin }) => {
                s.upstream_failovers.inc();
                info!(shard = %id, %key, %origin, "the preferred origin is back: switching to it");
            }
            OwnerNote::ForwardStarted => s.forwards_started.inc(),
            OwnerNote::Forward(ForwardNote::Publishing { origin }) => {
                info!(shard = %id, %key, %origin, "forwarding the publish")
            }
            OwnerNote::Forward(ForwardNote::Failed { origin, error }) => {
                warn!(shard = %id, %key, %origin, "forwarding failed: {error}")
            }
            OwnerNote::HlsStopped(e) => {
                warn!(shard = %id, %key, "HLS stopped for this stream: {e}")
            }
            OwnerNote::UpstreamMediaDropped(e) => {
                warn!(shard = %id, %key, "dropping upstream media: {e}")
            }
        }
    }

    // ----- HLS ------------------------------------------------------------------------------

    fn install_own_hls(self: &Rc<Self>, key: &StreamKey, snapshot: HlsSnapshot) {
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
    fn forget_hls(&self, key: &StreamKey) {
        self.hls.borrow_mut().remove(key);
        self.announce_forgotten(key);
    }

    fn announce_forgotten(&self, key: &StreamKey) {
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
    fn evict_ended_hls(&self) -> bool {
        let Some(key) = self.hls.borrow_mut().evict_oldest_ended() else {
            return false;
        };
        info!(shard = %self.id, %key, "evicting an ended stream's segments for space");
        self.stats().hls_evictions.inc();
        self.announce_forgotten(&key);
        true
    }

    fn wake_hls_waiters(&self, key: &StreamKey) {
        if let Some(ws) = self.hls_waiters.borrow_mut().remove(key) {
            for w in ws {
                w.wake();
            }
        }
    }

    /// An HLS playlist request for `key` on this shard (edge mode): starts or keeps the pull.
    pub fn hls_demand(self: &Rc<Self>, key: &StreamKey, query: Option<&str>) {
        if !self.is_edge() {
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
        if owner == self.id {
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

    /// Waits, bounded, until `key` has an HLS playlist here (the first segment of a pull);
    /// woken by the segment's arrival, not by polling.
    pub async fn wait_for_hls(&self, key: &StreamKey) {
        let wait = self.config.play_wait_ms.min(HLS_FIRST_WAIT_MAX_MS);
        let ready = poll_fn(|cx| {
            if self.hls.borrow().get(key).is_some() {
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

    // ----- replicas and viewers -------------------------------------------------------------

    /// Calls `f` on `key`'s replica (if any), then runs its effects and re-arms the timer.
    fn with_replica(
        self: &Rc<Self>,
        key: &StreamKey,
        f: impl FnOnce(&mut Replica<Rc<Outlet>>, &mut Vec<ReplicaEffect<Rc<Outlet>>>),
    ) {
        let mut fx = Vec::new();
        {
            let mut replicas = self.replicas.borrow_mut();
            let Some(r) = replicas.get_mut(key) else {
                return;
            };
            f(r, &mut fx);
        }
        self.run_replica_effects(key, fx);
        self.rearm(key);
    }

    fn apply_update(self: &Rc<Self>, key: &StreamKey, update: &StreamUpdate) {
        let now = self.now_ms();
        self.with_replica(key, |r, fx| r.handle_update(update, now, fx));
    }

    fn run_replica_effects(
        self: &Rc<Self>,
        key: &StreamKey,
        effects: Vec<ReplicaEffect<Rc<Outlet>>>,
    ) {
        let now = self.now_ms();
        for e in effects {
            match e {
                ReplicaEffect::Subscribe { query } => {
                    let owner = self.owner_of(key);
                    if owner == self.id {
                        let me = self.id;
                        self.with_owner(key, true, |o, fx| o.handle_subscribe(me, query, now, fx));
                    } else {
                        self.send_control(
                            owner,
                            MeshMsg::Subscribe {
                                key: key.clone(),
                                from: self.id,
                                query,
                            },
                        );
                    }
                }
                ReplicaEffect::Unsubscribe => {
                    let owner = self.owner_of(key);
                    if owner == self.id {
                        let me = self.id;
                        self.with_owner(key, false, |o, fx| o.handle_unsubscribe(me, now, fx));
                    } else {
                        self.send_control(
                            owner,
                            MeshMsg::Unsubscribe {
                                key: key.clone(),
                                from: self.id,
                            },
                        );
                    }
                }
                ReplicaEffect::Join {
                    viewer,
                    needs_keyframe,
                } => {
                    viewer.start_join();
                    if let Some(r) = self.replicas.borrow().get(key) {
                        for f in r.join_frames() {
                            self.push(&viewer, f, now);
                        }
                    }
                    if needs_keyframe {
                        viewer.require_sync_point();
                    }
                }
                ReplicaEffect::Fanout(f) => {
                    if let Some(r) = self.replicas.borrow().get(key) {
                        for v in r.joined() {
                            self.push(v, &f, now);
                        }
                    }
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
                        self.push(&viewer, f, now);
                    }
                }
                ReplicaEffect::RequireKeyframe { viewer } => viewer.require_sync_point(),
                ReplicaEffect::Finish { viewer, reason } => {
                    if reason == FinishReason::NotFound {
                        info!(shard = %self.id, %key, viewer = viewer.id, "no publisher within play-wait; not found");
                    }
                    viewer.finish(reason);
                    self.viewer_gone(&viewer);
                }
                ReplicaEffect::Released => {
                    if self.replicas.borrow_mut().remove(key).is_some() {
                        self.stats().replicas.dec();
                    }
                }
            }
        }
    }

    fn push(&self, v: &Outlet, f: &Frame, now: u64) {
        match v.push_frame(f, now) {
            PushOutcome::Queued => {}
            PushOutcome::Dropped => self.stats().frames_dropped.inc(),
            PushOutcome::Disconnect => {
                warn!(
                    shard = %self.id,
                    viewer = v.id,
                    "closing slow viewer: over its queue limit for {} ms",
                    self.config.queue.slow_viewer_ms
                );
                self.stats().slow_viewer_disconnects.inc();
                v.close(Close::Abort);
            }
        }
    }

    /// Attaches a viewer to `key` on this shard. `query` (the viewer's `?…`) goes upstream
    /// if this starts an edge pull.
    pub fn add_viewer(self: &Rc<Self>, key: &StreamKey, v: &Rc<Outlet>, query: Option<Arc<str>>) {
        match v.wire {
            Wire::Rtmp => self.stats().rtmp_players.inc(),
            Wire::Flv => self.stats().flv_players.inc(),
        }
        let created = {
            let mut replicas = self.replicas.borrow_mut();
            let created = !replicas.contains_key(key);
            replicas
                .entry(key.clone())
                .or_insert_with(|| Replica::new(self.replica_config));
            created
        };
        if created {
            self.stats().replicas.inc();
        }
        let now = self.now_ms();
        let viewer = Rc::clone(v);
        self.with_replica(key, |r, fx| {
            r.handle_add_viewer(ViewerId(viewer.id), viewer, query, now, fx)
        });
    }

    /// Detaches a viewer (connection closed, play stopped). A viewer the replica already
    /// ended (not found, stream over) is gone already.
    pub fn remove_viewer(self: &Rc<Self>, key: &StreamKey, v: &Rc<Outlet>) {
        let mut removed = false;
        self.with_replica(key, |r, fx| {
            removed = r.handle_remove_viewer(ViewerId(v.id), fx)
        });
        if removed {
            self.viewer_gone(v);
        }
    }

    fn viewer_gone(&self, v: &Outlet) {
        match v.wire {
            Wire::Rtmp => self.stats().rtmp_players.dec(),
            Wire::Flv => self.stats().flv_players.dec(),
        }
    }

    // ----- the timer ------------------------------------------------------------------------

    /// Arms the timer for `key`'s earliest deadline on this shard.
    fn rearm(&self, key: &StreamKey) {
        let owner = self
            .owners
            .borrow()
            .get(key)
            .and_then(|o| o.owner.poll_timeout());
        let replica = self
            .replicas
            .borrow()
            .get(key)
            .and_then(|r| r.poll_timeout());
        let at = match (owner, replica) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.timers.arm(TimerKey::Stream(key.clone()), at);
    }

    /// Fires every deadline as it comes, until shutdown.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            self.timers.wait(&self.clock).await;
            if self.mesh.is_shutting_down() {
                return;
            }
            let now = self.now_ms();
            for key in self.timers.pop_due(now) {
                match key {
                    TimerKey::Stream(k) => {
                        self.with_owner(&k, false, |o, fx| o.handle_timeout(now, fx));
                        self.with_replica(&k, |r, fx| r.handle_timeout(now, fx));
                        self.rearm(&k);
                    }
                    TimerKey::Hls => {
                        let gone = self.hls.borrow_mut().handle_timeout(now);
                        for k in gone {
                            self.announce_forgotten(&k);
                        }
                        self.timers
                            .arm(TimerKey::Hls, self.hls.borrow().poll_timeout());
                    }
                    TimerKey::Demand => {
                        self.demand.borrow_mut().handle_timeout(now);
                        self.timers
                            .arm(TimerKey::Demand, self.demand.borrow().poll_timeout());
                    }
                }
            }
        }
    }

    // ----- publishers -----------------------------------------------------------------------

    fn publish_answered(&self, publisher: PublisherId, result: Result<(), PublishError>) {
        if let Some(slot) = self.pending_publish.borrow_mut().remove(&publisher) {
            slot.value.set(Some(result));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

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
                warn!(shard = %self.id, %key, %owner, "owner shard did not answer a publish in time");
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

    /// A publisher's media message for its owner, its header parsed once here.
    pub fn media_message(
        &self,
        key: &StreamKey,
        publisher: PublisherId,
        tag: TagInfo,
        timestamp: u32,
        body: Bytes,
    ) -> MeshMsg {
        MeshMsg::Media {
            key: key.clone(),
            publisher,
            tag,
            timestamp,
            body,
        }
    }
}

impl LinkSink for Shard {
    fn link_event(self: Rc<Self>, key: &StreamKey, link: LinkId, ev: LinkEvent) -> bool {
        let now = self.now_ms();
        let mut fx = Vec::new();
        // Origin media feeds the segmenter like a publisher's: contained the same way.
        let result = {
            let mut owners = self.owners.borrow_mut();
            let Some(o) = owners.get_mut(key) else {
                return false;
            };
            contain::peer_input(|| o.owner.handle_link_event(link, ev, now, &mut fx))
        };
        match result {
            Ok(keep) => {
                self.run_owner_effects(key, fx);
                self.rearm(key);
                keep
            }
            Err(panic) => {
                self.abandon_owner(key, &panic);
                false
            }
        }
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
