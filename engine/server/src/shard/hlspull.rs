//! The HLS pull on a shard: running edge-core's [`HlsPull`] for the streams this shard owns
//! (their playlist and segment requests to the origin, the segments' bytes into this shard's
//! arena and out to every shard as they arrive), and, on every shard, the segments still on
//! their way ([`crate::pulled`]) and the streams whose origin is failing.
//!
//! Once per machine: only the owner shard of a stream talks to its origin. A request on any
//! shard for a segment that is neither here nor on its way asks the owner (`HlsMiss`); the
//! owner's pull fetches it at most once, and every shard hears the same download.
//!
//! A stream whose owner is fed from HLS ([`OwnerEffect::StartHlsFeed`], RTMP and FLV viewers
//! of an HLS-only origin) keeps its pull running while the feed lasts, and gets each
//! completed segment (its shared pieces, not a copy) handed to the owner here.
//!
//! Must not: decide when to reload, what to list, or where to fail over (the pull does),
//! block the shard (every origin request is a task with deadlines), or copy segment bytes
//! per viewer (the pieces are shared).
//!
//! [`OwnerEffect::StartHlsFeed`]: edge_core::owner::OwnerEffect::StartHlsFeed

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use edge_core::hls::pull::{
    FetchError, FetchTarget, HlsPull, HlsPullConfig, HlsPullEffect, PulledPlaylist,
};
use edge_core::hls::{HlsSnapshot, Segment, SegmentData};
use edge_core::ids::SegmentSeq;
use edge_core::owner::Source;
use edge_core::stream::MasterPhase;
use edge_core::{ShardId, StreamKey};
use tracing::{debug, info, warn};

use super::{Shard, TimerKey};
use crate::arena::ArenaAppender;
use crate::contain;
use crate::mesh::{MeshMsg, SegmentEvent};
use crate::origin::{Deadlines, Delivery};
use crate::pulled::{Inflight, Progress};
use crate::stats::{Counter, StreamView};

/// How long an origin error is remembered (a segment's, or a playlist that never loaded).
pub(crate) const HLS_NEGATIVE_MS: u64 = 1_000;
/// The largest playlist accepted from an origin.
const MAX_PLAYLIST_BYTES: usize = 1 << 20;
/// The largest segment accepted from an origin.
const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Segments prefetched at a pull's first load.
const START_SEGMENTS: usize = 3;
/// Segments in flight (or remembered as failed) a shard keeps at most: past it, expired
/// failures are dropped, and a new miss is refused while none has expired. Requests for
/// made-up segment numbers cannot grow the map without bound.
const MAX_INFLIGHT: usize = 16_384;
/// Streams a shard remembers as unavailable at most (likewise).
const MAX_UNAVAILABLE: usize = 16_384;

/// One pulled stream on its owner shard.
pub(super) struct PullRun {
    pull: HlsPull,
    /// Completed segments, by the edge's number.
    done: BTreeMap<u64, Segment>,
    /// Shared with the stream's owner while it has one.
    pub(super) view: Arc<StreamView>,
    /// The stream's owner is fed from this pull's segments.
    feeding: bool,
}

impl Shard {
    /// HLS viewers are served from HTTP origins (`--origin http(s)://…`).
    pub fn pulls_hls(&self) -> bool {
        !self.config.hls_origins.is_empty()
    }

    fn hls_pull_config(&self, key: &StreamKey) -> HlsPullConfig {
        let hls = self.config.apps.get(key.app()).hls;
        HlsPullConfig {
            prefetch: self.config.hls_prefetch,
            idle_ms: self.config.upstream_idle_ms,
            negative_ms: HLS_NEGATIVE_MS,
            window: hls.window,
            keep_extra: hls.keep_extra,
            start_segments: START_SEGMENTS,
        }
    }

    fn deadlines(&self, blocking_reload_s: Option<u64>) -> Deadlines {
        let t = Duration::from_millis(self.config.upstream_timeout_ms);
        Deadlines {
            connect: t,
            // A blocking reload is held by the origin up to three target durations.
            first_byte: t + blocking_reload_s
                .map_or(Duration::ZERO, |s| Duration::from_secs(3 * s)),
            idle: t,
        }
    }

    /// On the owner shard: a playlist request for `key` (from any shard) starts or keeps its
    /// pull. A stream published (or pulled over RTMP) here is not pulled over HLS; one fed
    /// from HLS is.
    pub(super) fn hls_pull_demand(self: &Rc<Self>, key: &StreamKey, query: Option<&str>) {
        if self
            .owners
            .borrow()
            .get(key)
            .is_some_and(|o| !o.owner.fed_by_hls())
        {
            return;
        }
        self.ensure_hls_pull(key);
        let now = self.now_ms();
        self.with_hls_pull(key, |p, fx| p.handle_demand(query, now, fx));
    }

    /// Creates `key`'s pull if it is not running (its stream view shared with the owner's,
    /// if there is one).
    fn ensure_hls_pull(&self, key: &StreamKey) {
        if self.hls_pulls.borrow().contains_key(key) {
            return;
        }
        let now = self.now_ms();
        let pull = HlsPull::new(
            self.hls_pull_config(key),
            self.config.hls_origins.clone(),
            key.stream(),
            now,
        );
        let owned_view = self.owners.borrow().get(key).map(|o| Arc::clone(&o.view));
        let view = owned_view.unwrap_or_else(|| {
            let view = Arc::new(StreamView::new(key.clone(), self.id));
            self.stats.add_stream(Arc::clone(&view));
            view
        });
        *view.hls_origin.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(pull.origin().to_string());
        self.stats().hls_pulls_started.inc();
        self.stats().hls_pulls_active.inc();
        info!(shard = %self.id, %key, origin = %pull.origin(), "HLS pull started");
        self.hls_pulls.borrow_mut().insert(
            key.clone(),
            PullRun {
                pull,
                done: BTreeMap::new(),
                view,
                feeding: false,
            },
        );
    }

    /// The owner of `key` is fed from HLS: the pull runs (started with `query` if it was
    /// not) for as long as the feed lasts, and the newest segment here starts the feed.
    pub(super) fn start_hls_feed(self: &Rc<Self>, key: &StreamKey, query: Option<&str>) {
        self.stats().hls_feeds_started.inc();
        self.stats().hls_feeds_active.inc();
        info!(shard = %self.id, %key, "feeding RTMP and FLV viewers from the HLS pull");
        self.ensure_hls_pull(key);
        if let Some(run) = self.hls_pulls.borrow_mut().get_mut(key) {
            run.feeding = true;
        }
        let now = self.now_ms();
        self.with_hls_pull(key, |p, fx| {
            p.handle_demand(query, now, fx);
            p.set_feeding(true, now, fx);
        });
        let newest = self
            .hls_pulls
            .borrow()
            .get(key)
            .and_then(|r| r.done.iter().next_back().map(|(&seq, s)| (seq, s.clone())));
        if let Some((seq, segment)) = newest {
            self.feed_segment(key, seq, &segment);
        }
    }

    /// The feed of `key` ended: the pull goes on for its HLS viewers (and idles without).
    pub(super) fn stop_hls_feed(self: &Rc<Self>, key: &StreamKey) {
        self.stats().hls_feeds_active.dec();
        let was_feeding = self
            .hls_pulls
            .borrow_mut()
            .get_mut(key)
            .is_some_and(|r| std::mem::take(&mut r.feeding));
        if was_feeding {
            let now = self.now_ms();
            self.with_hls_pull(key, |p, fx| p.set_feeding(false, now, fx));
        }
    }

    /// Hands a completed segment to `key`'s owner, if its pull feeds it. Demuxing reads the
    /// origin's bytes: a panic in it abandons the stream, not the shard.
    fn feed_segment(self: &Rc<Self>, key: &StreamKey, seq: u64, segment: &Segment) {
        let fed = {
            let pulls = self.hls_pulls.borrow();
            pulls
                .get(key)
                .filter(|r| r.feeding)
                .map(|r| r.pull.newest_seq().unwrap_or(seq))
        };
        let Some(newest) = fed else {
            return;
        };
        let now = self.now_ms();
        let pieces = segment.pieces.to_vec();
        let discontinuity = segment.discontinuity;
        self.owner_media(key, 0, |o, fx| {
            o.handle_hls_segment(seq, newest, discontinuity, pieces, now, fx)
        });
    }

    fn feed_segment_failed(self: &Rc<Self>, key: &StreamKey, seq: u64) {
        let feeding = self.hls_pulls.borrow().get(key).is_some_and(|r| r.feeding);
        if feeding {
            let now = self.now_ms();
            self.with_owner(key, false, |o, fx| {
                o.handle_hls_segment_failed(seq, now, fx)
            });
        }
    }

    /// Calls `f` on `key`'s pull, runs its effects and re-arms its timer. A panic inside
    /// (parsing the origin's playlist) ends the pull.
    pub(super) fn with_hls_pull(
        self: &Rc<Self>,
        key: &StreamKey,
        f: impl FnOnce(&mut HlsPull, &mut Vec<HlsPullEffect>),
    ) {
        let mut fx = Vec::new();
        let result = {
            let mut pulls = self.hls_pulls.borrow_mut();
            let Some(run) = pulls.get_mut(key) else {
                return;
            };
            contain::peer_input(|| f(&mut run.pull, &mut fx))
        };
        if let Err(panic) = result {
            self.stats().peer_panics.inc();
            warn!(shard = %self.id, %key, "HLS pull abandoned after {panic}");
            self.end_hls_pull(key);
            return;
        }
        self.run_hls_pull_effects(key, fx);
        let at = self
            .hls_pulls
            .borrow()
            .get(key)
            .and_then(|r| r.pull.poll_timeout());
        self.timers.arm(TimerKey::HlsPull(key.clone()), at);
    }

    fn run_hls_pull_effects(self: &Rc<Self>, key: &StreamKey, fx: Vec<HlsPullEffect>) {
        for e in fx {
            match e {
                HlsPullEffect::FetchPlaylist { target, blocking } => {
                    let blocking_s = blocking.then(|| {
                        self.hls_pulls
                            .borrow()
                            .get(key)
                            .and_then(|r| r.pull.playlist().map(|p| p.target_duration_s))
                            .unwrap_or(2)
                    });
                    monoio::spawn(Rc::clone(self).fetch_playlist(key.clone(), target, blocking_s));
                }
                HlsPullEffect::FetchSegment { seq, target } => {
                    monoio::spawn(Rc::clone(self).fetch_segment(key.clone(), seq, target));
                }
                HlsPullEffect::Publish(playlist) => self.publish_pulled(key, playlist),
                HlsPullEffect::Release(seq) => {
                    if let Some(run) = self.hls_pulls.borrow_mut().get_mut(key) {
                        run.done.remove(&seq);
                    }
                }
                HlsPullEffect::MissFailed { seq, status } => {
                    self.broadcast_segment(key, seq, SegmentEvent::Failed { status });
                }
                HlsPullEffect::Unavailable { status, reason } => {
                    warn!(shard = %self.id, %key, status, "HLS origin unavailable: {reason}");
                    self.broadcast_unavailable(key, status);
                }
                HlsPullEffect::Failover { from, to } => {
                    warn!(shard = %self.id, %key, %from, %to, "HLS pull failing over");
                    self.stats().hls_origin_failovers.inc();
                    if let Some(run) = self.hls_pulls.borrow().get(key) {
                        *run.view
                            .hls_origin
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(to);
                    }
                }
                HlsPullEffect::Idle => {
                    info!(shard = %self.id, %key, "HLS pull idle; stopping");
                    self.end_hls_pull(key);
                }
            }
        }
    }

    /// Ends `key`'s pull and forgets its HLS state on every shard. A feed that lived on it
    /// ends too (its viewers see the stream end, and a new play starts afresh).
    fn end_hls_pull(self: &Rc<Self>, key: &StreamKey) {
        let Some(run) = self.hls_pulls.borrow_mut().remove(key) else {
            return;
        };
        if run.feeding {
            self.with_owner(key, false, |o, fx| o.handle_hls_pull_ended(fx));
        }
        self.stats().hls_pulls_active.dec();
        if !self.owners.borrow().contains_key(key) {
            self.stats.remove_stream(self.id, key);
        }
        self.timers.arm(TimerKey::HlsPull(key.clone()), None);
        self.forget_hls(key);
        self.inflight.borrow_mut().retain(|(k, _), _| k != key);
    }

    /// Installs the pull's playlist, with every completed segment, on every shard.
    fn publish_pulled(self: &Rc<Self>, key: &StreamKey, playlist: PulledPlaylist) {
        let snapshot = {
            let pulls = self.hls_pulls.borrow();
            let Some(run) = pulls.get(key) else {
                return;
            };
            let mut st = run.view.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.view.phase != MasterPhase::Live {
                st.view.phase = MasterPhase::Live;
                st.view.source = Source::Upstream;
                st.live_since_unix_ms = self.clock.unix_ms(self.now_ms());
            }
            drop(st);
            HlsSnapshot {
                playlist: playlist.text,
                uri_ends: playlist.uri_ends,
                segments: run.done.values().cloned().collect(),
                target_duration_s: playlist.target_duration_s,
                ended: playlist.ended,
            }
        };
        self.install_own_hls(key, snapshot);
    }

    fn republish_pulled(self: &Rc<Self>, key: &StreamKey) {
        let playlist = self
            .hls_pulls
            .borrow()
            .get(key)
            .and_then(|r| r.pull.playlist().cloned());
        if let Some(p) = playlist {
            self.publish_pulled(key, p);
        }
    }

    async fn fetch_playlist(
        self: Rc<Self>,
        key: StreamKey,
        target: FetchTarget,
        blocking_s: Option<u64>,
    ) {
        self.count_origin_request(&key);
        let mut body = Vec::new();
        let result = self
            .origin_pool
            .get(&target, self.deadlines(blocking_s), |d| match d {
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
        self.count_origin_bytes(&key, body.len());
        let text = result.and_then(|()| String::from_utf8(body).map_err(|_| FetchError::Failed));
        if let Err(e) = &text {
            self.count_origin_error(&key);
            info!(shard = %self.id, %key, %target, "origin playlist request failed: {e}");
        }
        let now = self.now_ms();
        self.with_hls_pull(&key, |p, fx| {
            p.handle_playlist(text.as_deref().map_err(|e| *e), now, fx)
        });
    }

    async fn fetch_segment(self: Rc<Self>, key: StreamKey, seq: u64, target: FetchTarget) {
        self.count_origin_request(&key);
        let prefetch = self.config.hls_prefetch;
        if let Some(run) = self.hls_pulls.borrow().get(&key) {
            if prefetch {
                run.view.hls_prefetches.fetch_add(1, Ordering::Relaxed);
            }
        }
        if prefetch {
            self.stats().hls_prefetches.inc();
        }
        let mut appender = ArenaAppender::new(Arc::clone(&self.arena));
        let mut pieces = Vec::new();
        let mut content_length = None;
        let mut started = false;
        let result = self
            .origin_pool
            .get(&target, self.deadlines(None), |d| {
                match d {
                    Delivery::Head(h) if h.status != 200 => {
                        return Err(FetchError::Status(h.status))
                    }
                    Delivery::Head(h) => {
                        content_length = h.content_length.map(|n| n as u64);
                        return Ok(());
                    }
                    Delivery::Body(b) => {
                        if appender.len() + b.len() > MAX_SEGMENT_BYTES {
                            return Err(FetchError::Failed);
                        }
                        appender.append(b, &mut pieces).map_err(|_| {
                            self.stats().hls_segments_refused.inc();
                            FetchError::Failed
                        })?;
                    }
                }
                if !started {
                    started = true;
                    self.segment_started(&key, seq, content_length);
                }
                for piece in pieces.drain(..) {
                    self.broadcast_segment(&key, seq, SegmentEvent::Data(piece));
                }
                Ok(())
            })
            .await;
        self.count_origin_bytes(&key, appender.len());
        let now = self.now_ms();
        match result {
            Ok(()) => {
                if !started {
                    self.segment_started(&key, seq, content_length);
                }
                let info = self
                    .hls_pulls
                    .borrow()
                    .get(&key)
                    .and_then(|r| r.pull.segment_info(seq));
                let Some((duration_ms, discontinuity)) = info else {
                    // Released (or the pull ended) while it downloaded.
                    self.broadcast_segment(&key, seq, SegmentEvent::Failed { status: 404 });
                    return;
                };
                let len = appender.len();
                let segment = Segment::new(SegmentData {
                    seq: SegmentSeq(seq),
                    duration_ms,
                    discontinuity,
                    pieces: appender.finish(),
                    len,
                });
                if let Some(run) = self.hls_pulls.borrow_mut().get_mut(&key) {
                    run.done.insert(seq, segment.clone());
                }
                // The snapshot holding it first, then the end of the download: a request in
                // between finds it in one or the other.
                self.with_hls_pull(&key, |p, fx| p.handle_segment_done(seq, Ok(()), now, fx));
                self.republish_pulled(&key);
                self.broadcast_segment(&key, seq, SegmentEvent::Done);
                self.feed_segment(&key, seq, &segment);
            }
            Err(e) => {
                self.count_origin_error(&key);
                warn!(shard = %self.id, %key, seq, %target, "origin segment request failed: {e}");
                self.with_hls_pull(&key, |p, fx| p.handle_segment_done(seq, Err(e), now, fx));
                self.feed_segment_failed(&key, seq);
            }
        }
    }

    fn segment_started(self: &Rc<Self>, key: &StreamKey, seq: u64, content_length: Option<u64>) {
        self.broadcast_segment(key, seq, SegmentEvent::Start { content_length });
        self.with_hls_pull(key, |p, fx| p.handle_segment_started(seq, fx));
    }

    fn count_origin_request(&self, key: &StreamKey) {
        self.stats().hls_origin_requests.inc();
        if let Some(run) = self.hls_pulls.borrow().get(key) {
            run.view.hls_origin_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_origin_bytes(&self, key: &StreamKey, n: usize) {
        self.stats()
            .hls_origin_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        self.stats().bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(run) = self.hls_pulls.borrow().get(key) {
            run.view
                .upstream_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn count_origin_error(&self, key: &StreamKey) {
        self.stats().hls_origin_errors.inc();
        if let Some(run) = self.hls_pulls.borrow().get(key) {
            run.view.hls_origin_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A step of a download, here and on every other shard.
    fn broadcast_segment(&self, key: &StreamKey, seq: u64, event: SegmentEvent) {
        for to in (0..self.shards).map(ShardId).filter(|&s| s != self.id) {
            self.send_control(
                to,
                MeshMsg::HlsSegment {
                    key: key.clone(),
                    seq,
                    event: event.clone(),
                },
            );
        }
        self.segment_event(key, seq, event);
    }

    /// Playlist requests for `key` get `status` for a while, here and on every other shard.
    pub(super) fn broadcast_unavailable(&self, key: &StreamKey, status: u16) {
        for to in (0..self.shards).map(ShardId).filter(|&s| s != self.id) {
            self.send_control(
                to,
                MeshMsg::HlsUnavailable {
                    key: key.clone(),
                    status,
                },
            );
        }
        self.mark_unavailable(key, status);
    }

    /// Any shard: a step of a download the owner makes.
    pub(super) fn segment_event(&self, key: &StreamKey, seq: u64, event: SegmentEvent) {
        let id = (key.clone(), seq);
        let mut inflight = self.inflight.borrow_mut();
        match event {
            SegmentEvent::Start { content_length } => {
                inflight
                    .entry(id)
                    .or_insert_with(|| Rc::new(Inflight::new(Progress::Requested)))
                    .start(content_length);
            }
            SegmentEvent::Data(piece) => {
                if let Some(s) = inflight.get(&id) {
                    s.push(piece);
                }
            }
            SegmentEvent::Done => {
                if let Some(s) = inflight.remove(&id) {
                    s.finish();
                }
            }
            SegmentEvent::Failed { status } => {
                let until = self.now_ms() + HLS_NEGATIVE_MS;
                inflight
                    .entry(id)
                    .or_insert_with(|| Rc::new(Inflight::new(Progress::Requested)))
                    .fail(status, until);
            }
        }
    }

    /// Any shard: `key`'s playlist cannot be loaded now.
    pub(super) fn mark_unavailable(&self, key: &StreamKey, status: u16) {
        let now = self.now_ms();
        let mut map = self.hls_unavailable.borrow_mut();
        if map.len() >= MAX_UNAVAILABLE {
            map.retain(|_, (_, until)| now < *until);
        }
        if map.len() < MAX_UNAVAILABLE {
            map.insert(key.clone(), (status, now + HLS_NEGATIVE_MS));
        }
        drop(map);
        self.wake_hls_waiters(key);
    }

    /// The status playlist requests for `key` get while its origin fails (and no playlist
    /// was ever loaded).
    pub fn hls_unavailable(&self, key: &StreamKey) -> Option<u16> {
        let now = self.now_ms();
        let mut map = self.hls_unavailable.borrow_mut();
        match map.get(key) {
            Some(&(status, until)) if now < until => Some(status),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Any shard: segment `seq` of a pulled stream, not in the snapshot: the download under
    /// way (or failed recently), or a new request to the owner. `None` when this node does
    /// not pull over HLS, or while [`MAX_INFLIGHT`] are in flight here.
    pub fn pulled_segment(self: &Rc<Self>, key: &StreamKey, seq: u64) -> Option<Rc<Inflight>> {
        if !self.pulls_hls() {
            return None;
        }
        let id = (key.clone(), seq);
        let now = self.now_ms();
        self.stats().hls_collapsed_waiters.inc();
        let existing = self.inflight.borrow().get(&id).cloned();
        match existing {
            Some(s) if !matches!(s.progress(), Progress::Failed { until_ms, .. } if now >= until_ms) =>
            {
                return Some(s);
            }
            _ => {}
        }
        {
            let mut inflight = self.inflight.borrow_mut();
            if inflight.len() >= MAX_INFLIGHT {
                inflight.retain(|_, s| {
                    !matches!(s.progress(), Progress::Failed { until_ms, .. } if now >= until_ms)
                });
                if inflight.len() >= MAX_INFLIGHT {
                    debug!(shard = %self.id, "{MAX_INFLIGHT} pulled segments in flight; refusing another");
                    return None;
                }
            }
        }
        let s = Rc::new(Inflight::new(Progress::Requested));
        self.inflight.borrow_mut().insert(id, Rc::clone(&s));
        let owner = self.owner_of(key);
        if owner == self.id {
            self.with_hls_pull(key, |p, fx| p.handle_miss(seq, now, fx));
            if !self.hls_pulls.borrow().contains_key(key) {
                self.segment_event(key, seq, SegmentEvent::Failed { status: 404 });
            }
        } else {
            self.send_control(
                owner,
                MeshMsg::HlsMiss {
                    key: key.clone(),
                    seq,
                    from: self.id,
                },
            );
        }
        Some(s)
    }

    /// On the owner: shard `from`'s miss.
    pub(super) fn hls_miss(self: &Rc<Self>, key: &StreamKey, seq: u64, from: ShardId) {
        let done = match self.hls_pulls.borrow().get(key) {
            None => Some(None),
            Some(run) => run.done.get(&seq).map(|s| Some(s.clone())),
        };
        if let Some(done) = done {
            // Gone, or complete (and the snapshot holding it on its way to `from`, which
            // asked before it arrived): `from` hears the whole download again.
            let events = match done {
                None => vec![SegmentEvent::Failed { status: 404 }],
                Some(seg) => std::iter::once(SegmentEvent::Start {
                    content_length: Some(seg.len as u64),
                })
                .chain(seg.pieces.iter().cloned().map(SegmentEvent::Data))
                .chain(std::iter::once(SegmentEvent::Done))
                .collect(),
            };
            for event in events {
                self.send_control(
                    from,
                    MeshMsg::HlsSegment {
                        key: key.clone(),
                        seq,
                        event,
                    },
                );
            }
            return;
        }
        let now = self.now_ms();
        self.with_hls_pull(key, |p, fx| p.handle_miss(seq, now, fx));
    }

    /// The pull timer of `key` fired.
    pub(super) fn hls_pull_timeout(self: &Rc<Self>, key: &StreamKey, now: u64) {
        self.with_hls_pull(key, |p, fx| p.handle_timeout(now, fx));
    }
}
