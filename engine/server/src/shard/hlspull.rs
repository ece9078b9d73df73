//! The HLS pulls of the streams a shard owns (`--origin http(s)://…`): edge-core's
//! [`HlsPull`] for each, its completed segments, and the requests to the origin (playlist and
//! segment downloads, each a task of its own with deadlines, their bytes going into this
//! shard's arena as they arrive and reported to the dispatcher as [`PullEvent`]s).
//!
//! Once per machine: only the owner shard of a stream talks to its origin. A stream whose
//! owner is fed from HLS (RTMP and FLV viewers of an HLS-only origin) keeps its pull running
//! while the feed lasts.
//!
//! Must not: decide when to reload, what to list, or where to fail over (the pull does),
//! announce anything to other shards (the dispatcher does, from the events), block the shard,
//! or copy segment bytes per viewer (the pieces are shared).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_core::hls::pull::{
    FetchError, FetchTarget, HlsPull, HlsPullConfig, HlsPullEffect, PulledPlaylist,
};
use edge_core::hls::{HlsConfig, HlsSnapshot, Segment};
use edge_core::owner::Source;
use edge_core::stream::MasterPhase;
use edge_core::{ShardId, StreamKey};

use super::hls::NEGATIVE_MS;
use crate::config::Config;
use crate::machine::stats::{Counter, ShardStats, Stats, StreamView};
use crate::net::arena::{Arena, ArenaAppender};
use crate::net::contain;
use crate::upstream::http::{Deadlines, Delivery, OriginPool, OriginRoute};

/// The largest playlist accepted from an origin.
const MAX_PLAYLIST_BYTES: usize = 1 << 20;
/// The largest segment accepted from an origin.
const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Segments prefetched at a pull's first load.
const START_SEGMENTS: usize = 3;
/// How often an origin's playlist that cannot block is reloaded at most: a new segment is
/// listed here within this long of the origin's listing it (docs/guide/hls-origin-edge.md).
const RELOAD_MS: u64 = 250;

/// One pulled stream.
struct PullRun {
    pull: HlsPull,
    /// Completed segments, by the edge's number.
    done: BTreeMap<u64, Segment>,
    /// Shared with the stream's owner while it has one.
    view: Arc<StreamView>,
    /// The stream's owner is fed from this pull's segments.
    feeding: bool,
}

/// What a download reports to the dispatcher.
pub(crate) enum PullEvent {
    /// A playlist arrived (its text), or did not; `bytes` came from the origin either way.
    Playlist {
        bytes: usize,
        result: Result<String, FetchError>,
    },
    /// Segment `seq`'s response began.
    SegmentStarted {
        seq: u64,
        content_length: Option<u64>,
    },
    /// More of segment `seq`, in this shard's arena.
    SegmentPiece { seq: u64, piece: Bytes },
    /// Segment `seq` is complete (its pieces), or failed; `len` bytes came either way.
    SegmentDone {
        seq: u64,
        len: usize,
        result: Result<Vec<Bytes>, FetchError>,
    },
}

/// A playlist from an origin (a 200 with at most [`MAX_PLAYLIST_BYTES`] of UTF-8): the bytes
/// that came, and the text or why not.
pub(crate) async fn fetch_text(
    pool: &OriginPool,
    target: &FetchTarget,
    deadlines: Deadlines,
) -> (usize, Result<String, FetchError>) {
    let mut body = Vec::new();
    let result = pool
        .get(target, deadlines, |d| match d {
            Delivery::Head(h) if h.status != 200 => Err(FetchError::Status(h.status)),
            Delivery::Head(_) => Ok(()),
            Delivery::Body(b) if body.len() + b.len() > MAX_PLAYLIST_BYTES => {
                Err(FetchError::Failed)
            }
            Delivery::Body(b) => {
                body.extend_from_slice(b);
                Ok(())
            }
        })
        .await;
    let bytes = body.len();
    let text = result.and_then(|()| String::from_utf8(body).map_err(|_| FetchError::Failed));
    (bytes, text)
}

/// Who hears a download's events: the shard's dispatcher.
pub(crate) trait PullSink {
    fn pull_event(self: Rc<Self>, key: &StreamKey, target: &FetchTarget, event: PullEvent);
}

pub(crate) struct HlsPulls {
    runs: RefCell<HashMap<StreamKey, PullRun>>,
    pool: Rc<OriginPool>,
    config: Arc<Config>,
    /// Where segments are downloaded to (the owner shard's arena).
    arena: Arc<Arena>,
    /// This shard's counters.
    stats: Arc<Stats>,
    shard: ShardId,
}

impl HlsPulls {
    pub(crate) fn new(
        config: &Arc<Config>,
        arena: &Arc<Arena>,
        stats: &Arc<Stats>,
        shard: ShardId,
    ) -> Self {
        let routes = config
            .origin_paths
            .iter()
            .filter_map(|p| match &p.origin {
                crate::config::tables::OriginRef::Http(o) => Some((
                    (o.host.clone(), o.port, o.tls),
                    OriginRoute {
                        egress: p.egress.clone(),
                        connect_timeout: p.connect_timeout_ms.map(Duration::from_millis),
                    },
                )),
                crate::config::tables::OriginRef::Rtmp(_) => None,
            })
            .collect();
        HlsPulls {
            runs: RefCell::new(HashMap::new()),
            pool: Rc::new(OriginPool::new(config.upstream_tls.clone(), routes)),
            config: Arc::clone(config),
            arena: Arc::clone(arena),
            stats: Arc::clone(stats),
            shard,
        }
    }

    /// HLS viewers are served from HTTP origins.
    pub(crate) fn enabled(&self) -> bool {
        !self.config.hls_origins.is_empty()
    }

    pub(crate) fn contains(&self, key: &StreamKey) -> bool {
        self.runs.borrow().contains_key(key)
    }

    /// The view of `key`'s pull, shared with its owner.
    pub(crate) fn view(&self, key: &StreamKey) -> Option<Arc<StreamView>> {
        self.runs.borrow().get(key).map(|r| Arc::clone(&r.view))
    }

    /// Starts `key`'s pull with `hls` (its app's policy); returns the origin it starts at.
    pub(crate) fn start(
        &self,
        key: &StreamKey,
        hls: HlsConfig,
        view: Arc<StreamView>,
        now_ms: u64,
    ) -> String {
        let cfg = HlsPullConfig {
            prefetch: self.config.hls_prefetch,
            idle_ms: self.config.upstream_idle_ms,
            negative_ms: NEGATIVE_MS,
            window: hls.window,
            keep_extra: hls.keep_extra,
            start_segments: START_SEGMENTS,
            reload_ms: RELOAD_MS,
        };
        let pull = HlsPull::new(cfg, self.config.hls_origins.clone(), key.stream(), now_ms);
        let origin = pull.origin().to_string();
        *view.hls_origin.lock().unwrap_or_else(|e| e.into_inner()) = Some(origin.clone());
        let run = PullRun {
            pull,
            done: BTreeMap::new(),
            view,
            feeding: false,
        };
        self.runs.borrow_mut().insert(key.clone(), run);
        origin
    }

    /// Ends `key`'s pull; whether it fed the owner.
    pub(crate) fn remove(&self, key: &StreamKey) -> Option<bool> {
        self.runs.borrow_mut().remove(key).map(|r| r.feeding)
    }

    /// Marks whether the pull feeds the owner; returns whether it did.
    pub(crate) fn set_feeding(&self, key: &StreamKey, feeding: bool) -> bool {
        let mut runs = self.runs.borrow_mut();
        runs.get_mut(key)
            .is_some_and(|r| std::mem::replace(&mut r.feeding, feeding))
    }

    pub(crate) fn feeding(&self, key: &StreamKey) -> bool {
        self.runs.borrow().get(key).is_some_and(|r| r.feeding)
    }

    /// The newest completed segment.
    pub(crate) fn newest_done(&self, key: &StreamKey) -> Option<(u64, Segment)> {
        let runs = self.runs.borrow();
        let run = runs.get(key)?;
        run.done
            .iter()
            .next_back()
            .map(|(&seq, s)| (seq, s.clone()))
    }

    /// The origin's newest segment number while the pull feeds the owner.
    pub(crate) fn feed_newest(&self, key: &StreamKey, seq: u64) -> Option<u64> {
        let runs = self.runs.borrow();
        let run = runs.get(key).filter(|r| r.feeding)?;
        Some(run.pull.newest_seq().unwrap_or(seq))
    }

    /// Calls `f` on `key`'s pull: its effects, or the panic that ended it (parsing the
    /// origin's playlist). `None` when there is no pull.
    pub(crate) fn call(
        &self,
        key: &StreamKey,
        f: impl FnOnce(&mut HlsPull, &mut Vec<HlsPullEffect>),
    ) -> Option<Result<Vec<HlsPullEffect>, String>> {
        let mut fx = Vec::new();
        let mut runs = self.runs.borrow_mut();
        let run = runs.get_mut(key)?;
        Some(contain::peer_input(|| f(&mut run.pull, &mut fx)).map(|()| fx))
    }

    pub(crate) fn poll_timeout(&self, key: &StreamKey) -> Option<u64> {
        self.runs
            .borrow()
            .get(key)
            .and_then(|r| r.pull.poll_timeout())
    }

    /// The target duration a blocking reload is held for (the playlist's, else 2 s).
    pub(crate) fn blocking_s(&self, key: &StreamKey) -> u64 {
        let runs = self.runs.borrow();
        runs.get(key)
            .and_then(|r| r.pull.playlist().map(|p| p.target_duration_s))
            .unwrap_or(2)
    }

    /// A segment the pull no longer lists.
    pub(crate) fn release(&self, key: &StreamKey, seq: u64) {
        if let Some(run) = self.runs.borrow_mut().get_mut(key) {
            run.done.remove(&seq);
        }
    }

    /// The pull moved to origin `to`.
    pub(crate) fn failed_over(&self, key: &StreamKey, to: String) {
        if let Some(run) = self.runs.borrow().get(key) {
            *run.view
                .hls_origin
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(to);
        }
    }

    /// The snapshot of the pull's playlist with every completed segment; marks the stream
    /// live at `unix_ms`.
    pub(crate) fn snapshot(
        &self,
        key: &StreamKey,
        playlist: PulledPlaylist,
        unix_ms: u64,
    ) -> Option<HlsSnapshot> {
        let runs = self.runs.borrow();
        let run = runs.get(key)?;
        {
            let mut st = run.view.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.view.phase != MasterPhase::Live {
                st.view.phase = MasterPhase::Live;
                st.view.source = Source::Upstream;
                st.live_since_unix_ms = unix_ms;
            }
        }
        Some(HlsSnapshot {
            playlist: playlist.text,
            uri_ends: playlist.uri_ends,
            segments: run.done.values().cloned().collect(),
            target_duration_s: playlist.target_duration_s,
            ended: playlist.ended,
            ll: None,
            ts_carries: true,
        })
    }

    /// The pull's current playlist.
    pub(crate) fn playlist(&self, key: &StreamKey) -> Option<PulledPlaylist> {
        self.runs
            .borrow()
            .get(key)
            .and_then(|r| r.pull.playlist().cloned())
    }

    /// Segment `seq`'s duration and discontinuity flag, while the pull lists it.
    pub(crate) fn segment_info(&self, key: &StreamKey, seq: u64) -> Option<(u64, bool)> {
        self.runs
            .borrow()
            .get(key)
            .and_then(|r| r.pull.segment_info(seq))
    }

    pub(crate) fn insert_done(&self, key: &StreamKey, seq: u64, segment: Segment) {
        if let Some(run) = self.runs.borrow_mut().get_mut(key) {
            run.done.insert(seq, segment);
        }
    }

    /// For another shard's miss: `None` when there is no pull; `Some(None)` while `seq` is
    /// not complete; `Some(Some(segment))` when it is.
    pub(crate) fn done_segment(&self, key: &StreamKey, seq: u64) -> Option<Option<Segment>> {
        self.runs
            .borrow()
            .get(key)
            .map(|r| r.done.get(&seq).cloned())
    }

    /// Counts a request to the origin for `key`; `prefetch` for a segment fetched as soon
    /// as listed.
    pub(crate) fn count_request(&self, key: &StreamKey, stats: &ShardStats, prefetch: bool) {
        stats.hls_origin_requests.inc();
        if prefetch {
            stats.hls_prefetches.inc();
        }
        if let Some(run) = self.runs.borrow().get(key) {
            run.view.hls_origin_requests.fetch_add(1, Ordering::Relaxed);
            if prefetch {
                run.view.hls_prefetches.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts bytes from the origin, and an error when the request failed.
    pub(crate) fn count_response(
        &self,
        key: &StreamKey,
        stats: &ShardStats,
        bytes: usize,
        failed: bool,
    ) {
        let n = bytes as u64;
        stats.hls_origin_bytes.fetch_add(n, Ordering::Relaxed);
        stats.bytes_in.fetch_add(n, Ordering::Relaxed);
        if failed {
            stats.hls_origin_errors.inc();
        }
        if let Some(run) = self.runs.borrow().get(key) {
            run.view.upstream_bytes.fetch_add(n, Ordering::Relaxed);
            if failed {
                run.view.hls_origin_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The connections to HTTP origins (the LL-HLS relays use them too).
    pub(crate) fn origin_pool(&self) -> Rc<OriginPool> {
        Rc::clone(&self.pool)
    }

    /// A request's deadlines; a blocking reload is held up to three of `blocking_s`.
    pub(crate) fn deadlines(&self, blocking_s: Option<u64>) -> Deadlines {
        let t = Duration::from_millis(self.config.upstream_timeout_ms);
        Deadlines {
            connect: t,
            // A blocking reload is held by the origin up to three target durations.
            first_byte: t + blocking_s.map_or(Duration::ZERO, |s| Duration::from_secs(3 * s)),
            idle: t,
        }
    }

    /// Starts a playlist download (held up to three target durations when `blocking_s`).
    pub(crate) fn fetch_playlist(
        &self,
        sink: Rc<dyn PullSink>,
        key: StreamKey,
        target: FetchTarget,
        blocking_s: Option<u64>,
    ) {
        let pool = Rc::clone(&self.pool);
        let deadlines = self.deadlines(blocking_s);
        monoio::spawn(async move {
            let (bytes, result) = fetch_text(&pool, &target, deadlines).await;
            sink.pull_event(&key, &target, PullEvent::Playlist { bytes, result });
        });
    }

    /// Starts a segment download into the shard's arena (a segment it has no room for is
    /// counted as refused).
    pub(crate) fn fetch_segment(
        &self,
        sink: Rc<dyn PullSink>,
        key: StreamKey,
        seq: u64,
        target: FetchTarget,
    ) {
        let pool = Rc::clone(&self.pool);
        let (arena, stats, shard) = (
            Arc::clone(&self.arena),
            Arc::clone(&self.stats),
            self.shard.0,
        );
        let deadlines = self.deadlines(None);
        monoio::spawn(async move {
            let mut appender = ArenaAppender::new(arena);
            let store = |b: &[u8], out: &mut Vec<Bytes>| {
                appender.append(b, out).map_err(|_| {
                    stats.shards[shard].hls_segments_refused.inc();
                    FetchError::Failed
                })
            };
            let step = |s: BodyStep| {
                let ev = match s {
                    BodyStep::Start(content_length) => PullEvent::SegmentStarted {
                        seq,
                        content_length,
                    },
                    BodyStep::Piece(piece) => PullEvent::SegmentPiece { seq, piece },
                };
                Rc::clone(&sink).pull_event(&key, &target, ev);
            };
            let result =
                stream_body(&pool, &target, deadlines, MAX_SEGMENT_BYTES, store, step).await;
            let len = appender.len();
            let result = result.map(|_| appender.finish());
            sink.pull_event(&key, &target, PullEvent::SegmentDone { seq, len, result });
        });
    }
}

/// A step of a download, as [`stream_body`] reports it.
pub(crate) enum BodyStep {
    /// The response began (the origin's `Content-Length`).
    Start(Option<u64>),
    /// The next bytes, as `store` kept them.
    Piece(Bytes),
}

/// Downloads `target` (a 200 of at most `max` bytes): each body read is kept by `store`
/// (which hands out the pieces it made of it), and reported to `step` as it comes, after the
/// start (reported once, for an empty body too). The length, or why it failed.
pub(crate) async fn stream_body(
    pool: &OriginPool,
    target: &FetchTarget,
    deadlines: Deadlines,
    max: usize,
    mut store: impl FnMut(&[u8], &mut Vec<Bytes>) -> Result<(), FetchError>,
    mut step: impl FnMut(BodyStep),
) -> Result<usize, FetchError> {
    let (mut len, mut started, mut content_length) = (0, false, None);
    let mut pieces = Vec::new();
    let result = pool
        .get(target, deadlines, |d| {
            match d {
                Delivery::Head(h) if h.status != 200 => return Err(FetchError::Status(h.status)),
                Delivery::Head(h) => {
                    content_length = h.content_length.map(|n| n as u64);
                    return Ok(());
                }
                Delivery::Body(b) => {
                    len += b.len();
                    if len > max {
                        return Err(FetchError::Failed);
                    }
                    store(b, &mut pieces)?;
                }
            }
            if !started {
                started = true;
                step(BodyStep::Start(content_length));
            }
            for piece in pieces.drain(..) {
                step(BodyStep::Piece(piece));
            }
            Ok(())
        })
        .await;
    if result.is_ok() && !started {
        step(BodyStep::Start(content_length));
    }
    result.map(|()| len)
}
