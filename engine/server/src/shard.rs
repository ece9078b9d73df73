//! One shard: a dispatcher between its events and the parts that own its state. It decides
//! nothing itself.
//!
//! ```text
//!  mesh message ─┐                          ┌─▶ streams   (owners and replicas: edge-core's
//!  connection  ──┼──▶ dispatch (this file) ──┤               Owner and Replica)
//!  link report ──┤                          ├─▶ hls       (snapshots served here, waits)
//!  pull report ──┤                          ├─▶ pulls     (HLS pulls of owned streams)
//!  timer       ──┘           │              └─▶ cluster   (registry view, migrations)
//!                            ◀──────── effects ──────┘
//!     run them: mesh sends, frames to outlets, links started/stopped, HLS installed;
//!     then re-arm the one timer from the state machines' poll_timeout()
//! ```
//!
//! The parts, one file each: [`streams`], [`hls`], [`hlspull`], [`cluster`], [`links`],
//! [`publishes`], [`mesh_port`], [`connections`], [`stream_config`]; [`notes`] logs what
//! owners report. Connection handlers hold a [`ShardHandle`] ([`handle`]), never the shard.
//!
//! Borrow discipline: each part's state is borrowed only for one call (which appends
//! effects to a vector) and released before the effects run; running an effect may borrow
//! any part again. Nothing is borrowed across an `.await`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use edge_core::hls::llhls::{LlSnapshot, PartId};
use edge_core::hls::HlsSnapshot;
use edge_core::owner::{LinkRole, Owner, OwnerEffect};
use edge_core::replica::{FinishReason, ReplicaEffect};
use edge_core::stream::{StreamEnd, StreamUpdate};
use edge_core::upstream::{LinkEvent, OriginUrl};
use edge_core::{LinkId, ShardId, StreamKey};
use tracing::{debug, error, info};

use crate::config::Config;
use crate::machine::stats::{Counter, Protocol, ShardStats, Stats, StreamView};
use crate::net::arena::{Arena, ArenaStore};
use crate::net::clock::Clock;
use crate::net::contain;
use crate::net::mesh::{Mesh, MeshMsg};
use crate::net::timer::Timers;
use crate::shard::outlet::{Outlet, Wire};
use crate::upstream::rtmp::LinkSink;

mod cluster;
mod connections;
mod handle;
mod hls;
mod hlspull;
mod links;
mod llhinted;
mod llhls;
mod llrelay;
mod mesh_port;
mod notes;
pub(crate) mod outlet;
pub(crate) mod pacer;
mod publishes;
mod pull_runner;
pub(crate) mod pulled;
mod stream_config;
mod streams;

pub(crate) use handle::{LlWait, MachineWide, ShardHandle};

use streams::{Owned, ViewerReplica};

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
    /// The first deadline of the LL-HLS requests waiting here.
    LlWaits,
    /// An LL-HLS relay's deadline (retry, idle).
    LlRelay(StreamKey),
    /// The write pacer's load sample or release.
    Batching,
    /// The earliest deadline of this shard's QUIC connections.
    Quic,
    /// WebRTC sessions' first deadline.
    WebRtc,
}

/// The per-core state: the machine-wide things it reads, and its parts.
struct Shard {
    id: ShardId,
    config: Arc<Config>,
    stats: Arc<Stats>,
    clock: Clock,
    next_id: Cell<u64>,
    /// This shard's segment memory (segments of the streams it owns).
    arena: Arc<Arena>,
    port: mesh_port::MeshPort,
    streams: streams::Streams,
    links: links::Links,
    publishes: publishes::Publishes,
    hls: hls::HlsServing,
    ll_waits: llhls::LlWaits,
    ll_hinted: llhinted::LlHinted,
    ll_relays: llrelay::LlRelays,
    pulls: hlspull::HlsPulls,
    cluster: cluster::ClusterPart,
    conns: connections::Connections,
    pacer: Rc<pacer::WritePacer>,
    timers: Rc<Timers<TimerKey>>,
    /// HTTP/3's endpoint, with --http3.
    quic: std::cell::OnceCell<Rc<crate::net::quic::QuicEndpoint>>,
    /// WebRTC's endpoint, with --webrtc-udp.
    webrtc: std::cell::OnceCell<Rc<crate::net::webrtc::RtcEndpoint>>,
}

impl Shard {
    fn new(
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
        let timers = Rc::new(Timers::default());
        let pacer = pacer::WritePacer::new(
            config.batching,
            clock,
            Rc::clone(&timers),
            Arc::clone(&stats),
            id.0,
        );
        Rc::new(Self {
            id,
            port: mesh_port::MeshPort::new(id, mesh),
            streams: streams::Streams::new(id, stream_config),
            links: links::Links::default(),
            publishes: publishes::Publishes::default(),
            hls: hls::HlsServing::new(linger_ms, config.upstream_idle_ms),
            ll_waits: llhls::LlWaits::new(),
            ll_hinted: llhinted::LlHinted::new(),
            ll_relays: llrelay::LlRelays::new(config.upstream_idle_ms),
            pulls: hlspull::HlsPulls::new(&config, &arena, &stats, id),
            cluster: cluster::ClusterPart::new(id, &config, &stats, clock, registry),
            conns: connections::Connections::new(id, &config, &stats, &arena, admission),
            pacer,
            timers,
            quic: std::cell::OnceCell::new(),
            webrtc: std::cell::OnceCell::new(),
            next_id: Cell::new(1),
            config,
            stats,
            clock,
            arena,
        })
    }

    fn counters(&self) -> &ShardStats {
        &self.stats.shards[self.id.0]
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// A machine-unique id for a connection (or an owner state).
    fn next_conn_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        ((self.id.0 as u64) << 48) | n
    }

    fn owner_of(&self, key: &StreamKey) -> ShardId {
        ShardId((key.stable_hash() % self.config.shards() as u64) as usize)
    }

    /// A control message for `key`'s owner shard: handled here at once when this is it.
    fn tell_owner(self: &Rc<Self>, key: &StreamKey, msg: MeshMsg) {
        match self.owner_of(key) {
            owner if owner == self.id => self.handle_mesh(msg),
            owner => self.port.send_control(owner, msg),
        }
    }

    // ----- the dispatcher -------------------------------------------------------------------

    /// Receives mesh messages until shutdown.
    async fn run_dispatcher(self: Rc<Self>) {
        while let Some(batch) = self.port.receive().await {
            for msg in batch {
                self.handle_mesh(msg);
            }
            // Yielding is not fair in monoio 0.2.4 (a woken task is polled again at once), so
            // when more is pending we go through the timer wheel to let sockets run first.
            if self.port.pending() {
                monoio::time::sleep(Duration::ZERO).await;
            }
        }
    }

    fn handle_mesh(self: &Rc<Self>, msg: MeshMsg) {
        let now = self.now_ms();
        match msg {
            MeshMsg::Subscribe { key, from, query } => {
                self.with_owner(&key, true, |o, fx| o.handle_subscribe(from, query, now, fx));
            }
            MeshMsg::Demand { key, query } => {
                if self.pulls.enabled() {
                    pull_runner::demand(self, &key, query.as_deref());
                } else if self.streams.config.pulls_stream(&key) {
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
                let via = self.cluster.forward_origins(&key);
                self.with_owner(&key, true, |o, fx| {
                    o.handle_publish(publisher, from, query, via, now, fx)
                });
            }
            MeshMsg::PublishReply { publisher, result } => {
                self.publishes.answered(publisher, result)
            }
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
            MeshMsg::Hls { key, snapshot } => {
                let ll = snapshot.as_ref().map(|s| s.ll.clone());
                self.hls.install(&key, snapshot);
                self.release_ll(&key, ll);
            }
            MeshMsg::HlsMiss { key, seq, from } => pull_runner::miss(self, &key, seq, from),
            MeshMsg::HlsUnavailable { key, status } => self.hls.mark_unavailable(&key, status, now),
            MeshMsg::HlsSegment { key, seq, event } => {
                self.hls.segment_event(&key, seq, event, now)
            }
            MeshMsg::LlWant { key, part, from } => self.ll_want(&key, part, from),
            MeshMsg::LlRelayDemand { key, query } => {
                llrelay::owner_demand(self, &key, query.as_deref())
            }
            MeshMsg::LlRelayMiss { key, file, from } => llrelay::miss(self, &key, file, from),
            MeshMsg::LlRelayState { key, snapshot } => {
                self.ll_relays.install(&key, snapshot.clone());
                self.release_ll(&key, snapshot.map(Some));
            }
            MeshMsg::LlRelayUnavailable { key, status } => {
                self.ll_relays.mark_unavailable(&key, status, now)
            }
            MeshMsg::LlRelayFile { key, file, event } => {
                self.ll_relays.file_event(&key, file, event, now)
            }
            MeshMsg::LlHint { key, part, event } => self.ll_hinted.event(&key, part, event),
            MeshMsg::QuicDatagram { from, data } => {
                if let Some(q) = self.quic.get() {
                    q.routed(from, data);
                }
            }
            MeshMsg::WebRtcEnd(id) => {
                if let Some(w) = self.webrtc.get() {
                    w.end(id);
                }
            }
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

    // ----- owners ---------------------------------------------------------------------------

    /// Calls `f` on `key`'s owner state (creating it when `create`), then runs its effects
    /// and re-arms the timer.
    fn with_owner<R>(
        self: &Rc<Self>,
        key: &StreamKey,
        create: bool,
        f: impl FnOnce(&mut Owner<ArenaStore>, &mut Vec<OwnerEffect>) -> R,
    ) -> Option<R> {
        let mut fx = Vec::new();
        if create && !self.streams.owns(key) {
            let mut owned = self.new_owned(key);
            // Registry edge: where the stream is, before its first demand.
            if let Some(url) = self.cluster.located_origin(key) {
                owned
                    .owner
                    .handle_located(Some(url), self.now_ms(), &mut fx);
            }
            self.streams.insert_owner(key.clone(), owned);
        }
        let wall = self.clock.unix_ms(self.now_ms());
        let r = self.streams.with_owner(key, |o| {
            o.owner.set_wall_clock(wall);
            f(&mut o.owner, &mut fx)
        })?;
        self.run_owner_effects(key, fx);
        self.rearm(key);
        Some(r)
    }

    /// [`Shard::with_owner`] for calls that parse peer media (the segmenter reads the
    /// publisher's codec data, the feed demuxes origin segments): a panic in it abandons the
    /// stream instead of the shard. `bytes` is the message body's length, counted as the
    /// stream's ingest.
    fn owner_media(
        self: &Rc<Self>,
        key: &StreamKey,
        bytes: usize,
        f: impl FnOnce(&mut Owner<ArenaStore>, &mut Vec<OwnerEffect>),
    ) {
        let mut fx = Vec::new();
        let wall = self.clock.unix_ms(self.now_ms());
        let result = self.streams.with_owner(key, |o| {
            o.owner.set_wall_clock(wall);
            o.view
                .published_bytes
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
            contain::peer_input(|| f(&mut o.owner, &mut fx))
        });
        match result {
            None => {}
            Some(Ok(())) => {
                self.run_owner_effects(key, fx);
                self.rearm(key);
            }
            Some(Err(panic)) => self.abandon_owner(key, &panic),
        }
    }

    fn new_owned(&self, key: &StreamKey) -> Owned {
        self.counters().streams_owned.inc();
        let view = self.stream_view(key);
        let store = ArenaStore {
            arena: Arc::clone(&self.arena),
        };
        let config = self.streams.config.owner(key);
        Owned {
            owner: Owner::new(key.clone(), config, store, self.next_conn_id()),
            view,
            forward: None,
        }
    }

    /// The view `/api/v1/streams` shows of `key`: its owner's or its HLS pull's when it has
    /// one (one stream, one entry), else a new one, listed.
    fn stream_view(&self, key: &StreamKey) -> Arc<StreamView> {
        let existing = self.streams.view(key).or_else(|| self.pulls.view(key));
        existing.unwrap_or_else(|| {
            let view = Arc::new(StreamView::new(key.clone(), self.id));
            self.stats.add_stream(Arc::clone(&view));
            view
        })
    }

    /// After a panic inside `key`'s owner state: drop it, end the stream for every shard
    /// that watched it, close its upstream connections.
    fn abandon_owner(self: &Rc<Self>, key: &StreamKey, why: &str) {
        self.counters().peer_panics.inc();
        error!(shard = %self.id, %key, "stream state abandoned after {why}");
        let Some(o) = self.streams.remove_owner(key) else {
            return;
        };
        let subscribers: Vec<ShardId> = o.owner.subscribers().collect();
        let fed = o.owner.fed_by_hls();
        self.free_owned(key, o);
        if fed {
            // Its HLS pull goes on for HLS viewers, and may idle again.
            pull_runner::stop_feed(self, key);
        }
        for to in subscribers {
            self.update_to(key, to, StreamUpdate::Ended(StreamEnd::Failed));
        }
        self.forget_hls(key);
    }

    fn free_owned(&self, key: &StreamKey, o: Owned) {
        self.counters().streams_owned.dec();
        // An HLS pull of the stream shows the same view; it goes with the last of them.
        if !self.pulls.contains(key) {
            self.stats.remove_stream(self.id, key);
        }
        self.links.stop_stream(key);
        if let Some((_, q)) = o.forward {
            q.close();
        }
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
                        self.counters().publish_rejected.inc();
                    }
                    if to == self.id {
                        self.publishes.answered(publisher, result);
                    } else {
                        let msg = MeshMsg::PublishReply { publisher, result };
                        self.port.send_control(to, msg);
                    }
                }
                OwnerEffect::Hls(snapshot) => self.install_own_hls(key, snapshot),
                OwnerEffect::HlsRefused => {
                    self.counters().hls_segments_refused.inc();
                    error!(shard = %self.id, %key, "segment cache full (--cache-mb): segment refused");
                    // Streams without a publisher go first; if none is left, this stream
                    // gives up its oldest segments so that its next one fits.
                    if !self.evict_ended_hls() {
                        self.with_owner(key, false, |o, fx| o.handle_shed(fx));
                    }
                }
                OwnerEffect::ForgetHls => self.forget_hls(key),
                OwnerEffect::LlHint(send) => {
                    if send.to == self.id {
                        self.ll_hinted.event(key, send.part, send.event);
                    } else {
                        let msg = MeshMsg::LlHint {
                            key: key.clone(),
                            part: send.part,
                            event: send.event,
                        };
                        self.port.send_control(send.to, msg);
                    }
                }
                OwnerEffect::StartHlsFeed { query } => {
                    pull_runner::start_feed(self, key, query.as_deref())
                }
                OwnerEffect::StopHlsFeed => pull_runner::stop_feed(self, key),
                OwnerEffect::Connect {
                    link,
                    role,
                    url,
                    stream_name,
                } => self.start_link(key, link, role, url, stream_name),
                OwnerEffect::Disconnect(link) => self.stop_link(key, link),
                OwnerEffect::ForwardJoin(frames) => {
                    if let Some((_, q)) = self.streams.forward_queue(key) {
                        q.reset(frames);
                    }
                }
                OwnerEffect::ForwardFrame(f) => {
                    if let Some((_, q)) = self.streams.forward_queue(key) {
                        q.push(&f);
                    }
                }
                OwnerEffect::Note(n) => match notes::report(self.id, key, n, self.counters()) {
                    notes::Followup::Live => self.cluster.stream_live(key),
                    notes::Followup::Ended => self.cluster.stream_ended(key),
                    notes::Followup::None => {}
                },
                OwnerEffect::Unavailable { not_found } => {
                    let (status, what) = if not_found {
                        (404, "no origin has the stream")
                    } else {
                        (502, "no origin could be reached")
                    };
                    info!(shard = %self.id, %key, status, "{what}: answering the viewers waiting for it; the pull retries");
                    let now = self.now_ms();
                    self.hls.announce_unavailable(&self.port, key, status, now);
                }
                OwnerEffect::ViewChanged => {
                    let (clock, now) = (self.clock, self.now_ms());
                    self.streams.read_owner(key, |o| {
                        o.view.set(o.owner.view(), now, |ms| clock.unix_ms(ms))
                    });
                }
                OwnerEffect::Free => {
                    if let Some(o) = self.streams.remove_owner(key) {
                        self.free_owned(key, o);
                        debug!(shard = %self.id, %key, "stream state freed");
                    }
                }
            }
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
        if self.port.try_send(to, msg).is_err() {
            self.counters().mesh_lagging.inc();
            self.streams
                .with_owner(key, |o| o.owner.handle_send_failed(to));
        }
    }

    fn start_link(
        self: &Rc<Self>,
        key: &StreamKey,
        link: LinkId,
        role: LinkRole,
        url: OriginUrl,
        stream_name: String,
    ) {
        let Some(view) = self.streams.view(key) else {
            return;
        };
        let params = links::link_params(
            &self.config,
            &self.stats,
            self.id,
            key,
            link,
            url,
            stream_name,
            view,
        );
        if role != LinkRole::Forward {
            self.counters().upstream_connects.inc();
        }
        let sink: Rc<dyn LinkSink> = Rc::clone(self) as Rc<dyn LinkSink>;
        let queue_bytes = self.config.queue.max_queue_bytes;
        if let Some(queue) = self.links.start(role, params, sink, queue_bytes) {
            let old = self
                .streams
                .with_owner(key, |o| o.forward.replace((link, queue)));
            if let Some(Some((_, old))) = old {
                old.close();
            }
        }
    }

    fn stop_link(&self, key: &StreamKey, link: LinkId) {
        self.links.stop(link);
        let closed = self.streams.with_owner(key, |o| {
            if o.forward.as_ref().is_some_and(|(l, _)| *l == link) {
                o.forward.take()
            } else {
                None
            }
        });
        if let Some(Some((_, q))) = closed {
            q.close();
        }
    }

    // ----- replicas and viewers -------------------------------------------------------------

    /// Calls `f` on `key`'s replica (if any), then runs its effects and re-arms the timer.
    fn with_replica(
        self: &Rc<Self>,
        key: &StreamKey,
        f: impl FnOnce(&mut ViewerReplica, &mut Vec<ReplicaEffect<Rc<Outlet>>>),
    ) {
        let mut fx = Vec::new();
        if self.streams.with_replica(key, |r| f(r, &mut fx)).is_none() {
            return;
        }
        self.run_replica_effects(key, fx);
        self.rearm(key);
    }

    fn apply_update(self: &Rc<Self>, key: &StreamKey, update: &StreamUpdate) {
        let now = self.now_ms();
        self.with_replica(key, |r, fx| r.handle_update(update, now, fx));
    }

    fn viewer_gone(&self, key: &StreamKey, v: &Outlet) {
        match v.wire {
            Wire::Rtmp => self.counters().rtmp_players.dec(),
            Wire::Flv => self.counters().flv_players.dec(),
            Wire::Rtc => self.counters().webrtc_players.dec(),
        }
        self.stats
            .count_viewer(self.id, key, protocol_of(v.wire), false);
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
                        let msg = MeshMsg::Subscribe {
                            key: key.clone(),
                            from: self.id,
                            query,
                        };
                        self.port.send_control(owner, msg);
                    }
                }
                ReplicaEffect::Unsubscribe => {
                    let owner = self.owner_of(key);
                    if owner == self.id {
                        let me = self.id;
                        self.with_owner(key, false, |o, fx| o.handle_unsubscribe(me, now, fx));
                    } else {
                        let msg = MeshMsg::Unsubscribe {
                            key: key.clone(),
                            from: self.id,
                        };
                        self.port.send_control(owner, msg);
                    }
                }
                ReplicaEffect::Finish { viewer, reason } => {
                    if reason == FinishReason::NotFound {
                        info!(shard = %self.id, %key, viewer = viewer.id, "no publisher within play-wait; not found");
                    }
                    viewer.finish(reason);
                    self.viewer_gone(key, &viewer);
                }
                other => self
                    .streams
                    .deliver(key, other, now, self.counters(), &self.config),
            }
        }
    }

    // ----- HLS ------------------------------------------------------------------------------

    /// Installs a snapshot of a stream this shard owns here and on every shard; at a new
    /// segment, makes room before one has to be refused.
    fn install_own_hls(&self, key: &StreamKey, snapshot: HlsSnapshot) {
        let ll = snapshot.ll.clone();
        let new_segment = self
            .hls
            .install_own(&self.port, key, snapshot, self.now_ms());
        self.timers.arm(TimerKey::Hls, self.hls.poll_timeout());
        self.release_ll(key, Some(ll));
        if new_segment {
            self.counters().hls_segments.inc();
            // Memory only changes at segment boundaries; the per-frame path stays free of
            // this. Under an eighth free: make room before a segment has to be refused.
            if self.arena.free_chunks() * 8 < self.arena.chunks() {
                self.evict_ended_hls();
            }
        }
    }

    /// Drops `key`'s HLS state here and on every other shard; the LL-HLS requests waiting
    /// for it here are answered now.
    fn forget_hls(&self, key: &StreamKey) {
        self.hls.forget(&self.port, key);
        self.release_ll(key, None);
    }

    /// Requests on shard `from` want LL-HLS part `part` of `key`, which this shard owns, as it
    /// is written (it may own it no longer: then the part will not come).
    fn ll_want(self: &Rc<Self>, key: &StreamKey, part: PartId, from: ShardId) {
        let asked = self.with_owner(key, false, |o, fx| o.handle_ll_want(from, part, fx));
        if asked.is_none() {
            let gone = edge_core::hls::hinted::HintEvent::Gone;
            if from == self.id {
                self.ll_hinted.event(key, part, gone);
            } else {
                let msg = MeshMsg::LlHint {
                    key: key.clone(),
                    part,
                    event: gone,
                };
                self.port.send_control(from, msg);
            }
        }
    }

    /// Wakes the LL-HLS requests waiting here that `key`'s new state satisfies (`None`: the
    /// stream is gone, and so are the parts streamed here; `Some(None)`: it has no LL-HLS).
    fn release_ll(&self, key: &StreamKey, ll: Option<Option<Arc<LlSnapshot>>>) {
        match ll {
            Some(Some(snap)) => self.ll_waits.released(key, Some(&snap)),
            Some(None) => {}
            None => {
                self.ll_waits.released(key, None);
                self.ll_hinted.forget(key);
            }
        }
        self.counters()
            .ll_hls_parked
            .store(self.ll_waits.len() as u64, Ordering::Relaxed);
    }

    /// Frees the oldest ended stream's segments (memory returns once every shard has let go).
    /// Returns whether there was one.
    fn evict_ended_hls(&self) -> bool {
        let Some(key) = self.hls.evict_oldest_ended(&self.port) else {
            return false;
        };
        info!(shard = %self.id, %key, "evicting an ended stream's segments for space");
        self.release_ll(&key, None);
        self.counters().hls_evictions.inc();
        true
    }

    // ----- the cluster ----------------------------------------------------------------------

    /// Applies the registry's updates until shutdown.
    async fn run_cluster(self: Rc<Self>) {
        let Some(inbox) = self.cluster.inbox() else {
            return;
        };
        loop {
            let batch = inbox.next_batch().await;
            if self.port.is_shutting_down() {
                return;
            }
            let now = self.now_ms();
            for u in batch {
                self.cluster.apply(&u, now);
            }
            // Every owner that pulls hears where its stream is now.
            if self.config.follows_registry() {
                for k in self.streams.owned_keys() {
                    let url = self.cluster.located_origin(&k);
                    self.with_owner(&k, false, |o, fx| o.handle_located(url, now, fx));
                }
            }
        }
    }

    // ----- the timer ------------------------------------------------------------------------

    /// Arms the timer for `key`'s earliest deadline on this shard.
    fn rearm(&self, key: &StreamKey) {
        let at = self.streams.poll_timeout(key);
        self.timers.arm(TimerKey::Stream(key.clone()), at);
    }

    /// Fires every deadline as it comes, until shutdown.
    async fn run_timers(self: Rc<Self>) {
        loop {
            self.timers.wait(&self.clock).await;
            if self.port.is_shutting_down() {
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
                        self.hls.handle_timeout(&self.port, now);
                        self.timers.arm(TimerKey::Hls, self.hls.poll_timeout());
                    }
                    TimerKey::LlWaits => {
                        let expired = self.ll_waits.handle_timeout(now);
                        self.counters()
                            .ll_hls_wait_timeouts
                            .fetch_add(expired as u64, Ordering::Relaxed);
                        self.counters()
                            .ll_hls_parked
                            .store(self.ll_waits.len() as u64, Ordering::Relaxed);
                        self.timers
                            .arm(TimerKey::LlWaits, self.ll_waits.poll_timeout());
                    }
                    TimerKey::HlsPull(k) => {
                        pull_runner::call(&self, &k, |p, fx| p.handle_timeout(now, fx));
                    }
                    TimerKey::LlRelay(k) => llrelay::timeout(&self, &k),
                    TimerKey::Batching => self.pacer.handle_timeout(now),
                    TimerKey::Quic => {
                        if let Some(q) = self.quic.get() {
                            q.handle_timeout();
                        }
                    }
                    TimerKey::WebRtc => {
                        if let Some(w) = self.webrtc.get() {
                            w.handle_timeout();
                        }
                    }
                    TimerKey::Demand => {
                        self.hls.demand_timeout(now);
                        self.timers
                            .arm(TimerKey::Demand, self.hls.demand_poll_timeout());
                    }
                }
            }
        }
    }
}

impl LinkSink for Shard {
    fn link_event(self: Rc<Self>, key: &StreamKey, link: LinkId, ev: LinkEvent) -> bool {
        let now = self.now_ms();
        let wall = self.clock.unix_ms(now);
        let mut fx = Vec::new();
        // Origin media feeds the segmenter like a publisher's: contained the same way, and
        // dated when it arrives (LL-HLS dates its segments from it).
        let result = self.streams.with_owner(key, |o| {
            o.owner.set_wall_clock(wall);
            contain::peer_input(|| o.owner.handle_link_event(link, ev, now, &mut fx))
        });
        match result {
            None => false,
            Some(Ok(keep)) => {
                self.run_owner_effects(key, fx);
                self.rearm(key);
                keep
            }
            Some(Err(panic)) => {
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
        Wire::Rtc => Protocol::WebRtc,
    }
}
