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
use std::task::Waker;
use std::time::Duration;

use edge_core::access::Grants;
use edge_core::cluster::ClusterView;
use edge_core::hls::catalog::HlsCatalog;
use edge_core::hls::HlsSnapshot;
use edge_core::owner::{Owner, OwnerEffect};
use edge_core::pull::DemandLimiter;
use edge_core::replica::{Replica, ReplicaEffect};
use edge_core::stream::{PublishError, PublisherId, StreamEnd, StreamUpdate};
use edge_core::upstream::LinkEvent;
use edge_core::{LinkId, ShardId, StreamKey, ViewerId};
use tracing::{error, warn};

use crate::arena::{Arena, ArenaStore};
use crate::clock::Clock;
use crate::config::Config;
use crate::contain;
use crate::listen::Service;
use crate::mesh::{Mesh, MeshMsg};
use crate::outlet::{Outlet, Wire};
use crate::registry::ShardRegistry;
use crate::stats::{Counter, Protocol, ShardStats, Stats, StreamView};
use crate::timer::Timers;
use crate::upstream::{Cancel, ForwardQueue, LinkSink};

mod cluster;
mod effects;
mod hls;
mod hlspull;
mod publish;
mod replica_effects;
mod stream_config;

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
/// HLS hook allowances remembered per shard, at most.
const MAX_GRANTS: usize = 65_536;

/// What the timer is armed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKey {
    /// A stream's owner and replica deadlines on this shard.
    Stream(StreamKey),
    /// Ended HLS playlists' linger.
    Hls,
    /// Forgetting old HLS demand records.
    Demand,
    /// An HLS pull's deadline (reload, retry, idle).
    HlsPull(StreamKey),
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

/// What a shard shares with the whole machine besides the mesh and the counters.
pub struct MachineWide {
    /// The machine's connection counts, when --max-connections(-per-ip) is set.
    pub admission: Option<Arc<std::sync::Mutex<edge_core::admission::Admission>>>,
    /// This shard's handle on the registry threads (--registry).
    pub registry: Option<ShardRegistry>,
    /// An upgrade's predecessor whose streams are pulled from its relay.
    pub predecessor: Option<Arc<crate::predecessor::Predecessor>>,
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
    /// What new owners and replicas are configured with, by app.
    stream_config: stream_config::StreamConfig,
    owners: RefCell<HashMap<StreamKey, Owned>>,
    replicas: RefCell<HashMap<StreamKey, Replica<Rc<Outlet>>>>,
    links: RefCell<HashMap<LinkId, LinkTask>>,
    pending_publish: RefCell<HashMap<PublisherId, Rc<Reply>>>,
    outbox: RefCell<VecDeque<(ShardId, MeshMsg)>>,
    /// Tasks here that wait for room in a mesh channel (publishers' media), woken when the
    /// dispatcher hears the mesh's space bell.
    space_waiters: RefCell<Vec<Waker>>,
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
    /// Recent on_play allowances of HLS viewers.
    pub grants: RefCell<Grants>,
    /// This shard's TLS configurations (own session caches, shared certificate store).
    tls_http: Option<Arc<rustls::ServerConfig>>,
    tls_rtmp: Option<Arc<rustls::ServerConfig>>,
    /// The machine's connection counts, when --max-connections(-per-ip) is set.
    pub admission: Option<Arc<std::sync::Mutex<edge_core::admission::Admission>>>,
    /// The registry (--registry), and this shard's picture of the cluster.
    pub registry: Option<ShardRegistry>,
    cluster: RefCell<ClusterView>,
    /// In a drain: per stream, whether its HLS viewers may move to the peer yet.
    migrations: RefCell<HashMap<StreamKey, edge_core::migrate::Migration>>,
    /// Publishers connected to this shard, by stream (with a registry: to refuse them).
    local_publishers: RefCell<HashMap<StreamKey, Rc<Outlet>>>,
    /// HLS pulls of the streams this shard owns (`--origin http(s)://…`).
    hls_pulls: RefCell<HashMap<StreamKey, hlspull::PullRun>>,
    /// Pulled segments on their way, as this shard hears them.
    inflight: RefCell<HashMap<(StreamKey, u64), Rc<crate::pulled::Inflight>>>,
    /// Pulled streams whose playlist could not be loaded: the status, until when.
    hls_unavailable: RefCell<HashMap<StreamKey, (u16, u64)>>,
    /// This shard's connections to HTTP origins.
    origin_pool: crate::origin::OriginPool,
    /// Sends segment bodies by reference, when this shard's send path is `splice`.
    pub zero_copy: Option<crate::zerocopy::Sender>,
}

/// The shard's zero-copy sender, when `--zero-copy on` and the probe passes; the path it
/// runs goes into the stats either way (and into the log when it falls back).
fn zero_copy_sender(
    id: ShardId,
    config: &Config,
    stats: &Arc<Stats>,
    arena: &Arena,
) -> Option<crate::zerocopy::Sender> {
    use crate::zerocopy::{probe, SendPath, Sender};
    let sender = if !config.zero_copy {
        None
    } else {
        match probe(arena) {
            Ok(()) => Some(Sender::new(Arc::clone(&stats.arenas))),
            Err(reason) => {
                tracing::warn!(
                    shard = id.0,
                    "zero-copy sends off, segments are copied: {reason}"
                );
                None
            }
        }
    };
    let path = if sender.is_some() {
        SendPath::Splice
    } else {
        SendPath::Writev
    };
    stats.shards[id.0]
        .send_path
        .store(path.code(), std::sync::atomic::Ordering::Relaxed);
    sender
}

impl Shard {
    pub fn new(
        id: ShardId,
        config: Arc<Config>,
        mesh: Arc<Mesh>,
        stats: Arc<Stats>,
        clock: Clock,
        arena: Arc<Arena>,
        machine: MachineWide,
    ) -> Rc<Self> {
        let MachineWide {
            admission,
            registry,
            predecessor,
        } = machine;
        let stream_config = stream_config::StreamConfig::new(id, &config, predecessor);
        // An ended stream's segments stay listed as long as its playlist window lasts.
        let linger_ms = std::iter::once(&config.apps.default)
            .chain(config.apps.apps.values())
            .map(|p| p.hls.segment_ms * p.hls.window as u64)
            .fold(30_000, u64::max);
        let demand = DemandLimiter::new(HLS_DEMAND_EVERY_MS, config.upstream_idle_ms);
        let grants = Grants::new(config.access.hook_grant_ms, MAX_GRANTS);
        let tls_http = config.tls.as_ref().map(|t| t.server_config(&[b"http/1.1"]));
        let tls_rtmp = config.tls.as_ref().map(|t| t.server_config(&[]));
        let upstream_tls = config.upstream_tls.clone();
        let origin_routes = config
            .origin_paths
            .iter()
            .filter_map(|p| match &p.origin {
                crate::config::tables::OriginRef::Http(o) => Some((
                    (o.host.clone(), o.port, o.tls),
                    crate::origin::OriginRoute {
                        egress: p.egress.clone(),
                        connect_timeout: p.connect_timeout_ms.map(Duration::from_millis),
                    },
                )),
                crate::config::tables::OriginRef::Rtmp(_) => None,
            })
            .collect();
        let zero_copy = zero_copy_sender(id, &config, &stats, &arena);
        Rc::new(Self {
            id,
            shards: config.shards(),
            config,
            mesh,
            stats,
            clock,
            next_id: Cell::new(1),
            stream_config,
            owners: RefCell::new(HashMap::new()),
            replicas: RefCell::new(HashMap::new()),
            links: RefCell::new(HashMap::new()),
            pending_publish: RefCell::new(HashMap::new()),
            outbox: RefCell::new(VecDeque::new()),
            space_waiters: RefCell::new(Vec::new()),
            arena,
            hls: RefCell::new(HlsCatalog::new(linger_ms)),
            hls_waiters: RefCell::new(HashMap::new()),
            demand: RefCell::new(demand),
            timers: Timers::default(),
            grants: RefCell::new(grants),
            tls_http,
            tls_rtmp,
            admission,
            cluster: RefCell::new(ClusterView::new(registry.as_ref().map_or("", |r| &*r.me))),
            migrations: RefCell::new(HashMap::new()),
            registry,
            local_publishers: RefCell::new(HashMap::new()),
            hls_pulls: RefCell::new(HashMap::new()),
            inflight: RefCell::new(HashMap::new()),
            hls_unavailable: RefCell::new(HashMap::new()),
            origin_pool: crate::origin::OriginPool::new(upstream_tls, origin_routes),
            zero_copy,
        })
    }

    /// The TLS configuration of a TLS listener.
    pub fn tls_config(&self, service: Service) -> Option<Arc<rustls::ServerConfig>> {
        match service {
            Service::Https => self.tls_http.clone(),
            Service::Rtmps => self.tls_rtmp.clone(),
            Service::Rtmp | Service::Http | Service::Relay => None,
        }
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats.shards[self.id.0]
    }

    /// This shard's egress counter, for a writer task.
    pub fn bytes_out(&self) -> crate::stats::BytesOut {
        crate::stats::BytesOut::new(&self.stats, self.id)
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

    pub fn pulls(&self) -> bool {
        self.stream_config.pulls()
    }

    /// Whether `key` is pulled when nobody publishes it here: at an edge, or (a successor
    /// origin) a stream its predecessor held and still holds.
    pub fn pulls_stream(&self, key: &StreamKey) -> bool {
        self.stream_config.pulls_stream(key)
    }

    /// The streams this shard owns.
    fn owned_keys(&self) -> Vec<StreamKey> {
        self.owners.borrow().keys().cloned().collect()
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
    /// is pushed back over TCP instead of anything being dropped. The wait ends when the
    /// owner drains the channel (the dispatcher hears the mesh's space bell).
    pub async fn send_media(&self, to: ShardId, mut msg: MeshMsg) {
        loop {
            match self.mesh.try_send(self.id, to, msg) {
                Ok(()) => return,
                Err(m) => msg = m,
            }
            if self.mesh.is_shutting_down() {
                // Nobody drains any more: the message goes with the process.
                return;
            }
            if self.mesh.wait_for_space(self.id, to) {
                continue;
            }
            let mut registered = false;
            poll_fn(|cx| {
                if registered {
                    return std::task::Poll::Ready(());
                }
                registered = true;
                self.space_waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            })
            .await;
        }
    }

    /// Receives mesh messages until shutdown; also wakes this shard's tasks that wait for room
    /// in a channel, and sends the outbox on, when a receiver has drained.
    pub async fn run_dispatcher(self: Rc<Self>) {
        loop {
            let head = self.outbox.borrow().front().map(|(to, _)| *to);
            let room = head.is_some_and(|to| self.mesh.wait_for_space(self.id, to));
            if !room {
                poll_fn(|cx| {
                    let ready = self.mesh.poll_ready(self.id, cx);
                    let space = self.mesh.poll_space(self.id, cx);
                    if ready.is_ready() || space.is_ready() {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
            }
            if self.mesh.is_shutting_down() {
                for w in self.space_waiters.take() {
                    w.wake();
                }
                return;
            }
            for w in self.space_waiters.take() {
                w.wake();
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
                if self.pulls_hls() {
                    self.hls_pull_demand(&key, query.as_deref());
                } else if self.pulls_stream(&key) {
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
                let via = self.forward_origins(&key);
                self.with_owner(&key, true, |o, fx| {
                    o.handle_publish(publisher, from, query, via, now, fx)
                });
            }
            MeshMsg::PublishReply { publisher, result } => self.publish_answered(publisher, result),
            MeshMsg::Media {
                key,
                publisher,
                tag,
                timestamp,
                body,
            } => self.owner_media(&key, body.len(), |o, fx| {
                o.handle_media(publisher, timestamp, body, tag, fx)
            }),
            MeshMsg::Metadata {
                key,
                publisher,
                body,
            } => self.owner_media(&key, body.len(), |o, fx| {
                o.handle_metadata(publisher, body, fx)
            }),
            MeshMsg::Hls { key, snapshot } => match snapshot {
                Some(s) => {
                    self.hls.borrow_mut().install(key.clone(), s);
                    self.wake_hls_waiters(&key);
                }
                None => {
                    self.hls.borrow_mut().remove(&key);
                    self.inflight.borrow_mut().retain(|(k, _), _| *k != key);
                }
            },
            MeshMsg::HlsMiss { key, seq, from } => self.hls_miss(&key, seq, from),
            MeshMsg::HlsUnavailable { key, status } => self.mark_unavailable(&key, status),
            MeshMsg::HlsSegment { key, seq, event } => self.segment_event(&key, seq, event),
            MeshMsg::Unpublish {
                key,
                publisher,
                how,
            } => {
                self.with_owner(&key, false, |o, fx| {
                    o.handle_unpublish(publisher, how, now, fx)
                });
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
                let mut owned = self.new_owned(key);
                // Registry edge: where the stream is, before its first demand.
                if let Some(url) = self.located_origin(key) {
                    owned
                        .owner
                        .handle_located(Some(url), self.now_ms(), &mut fx);
                }
                owners.insert(key.clone(), owned);
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
    /// `bytes` is the message body's length, counted as the stream's ingest.
    fn owner_media(
        self: &Rc<Self>,
        key: &StreamKey,
        bytes: usize,
        f: impl FnOnce(&mut Owner<ArenaStore>, &mut Vec<OwnerEffect>),
    ) {
        let mut fx = Vec::new();
        let result = {
            let mut owners = self.owners.borrow_mut();
            let Some(o) = owners.get_mut(key) else { return };
            o.view
                .published_bytes
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
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
        // A stream pulled over HLS here already has a view: one stream, one entry.
        let pulled_view = self
            .hls_pulls
            .borrow()
            .get(key)
            .map(|r| Arc::clone(&r.view));
        let view = pulled_view.unwrap_or_else(|| {
            let view = Arc::new(StreamView::new(key.clone(), self.id));
            self.stats.add_stream(Arc::clone(&view));
            view
        });
        let store = ArenaStore {
            arena: Arc::clone(&self.arena),
        };
        Owned {
            owner: Owner::new(
                key.clone(),
                self.stream_config.owner(key),
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
        let fed = o.owner.fed_by_hls();
        self.free_owned(key, o);
        if fed {
            // Its HLS pull goes on for HLS viewers, and may idle again.
            self.stop_hls_feed(key);
        }
        for to in subscribers {
            self.update_to(key, to, StreamUpdate::Ended(StreamEnd::Failed));
        }
        self.forget_hls(key);
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

    /// Attaches a viewer to `key` on this shard. `query` (the viewer's `?…`) goes upstream
    /// if this starts an edge pull.
    pub fn add_viewer(self: &Rc<Self>, key: &StreamKey, v: &Rc<Outlet>, query: Option<Arc<str>>) {
        match v.wire {
            Wire::Rtmp => self.stats().rtmp_players.inc(),
            Wire::Flv => self.stats().flv_players.inc(),
        }
        self.stats
            .count_viewer(self.id, key, protocol_of(v.wire), true);
        let created = {
            let mut replicas = self.replicas.borrow_mut();
            let created = !replicas.contains_key(key);
            replicas
                .entry(key.clone())
                .or_insert_with(|| Replica::new(self.stream_config.replica(key)));
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
            self.viewer_gone(key, v);
        }
    }

    fn viewer_gone(&self, key: &StreamKey, v: &Outlet) {
        match v.wire {
            Wire::Rtmp => self.stats().rtmp_players.dec(),
            Wire::Flv => self.stats().flv_players.dec(),
        }
        self.stats
            .count_viewer(self.id, key, protocol_of(v.wire), false);
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
                    TimerKey::HlsPull(k) => self.hls_pull_timeout(&k, now),
                    TimerKey::Demand => {
                        self.demand.borrow_mut().handle_timeout(now);
                        self.timers
                            .arm(TimerKey::Demand, self.demand.borrow().poll_timeout());
                    }
                }
            }
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

fn protocol_of(wire: Wire) -> Protocol {
    match wire {
        Wire::Rtmp => Protocol::Rtmp,
        Wire::Flv => Protocol::Flv,
    }
}
