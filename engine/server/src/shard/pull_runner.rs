//! Running the HLS pulls on their owner shard: a playlist request starting or keeping a pull,
//! what the pull decides (fetches, the playlist to publish, failovers, its end), what its
//! downloads report, and an owner fed from it (RTMP and FLV viewers of an HLS-only origin).
//! What a pull needs of its shard is the [`PullHost`] trait (the shard's adapter is at the
//! end of this file); the state is the [`HlsPulls`] part's.
//!
//! Must not: decide when to reload, what to list or where to fail over (edge-core's
//! `HlsPull` does), or touch the shard's other parts except through [`PullHost`].

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use edge_core::hls::pull::{FetchTarget, HlsPull, HlsPullEffect};
use edge_core::hls::{HlsConfig, HlsSnapshot, Segment, SegmentData};
use edge_core::ids::SegmentSeq;
use edge_core::{ShardId, StreamKey};
use tracing::{info, warn};

use super::hlspull::{HlsPulls, PullEvent, PullSink};
use super::{Shard, TimerKey};
use crate::machine::stats::{Counter, ShardStats, StreamView};
use crate::net::mesh::{MeshMsg, SegmentEvent};

/// What the pulls need of the shard they run on.
pub(crate) trait PullHost: PullSink + 'static {
    fn pulls(&self) -> &HlsPulls;
    fn id(&self) -> ShardId;
    fn now_ms(&self) -> u64;
    fn unix_ms(&self, now_ms: u64) -> u64;
    fn counters(&self) -> &ShardStats;
    /// `--hls-prefetch on`.
    fn prefetch(&self) -> bool;
    /// The stream's view (its owner's, or a new one).
    fn stream_view(&self, key: &StreamKey) -> Arc<StreamView>;
    /// The HLS policy of `key`'s app.
    fn hls_policy(&self, key: &StreamKey) -> HlsConfig;
    /// `key` is published (or pulled over RTMP) here: not pulled over HLS.
    fn published_here(&self, key: &StreamKey) -> bool;
    /// A step of a download, here and on every other shard.
    fn announce_segment(&self, key: &StreamKey, seq: u64, event: SegmentEvent);
    /// Playlist requests for `key` get `status` for a while, on every shard.
    fn announce_unavailable(&self, key: &StreamKey, status: u16);
    /// The pull's playlist and segments, served on every shard.
    fn install_snapshot(self: &Rc<Self>, key: &StreamKey, snapshot: HlsSnapshot);
    /// The pull ended: its HLS state goes on every shard, and an owner it fed hears it.
    fn pull_ended(self: &Rc<Self>, key: &StreamKey, fed_owner: bool);
    /// The pull's next deadline.
    fn arm_pull(&self, key: &StreamKey, at: Option<u64>);
    /// A completed segment for the owner fed from the pull.
    fn feed_owner(self: &Rc<Self>, key: &StreamKey, segment: FedSegment);
    /// Segment `seq` failed, for the owner fed from the pull.
    fn feed_failed(self: &Rc<Self>, key: &StreamKey, seq: u64);
    /// A control message to another shard.
    fn tell(&self, to: ShardId, msg: MeshMsg);
}

/// A completed segment handed to a fed owner (its shared pieces, not a copy).
pub(crate) struct FedSegment {
    pub(crate) seq: u64,
    /// The origin's newest segment.
    pub(crate) newest: u64,
    pub(crate) discontinuity: bool,
    pub(crate) pieces: Vec<Bytes>,
}

/// A playlist request for `key` (from any shard) starts or keeps its pull. A stream
/// published (or pulled over RTMP) here is not pulled over HLS; one fed from HLS is.
pub(crate) fn demand<H: PullHost>(host: &Rc<H>, key: &StreamKey, query: Option<&str>) {
    if host.published_here(key) {
        return;
    }
    ensure(host, key);
    let now = host.now_ms();
    call(host, key, |p, fx| p.handle_demand(query, now, fx));
}

/// Creates `key`'s pull if it is not running (its view shared with the owner's).
fn ensure<H: PullHost>(host: &Rc<H>, key: &StreamKey) {
    let pulls = host.pulls();
    if pulls.contains(key) {
        return;
    }
    let view = host.stream_view(key);
    let origin = pulls.start(key, host.hls_policy(key), view, host.now_ms());
    host.counters().hls_pulls_started.inc();
    host.counters().hls_pulls_active.inc();
    info!(shard = %host.id(), %key, %origin, "HLS pull started");
}

/// The owner of `key` is fed from HLS: the pull runs (started with `query` if it was not)
/// for as long as the feed lasts, and the newest segment here starts the feed.
pub(crate) fn start_feed<H: PullHost>(host: &Rc<H>, key: &StreamKey, query: Option<&str>) {
    host.counters().hls_feeds_started.inc();
    host.counters().hls_feeds_active.inc();
    info!(shard = %host.id(), %key, "feeding RTMP and FLV viewers from the HLS pull");
    ensure(host, key);
    host.pulls().set_feeding(key, true);
    let now = host.now_ms();
    call(host, key, |p, fx| {
        p.handle_demand(query, now, fx);
        p.set_feeding(true, now, fx);
    });
    if let Some((seq, segment)) = host.pulls().newest_done(key) {
        feed(host, key, seq, &segment);
    }
}

/// The feed of `key` ended: the pull goes on for its HLS viewers (and idles without).
pub(crate) fn stop_feed<H: PullHost>(host: &Rc<H>, key: &StreamKey) {
    host.counters().hls_feeds_active.dec();
    if host.pulls().set_feeding(key, false) {
        let now = host.now_ms();
        call(host, key, |p, fx| p.set_feeding(false, now, fx));
    }
}

/// Hands a completed segment to `key`'s owner, if its pull feeds it.
fn feed<H: PullHost>(host: &Rc<H>, key: &StreamKey, seq: u64, segment: &Segment) {
    let Some(newest) = host.pulls().feed_newest(key, seq) else {
        return;
    };
    let fed = FedSegment {
        seq,
        newest,
        discontinuity: segment.discontinuity,
        pieces: segment.pieces.to_vec(),
    };
    host.feed_owner(key, fed);
}

/// Calls `f` on `key`'s pull, runs its effects and re-arms its timer. A panic inside
/// (parsing the origin's playlist) ends the pull.
pub(crate) fn call<H: PullHost>(
    host: &Rc<H>,
    key: &StreamKey,
    f: impl FnOnce(&mut HlsPull, &mut Vec<HlsPullEffect>),
) {
    match host.pulls().call(key, f) {
        None => {}
        Some(Err(panic)) => {
            host.counters().peer_panics.inc();
            warn!(shard = %host.id(), %key, "HLS pull abandoned after {panic}");
            end(host, key);
        }
        Some(Ok(fx)) => {
            run_effects(host, key, fx);
            host.arm_pull(key, host.pulls().poll_timeout(key));
        }
    }
}

fn run_effects<H: PullHost>(host: &Rc<H>, key: &StreamKey, fx: Vec<HlsPullEffect>) {
    let (id, pulls) = (host.id(), host.pulls());
    for e in fx {
        match e {
            HlsPullEffect::FetchPlaylist { target, blocking } => {
                let blocking_s = blocking.then(|| pulls.blocking_s(key));
                pulls.count_request(key, host.counters(), false);
                let sink = Rc::clone(host) as Rc<dyn PullSink>;
                pulls.fetch_playlist(sink, key.clone(), target, blocking_s);
            }
            HlsPullEffect::FetchSegment { seq, target } => {
                pulls.count_request(key, host.counters(), host.prefetch());
                let sink = Rc::clone(host) as Rc<dyn PullSink>;
                pulls.fetch_segment(sink, key.clone(), seq, target);
            }
            HlsPullEffect::Publish(playlist) => {
                let unix = host.unix_ms(host.now_ms());
                if let Some(snapshot) = pulls.snapshot(key, playlist, unix) {
                    host.install_snapshot(key, snapshot);
                }
            }
            HlsPullEffect::Release(seq) => pulls.release(key, seq),
            HlsPullEffect::MissFailed { seq, status } => {
                host.announce_segment(key, seq, SegmentEvent::Failed { status });
            }
            HlsPullEffect::Unavailable { status, reason } => {
                warn!(shard = %id, %key, status, "HLS origin unavailable: {reason}");
                host.announce_unavailable(key, status);
            }
            HlsPullEffect::Failover { from, to } => {
                warn!(shard = %id, %key, %from, %to, "HLS pull failing over");
                host.counters().hls_origin_failovers.inc();
                pulls.failed_over(key, to);
            }
            HlsPullEffect::Idle => {
                info!(shard = %id, %key, "HLS pull idle; stopping");
                end(host, key);
            }
        }
    }
}

/// Ends `key`'s pull and forgets its HLS state on every shard. A feed that lived on it
/// ends too (its viewers see the stream end, and a new play starts afresh).
fn end<H: PullHost>(host: &Rc<H>, key: &StreamKey) {
    let Some(feeding) = host.pulls().remove(key) else {
        return;
    };
    host.counters().hls_pulls_active.dec();
    host.pull_ended(key, feeding);
}

/// What a download of `key`'s pull reports.
pub(crate) fn handle_event<H: PullHost>(
    host: &Rc<H>,
    key: &StreamKey,
    target: &FetchTarget,
    event: PullEvent,
) {
    let (now, id, pulls) = (host.now_ms(), host.id(), host.pulls());
    match event {
        PullEvent::Playlist { bytes, result } => {
            pulls.count_response(key, host.counters(), bytes, result.is_err());
            if let Err(e) = &result {
                info!(shard = %id, %key, %target, "origin playlist request failed: {e}");
            }
            call(host, key, |p, fx| {
                p.handle_playlist(result.as_deref().map_err(|e| *e), now, fx)
            });
        }
        PullEvent::SegmentStarted {
            seq,
            content_length,
        } => {
            host.announce_segment(key, seq, SegmentEvent::Start { content_length });
            call(host, key, |p, fx| p.handle_segment_started(seq, fx));
        }
        PullEvent::SegmentPiece { seq, piece } => {
            host.announce_segment(key, seq, SegmentEvent::Data(piece));
        }
        PullEvent::SegmentDone { seq, len, result } => {
            pulls.count_response(key, host.counters(), len, result.is_err());
            match result {
                Ok(pieces) => segment_done(host, key, seq, pieces, len),
                Err(e) => {
                    warn!(shard = %id, %key, seq, %target, "origin segment request failed: {e}");
                    call(host, key, |p, fx| {
                        p.handle_segment_done(seq, Err(e), now, fx)
                    });
                    if pulls.feeding(key) {
                        host.feed_failed(key, seq);
                    }
                }
            }
        }
    }
}

/// On the owner: shard `from` asks for pulled segment `seq`.
pub(crate) fn miss<H: PullHost>(host: &Rc<H>, key: &StreamKey, seq: u64, from: ShardId) {
    let events = match host.pulls().done_segment(key, seq) {
        // Not complete yet: the pull fetches it (at most once).
        Some(None) => {
            let now = host.now_ms();
            call(host, key, |p, fx| p.handle_miss(seq, now, fx));
            return;
        }
        // No pull: gone.
        None => vec![SegmentEvent::Failed { status: 404 }],
        // Complete (and the snapshot holding it on its way to `from`, which asked before it
        // arrived): `from` hears the whole download again.
        Some(Some(seg)) => std::iter::once(SegmentEvent::Start {
            content_length: Some(seg.len as u64),
        })
        .chain(seg.pieces.iter().cloned().map(SegmentEvent::Data))
        .chain(std::iter::once(SegmentEvent::Done))
        .collect(),
    };
    for event in events {
        let msg = MeshMsg::HlsSegment {
            key: key.clone(),
            seq,
            event,
        };
        host.tell(from, msg);
    }
}

/// A completed segment: listed, announced as done, fed to the owner.
fn segment_done<H: PullHost>(
    host: &Rc<H>,
    key: &StreamKey,
    seq: u64,
    pieces: Vec<Bytes>,
    len: usize,
) {
    let pulls = host.pulls();
    let Some((duration_ms, discontinuity)) = pulls.segment_info(key, seq) else {
        // Released (or the pull ended) while it downloaded.
        host.announce_segment(key, seq, SegmentEvent::Failed { status: 404 });
        return;
    };
    let segment = Segment::new(SegmentData {
        seq: SegmentSeq(seq),
        duration_ms,
        discontinuity,
        pieces,
        len,
    });
    pulls.insert_done(key, seq, segment.clone());
    // The snapshot holding it first, then the end of the download: a request in between
    // finds it in one or the other.
    let now = host.now_ms();
    call(host, key, |p, fx| {
        p.handle_segment_done(seq, Ok(()), now, fx)
    });
    if let Some(playlist) = pulls.playlist(key) {
        let unix = host.unix_ms(now);
        if let Some(snapshot) = pulls.snapshot(key, playlist, unix) {
            host.install_snapshot(key, snapshot);
        }
    }
    host.announce_segment(key, seq, SegmentEvent::Done);
    feed(host, key, seq, &segment);
}

/// The shard as the pulls' host.
impl PullHost for Shard {
    fn pulls(&self) -> &HlsPulls {
        &self.pulls
    }
    fn id(&self) -> ShardId {
        self.id
    }
    fn now_ms(&self) -> u64 {
        Shard::now_ms(self)
    }
    fn unix_ms(&self, now_ms: u64) -> u64 {
        self.clock.unix_ms(now_ms)
    }
    fn counters(&self) -> &ShardStats {
        Shard::counters(self)
    }
    fn prefetch(&self) -> bool {
        self.config.hls_prefetch
    }
    fn stream_view(&self, key: &StreamKey) -> Arc<StreamView> {
        Shard::stream_view(self, key)
    }
    fn hls_policy(&self, key: &StreamKey) -> edge_core::hls::HlsConfig {
        self.config.apps.get(key.app()).hls
    }
    fn published_here(&self, key: &StreamKey) -> bool {
        self.streams.read_owner(key, |o| !o.owner.fed_by_hls()) == Some(true)
    }
    fn announce_segment(&self, key: &StreamKey, seq: u64, event: SegmentEvent) {
        self.hls
            .announce_segment(&self.port, key, seq, event, self.now_ms());
    }
    fn announce_unavailable(&self, key: &StreamKey, status: u16) {
        self.hls
            .announce_unavailable(&self.port, key, status, self.now_ms());
    }
    fn install_snapshot(self: &Rc<Self>, key: &StreamKey, snapshot: HlsSnapshot) {
        self.install_own_hls(key, snapshot);
    }
    fn pull_ended(self: &Rc<Self>, key: &StreamKey, fed_owner: bool) {
        if fed_owner {
            self.with_owner(key, false, |o, fx| o.handle_hls_pull_ended(fx));
        }
        if !self.streams.owns(key) {
            self.stats.remove_stream(self.id, key);
        }
        self.timers.arm(TimerKey::HlsPull(key.clone()), None);
        self.forget_hls(key);
        self.hls.forget_inflight(key);
    }
    fn arm_pull(&self, key: &StreamKey, at: Option<u64>) {
        self.timers.arm(TimerKey::HlsPull(key.clone()), at);
    }
    fn feed_owner(self: &Rc<Self>, key: &StreamKey, segment: FedSegment) {
        let now = self.now_ms();
        self.owner_media(key, 0, |o, fx| {
            let s = segment;
            o.handle_hls_segment(s.seq, s.newest, s.discontinuity, s.pieces, now, fx)
        });
    }
    fn tell(&self, to: ShardId, msg: MeshMsg) {
        self.port.send_control(to, msg);
    }
    fn feed_failed(self: &Rc<Self>, key: &StreamKey, seq: u64) {
        let now = self.now_ms();
        self.with_owner(key, false, |o, fx| {
            o.handle_hls_segment_failed(seq, now, fx)
        });
    }
}

impl PullSink for Shard {
    fn pull_event(self: Rc<Self>, key: &StreamKey, target: &FetchTarget, event: PullEvent) {
        handle_event(&self, key, target, event);
    }
}
