//! The HLS pull of one stream from HTTP origins, sans-IO: which playlist and segment requests
//! to make and when, which segments the edge lists, failover between origins. It runs on the
//! stream's owner shard, once per machine; the engine performs the requests, keeps the
//! bytes, and fans them out.
//!
//! A pull, in steps:
//! 1. The first playlist request creates it: [`HlsPullEffect::FetchPlaylist`] of
//!    `PATH/{stream}.m3u8` at the first origin.
//! 2. Each media playlist names segments. A segment newer than any seen gets the edge's next
//!    sequence number (the edge's numbers stay contiguous across origins). With prefetch,
//!    it is fetched at once ([`HlsPullEffect::FetchSegment`]); the first load prefetches only
//!    the last [`HlsPullConfig::start_segments`].
//! 3. The edge lists a prefetched segment once its first bytes are here
//!    ([`HlsPull::handle_segment_started`]); without prefetch, every known segment is listed and
//!    fetched on its first request ([`HlsPull::handle_miss`]). Either way a segment is fetched
//!    at most once at a time, whatever the number of requests.
//! 4. Reloads follow RFC 8216 §6.3.4 (one target duration after the start of a load that
//!    found the playlist changed, half of one after one that did not), but come at most
//!    [`HlsPullConfig::reload_ms`] apart; at once (blocking, `_HLS_msn=` the next segment)
//!    when the origin advertises `CAN-BLOCK-RELOAD=YES`.
//! 5. Two playlist failures in a row move to the next origin. The new origin's newest
//!    segment continues the edge's numbering with EXT-X-DISCONTINUITY (so does an origin
//!    whose numbers went backwards: a restart).
//! 6. A failed segment is remembered for [`HlsPullConfig::negative_ms`] (requests get its
//!    error without reaching the origin), then fetched again, at most [`SEGMENT_RETRIES`] times.
//! 7. No playlist request for `idle_ms`: [`HlsPullEffect::Idle`], unless the pull feeds
//!    the stream's RTMP and FLV viewers ([`HlsPull::set_feeding`]): then every new segment
//!    is fetched (prefetch or not) and the pull lasts as long as the feed.
//!
//! A multivariant playlist is relayed as it is; each variant is its own stream key at the
//! edge, pulled the same way (its URI must be a name in the same directory).
//!
//! Must not: hold segment bytes, touch sockets, or read a clock.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use super::m3u8::{parse_media_playlist, MediaPlaylist};
use super::segmenter::{render_media_playlist, PlaylistHeader};
use crate::upstream::OriginUrlError;

/// How many times a failed segment is fetched again.
pub const SEGMENT_RETRIES: u8 = 2;

/// An HTTP origin: `http(s)://HOST[:PORT]/PATH`; `{app}/{stream}.m3u8` at the edge is
/// `PATH/{stream}.m3u8` there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpOrigin {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Empty, or `/a/b` (no trailing slash).
    pub path: String,
}

impl HttpOrigin {
    pub fn parse(url: &str) -> Result<Self, OriginUrlError> {
        let err = || OriginUrlError(url.to_string());
        let (rest, tls) = match url.strip_prefix("https://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("http://").ok_or_else(err)?, false),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, format!("/{}", p.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        let path = if path == "/" { String::new() } else { path };
        if path.contains(['?', '#', ' ']) {
            return Err(err());
        }
        let (host, port) =
            split_authority(authority, if tls { 443 } else { 80 }).ok_or_else(err)?;
        Ok(Self {
            host,
            port,
            tls,
            path,
        })
    }

    /// What a request's `Host:` says.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port, self.tls)
    }

    /// Where `uri` (as a playlist at `dir` lists it) is fetched from; `None` for a scheme
    /// other than http(s).
    pub fn resolve(&self, dir: &str, uri: &str) -> Option<FetchTarget> {
        if let Some((scheme, rest)) = uri.split_once("://") {
            let tls = match scheme.to_ascii_lowercase().as_str() {
                "http" => false,
                "https" => true,
                _ => return None,
            };
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = split_authority(authority, if tls { 443 } else { 80 })?;
            return Some(FetchTarget {
                host,
                port,
                tls,
                path: path.to_string(),
            });
        }
        let path = if uri.starts_with('/') {
            uri.to_string()
        } else {
            format!("{dir}/{uri}")
        };
        Some(FetchTarget {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
            path,
        })
    }
}

impl fmt::Display for HttpOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    // A bracketed IPv6 literal without a port: its colons are not one.
    let bare_v6 = authority.starts_with('[') && authority.ends_with(']');
    let (host, port) = match authority.rsplit_once(':').filter(|_| !bare_v6) {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, default_port),
    };
    (!host.is_empty() && !host.contains(['/', '@', ' '])).then(|| (host.to_string(), port))
}

fn authority(host: &str, port: u16, tls: bool) -> String {
    if port == if tls { 443 } else { 80 } {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// One request's destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchTarget {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Path and query.
    pub path: String,
}

impl FetchTarget {
    pub fn authority(&self) -> String {
        authority(&self.host, self.port, self.tls)
    }

    fn with_query(mut self, query: Option<&str>) -> Self {
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            self.path
                .push(if self.path.contains('?') { '&' } else { '?' });
            self.path.push_str(q);
        }
        self
    }
}

impl fmt::Display for FetchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Why a request to an origin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The origin answered with this status.
    Status(u16),
    /// No connection, no first byte, or no progress in time.
    Timeout,
    /// Refused, reset, closed early, or a response that could not be read.
    Failed,
}

impl FetchError {
    /// The status the edge answers with: 404 for the origin's 404/410, 504 for a timeout,
    /// 502 otherwise.
    pub fn status(self) -> u16 {
        match self {
            FetchError::Status(404 | 410) => 404,
            FetchError::Timeout => 504,
            FetchError::Status(_) | FetchError::Failed => 502,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Status(s) => write!(f, "origin answered {s}"),
            FetchError::Timeout => f.write_str("origin timed out"),
            FetchError::Failed => f.write_str("origin connection failed"),
        }
    }
}

/// Settings of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsPullConfig {
    /// Fetch every new segment when it appears (`--hls-prefetch`).
    pub prefetch: bool,
    /// No playlist request this long ends the pull (`--upstream-idle-ms`).
    pub idle_ms: u64,
    /// How long a failure is remembered.
    pub negative_ms: u64,
    /// Segments the edge lists.
    pub window: usize,
    /// Segments kept past the window, for downloads under way.
    pub keep_extra: usize,
    /// Segments prefetched at the first load (and after a failover: 1).
    pub start_segments: usize,
    /// How often a playlist that cannot block is reloaded at most, in ms (`0`: as RFC 8216
    /// tells a player). An edge is not a player: reloading every few hundred milliseconds,
    /// one small request per stream per machine, lists a new segment that much after the
    /// origin does, where a player's cadence lags by up to a target duration.
    pub reload_ms: u64,
}

/// What the owner must do.
#[derive(Debug, Clone, PartialEq)]
pub enum HlsPullEffect {
    /// Load the playlist (`blocking`: the origin holds the request until it changes).
    FetchPlaylist { target: FetchTarget, blocking: bool },
    /// Fetch segment `seq` (the edge's number).
    FetchSegment { seq: u64, target: FetchTarget },
    /// The edge's playlist changed.
    Publish(PulledPlaylist),
    /// Segment `seq` left the pull: free its bytes.
    Release(u64),
    /// Requests for segment `seq` get `status`.
    MissFailed { seq: u64, status: u16 },
    /// The playlist cannot be loaded (and none was): requests get `status` for a while.
    Unavailable { status: u16, reason: String },
    /// Moved to another origin.
    Failover { from: String, to: String },
    /// Nobody asked for the playlist for `idle_ms`: end the pull.
    Idle,
}

/// The edge's playlist for a pulled stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledPlaylist {
    pub text: Bytes,
    /// Where each URI ends in `text` (a viewer's query goes there).
    pub uri_ends: Vec<usize>,
    pub target_duration_s: u64,
    pub ended: bool,
    /// Listed segments, oldest first.
    pub listed: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegState {
    /// Known, not requested.
    Idle,
    Fetching {
        started: bool,
    },
    Done,
    Failed {
        status: u16,
        until: u64,
    },
}

#[derive(Debug, Clone)]
struct Seg {
    seq: u64,
    duration_ms: u64,
    discontinuity: bool,
    target: FetchTarget,
    state: SegState,
    /// Fetches after a failure so far.
    retries: u8,
}

impl Seg {
    /// Whether the edge may list it (with prefetch: its bytes are arriving or here).
    fn present(&self) -> bool {
        match self.state {
            SegState::Fetching { started } => started,
            SegState::Done => true,
            // Given up: listed, so the playlist goes on (requests get its error).
            SegState::Failed { .. } => self.retries >= SEGMENT_RETRIES,
            SegState::Idle => false,
        }
    }
}

/// One stream's pull.
#[derive(Debug)]
pub struct HlsPull {
    cfg: HlsPullConfig,
    origins: Vec<HttpOrigin>,
    name: String,
    /// The first viewer's query (a token), carried on every request.
    query: Option<String>,
    active: usize,
    segs: VecDeque<Seg>,
    /// The newest origin sequence number seen on the active origin (`None`: start over).
    last_origin_seq: Option<u64>,
    next_seq: u64,
    /// The first segment the edge listed; listing never goes back before it.
    list_from: Option<u64>,
    /// Discontinuities released before the front of `segs`.
    released_discontinuities: u64,
    loading: bool,
    /// When the playlist request under way (or the last one) began.
    load_started: u64,
    reload_at: Option<u64>,
    blocking: bool,
    failures: u32,
    last_demand: u64,
    target_duration_s: u64,
    ended: bool,
    /// A multivariant playlist, relayed.
    multivariant: Option<(Bytes, Vec<usize>)>,
    published: Option<PulledPlaylist>,
    /// The stream's owner is fed from the segments ([`HlsPull::set_feeding`]).
    feeding: bool,
}

impl HlsPull {
    /// A pull of `name` (the stream's last path component) from `origins`, in failover
    /// order; the first demand follows.
    pub fn new(cfg: HlsPullConfig, origins: Vec<HttpOrigin>, name: &str, now_ms: u64) -> Self {
        Self {
            cfg,
            origins,
            name: name.to_string(),
            query: None,
            active: 0,
            segs: VecDeque::new(),
            last_origin_seq: None,
            next_seq: 0,
            list_from: None,
            released_discontinuities: 0,
            loading: false,
            load_started: now_ms,
            reload_at: None,
            blocking: false,
            failures: 0,
            last_demand: now_ms,
            target_duration_s: 2,
            ended: false,
            multivariant: None,
            published: None,
            feeding: false,
        }
    }

    /// The stream's RTMP and FLV viewers are fed from the segments (`on`), or no longer.
    /// While fed, every new segment is fetched as it appears, the newest known one at once,
    /// and the pull does not idle; when the feed ends, idling counts from `now_ms`.
    pub fn set_feeding(&mut self, on: bool, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        self.feeding = on;
        if !on {
            self.last_demand = now_ms;
            return;
        }
        self.fetch_newest_if_idle(fx);
    }

    /// Fetches the newest segment known, unless it was fetched already.
    fn fetch_newest_if_idle(&mut self, fx: &mut Vec<HlsPullEffect>) {
        if let Some(s) = self.segs.back().filter(|s| s.state == SegState::Idle) {
            let seq = s.seq;
            self.fetch(seq, fx);
        }
    }

    /// The newest segment the pull knows (listed or not).
    pub fn newest_seq(&self) -> Option<u64> {
        self.segs.back().map(|s| s.seq)
    }

    /// The origin in use.
    pub fn origin(&self) -> &HttpOrigin {
        &self.origins[self.active]
    }

    /// The last published playlist.
    pub fn playlist(&self) -> Option<&PulledPlaylist> {
        self.published.as_ref()
    }

    /// A playlist request (its query, the first time, is carried upstream).
    pub fn handle_demand(&mut self, query: Option<&str>, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        self.last_demand = now_ms;
        if self.query.is_none() {
            self.query = query.filter(|q| !q.is_empty()).map(str::to_string);
        }
        if !self.loading && self.reload_at.is_none() {
            self.load(false, now_ms, fx);
        }
    }

    fn dir(&self) -> String {
        self.origin().path.clone()
    }

    fn load(&mut self, blocking: bool, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        self.loading = true;
        self.load_started = now_ms;
        self.reload_at = None;
        let mut target = FetchTarget {
            host: self.origin().host.clone(),
            port: self.origin().port,
            tls: self.origin().tls,
            path: format!("{}/{}.m3u8", self.dir(), self.name),
        }
        .with_query(self.query.as_deref());
        let blocking = blocking && self.last_origin_seq.is_some();
        if blocking {
            let next = self.last_origin_seq.map_or(0, |s| s.saturating_add(1));
            target = target.with_query(Some(&format!("_HLS_msn={next}")));
        }
        fx.push(HlsPullEffect::FetchPlaylist { target, blocking });
    }

    /// The playlist request's outcome.
    pub fn handle_playlist(
        &mut self,
        result: Result<&str, FetchError>,
        now_ms: u64,
        fx: &mut Vec<HlsPullEffect>,
    ) {
        self.loading = false;
        let parsed = match result {
            Ok(text) => parse_media_playlist(text).map_err(|_| FetchError::Failed),
            Err(e) => Err(e),
        };
        match parsed {
            Ok(p) if !p.variants.is_empty() => {
                self.relay_multivariant(text_of(result), &p, now_ms, fx)
            }
            Ok(p) => self.media_playlist(p, now_ms, fx),
            Err(e) => self.playlist_failed(e, now_ms, fx),
        }
    }

    fn relay_multivariant(
        &mut self,
        text: &str,
        p: &MediaPlaylist,
        now_ms: u64,
        fx: &mut Vec<HlsPullEffect>,
    ) {
        let simple = |u: &String| {
            u.ends_with(".m3u8") && !u.contains(['/', '?', ':']) && u.len() > ".m3u8".len()
        };
        if !p.variants.iter().all(simple) {
            return self.playlist_failed(FetchError::Failed, now_ms, fx);
        }
        self.failures = 0;
        let mut out = String::with_capacity(text.len());
        let mut uri_ends = Vec::new();
        let mut variant_next = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out.push_str(line);
            if line.starts_with("#EXT-X-STREAM-INF:") {
                variant_next = true;
            } else if !line.starts_with('#') && std::mem::take(&mut variant_next) {
                uri_ends.push(out.len());
            }
            out.push('\n');
        }
        let text = Bytes::from(out);
        self.multivariant = Some((text.clone(), uri_ends.clone()));
        let playlist = PulledPlaylist {
            text,
            uri_ends,
            target_duration_s: self.target_duration_s,
            ended: false,
            listed: Vec::new(),
        };
        if self.published.as_ref() != Some(&playlist) {
            self.published = Some(playlist.clone());
            fx.push(HlsPullEffect::Publish(playlist));
        }
        // A multivariant playlist does not change; reloaded now and then in case it does.
        self.reload_at = Some(now_ms.saturating_add(10 * self.target_duration_s * 1000));
    }

    fn media_playlist(&mut self, p: MediaPlaylist, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        self.failures = 0;
        self.multivariant = None;
        self.target_duration_s = p.target_duration_s.clamp(1, 60);
        self.blocking = p.can_block_reload;
        let newest = p.segments.last().map(|s| s.seq);
        // An origin whose numbers went backwards restarted: start over, as after a failover.
        if let (Some(last), Some(newest)) = (self.last_origin_seq, newest) {
            if newest < last {
                self.last_origin_seq = None;
            }
        }
        let first_load = self.last_origin_seq.is_none();
        let resumed = first_load && !self.segs.is_empty();
        let dir = self.dir();
        let mut changed = false;
        let mut gap = resumed;
        // The first load takes the last start_segments (one, continuing after a failover).
        let take_from = if first_load {
            let keep = if resumed {
                1
            } else if self.cfg.prefetch {
                self.cfg.start_segments.max(1)
            } else {
                self.cfg.window.max(1)
            };
            p.segments.len().saturating_sub(keep)
        } else {
            0
        };
        // A first pull numbers its segments as the origin does (edges in front of one origin
        // agree, so a player moved between them asks for the same numbers); after that the
        // edge's numbers only ever continue.
        if first_load && !resumed && self.next_seq == 0 {
            if let Some(s) = p.segments.get(take_from) {
                self.next_seq = s.seq;
            }
        }
        for s in &p.segments[take_from..] {
            if self.last_origin_seq.is_some_and(|l| s.seq <= l) {
                continue;
            }
            if self
                .last_origin_seq
                .is_some_and(|l| s.seq > l.saturating_add(1))
            {
                gap = true;
            }
            let Some(target) = self.origin().resolve(&dir, &s.uri) else {
                continue;
            };
            let target = if s.uri.contains('?') {
                target
            } else {
                target.with_query(self.query.as_deref())
            };
            let seq = self.next_seq;
            self.next_seq = self.next_seq.saturating_add(1);
            let discontinuity = s.discontinuity || std::mem::take(&mut gap);
            self.segs.push_back(Seg {
                seq,
                duration_ms: s.duration_ms,
                discontinuity,
                target: target.clone(),
                state: SegState::Idle,
                retries: 0,
            });
            self.last_origin_seq = Some(s.seq);
            changed = true;
            if self.cfg.prefetch || (self.feeding && !first_load) {
                self.fetch(seq, fx);
            }
        }
        // A feed without prefetch starts with the newest segment of a first load.
        if self.feeding && first_load && !self.cfg.prefetch {
            self.fetch_newest_if_idle(fx);
        }
        if first_load && newest.is_some() && self.last_origin_seq.is_none() {
            self.last_origin_seq = newest;
        }
        self.ended = p.ended;
        self.trim(p.segments.len(), fx);
        self.publish(fx);
        self.reload_at = if p.ended {
            // Ended: looked at now and then, in case the origin starts it again.
            Some(now_ms.saturating_add(5 * self.target_duration_s * 1000))
        } else if self.blocking {
            Some(now_ms)
        } else {
            // Measured from when the request began (RFC 8216 6.3.4), not from its answer;
            // no longer than `reload_ms`.
            let rfc = if changed { 1000 } else { 500 } * self.target_duration_s;
            let wait = match self.cfg.reload_ms {
                0 => rfc,
                ms => rfc.min(ms),
            };
            Some(self.load_started.saturating_add(wait).max(now_ms))
        };
    }

    fn playlist_failed(&mut self, e: FetchError, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        self.failures += 1;
        if self.published.is_none() {
            fx.push(HlsPullEffect::Unavailable {
                status: e.status(),
                reason: format!("{}: {e}", self.origin()),
            });
        }
        if self.failures >= 2 && self.origins.len() > 1 {
            let from = self.origin().to_string();
            self.active = (self.active + 1) % self.origins.len();
            self.failures = 0;
            self.last_origin_seq = None;
            fx.push(HlsPullEffect::Failover {
                from,
                to: self.origin().to_string(),
            });
            self.load(false, now_ms, fx);
            return;
        }
        let backoff = 250u64 << self.failures.min(4);
        self.reload_at = Some(now_ms.saturating_add(backoff.min(self.target_duration_s * 1000)));
    }

    fn fetch(&mut self, seq: u64, fx: &mut Vec<HlsPullEffect>) {
        if let Some(s) = self.segs.iter_mut().find(|s| s.seq == seq) {
            s.state = SegState::Fetching { started: false };
            fx.push(HlsPullEffect::FetchSegment {
                seq,
                target: s.target.clone(),
            });
        }
    }

    /// Drops segments beyond the window and the kept extras (and beyond what the origin
    /// still lists).
    fn trim(&mut self, origin_len: usize, fx: &mut Vec<HlsPullEffect>) {
        let keep = self.cfg.window.max(origin_len) + self.cfg.keep_extra;
        while self.segs.len() > keep {
            let Some(s) = self.segs.pop_front() else {
                break;
            };
            if s.discontinuity {
                self.released_discontinuities += 1;
            }
            fx.push(HlsPullEffect::Release(s.seq));
        }
    }

    /// The first bytes of segment `seq` arrived.
    pub fn handle_segment_started(&mut self, seq: u64, fx: &mut Vec<HlsPullEffect>) {
        if let Some(s) = self.segs.iter_mut().find(|s| s.seq == seq) {
            if let SegState::Fetching { started } = &mut s.state {
                *started = true;
            }
        }
        self.publish(fx);
    }

    /// Segment `seq` is complete, or failed.
    pub fn handle_segment_done(
        &mut self,
        seq: u64,
        result: Result<(), FetchError>,
        now_ms: u64,
        fx: &mut Vec<HlsPullEffect>,
    ) {
        let Some(s) = self.segs.iter_mut().find(|s| s.seq == seq) else {
            return;
        };
        s.state = match result {
            Ok(()) => SegState::Done,
            Err(e) => {
                fx.push(HlsPullEffect::MissFailed {
                    seq,
                    status: e.status(),
                });
                SegState::Failed {
                    status: e.status(),
                    until: now_ms.saturating_add(self.cfg.negative_ms),
                }
            }
        };
        self.publish(fx);
    }

    /// A request for segment `seq`, which is not here (and not arriving) on its shard.
    pub fn handle_miss(&mut self, seq: u64, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        let Some(s) = self.segs.iter().find(|s| s.seq == seq) else {
            fx.push(HlsPullEffect::MissFailed { seq, status: 404 });
            return;
        };
        match s.state {
            SegState::Idle => self.fetch(seq, fx),
            // Its bytes are on the way (or in the snapshot the shard will have).
            SegState::Fetching { .. } | SegState::Done => {}
            SegState::Failed { status, until, .. } if now_ms < until => {
                fx.push(HlsPullEffect::MissFailed { seq, status });
            }
            SegState::Failed { .. } => self.refetch(seq, fx),
        }
    }

    fn refetch(&mut self, seq: u64, fx: &mut Vec<HlsPullEffect>) {
        if let Some(s) = self.segs.iter_mut().find(|s| s.seq == seq) {
            s.retries = s.retries.saturating_add(1);
        }
        self.fetch(seq, fx);
    }

    /// When [`HlsPull::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let idle = (!self.feeding).then(|| self.last_demand.saturating_add(self.cfg.idle_ms));
        let reload = if self.loading { None } else { self.reload_at };
        let retry = self
            .segs
            .iter()
            .filter_map(|s| match s.state {
                SegState::Failed { until, .. }
                    if self.cfg.prefetch && s.retries < SEGMENT_RETRIES =>
                {
                    Some(until)
                }
                _ => None,
            })
            .min();
        [idle, reload, retry].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64, fx: &mut Vec<HlsPullEffect>) {
        if !self.feeding && now_ms >= self.last_demand.saturating_add(self.cfg.idle_ms) {
            fx.push(HlsPullEffect::Idle);
            return;
        }
        if !self.loading && self.reload_at.is_some_and(|t| now_ms >= t) {
            self.load(self.blocking, now_ms, fx);
        }
        if self.cfg.prefetch {
            let due: Vec<u64> = self
                .segs
                .iter()
                .filter(|s| {
                    matches!(s.state, SegState::Failed { until, .. }
                        if now_ms >= until && s.retries < SEGMENT_RETRIES)
                })
                .map(|s| s.seq)
                .collect();
            for seq in due {
                self.refetch(seq, fx);
            }
        }
    }

    /// Renders the edge's playlist; publishes it when it changed.
    fn publish(&mut self, fx: &mut Vec<HlsPullEffect>) {
        if self.multivariant.is_some() {
            return;
        }
        let from = self.list_from.unwrap_or(0);
        let candidates = self.segs.iter().filter(|s| s.seq >= from);
        // A contiguous run, in order: from the first segment fetched up to the first whose
        // bytes are not arriving yet.
        let run: Vec<&Seg> = if self.cfg.prefetch {
            candidates
                .skip_while(|s| s.state == SegState::Idle && self.list_from.is_none())
                .take_while(|s| s.present())
                .collect()
        } else {
            candidates.collect()
        };
        let listed: Vec<&Seg> = run[run.len().saturating_sub(self.cfg.window)..].to_vec();
        let Some(first) = listed.first() else {
            return;
        };
        let first_seq = first.seq;
        if self.list_from.is_none() {
            self.list_from = Some(first_seq);
        }
        let discontinuity_seq = self.released_discontinuities
            + self
                .segs
                .iter()
                .take_while(|s| s.seq < first_seq)
                .filter(|s| s.discontinuity)
                .count() as u64;
        let (text, uri_ends) = render_media_playlist(
            &PlaylistHeader {
                stream_name: &self.name,
                target_duration_s: self.target_duration_s,
                first_seq,
                discontinuity_seq,
                ended: self.ended
                    && listed.last().map(|s| s.seq) == self.segs.back().map(|s| s.seq),
            },
            listed
                .iter()
                .map(|s| (s.seq, s.duration_ms, s.discontinuity)),
        );
        let playlist = PulledPlaylist {
            text,
            uri_ends,
            target_duration_s: self.target_duration_s,
            ended: self.ended,
            listed: listed.iter().map(|s| s.seq).collect(),
        };
        if self.published.as_ref() != Some(&playlist) {
            self.published = Some(playlist.clone());
            fx.push(HlsPullEffect::Publish(playlist));
        }
    }

    /// Segment `seq`'s duration and whether a discontinuity precedes it, while the pull
    /// keeps it.
    pub fn segment_info(&self, seq: u64) -> Option<(u64, bool)> {
        self.segs
            .iter()
            .find(|s| s.seq == seq)
            .map(|s| (s.duration_ms, s.discontinuity))
    }
}

fn text_of(result: Result<&str, FetchError>) -> &str {
    result.unwrap_or("")
}

#[cfg(test)]
mod tests;
