//! What a connection handler may ask of its shard and do on it: attach and detach viewers,
//! publish, read HLS snapshots and wait for them, ask where a stream is served instead, and
//! reach the shard's connection settings and counters. A cheap clone of a reference to the
//! shard; the shard's fields stay private to it.
//!
//! Must not: expose the shard's parts, or let a handler run state-machine code except
//! through these calls.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use edge_core::access::Grants;
use edge_core::cluster::NodeRecord;
use edge_core::hls::blocking::{self, Decision};
use edge_core::hls::llhls::{LlFile, LlSnapshot, PartId};
use edge_core::hls::HlsSnapshot;
use edge_core::media::TagInfo;
use edge_core::migrate::MigrationDecision;
use edge_core::stream::{Departure, PublishError, PublisherId};
use edge_core::{ShardId, StreamKey, ViewerId};
use tracing::warn;

use super::cluster::same_request_at;
use super::llhls::Outcome;
use super::{protocol_of, Shard};
use crate::config::Config;
use crate::config::Http3Congestion;
use crate::machine::registry::ShardRegistry;
use crate::machine::stats::{BytesOut, Counter, ShardStats, Stats};
use crate::net::arena::Arena;
use crate::net::clock::Clock;
use crate::net::listeners::Service;
use crate::net::mesh::{Mesh, MeshMsg, SegmentEvent};
use crate::net::quic::{Congestion, QuicEndpoint, QuicSettings};
use crate::net::webrtc::{RtcEndpoint, RtcSettings};
use crate::net::zerocopy::Sender;
use crate::shard::outlet::{Outlet, Wire};
use crate::shard::pulled::{Inflight, Lookup};

/// What a shard shares with the whole machine besides the mesh and the counters.
pub(crate) struct MachineWide {
    /// The machine's connection counts, when --max-connections(-per-ip) is set.
    pub admission: Option<Arc<std::sync::Mutex<edge_core::admission::Admission>>>,
    /// This shard's handle on the registry threads (--registry).
    pub registry: Option<ShardRegistry>,
    /// An upgrade's predecessor whose streams are pulled from its relay.
    pub predecessor: Option<Arc<crate::upstream::predecessor::Predecessor>>,
}

/// A connection's handle on its shard.
#[derive(Clone)]
pub(crate) struct ShardHandle(Rc<Shard>);

impl ShardHandle {
    /// Builds shard `id` and starts its timer and cluster tasks on this thread's runtime;
    /// [`ShardHandle::run_dispatcher`] then runs it until shutdown.
    pub(crate) fn start(
        id: ShardId,
        config: Arc<Config>,
        mesh: Arc<Mesh>,
        stats: Arc<Stats>,
        clock: Clock,
        arena: Arc<Arena>,
        machine: MachineWide,
    ) -> ShardHandle {
        let shard = Shard::new(id, config, mesh, stats, clock, arena, machine);
        monoio::spawn(Rc::clone(&shard).run_timers());
        monoio::spawn(Rc::clone(&shard).run_cluster());
        ShardHandle(shard)
    }

    /// Starts this shard's HTTP/3 endpoint on `socket` (bound by the node), its deadlines on
    /// the shard's timer.
    pub(crate) fn start_quic(
        &self,
        socket: std::net::UdpSocket,
        mesh: Arc<Mesh>,
    ) -> anyhow::Result<Rc<QuicEndpoint>> {
        let config = self.config();
        let Some(certs) = &config.tls else {
            anyhow::bail!("--http3 needs --tls-cert and --tls-key");
        };
        let shards = config.shards();
        let settings = QuicSettings {
            tls: certs.server_config(&[b"h3"], true),
            max_connections: config.http3_max_connections.div_ceil(shards),
            retry_above: config.http3_retry_above / shards,
            max_streams: 100,
            idle_timeout_ms: 30_000,
            congestion: match config.http3_congestion {
                Http3Congestion::Bbr => Congestion::Bbr,
                Http3Congestion::Cubic => Congestion::Cubic,
                Http3Congestion::QuinnBbr => Congestion::QuinnBbr,
            },
            initial_window: config.http3_initial_window,
        };
        let timers = Rc::clone(&self.0.timers);
        let quic = QuicEndpoint::start(
            socket,
            settings,
            self.id(),
            shards,
            mesh,
            self.clock(),
            Arc::clone(&self.stats().http3),
            Box::new(move |at| timers.arm(super::TimerKey::Quic, at)),
        )?;
        let _ = self.0.quic.set(Rc::clone(&quic));
        Ok(quic)
    }

    /// Starts this shard's WebRTC endpoint on `socket` (bound by the node), its deadlines on
    /// the shard's timer.
    pub(crate) fn start_webrtc(
        &self,
        socket: std::net::UdpSocket,
    ) -> anyhow::Result<Rc<RtcEndpoint>> {
        let config = self.config();
        let settings = RtcSettings {
            max_sessions: config.webrtc_max_sessions.div_ceil(config.shards()),
            candidates: config.webrtc_candidates.clone(),
            drop_b_frames: config.webrtc_bframes == crate::config::WebrtcBframes::Drop,
            audio_frame: config.webrtc_audio_frame,
        };
        let timers = Rc::clone(&self.0.timers);
        let endpoint = RtcEndpoint::start(
            socket,
            settings,
            self.id(),
            self.clock(),
            Arc::clone(&self.stats().webrtc),
            Box::new(move |at| timers.arm(super::TimerKey::WebRtc, at)),
        )?;
        let _ = self.0.webrtc.set(Rc::clone(&endpoint));
        Ok(endpoint)
    }

    /// Asks the shard session `id` names to end it; `false` if that shard has no such
    /// session open.
    pub(crate) fn end_webrtc_elsewhere(&self, id: edge_core::webrtc::SessionId) -> bool {
        let open = self
            .machine()
            .shards
            .get(id.shard())
            .is_some_and(|s| s.webrtc.is_open(id));
        if !open {
            return false;
        }
        self.0
            .port
            .send_control(ShardId(id.shard()), MeshMsg::WebRtcEnd(id));
        true
    }

    /// This shard's WebRTC endpoint, with --webrtc-udp.
    pub(crate) fn webrtc(&self) -> Option<Rc<RtcEndpoint>> {
        self.0.webrtc.get().cloned()
    }

    /// Receives mesh messages until shutdown.
    pub(crate) async fn run_dispatcher(self) {
        self.0.run_dispatcher().await;
    }

    // ----- what every handler reads ---------------------------------------------------------

    pub(crate) fn id(&self) -> ShardId {
        self.0.id
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.0.config
    }

    /// This shard's counters.
    pub(crate) fn stats(&self) -> &ShardStats {
        self.0.counters()
    }

    /// The machine's counters and shared state (drain control, registry status, streams).
    pub(crate) fn machine(&self) -> &Arc<Stats> {
        &self.0.stats
    }

    pub(crate) fn clock(&self) -> Clock {
        self.0.clock
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }

    /// A machine-unique id for a connection.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.0.next_conn_id()
    }

    /// The shard that owns `key`.
    pub(crate) fn owner_of(&self, key: &StreamKey) -> ShardId {
        self.0.owner_of(key)
    }

    /// This shard's egress counter, for a writer task.
    /// The shard's write pacer, for a viewer's writer.
    pub(crate) fn pacer(&self) -> Rc<super::pacer::WritePacer> {
        Rc::clone(&self.0.pacer)
    }

    pub(crate) fn bytes_out(&self) -> BytesOut {
        BytesOut::new(&self.0.stats, self.0.id)
    }

    /// The TLS configuration of a TLS service.
    pub(crate) fn tls_config(&self, service: Service) -> Option<Arc<rustls::ServerConfig>> {
        self.0.conns.tls_config(service)
    }

    /// The machine's connection counts, when limited.
    pub(crate) fn admission(
        &self,
    ) -> Option<&Arc<std::sync::Mutex<edge_core::admission::Admission>>> {
        self.0.conns.admission.as_ref()
    }

    /// The zero-copy sender, when this shard's send path is `splice`.
    pub(crate) fn zero_copy(&self) -> Option<&Sender> {
        self.0.conns.zero_copy.as_ref()
    }

    /// Recent on_play allowances of HLS viewers.
    pub(crate) fn grants(&self) -> &RefCell<Grants> {
        &self.0.conns.grants
    }

    // ----- viewers --------------------------------------------------------------------------

    /// Attaches a viewer to `key` on this shard. `query` (the viewer's `?…`) goes upstream
    /// if this starts an edge pull.
    pub(crate) fn add_viewer(&self, key: &StreamKey, v: &Rc<Outlet>, query: Option<Arc<str>>) {
        let shard = &self.0;
        match v.wire {
            Wire::Rtmp => shard.counters().rtmp_players.inc(),
            Wire::Flv => shard.counters().flv_players.inc(),
            Wire::Rtc => shard.counters().webrtc_players.inc(),
        }
        shard
            .stats
            .count_viewer(shard.id, key, protocol_of(v.wire), true);
        if shard.streams.ensure_replica(key) {
            shard.counters().replicas.inc();
        }
        let now = shard.now_ms();
        let viewer = Rc::clone(v);
        shard.with_replica(key, |r, fx| {
            r.handle_add_viewer(ViewerId(viewer.id), viewer, query, now, fx)
        });
    }

    /// Detaches a viewer (connection closed, play stopped). A viewer the replica already
    /// ended (not found, stream over) is gone already.
    pub(crate) fn remove_viewer(&self, key: &StreamKey, v: &Rc<Outlet>) {
        let mut removed = false;
        self.0.with_replica(key, |r, fx| {
            removed = r.handle_remove_viewer(ViewerId(v.id), fx)
        });
        if removed {
            self.0.viewer_gone(key, v);
        }
    }

    // ----- publishers -----------------------------------------------------------------------

    /// Asks the owner for `key`; resolves with its answer.
    pub(crate) async fn request_publish(
        &self,
        key: &StreamKey,
        publisher: PublisherId,
        query: Option<Arc<str>>,
    ) -> Result<(), PublishError> {
        let shard = &self.0;
        let owner = shard.owner_of(key);
        let msg = MeshMsg::PublishRequest {
            key: key.clone(),
            publisher,
            from: shard.id,
            query,
        };
        let send = || shard.port.send_control(owner, msg);
        match shard.publishes.request(publisher, send).await {
            Some(r) => r,
            None => {
                warn!(shard = %shard.id, %key, %owner, "owner shard did not answer a publish in time");
                // Treat as busy; if the owner accepted late, the unpublish below releases it.
                self.unpublish(key, publisher, Departure::Unpublished);
                Err(PublishError::AlreadyPublishing)
            }
        }
    }

    /// The publisher left `key`: it unpublished, or (`Departure::Lost`) its connection ended
    /// without a word, which ends the stream as a failure if nobody takes over.
    pub(crate) fn unpublish(&self, key: &StreamKey, publisher: PublisherId, how: Departure) {
        let msg = MeshMsg::Unpublish {
            key: key.clone(),
            publisher,
            how,
        };
        self.0.port.send_control(self.0.owner_of(key), msg);
    }

    /// A publisher's media message for its owner, its header parsed once here.
    pub(crate) fn media_message(
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

    /// Sends publisher media to the owner, waiting while the channel is full.
    pub(crate) async fn send_media(&self, to: ShardId, msg: MeshMsg) {
        self.0.port.send_media(to, msg).await;
    }

    /// A publisher connected here publishes `key` (its outlet, to refuse it later).
    pub(crate) fn publisher_started(&self, key: &StreamKey, outlet: &Rc<Outlet>) {
        self.0.cluster.publisher_started(key, outlet);
    }

    pub(crate) fn publisher_ended(&self, key: &StreamKey, outlet: &Rc<Outlet>) {
        self.0.cluster.publisher_ended(key, outlet);
    }

    // ----- HLS ------------------------------------------------------------------------------

    /// The HLS snapshot a request on this shard is answered from.
    pub(crate) fn hls(&self, key: &StreamKey) -> Option<Arc<HlsSnapshot>> {
        self.0.hls.get(key)
    }

    /// Streams that are not published here are pulled over RTMP for `key`.
    pub(crate) fn pulls_stream(&self, key: &StreamKey) -> bool {
        self.0.streams.config.pulls_stream(key)
    }

    /// HLS viewers are served from HTTP origins.
    pub(crate) fn pulls_hls(&self) -> bool {
        self.0.pulls.enabled()
    }

    /// An HLS playlist request for `key` on this shard (edge mode): starts or keeps the pull.
    pub(crate) fn hls_demand(&self, key: &StreamKey, query: Option<&str>) {
        let shard = &self.0;
        if !self.pulls_stream(key) && !self.pulls_hls() {
            return;
        }
        let now = shard.now_ms();
        if !shard.hls.demand(key, now) {
            return;
        }
        shard
            .timers
            .arm(super::TimerKey::Demand, shard.hls.demand_poll_timeout());
        let query: Option<Arc<str>> = query.map(Arc::from);
        let owner = shard.owner_of(key);
        if owner == shard.id && self.pulls_hls() {
            super::pull_runner::demand(shard, key, query.as_deref());
        } else if owner == shard.id {
            shard.with_owner(key, true, |o, fx| o.handle_demand(query, now, fx));
        } else {
            let msg = MeshMsg::Demand {
                key: key.clone(),
                query,
            };
            shard.port.send_control(owner, msg);
        }
    }

    /// An LL-HLS request for part `part` of segment `msn` of `key` (a blocking reload, or a
    /// part asked for before it exists): waits, parked, until the stream's state holds it.
    pub(crate) async fn ll_wait(&self, key: &StreamKey, msn: u64, part: Option<u32>) -> LlWait {
        let shard = &self.0;
        let Some(ll) = self.ll_snapshot(key) else {
            return LlWait::Ready;
        };
        let counters = shard.counters();
        let deadline_ms = match blocking::decide(&ll, msn, part, shard.now_ms()) {
            Ok(Decision::Now) => return LlWait::Ready,
            Ok(Decision::Wait { deadline_ms }) => deadline_ms,
            Err(e) => {
                counters.ll_hls_refused.inc();
                return LlWait::Refused(e.to_string());
            }
        };
        drop(ll);
        let Some(slot) = shard.ll_waits.park(key, msn, part, deadline_ms) else {
            counters.ll_hls_refused.inc();
            return LlWait::Unavailable;
        };
        shard
            .timers
            .arm(super::TimerKey::LlWaits, Some(deadline_ms));
        counters.ll_hls_waits.inc();
        counters
            .ll_hls_parked
            .store(shard.ll_waits.len() as u64, Ordering::Relaxed);
        match slot.wait().await {
            Outcome::Released => LlWait::Ready,
            Outcome::TimedOut => LlWait::Unavailable,
        }
    }

    /// LL-HLS part `part` of `key` as it is written, when it is the part the stream's
    /// playlist hints and is not complete: its bytes so far and to come (the first request
    /// here asks the owner). `None` when it is not that part, or too many are streamed here:
    /// the request then waits for the whole part.
    pub(crate) fn ll_hinted(&self, key: &StreamKey, part: PartId) -> Option<Rc<Inflight>> {
        let shard = &self.0;
        let ll = self.hls(key).and_then(|h| h.ll.clone())?;
        if ll.next_part() != Some(part) || ll.part(part.0, part.1).is_some() {
            return None;
        }
        let lookup = shard.ll_hinted.lookup(key, part, shard.now_ms());
        self.on_its_way(key, lookup, |from| MeshMsg::LlWant {
            key: key.clone(),
            part,
            from,
        })
    }

    /// A record on its way here, as `lookup` found it: the known one, none while too many
    /// are recorded, or a new one after the owner is asked for it with `ask(this shard)`.
    fn on_its_way(
        &self,
        key: &StreamKey,
        lookup: Lookup,
        ask: impl FnOnce(ShardId) -> MeshMsg,
    ) -> Option<Rc<Inflight>> {
        match lookup {
            Lookup::Known(r) => Some(r),
            Lookup::Full => None,
            Lookup::Ask(r) => {
                self.0.tell_owner(key, ask(self.0.id));
                Some(r)
            }
        }
    }

    /// The LL-HLS state requests for `key` are answered from: at an HLS-origin edge the
    /// relayed playlist, elsewhere the stream's own.
    pub(crate) fn ll_snapshot(&self, key: &StreamKey) -> Option<Arc<LlSnapshot>> {
        if self.pulls_hls() {
            self.0.ll_relays.get(key)
        } else {
            self.hls(key).and_then(|h| h.ll.clone())
        }
    }

    /// HLS-origin edge: an LL-HLS request for `key` starts or keeps its relay (the owner is
    /// told at most once a second); a first playlist request waits (bounded) for the relay's
    /// first playlist. The status to answer with when the origin fails instead.
    pub(crate) async fn ll_relay_demand(
        &self,
        key: &StreamKey,
        query: Option<&str>,
        wait: bool,
    ) -> Option<u16> {
        let shard = &self.0;
        super::llrelay::demand(shard, key, query);
        if wait && shard.ll_relays.get(key).is_none() {
            let clock = shard.clock;
            shard.ll_relays.wait_first(key, || clock.now_ms()).await;
        }
        match shard.ll_relays.get(key) {
            Some(_) => None,
            None => Some(
                shard
                    .ll_relays
                    .unavailable(key, shard.now_ms())
                    .unwrap_or(504),
            ),
        }
    }

    /// HLS-origin edge: relayed file `file` of `key`, on its way or here (the first request
    /// here asks the owner). `None` while too many are recorded here.
    pub(crate) fn ll_relay_file(&self, key: &StreamKey, file: LlFile) -> Option<Rc<Inflight>> {
        let lookup = self.0.ll_relays.lookup(key, file);
        self.on_its_way(key, lookup, |from| MeshMsg::LlRelayMiss {
            key: key.clone(),
            file,
            from,
        })
    }

    /// LL-HLS parts streamed while written (counted by the connection that streamed one).
    pub(crate) fn ll_part_streamed(&self) {
        self.0.counters().ll_hls_streamed.inc();
    }

    /// LL-HLS parts served (counted by the connection that served one).
    pub(crate) fn ll_part_served(&self) {
        self.0.counters().ll_hls_parts.inc();
    }

    /// Waits while a pull is under way until `key` has an HLS playlist here (the first
    /// segment of a pull), or its origins are known not to give it.
    pub(crate) async fn wait_for_hls(&self, key: &StreamKey) {
        let clock = self.0.clock;
        self.0.hls.wait_for(key, || clock.now_ms()).await;
    }

    /// The status playlist requests for `key` get while its origin fails (and no playlist
    /// was ever loaded).
    pub(crate) fn hls_unavailable(&self, key: &StreamKey) -> Option<u16> {
        self.0.hls.unavailable(key, self.0.now_ms())
    }

    /// Segment `seq` of a pulled stream, not in the snapshot: the download under way (or
    /// failed recently), or a new request to the owner. `None` when this node does not pull
    /// over HLS, or while too many are in flight here.
    pub(crate) fn pulled_segment(&self, key: &StreamKey, seq: u64) -> Option<Rc<Inflight>> {
        let shard = &self.0;
        if !shard.pulls.enabled() {
            return None;
        }
        let now = shard.now_ms();
        shard.counters().hls_collapsed_waiters.inc();
        let s = match shard.hls.lookup(key, seq, now) {
            Lookup::Known(s) => return Some(s),
            Lookup::Full => {
                tracing::debug!(shard = %shard.id, "too many pulled segments in flight; refusing another");
                return None;
            }
            Lookup::Ask(s) => s,
        };
        let owner = shard.owner_of(key);
        if owner == shard.id {
            super::pull_runner::call(shard, key, |p, fx| p.handle_miss(seq, now, fx));
            if !shard.pulls.contains(key) {
                let failed = SegmentEvent::Failed { status: 404 };
                shard.hls.segment_event(key, seq, failed, now);
            }
        } else {
            let msg = MeshMsg::HlsMiss {
                key: key.clone(),
                seq,
                from: shard.id,
            };
            shard.port.send_control(owner, msg);
        }
        Some(s)
    }

    // ----- where a stream is served instead -------------------------------------------------

    /// The live node that holds `key`, when it is another node.
    pub(crate) fn located_elsewhere(&self, key: &StreamKey) -> Option<NodeRecord> {
        self.0.cluster.located_elsewhere(key)
    }

    /// Where an RTMP play for `key` is sent instead (an origin in `--cluster-mode redirect`;
    /// a node that pulls does not redirect).
    pub(crate) fn rtmp_redirect(&self, key: &StreamKey) -> Option<String> {
        if self.0.streams.config.pulls() {
            return None;
        }
        let n = self.located_elsewhere(key)?;
        Some(format!("rtmp://{}/{}", n.rtmp, key.as_str()))
    }

    /// Where an HTTP-FLV or playlist request for `key` is sent instead (origin role): the
    /// same path and query on the holder.
    pub(crate) fn http_redirect(
        &self,
        key: &StreamKey,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        if self.0.streams.config.pulls() {
            return None;
        }
        let n = self.located_elsewhere(key)?;
        Some(same_request_at(&n.http, path, query))
    }

    /// Where a draining node sends an HLS viewer's next playlist request (another edge, or
    /// the holder; never a draining node). `None`: keep serving, also while the peer cannot
    /// yet continue where this node's viewers are.
    pub(crate) fn drain_redirect(
        &self,
        key: &StreamKey,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        let to = self.0.cluster.drain_target(key)?;
        let url = same_request_at(&to, path, query);
        (self.migration(key, to, &url) == MigrationDecision::Redirect).then_some(url)
    }

    /// After an upgrade handover: whether an HLS viewer's playlist response here may close
    /// its connection, so that its next request reaches the successor (it lists what the
    /// viewer may still need).
    pub(crate) fn successor_ready(&self, key: &StreamKey, path: &str, query: Option<&str>) -> bool {
        let Some(at) = self.0.stats.http_addr.get() else {
            return true;
        };
        let to = at.to_string();
        let url = same_request_at(&to, path, query);
        self.migration(key, to, &url) == MigrationDecision::Redirect
    }

    fn migration(&self, key: &StreamKey, to: String, url: &str) -> MigrationDecision {
        let shard = &self.0;
        let newest = shard.hls.newest_seq(key);
        let now = shard.now_ms();
        shard.cluster.migration(key, to, url, newest, now)
    }

    /// Where a draining node asks a publisher of `app` to reconnect, as an
    /// `rtmp://host:port/app` tcUrl.
    pub(crate) fn drain_publish_peer(&self, app: &str) -> Option<String> {
        self.0.cluster.drain_publish_peer(app)
    }
}

/// How an LL-HLS wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LlWait {
    /// Answer from the state now.
    Ready,
    /// 400: too far ahead (the reason).
    Refused(String),
    /// 503: the stream stalled for three target durations, or too many requests wait.
    Unavailable,
}
