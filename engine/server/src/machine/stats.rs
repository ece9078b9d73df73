//! Per-shard counters: plain relaxed atomics, each written by its own shard only, read by
//! whichever shard renders `/metrics` or `/healthz`. No lock on any counter.
//!
//! The stream list (`/api/v1/streams`) is one small mutex-guarded map per shard, taken when an
//! owner's stream appears, goes, or changes upstream state, and when the list is rendered:
//! never per frame (byte counts are atomics inside the entries).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use edge_core::owner::{OwnerView, Source};
use edge_core::stream::MasterPhase;
use edge_core::{ShardId, StreamKey};

macro_rules! counters {
    ($($name:ident: $kind:literal, $help:literal;)*) => {
        /// One shard's counters, on its own cache lines.
        #[derive(Default)]
        #[repr(align(128))]
        pub(crate) struct ShardStats {
            $(pub(crate) $name: AtomicU64,)*
            /// 0 unknown, 1 io_uring, 2 legacy (epoll).
            pub(crate) driver: AtomicU8,
            /// 0 unknown, 1 hugetlb, 2 thp, 3 normal.
            pub(crate) cache_backing: AtomicU8,
            /// 0 unknown, 1 splice (zero-copy), 2 writev; see crate::net::zerocopy.
            pub(crate) send_path: AtomicU8,
            pub(crate) cpu: AtomicU64,
            /// The shard thread's kernel thread id (0 until it runs), for its CPU time.
            pub(crate) tid: AtomicU64,
            pub(crate) access: AccessStats,
            /// HTTP/3: the shard's QUIC endpoint counts here.
            pub(crate) http3: Arc<crate::net::quic::QuicCounters>,
            /// WebRTC: the shard's WHEP sessions count here.
            pub(crate) webrtc: Arc<crate::net::webrtc::RtcCounters>,
        }

        pub(crate) const METRICS: &[(&str, &str, &str)] = &[$((stringify!($name), $kind, $help),)*];

        impl ShardStats {
            pub(crate) fn values(&self) -> Vec<u64> {
                vec![$(self.$name.load(Ordering::Relaxed),)*]
            }
        }
    };
}

counters! {
    rtmp_connections_accepted: "counter", "RTMP connections accepted";
    http_connections_accepted: "counter", "HTTP connections accepted";
    rtmp_players: "gauge", "RTMP players attached";
    flv_players: "gauge", "HTTP-FLV players attached";
    webrtc_players: "gauge", "WebRTC (WHEP) players attached";
    hls_viewers: "gauge", "HTTP connections open that have fetched an HLS playlist (an HLS viewer's estimate: a player keeps one or two)";
    publishers: "gauge", "Publishers connected to this shard";
    streams_owned: "gauge", "Streams whose owner (local origin) is this shard";
    replicas: "gauge", "Streams this shard keeps a replica of for its viewers";
    frames_in: "counter", "Media messages received from publishers";
    frames_dropped: "counter", "Frames dropped by viewer queue overflow";
    slow_viewer_disconnects: "counter", "Viewers closed for staying over their queue limit";
    bytes_out: "counter", "Bytes written to viewers";
    viewer_writes: "counter", "Writes (one writev each) to RTMP and HTTP-FLV viewers";
    viewer_writes_held: "counter", "RTMP and HTTP-FLV viewer writes held for the shard's write window (adaptive batching)";
    viewer_write_releases: "counter", "Releases of held viewer writes: each starts every held viewer's write in one wake-up, submitted to the kernel together";
    write_window_ms: "gauge", "How long the shard holds RTMP and HTTP-FLV viewers' writes now, in ms (0: every frame at once; grows with the load up to --write-coalesce-ms)";
    write_load_permille: "gauge", "The shard thread's CPU use, in permille of one CPU, sampled every 100 ms and smoothed (half the new sample, half the value before): the write window's signal";
    zero_copy_bytes: "counter", "Segment body bytes sent by reference from the arena (vmsplice + splice), not copied";
    zero_copy_fallbacks: "counter", "Segment responses copied (writev) on a zero-copy shard because every pipe was in use";
    arena_pages_dropped: "counter", "Arena chunks whose pages were dropped on free because a zero-copy send had lent them";
    bytes_in: "counter", "Bytes read from RTMP connections (publishers, mostly) and upstream pulls";
    mesh_lagging: "counter", "Updates a replica shard missed because its channel was full";
    publish_rejected: "counter", "Publishes refused (BadName)";
    connection_errors: "counter", "Connections closed for a protocol error";
    peer_panics: "counter", "Connections closed because parsing their input panicked (a bug: please report it)";
    accept_errors: "counter", "accept() failures (EMFILE, ENFILE, ...)";
    connections_open: "gauge", "Connections open (every listener), from accept to close";
    connections_refused_max: "counter", "Connections closed at accept: --max-connections reached";
    connections_refused_per_ip: "counter", "Connections closed at accept: --max-connections-per-ip reached";
    http_requests: "counter", "HTTP requests served";
    hls_segments: "counter", "HLS segments produced by streams this shard owns";
    hls_segments_refused: "counter", "HLS segments refused because the segment cache was full";
    hls_unaligned_cuts: "counter", "HLS segments that did not open in the timeline cell after the previous one, so their numbers stopped matching other nodes' (keyframes further apart than --hls-segment-ms, a refused segment, or a timestamp jump)";
    hls_evictions: "counter", "Ended streams whose HLS segments were evicted for space";
    ll_hls_parts: "counter", "LL-HLS parts served (fMP4 fragments, by part URI)";
    ll_hls_streamed: "counter", "LL-HLS parts streamed chunk by chunk while they were written (requests for the hinted part)";
    ll_hls_relays_started: "counter", "HLS-origin edge: LL-HLS relays started (one per stream per machine)";
    ll_hls_relay_playlists: "counter", "HLS-origin edge: LL-HLS playlist requests to the origin (one blocking reload at a time per relayed stream)";
    ll_hls_relay_files: "counter", "HLS-origin edge: LL-HLS files fetched from the origin (each part, segment and init segment at most once)";
    ll_hls_parked: "gauge", "LL-HLS requests waiting now (blocking playlist reloads and parts asked for before they exist)";
    ll_hls_waits: "counter", "LL-HLS requests that waited (blocking reloads and early part requests)";
    ll_hls_wait_timeouts: "counter", "LL-HLS waits that ended in 503 after three target durations (a stalled stream)";
    ll_hls_refused: "counter", "LL-HLS requests refused 400 (too far ahead, bad directives) or 503 (too many waiting)";
    cache_bytes_total: "gauge", "Segment arena size";
    cache_bytes_free: "gauge", "Segment arena bytes free";
    rtmp_play_requests: "counter", "RTMP play requests accepted (an origin sees its edges' pulls here)";
    upstream_pulls_started: "counter", "Edge: upstream pulls started (one per stream per machine)";
    upstream_pulls_active: "gauge", "Edge: upstream pulls running";
    upstream_connects: "counter", "Edge: upstream connections opened (pulls, failovers, probes)";
    upstream_failovers: "counter", "Edge: pulls switched to another origin (failure or redirect)";
    hls_pulls_started: "counter", "HLS pull: streams pulled from an HTTP origin (one per stream per machine)";
    hls_pulls_active: "gauge", "HLS pull: streams being pulled from an HTTP origin now";
    hls_origin_requests: "counter", "HLS pull: requests sent to HTTP origins (playlists and segments)";
    hls_prefetches: "counter", "HLS pull: segments fetched when the origin listed them, before any viewer asked";
    hls_collapsed_waiters: "counter", "HLS pull: segment requests that waited on a download under way or asked the owner for one (none of them is an origin request of its own)";
    hls_origin_bytes: "counter", "HLS pull: bytes of playlists and segments received from HTTP origins";
    hls_origin_errors: "counter", "HLS pull: origin requests that failed (status, timeout, connection, truncated body)";
    hls_origin_failovers: "counter", "HLS pull: pulls moved to the next HTTP origin";
    hls_feeds_started: "counter", "HLS feed: streams whose RTMP and FLV viewers are fed from an HLS pull (the pulled TS demuxed into frames)";
    hls_feeds_active: "gauge", "HLS feed: streams fed from an HLS pull now";
    hls_feed_segments: "counter", "HLS feed: pulled segments demuxed into frames";
    hls_feed_skipped: "counter", "HLS feed: pulled segments that gave no frames (failed, never arrived, or not demuxable)";
    forwards_started: "counter", "Edge: publishes forwarded to an origin";
    forward_sessions: "gauge", "Edge: forwarding connections publishing to an origin now";
    cluster_redirects: "counter", "Cluster: plays sent to the node that holds the stream (RTMP 302, HTTP 302)";
    drain_redirects: "counter", "Drain: HLS playlist requests sent to a peer node (302) while this node drains";
    drain_reconnect_requests: "counter", "Drain: publishers that offered Enhanced RTMP reconnect (capsEx) asked to reconnect elsewhere";
    drain_held: "counter", "Drain: HLS playlist requests served here because the peer cannot yet continue where the viewer is";
    drain_peer_probes: "counter", "Drain: playlists fetched from the peer to see whether it can take this node's HLS viewers";
    drain_peer_probes_failed: "counter", "Drain: peer playlist fetches that failed (unreachable, timeout, a status other than 200, not a playlist)";
    tls_handshakes: "counter", "TLS handshakes completed (--https, --rtmps)";
    tls_handshake_failures: "counter", "TLS handshakes that failed or timed out";
    tls_handshake_timeouts: "counter", "TLS handshakes abandoned at --tls-handshake-timeout-ms";
    busy_percent: "gauge", "CPU this shard's thread used over the last second, in percent of one CPU (user and system)";
}

/// Access counters: verdicts by action and reason, hook calls by event and outcome.
#[derive(Default)]
pub(crate) struct AccessStats {
    pub allowed: [AtomicU64; 2],
    pub denied: [[AtomicU64; DENIAL_REASONS.len()]; 2],
    pub hook_calls: [[AtomicU64; HOOK_OUTCOMES.len()]; 4],
}

pub(crate) const ACTIONS: [&str; 2] = ["play", "publish"];
/// Token errors (edge-core's names), then the hook's.
pub(crate) const DENIAL_REASONS: [&str; 9] = [
    "missing",
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "acl",
    "ip",
    "hook_refused",
    "hook_failed",
];
pub(crate) const HOOK_EVENTS: [&str; 4] = ["on_publish", "on_unpublish", "on_play", "on_stop"];
pub(crate) const HOOK_OUTCOMES: [&str; 5] =
    ["allowed", "refused", "timeout", "unreachable", "bad_reply"];

impl AccessStats {
    pub(crate) fn reason_index(reason: &str) -> usize {
        DENIAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(DENIAL_REASONS.len() - 1)
    }

    pub(crate) fn outcome_index(outcome: &str) -> usize {
        HOOK_OUTCOMES
            .iter()
            .position(|r| *r == outcome)
            .unwrap_or(HOOK_OUTCOMES.len() - 1)
    }
}

/// Increments and decrements on relaxed atomics (each counter has one writer: its shard).
pub(crate) trait Counter {
    fn inc(&self);
    fn dec(&self);
}

impl Counter for AtomicU64 {
    fn inc(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }
    fn dec(&self) {
        self.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one shard's bytes out as they are written, from any task of that shard (a
/// writer outlives every borrow of its shard): egress is live while viewers play, not
/// counted when they leave.
#[derive(Clone)]
pub(crate) struct BytesOut {
    stats: Arc<Stats>,
    shard: usize,
}

impl BytesOut {
    pub(crate) fn new(stats: &Arc<Stats>, shard: ShardId) -> Self {
        Self {
            stats: Arc::clone(stats),
            shard: shard.0,
        }
    }

    pub(crate) fn add(&self, n: usize) {
        self.stats.shards[self.shard]
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Counters of every shard, indexed by shard id, and the streams each shard owns.
pub(crate) struct Stats {
    pub shards: Box<[ShardStats]>,
    pub streams: Box<[StreamList]>,
    /// Each shard's viewers by stream and protocol, for the streams list.
    pub viewers: Box<[ViewerList]>,
    /// Each shard's segment arena, set once it is mapped: the cache gauges are read from it
    /// when rendered (chunks come back from whichever shard's reader lets go last).
    pub arenas: Arc<[OnceLock<Arc<crate::net::arena::Arena>>]>,
    /// The registry's state, with --registry.
    pub registry: OnceLock<Arc<super::registry::RegistryStatus>>,
    /// The drain and the machine-level gauges.
    pub control: Arc<super::control::Control>,
    /// The HTTP listener's address, for requests to our own port (after an upgrade
    /// handover they reach the successor).
    pub http_addr: OnceLock<std::net::SocketAddr>,
    /// Each static origin's reachability (edge mode), for `/healthz`.
    pub origins: OnceLock<Arc<[super::origins::OriginHealth]>>,
}

/// One shard's owned streams, by key.
pub(crate) type StreamList = Mutex<BTreeMap<StreamKey, Arc<StreamView>>>;

/// One shard's viewers by stream: taken when a viewer comes or goes, never per frame.
pub(crate) type ViewerList = Mutex<HashMap<StreamKey, [u64; PROTOCOLS]>>;

/// What a viewer watches with, as the streams list counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Rtmp = 0,
    Flv = 1,
    /// A connection that fetched the stream's playlist.
    Hls = 2,
    /// A connection that fetched the stream's LL-HLS playlist (`llhls.m3u8`).
    LlHls = 3,
    /// A WHEP session.
    WebRtc = 4,
}

/// How many protocols viewers are counted by.
pub(crate) const PROTOCOLS: usize = 5;

/// One owned stream as the streams API shows it.
pub(crate) struct StreamView {
    pub key: StreamKey,
    pub shard: ShardId,
    pub upstream_bytes: AtomicU64,
    pub forward_bytes: AtomicU64,
    /// Media bytes (message bodies) from a publisher here.
    pub published_bytes: AtomicU64,
    pub state: Mutex<ViewState>,
    /// An HLS pull: the origin in use (`None`: not an HLS pull).
    pub hls_origin: Mutex<Option<String>>,
    pub hls_prefetches: AtomicU64,
    pub hls_origin_requests: AtomicU64,
    pub hls_origin_errors: AtomicU64,
}

/// The parts of a [`StreamView`] that change rarely: the owner's [`OwnerView`] with its
/// times in Unix ms.
#[derive(Clone)]
pub(crate) struct ViewState {
    pub view: OwnerView,
    pub upstream_since_unix_ms: u64,
    pub forward_since_unix_ms: u64,
    /// When the stream last went live (0: not live yet).
    pub live_since_unix_ms: u64,
}

impl StreamView {
    pub(crate) fn new(key: StreamKey, shard: ShardId) -> Self {
        Self {
            key,
            shard,
            upstream_bytes: AtomicU64::new(0),
            forward_bytes: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
            state: Mutex::new(ViewState {
                view: OwnerView {
                    phase: MasterPhase::Idle,
                    source: Source::None,
                    upstream: None,
                    forward: None,
                    failovers: 0,
                },
                upstream_since_unix_ms: 0,
                forward_since_unix_ms: 0,
                live_since_unix_ms: 0,
            }),
            hls_origin: Mutex::new(None),
            hls_prefetches: AtomicU64::new(0),
            hls_origin_requests: AtomicU64::new(0),
            hls_origin_errors: AtomicU64::new(0),
        }
    }

    /// Shows `view` (its times are shard-clock ms, `unix` turns them into Unix ms) at `now`.
    pub(crate) fn set(&self, view: OwnerView, now: u64, unix: impl Fn(u64) -> u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let live = view.phase == MasterPhase::Live;
        if !live {
            st.live_since_unix_ms = 0;
        } else if st.view.phase != MasterPhase::Live {
            st.live_since_unix_ms = unix(now);
        }
        st.upstream_since_unix_ms = view.upstream.as_ref().map_or(0, |l| unix(l.since_ms));
        st.forward_since_unix_ms = view.forward.as_ref().map_or(0, |l| unix(l.since_ms));
        st.view = view;
    }
}

impl Stats {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| ShardStats::default()).collect(),
            streams: (0..shards).map(|_| Mutex::new(BTreeMap::new())).collect(),
            viewers: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            arenas: (0..shards).map(|_| OnceLock::new()).collect(),
            registry: OnceLock::new(),
            control: Arc::default(),
            http_addr: OnceLock::new(),
            origins: OnceLock::new(),
        }
    }

    /// Lists `view` under its owner shard.
    pub(crate) fn add_stream(&self, view: Arc<StreamView>) {
        let mut m = self.streams[view.shard.0]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.insert(view.key.clone(), view);
    }

    /// The streams this node holds now (live, or in a republish grace), every shard's.
    pub(crate) fn held_streams(&self) -> Vec<StreamKey> {
        let mut out = Vec::new();
        for m in self.streams.iter() {
            let m = m.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(m.values().filter_map(|v| {
                let phase = v.state.lock().unwrap_or_else(|e| e.into_inner()).view.phase;
                (phase != MasterPhase::Idle).then(|| v.key.clone())
            }));
        }
        out
    }

    pub(crate) fn remove_stream(&self, shard: ShardId, key: &StreamKey) {
        let mut m = self.streams[shard.0]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.remove(key);
    }

    /// A viewer of `key` on `shard` came (`joined`) or went.
    pub(crate) fn count_viewer(
        &self,
        shard: ShardId,
        key: &StreamKey,
        protocol: Protocol,
        joined: bool,
    ) {
        let mut m = self.viewers[shard.0]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if joined {
            m.entry(key.clone()).or_default()[protocol as usize] += 1;
        } else if let Some(c) = m.get_mut(key) {
            c[protocol as usize] = c[protocol as usize].saturating_sub(1);
            if *c == [0; PROTOCOLS] {
                m.remove(key);
            }
        }
    }

    /// Every stream's viewers on every shard, by protocol (each shard's map taken once).
    pub(crate) fn all_viewers(&self) -> HashMap<StreamKey, [u64; PROTOCOLS]> {
        let mut sum: HashMap<StreamKey, [u64; PROTOCOLS]> = HashMap::new();
        for m in self.viewers.iter() {
            let m = m.lock().unwrap_or_else(|e| e.into_inner());
            for (key, c) in m.iter() {
                let total = sum.entry(key.clone()).or_default();
                for (s, n) in total.iter_mut().zip(c) {
                    *s += n;
                }
            }
        }
        sum
    }

    /// One counter or gauge summed over the shards.
    pub(crate) fn sum(&self, field: fn(&ShardStats) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::stream::MasterPhase;

    #[test]
    fn a_stream_is_live_since_it_went_live_and_not_before() {
        let v = StreamView::new(StreamKey::new("live", "x").unwrap(), ShardId(0));
        let view = |phase| OwnerView {
            phase,
            source: Source::Publisher,
            upstream: None,
            forward: None,
            failovers: 0,
        };
        let since = |v: &StreamView| v.state.lock().unwrap().live_since_unix_ms;
        v.set(view(MasterPhase::Idle), 10, |ms| ms);
        assert_eq!(since(&v), 0);
        v.set(view(MasterPhase::Live), 20, |ms| ms);
        v.set(view(MasterPhase::Live), 30, |ms| ms);
        assert_eq!(since(&v), 20, "a later change while live keeps the start");
        v.set(view(MasterPhase::Grace), 40, |ms| ms);
        v.set(view(MasterPhase::Live), 50, |ms| ms);
        assert_eq!(since(&v), 50, "a republish starts again");
    }
}
