//! One stream on its owner shard — its local origin — sans-IO: the publisher lifecycle
//! ([`StreamMaster`]), the join cache snapshots come from, the shards subscribed to it (this
//! one included, for its own viewers), the HLS segmenter, and in edge mode the stream's one
//! upstream [`Pull`] and the [`Forward`] of a publish made here.
//!
//! Inputs are `handle_*(…, now_ms)` from the shard (mesh messages, upstream link reports,
//! deadlines); outputs are [`OwnerEffect`]s appended to the caller's vector. The shard runs
//! them and re-arms its timer from [`Owner::poll_timeout`].
//!
//! A frame, in steps:
//! 1. The publisher's shard parsed its header once ([`TagInfo`]); the master stamps it
//!    (timestamp unwrap, republish rebase) into a [`Frame`] whose wire forms are built once.
//! 2. The segmenter muxes it; a finished segment is an [`OwnerEffect::Hls`] snapshot.
//! 3. The join cache keeps it; the forward (if publishing) gets it.
//! 4. Every subscriber gets an [`OwnerEffect::Update`]; one whose channel was full lags and
//!    is resynchronised with a snapshot at the next keyframe.
//!
//! At an edge whose origins give only HLS, the stream's publisher is an [`HlsFeed`]: the
//! shard hands it the segments its HLS pull fetched ([`Owner::handle_hls_segment`]), and its
//! paced frames are published like a pull's. The HLS viewers keep the origin's own segments,
//! so the segmenter stays off.
//!
//! Must not: touch a socket, a channel or a clock; hold more than the join cache's bounds.

use std::sync::Arc;

use bytes::Bytes;

use crate::forward::{Forward, ForwardEffect, ForwardNote};
use crate::gop::GopLimits;
use crate::hls::feed::{FeedFrame, FeedNote, HlsFeed};
use crate::hls::hinted::{HintFanout, HintSend};
use crate::hls::llhls::{PartId, PartState};
use crate::hls::{HlsConfig, HlsSnapshot, SegmentStore, Segmenter, SegmenterError};
use crate::ids::{LinkId, ShardId};
use crate::media::{self, Frame, MediaError, StreamKey, TagInfo};
use crate::pull::{upstream_stream_name, LinkIds, Pull, PullEffect, PullNote};
use crate::stream::{
    Departure, MasterPhase, PublishError, PublisherId, StreamMaster, StreamReplica, StreamUpdate,
};
use crate::upstream::{LinkEvent, LinkState, OriginUrl};

/// Edge mode: where streams come from and go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// In failover order. Empty only with a registry (`--origin registry` alone): then a
    /// stream is pulled only from where the registry places it ([`Owner::handle_located`]).
    pub origins: Vec<OriginUrl>,
    pub upstream_timeout_ms: u64,
    pub upstream_idle_ms: u64,
    /// Local publishes are forwarded to an origin (the edge role). An origin that pulls what
    /// the registry places elsewhere (`--cluster-mode pull`) keeps its publishes.
    pub forward: bool,
    /// HTTP origins exist: a stream no RTMP origin gives is fed from the HLS pull
    /// ([`OwnerEffect::StartHlsFeed`]).
    pub hls_feed: bool,
    /// A local publisher takes the stream over from a pull that is live (the pull is then
    /// stopped): an upgrade's successor pulls a stream from its predecessor only until the
    /// publisher moves over. An edge keeps its pull (a duplicate publish is refused).
    pub local_publish_wins: bool,
}

/// Publisher ids of HLS feeds (bit 62; connections use the low 62 bits, links bit 63).
const FEED_PUBLISHER: u64 = 1 << 62;

/// What every owner on a shard shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerConfig {
    /// The shard the owner runs on (its own viewers subscribe as this shard).
    pub me: ShardId,
    pub grace_ms: u64,
    pub gop: GopLimits,
    pub hls: HlsConfig,
    pub edge: Option<EdgeConfig>,
}

/// Which kind of upstream connection to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRole {
    /// The stream's pull (an RTMP play).
    Pull,
    /// A second play, to see whether the preferred origin is back.
    Probe,
    /// The forward of a local publish (an RTMP publish).
    Forward,
}

/// What the shard must do for an owner.
#[derive(Debug)]
pub enum OwnerEffect {
    /// Give `update` to shard `to`'s replica (`to` may be this shard: apply it here). The
    /// shard reports a full channel with [`Owner::handle_send_failed`].
    Update { to: ShardId, update: StreamUpdate },
    /// Answer a publisher's shard.
    PublishReply {
        to: ShardId,
        publisher: PublisherId,
        result: Result<(), PublishError>,
    },
    /// A new HLS state: install it here and announce it to every shard.
    Hls(HlsSnapshot),
    /// Bytes of the LL-HLS part being written, or its end, for a shard that asked for it
    /// ([`Owner::handle_ll_want`]); after the `Hls` effect that lists the part, if any.
    LlHint(HintSend),
    /// The segment store refused a segment (full): make room (evict an ended stream, or
    /// call [`Owner::handle_shed`]).
    HlsRefused,
    /// The stream's HLS is gone for good (an edge pull torn down): forget it everywhere.
    ForgetHls,
    /// Open an upstream connection.
    Connect {
        link: LinkId,
        role: LinkRole,
        url: OriginUrl,
        stream_name: String,
    },
    /// Close one.
    Disconnect(LinkId),
    /// The forward's origin took the publish: its queue restarts from these frames.
    ForwardJoin(Vec<Frame>),
    /// A live frame for the forward's queue.
    ForwardFrame(Frame),
    /// For the log and the counters.
    Note(OwnerNote),
    /// What [`Owner::view`] shows changed.
    ViewChanged,
    /// Feed this stream from its HLS pull: start the pull (with `query`) if it is not
    /// running, keep it running, and hand every segment it completes to
    /// [`Owner::handle_hls_segment`] (failures to [`Owner::handle_hls_segment_failed`]).
    StartHlsFeed { query: Option<Arc<str>> },
    /// The feed ended: the HLS pull goes on only for its own viewers.
    StopHlsFeed,
    /// The pull tried every origin and none gives the stream (`not_found`: each said it
    /// has no such stream; otherwise some could not be reached): requests waiting for its
    /// HLS on every shard are answered now (404 or 502), as its RTMP and FLV viewers are by
    /// the [`StreamUpdate::Unavailable`] they were sent.
    Unavailable { not_found: bool },
    /// Nothing is left (no publisher or grace, no subscriber, no pull, no forward): drop it.
    Free,
}

/// What happened, for the log and the counters; decided already.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerNote {
    PublishAccepted,
    PublisherLeft {
        grace_ms: u64,
    },
    GraceOver,
    PullStarted,
    PullStopped,
    PullIdle {
        idle_ms: u64,
    },
    Pull(PullNote),
    ForwardStarted,
    Forward(ForwardNote),
    HlsStopped(SegmenterError),
    /// A track TS cannot carry is left out of the stream's HLS (why); the others go on.
    HlsTrackDropped(String),
    /// A segment did not open in the cell after the previous one (segmenter module docs):
    /// from here this node's segment numbers trail other nodes'. `first` is true the first
    /// time for this stream (the engine logs that one).
    HlsUnaligned {
        gap_ms: u64,
        first: bool,
    },
    UpstreamMediaDropped(MediaError),
    HlsFeedStarted,
    /// The HLS pull it was fed from ended.
    HlsFeedLost,
    /// No subscriber for `idle_ms`.
    HlsFeedIdle {
        idle_ms: u64,
    },
    HlsFeed(FeedNote),
}

/// Where a stream's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    None,
    /// Published here.
    Publisher,
    /// Pulled from an origin (over RTMP, or fed from an HLS pull).
    Upstream,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::None => "none",
            Source::Publisher => "publisher",
            Source::Upstream => "upstream",
        }
    }
}

/// An upstream connection as the streams API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub origin: OriginUrl,
    pub state: LinkState,
    /// Shard-clock ms when it entered `state`.
    pub since_ms: u64,
}

/// What the streams API shows of an owned stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerView {
    pub phase: MasterPhase,
    pub source: Source,
    pub upstream: Option<LinkView>,
    pub forward: Option<LinkView>,
    pub failovers: u64,
}

#[derive(Debug, Clone, Copy)]
struct Subscriber {
    shard: ShardId,
    /// An update did not fit its channel: it gets a snapshot at the next keyframe.
    lagging: bool,
}

/// A stream fed from its HLS pull.
#[derive(Debug)]
struct FeedRun {
    feed: HlsFeed,
    publisher: PublisherId,
    /// No subscriber since then: the feed ends `upstream_idle_ms` later.
    unused_since: Option<u64>,
}

impl FeedRun {
    /// When the feed ends for want of subscribers.
    fn idle_at(&self, idle_ms: u64) -> Option<u64> {
        self.unused_since.map(|t| t.saturating_add(idle_ms))
    }

    fn poll_timeout(&self, idle_ms: u64) -> Option<u64> {
        [self.feed.poll_timeout(), self.idle_at(idle_ms)]
            .into_iter()
            .flatten()
            .min()
    }
}

/// One stream's owner state.
pub struct Owner<S: SegmentStore> {
    key: StreamKey,
    config: Arc<OwnerConfig>,
    master: StreamMaster,
    cache: StreamReplica,
    subscribers: Vec<Subscriber>,
    store: S,
    segmenter: Option<Segmenter<S>>,
    /// Shards streaming the LL-HLS part being written (preload hints).
    hinted: HintFanout,
    /// The wall clock (Unix ms) as the shard last said: LL-HLS dates segments from it.
    wall_ms: u64,
    pull: Option<Pull>,
    feed: Option<FeedRun>,
    /// Feeds started so far (each publishes with an id of its own).
    feeds: u64,
    forward: Option<Forward>,
    ids: LinkIds,
    /// Failovers of pulls that are gone (the view adds the current pull's).
    past_failovers: u64,
    /// Where the registry places the stream (another node), tried before the static origins.
    located: Option<OriginUrl>,
    /// The query of the last demand (a relocated pull asks with it again).
    demand_query: Option<Arc<str>>,
}

impl<S: SegmentStore + Clone> Owner<S> {
    /// `instance`: machine-unique (upstream link ids are made of it); `store`: where
    /// segments go.
    pub fn new(key: StreamKey, config: Arc<OwnerConfig>, store: S, instance: u64) -> Self {
        Self {
            master: StreamMaster::new(config.grace_ms),
            cache: StreamReplica::new(config.gop),
            key,
            config,
            subscribers: Vec::new(),
            store,
            segmenter: None,
            hinted: HintFanout::new(),
            wall_ms: 0,
            pull: None,
            feed: None,
            feeds: 0,
            forward: None,
            ids: LinkIds::new(instance),
            past_failovers: 0,
            located: None,
            demand_query: None,
        }
    }

    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// What a new subscriber or a forward session starts from.
    pub fn join_frames(&self) -> impl Iterator<Item = &Frame> {
        self.cache.join_frames()
    }

    /// Whether the stream is fed from its HLS pull (whose segments its HLS viewers get).
    pub fn fed_by_hls(&self) -> bool {
        self.feed.is_some()
    }

    /// Whether `link` is one of this stream's upstream connections.
    pub fn has_link(&self, link: LinkId) -> bool {
        self.pull.as_ref().is_some_and(|p| p.has_link(link))
            || self.forward.as_ref().is_some_and(|f| f.has_link(link))
    }

    /// Shard `from` has requests for LL-HLS part `part` before it is complete: they get its
    /// bytes as they are written ([`crate::hls::hinted`]).
    pub fn handle_ll_want(&mut self, from: ShardId, part: PartId, out: &mut Vec<OwnerEffect>) {
        let mut sends = Vec::new();
        let state = self
            .segmenter
            .as_ref()
            .map_or(PartState::Unknown, |s| s.ll_part_state(part));
        self.hinted.handle_want(from, part, state, &mut sends);
        out.extend(sends.into_iter().map(OwnerEffect::LlHint));
    }

    /// After the segmenter moved: the followed part's new bytes, or its end.
    fn follow_hinted(&mut self, out: &mut Vec<OwnerEffect>) {
        if !self.hinted.is_following() {
            return;
        }
        let mut sends = Vec::new();
        match &self.segmenter {
            Some(s) => self
                .hinted
                .handle_progress(|part| s.ll_part_state(part), &mut sends),
            None => self.hinted.handle_gone(&mut sends),
        }
        out.extend(sends.into_iter().map(OwnerEffect::LlHint));
    }

    /// A shard has viewers of the stream (`query`: its first viewer's, for an edge pull).
    pub fn handle_subscribe(
        &mut self,
        from: ShardId,
        query: Option<Arc<str>>,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        if !self.subscribers.iter().any(|s| s.shard == from) {
            self.subscribers.push(Subscriber {
                shard: from,
                lagging: false,
            });
        }
        out.push(OwnerEffect::Update {
            to: from,
            update: self.cache.snapshot(),
        });
        if let Some(p) = &mut self.pull {
            p.handle_in_use(true, now_ms);
        }
        if let Some(f) = &mut self.feed {
            f.unused_since = None;
        }
        self.handle_demand(query, now_ms, out);
    }

    /// A shard has no viewers of the stream left.
    pub fn handle_unsubscribe(&mut self, from: ShardId, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        self.subscribers.retain(|s| s.shard != from);
        if self.subscribers.is_empty() {
            if let Some(p) = &mut self.pull {
                p.handle_in_use(false, now_ms);
            }
            if let Some(f) = &mut self.feed {
                f.unused_since = Some(now_ms);
            }
        }
        self.check_free(out);
    }

    /// Someone wants the stream (a subscriber, or HLS viewers' playlist requests). In edge
    /// mode, with nobody publishing it here, this starts the pull or keeps it.
    pub fn handle_demand(
        &mut self,
        query: Option<Arc<str>>,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        if self.config.edge.is_none() {
            return;
        }
        if query.is_some() {
            self.demand_query.clone_from(&query);
        }
        if let Some(p) = &mut self.pull {
            p.handle_demand(now_ms);
            return;
        }
        if self.feed.is_some() {
            return;
        }
        if !self.master.is_idle() {
            // Published here (or in its grace): served locally.
            return;
        }
        self.start_pull(query, now_ms, out);
    }

    /// Starts the pull from the registry's node, then the static origins.
    fn start_pull(&mut self, query: Option<Arc<str>>, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        let Some(edge) = &self.config.edge else {
            return;
        };
        let origins: Vec<OriginUrl> = self
            .located
            .iter()
            .chain(
                edge.origins
                    .iter()
                    .filter(|o| Some(*o) != self.located.as_ref()),
            )
            .map(|o| o.for_stream(&self.key))
            .collect();
        if origins.is_empty() {
            if edge.hls_feed {
                self.start_feed(query, now_ms, out);
            }
            // Otherwise registry only, and the stream is nowhere yet: viewers wait for it.
            return;
        }
        let mut pe = Vec::new();
        let mut pull = Pull::new(
            origins,
            upstream_stream_name(&self.key, query.as_deref()),
            edge.upstream_timeout_ms,
            edge.upstream_idle_ms,
            &mut self.ids,
            now_ms,
            &mut pe,
        );
        pull.handle_in_use(!self.subscribers.is_empty(), now_ms);
        self.pull = Some(pull);
        out.push(OwnerEffect::Note(OwnerNote::PullStarted));
        self.apply_pull(pe, now_ms, out);
        out.push(OwnerEffect::ViewChanged);
    }

    /// The registry places the stream on another node (`url`, its RTMP origin URL), or no
    /// longer does (`None`). A pull that is not connected there moves there at once (its
    /// publisher leaves, viewers wait in the grace, the new link's media republishes), as when
    /// a stream's publisher moved to another origin; a stream with viewers and no pull starts
    /// one. A stream published here stays here.
    pub fn handle_located(
        &mut self,
        url: Option<OriginUrl>,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        if self.located == url || self.config.edge.is_none() {
            return;
        }
        self.located = url;
        let Some(to) = self.located.clone() else {
            // The holder is gone: the pull's own failover deals with its link.
            return;
        };
        if self.pull.is_none() && !self.master.is_idle() {
            return;
        }
        if let Some(p) = &self.pull {
            if p.active().is_some_and(|l| l.url == to) {
                return;
            }
            if let Some(l) = p.active().filter(|l| self.master.is_live(l.publisher)) {
                // Moved on purpose: the new link's media republishes.
                let updates =
                    self.master
                        .handle_unpublish(l.publisher, Departure::Unpublished, now_ms);
                self.broadcast(updates, out);
            }
            self.stop_pull(out);
        } else if self.subscribers.is_empty() {
            // Nobody waits for it here: the next demand pulls from there.
            return;
        }
        self.start_pull(self.demand_query.clone(), now_ms, out);
    }

    /// A publisher on shard `from` asks for the stream. `cluster_origins` are the registry's
    /// live origins, least loaded first: an edge forwards the publish to them before its
    /// static origins.
    pub fn handle_publish(
        &mut self,
        publisher: PublisherId,
        from: ShardId,
        query: Option<Arc<str>>,
        cluster_origins: Vec<OriginUrl>,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        if self
            .config
            .edge
            .as_ref()
            .is_some_and(|e| e.local_publish_wins)
        {
            // The pull's link leaves as a publisher would: the local one continues the
            // stream as a republish in its grace (timestamps go on, viewers stay).
            let pulled = self
                .pull
                .as_ref()
                .and_then(Pull::active)
                .map(|l| l.publisher);
            if let Some(link) = pulled.filter(|&p| self.master.is_live(p)) {
                let updates = self
                    .master
                    .handle_unpublish(link, Departure::Unpublished, now_ms);
                self.broadcast(updates, out);
            }
        }
        match self.master.handle_publish(publisher, now_ms) {
            Ok(updates) => {
                out.push(OwnerEffect::Note(OwnerNote::PublishAccepted));
                // Edge mode: a local publisher replaces a pull that had no media yet.
                self.stop_pull(out);
                self.stop_feed(out);
                self.broadcast(updates, out);
                self.start_forward(query, cluster_origins, now_ms, out);
                out.push(OwnerEffect::ViewChanged);
                out.push(OwnerEffect::PublishReply {
                    to: from,
                    publisher,
                    result: Ok(()),
                });
            }
            Err(e) => {
                out.push(OwnerEffect::PublishReply {
                    to: from,
                    publisher,
                    result: Err(e),
                });
                self.check_free(out);
            }
        }
    }

    /// The wall clock now (Unix ms), which LL-HLS's EXT-X-PROGRAM-DATE-TIME starts from. The
    /// shard tells it before every call that may open a segment.
    pub fn set_wall_clock(&mut self, unix_ms: u64) {
        self.wall_ms = unix_ms;
        if let Some(s) = &mut self.segmenter {
            s.set_wall_clock(unix_ms);
        }
    }

    /// A publisher's media, its header parsed where it arrived.
    pub fn handle_media(
        &mut self,
        publisher: PublisherId,
        timestamp: u32,
        body: Bytes,
        tag: TagInfo,
        out: &mut Vec<OwnerEffect>,
    ) {
        if let Some(f) = self.master.handle_media(publisher, timestamp, body, tag) {
            self.broadcast([StreamUpdate::Frame(f)], out);
        }
    }

    /// A publisher's `onMetaData`.
    pub fn handle_metadata(
        &mut self,
        publisher: PublisherId,
        body: Bytes,
        out: &mut Vec<OwnerEffect>,
    ) {
        if let Some(f) = self.master.handle_metadata(publisher, body) {
            self.broadcast([StreamUpdate::Frame(f)], out);
        }
    }

    /// The publisher left (`how`: it unpublished, or its connection was lost).
    pub fn handle_unpublish(
        &mut self,
        publisher: PublisherId,
        how: Departure,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        let updates = self.master.handle_unpublish(publisher, how, now_ms);
        if !updates.is_empty() {
            out.push(OwnerEffect::Note(OwnerNote::PublisherLeft {
                grace_ms: self.config.grace_ms,
            }));
            self.broadcast(updates, out);
            out.push(OwnerEffect::ViewChanged);
        }
    }

    /// A report from upstream connection `link`; whether it is still wanted.
    pub fn handle_link_event(
        &mut self,
        link: LinkId,
        ev: LinkEvent,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) -> bool {
        if let Some(p) = self.pull.as_mut().filter(|p| p.has_link(link)) {
            let mut pe = Vec::new();
            let keep = p.handle_link_event(link, ev, &mut self.ids, now_ms, &mut pe);
            self.apply_pull(pe, now_ms, out);
            out.push(OwnerEffect::ViewChanged);
            return keep;
        }
        if let Some(f) = self.forward.as_mut().filter(|f| f.has_link(link)) {
            let mut fe = Vec::new();
            let keep = f.handle_link_event(link, ev, &mut self.ids, now_ms, &mut fe);
            self.apply_forward(fe, out);
            out.push(OwnerEffect::ViewChanged);
            return keep;
        }
        false
    }

    /// Shard `to`'s channel was full for an update: it lags until the next keyframe.
    pub fn handle_send_failed(&mut self, to: ShardId) {
        for s in self.subscribers.iter_mut().filter(|s| s.shard == to) {
            s.lagging = true;
        }
    }

    /// Segment memory is short and no ended stream is left to evict: give up this stream's
    /// oldest segments.
    pub fn handle_shed(&mut self, out: &mut Vec<OwnerEffect>) {
        if let Some(snap) = self.segmenter.as_mut().and_then(|s| s.shed()) {
            out.push(OwnerEffect::Hls(snap));
        }
    }

    /// When [`Owner::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.master.poll_timeout(),
            self.pull.as_ref().and_then(Pull::poll_timeout),
            self.forward.as_ref().and_then(Forward::poll_timeout),
            self.feed
                .as_ref()
                .and_then(|f| f.poll_timeout(self.idle_ms())),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Deadlines: the republish grace, the pull's, the forward's backoff.
    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        if self.master.poll_timeout().is_some_and(|t| now_ms >= t) {
            let updates = self.master.handle_timeout(now_ms);
            if !updates.is_empty() {
                out.push(OwnerEffect::Note(OwnerNote::GraceOver));
                self.broadcast(updates, out);
                out.push(OwnerEffect::ViewChanged);
            }
        }
        if let Some(p) = &mut self.pull {
            if p.poll_timeout().is_some_and(|t| now_ms >= t) {
                let mut pe = Vec::new();
                p.handle_timeout(&mut self.ids, now_ms, &mut pe);
                self.apply_pull(pe, now_ms, out);
                out.push(OwnerEffect::ViewChanged);
            }
        }
        if let Some(f) = &mut self.forward {
            if f.poll_timeout().is_some_and(|t| now_ms >= t) {
                let mut fe = Vec::new();
                f.handle_timeout(&mut self.ids, now_ms, &mut fe);
                self.apply_forward(fe, out);
                out.push(OwnerEffect::ViewChanged);
            }
        }
        let idle_ms = self.idle_ms();
        let feed_idle = self
            .feed
            .as_ref()
            .and_then(|f| f.idle_at(idle_ms))
            .is_some_and(|t| now_ms >= t);
        if feed_idle {
            out.push(OwnerEffect::Note(OwnerNote::HlsFeedIdle { idle_ms }));
            self.end_feed(out);
        } else {
            self.run_feed(now_ms, out);
        }
        self.check_free(out);
    }

    // ----- the HLS feed ---------------------------------------------------------------------

    /// Segment `seq` of the stream's HLS pull is complete (`newest`: the newest segment the
    /// pull knows; a new feed starts there).
    pub fn handle_hls_segment(
        &mut self,
        seq: u64,
        newest: u64,
        discontinuity: bool,
        pieces: Vec<Bytes>,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        self.feed_input(now_ms, out, |feed, notes| {
            feed.handle_segment(seq, newest, discontinuity, pieces, notes)
        });
    }

    /// Segment `seq` of the stream's HLS pull could not be fetched.
    pub fn handle_hls_segment_failed(&mut self, seq: u64, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        self.feed_input(now_ms, out, |feed, notes| {
            feed.handle_segment_failed(seq, notes)
        });
    }

    /// Gives the feed (if any) an input, reports its notes, and publishes what is due.
    fn feed_input(
        &mut self,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
        f: impl FnOnce(&mut HlsFeed, &mut Vec<FeedNote>),
    ) {
        let Some(run) = &mut self.feed else {
            return;
        };
        let mut notes = Vec::new();
        f(&mut run.feed, &mut notes);
        out.extend(
            notes
                .into_iter()
                .map(|n| OwnerEffect::Note(OwnerNote::HlsFeed(n))),
        );
        self.run_feed(now_ms, out);
    }

    /// The HLS pull this stream was fed from ended (it was abandoned): the stream ends
    /// here, as when the feed idles.
    pub fn handle_hls_pull_ended(&mut self, out: &mut Vec<OwnerEffect>) {
        if self.feed.is_some() {
            out.push(OwnerEffect::Note(OwnerNote::HlsFeedLost));
            self.end_feed(out);
            self.check_free(out);
        }
    }

    fn idle_ms(&self) -> u64 {
        self.config.edge.as_ref().map_or(0, |e| e.upstream_idle_ms)
    }

    fn start_feed(&mut self, query: Option<Arc<str>>, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        self.feeds += 1;
        self.feed = Some(FeedRun {
            feed: HlsFeed::new(),
            publisher: PublisherId(FEED_PUBLISHER | self.feeds),
            unused_since: self.subscribers.is_empty().then_some(now_ms),
        });
        out.push(OwnerEffect::StartHlsFeed { query });
        out.push(OwnerEffect::Note(OwnerNote::HlsFeedStarted));
        out.push(OwnerEffect::ViewChanged);
    }

    /// Publishes the frames whose time has come (the first one publishes the feed).
    fn run_feed(&mut self, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        let Some(f) = &mut self.feed else {
            return;
        };
        let mut frames: Vec<FeedFrame> = Vec::new();
        f.feed.poll_frames(now_ms, &mut frames);
        let publisher = f.publisher;
        for frame in frames {
            if !self.master.is_live(publisher) {
                match self.master.handle_publish(publisher, now_ms) {
                    Ok(updates) => {
                        self.broadcast(updates, out);
                        out.push(OwnerEffect::ViewChanged);
                    }
                    // A local publisher has the stream now: the feed is not needed.
                    Err(_) => return self.stop_feed(out),
                }
            }
            match media::parse_tag(frame.kind, &frame.body) {
                Ok(tag) => self.handle_media(publisher, frame.timestamp, frame.body, tag, out),
                Err(e) => out.push(OwnerEffect::Note(OwnerNote::UpstreamMediaDropped(e))),
            }
        }
    }

    /// A local publisher replaces a feed that had published nothing yet.
    fn stop_feed(&mut self, out: &mut Vec<OwnerEffect>) {
        if self.feed.take().is_some() {
            out.push(OwnerEffect::StopHlsFeed);
            out.push(OwnerEffect::ViewChanged);
        }
    }

    /// The feed is over (no subscriber for `upstream_idle_ms`, or its pull ended): the
    /// stream ends here, as an idle pull's does (its HLS stays with the HLS pull).
    fn end_feed(&mut self, out: &mut Vec<OwnerEffect>) {
        if self.feed.take().is_none() {
            return;
        }
        let updates = self.master.end();
        self.broadcast(updates, out);
        out.push(OwnerEffect::StopHlsFeed);
        out.push(OwnerEffect::ViewChanged);
    }

    /// What the streams API shows.
    pub fn view(&self) -> OwnerView {
        let upstream = self.pull.as_ref().map(|p| match p.active() {
            Some(l) => LinkView {
                origin: l.url.clone(),
                state: l.state,
                since_ms: l.since_ms,
            },
            None => LinkView {
                origin: p
                    .last_origin()
                    .or(self.located.as_ref())
                    .or(self.config.edge.as_ref().and_then(|e| e.origins.first()))
                    .cloned()
                    .unwrap_or_else(|| OriginUrl {
                        host: String::new(),
                        port: 0,
                        app: String::new(),
                        tls: false,
                    }),
                state: LinkState::Backoff,
                since_ms: 0,
            },
        });
        let forward = self.forward.as_ref().map(|f| {
            let (origin, state, since_ms) = f.view();
            LinkView {
                origin,
                state,
                since_ms,
            }
        });
        let source = match (&self.pull, self.master.is_idle()) {
            (Some(_), _) => Source::Upstream,
            (None, _) if self.feed.is_some() => Source::Upstream,
            (None, false) => Source::Publisher,
            (None, true) => Source::None,
        };
        OwnerView {
            phase: self.master.phase(),
            source,
            upstream,
            forward,
            failovers: self.past_failovers + self.pull.as_ref().map_or(0, |p| p.failovers),
        }
    }

    fn check_free(&self, out: &mut Vec<OwnerEffect>) {
        if self.master.is_idle()
            && self.subscribers.is_empty()
            && self.pull.is_none()
            && self.feed.is_none()
            && self.forward.is_none()
        {
            out.push(OwnerEffect::Free);
        }
    }

    fn start_forward(
        &mut self,
        query: Option<Arc<str>>,
        mut origins: Vec<OriginUrl>,
        now_ms: u64,
        out: &mut Vec<OwnerEffect>,
    ) {
        let Some(edge) = self.config.edge.as_ref().filter(|e| e.forward) else {
            return;
        };
        // A republish in grace continues the same forward.
        if self.forward.is_some() {
            return;
        }
        for o in &edge.origins {
            if !origins.contains(o) {
                origins.push(o.clone());
            }
        }
        if origins.is_empty() {
            // A registry-only edge that knows no live origin keeps the publish here.
            return;
        }
        let mut fe = Vec::new();
        self.forward = Some(Forward::new(
            origins,
            upstream_stream_name(&self.key, query.as_deref()),
            &mut self.ids,
            now_ms,
            &mut fe,
        ));
        out.push(OwnerEffect::Note(OwnerNote::ForwardStarted));
        self.apply_forward(fe, out);
    }

    fn stop_pull(&mut self, out: &mut Vec<OwnerEffect>) {
        if let Some(mut p) = self.pull.take() {
            let mut pe = Vec::new();
            p.stop(&mut pe);
            self.past_failovers += p.failovers;
            for e in pe {
                if let PullEffect::Disconnect(l) = e {
                    out.push(OwnerEffect::Disconnect(l));
                }
            }
            out.push(OwnerEffect::Note(OwnerNote::PullStopped));
        }
    }

    /// Carries out what the pull decided, on the master and the shard.
    fn apply_pull(&mut self, effects: Vec<PullEffect>, now_ms: u64, out: &mut Vec<OwnerEffect>) {
        for e in effects {
            match e {
                PullEffect::Connect { link, url, probe } => {
                    let stream_name = self
                        .pull
                        .as_ref()
                        .map_or_else(String::new, |p| p.stream_name().to_string());
                    out.push(OwnerEffect::Connect {
                        link,
                        role: if probe {
                            LinkRole::Probe
                        } else {
                            LinkRole::Pull
                        },
                        url,
                        stream_name,
                    });
                }
                PullEffect::Disconnect(l) => out.push(OwnerEffect::Disconnect(l)),
                PullEffect::Publish(publisher) => {
                    if self.master.is_live(publisher) {
                        continue;
                    }
                    match self.master.handle_publish(publisher, now_ms) {
                        Ok(updates) => self.broadcast(updates, out),
                        // A local publisher has the stream now: the pull is not needed.
                        Err(_) => self.stop_pull(out),
                    }
                }
                PullEffect::Media {
                    publisher,
                    kind,
                    timestamp,
                    body,
                } => match media::parse_tag(kind, &body) {
                    Ok(tag) => self.handle_media(publisher, timestamp, body, tag, out),
                    Err(e) => out.push(OwnerEffect::Note(OwnerNote::UpstreamMediaDropped(e))),
                },
                PullEffect::Metadata { publisher, body } => {
                    self.handle_metadata(publisher, body, out)
                }
                PullEffect::Unpublish { publisher, how } => {
                    let updates = self.master.handle_unpublish(publisher, how, now_ms);
                    self.broadcast(updates, out);
                }
                PullEffect::Unavailable { not_found } => {
                    // Only viewers waiting for a stream that never came are answered; in a
                    // grace they wait for the pull to recover.
                    if self.master.is_idle() {
                        self.broadcast([StreamUpdate::Unavailable { not_found }], out);
                        out.push(OwnerEffect::Unavailable { not_found });
                    }
                }
                PullEffect::Idle => {
                    if let Some(p) = self.pull.take() {
                        self.past_failovers += p.failovers;
                    }
                    out.push(OwnerEffect::Note(OwnerNote::PullIdle {
                        idle_ms: self.config.edge.as_ref().map_or(0, |e| e.upstream_idle_ms),
                    }));
                    let updates = self.master.end();
                    self.broadcast(updates, out);
                    out.push(OwnerEffect::ForgetHls);
                    out.push(OwnerEffect::Note(OwnerNote::PullStopped));
                    self.check_free(out);
                }
                PullEffect::Note(n) => out.push(OwnerEffect::Note(OwnerNote::Pull(n))),
            }
        }
    }

    fn apply_forward(&mut self, effects: Vec<ForwardEffect>, out: &mut Vec<OwnerEffect>) {
        for e in effects {
            match e {
                ForwardEffect::Connect { link, url } => {
                    let stream_name = self
                        .forward
                        .as_ref()
                        .map_or_else(String::new, |f| f.stream_name().to_string());
                    out.push(OwnerEffect::Connect {
                        link,
                        role: LinkRole::Forward,
                        url,
                        stream_name,
                    });
                }
                ForwardEffect::Disconnect(l) => out.push(OwnerEffect::Disconnect(l)),
                ForwardEffect::Join => {
                    out.push(OwnerEffect::ForwardJoin(
                        self.cache.join_frames().cloned().collect(),
                    ));
                }
                ForwardEffect::Note(n) => out.push(OwnerEffect::Note(OwnerNote::Forward(n))),
            }
        }
    }

    /// Applies updates to the segmenter, the join cache, the forward and every subscriber.
    fn broadcast(
        &mut self,
        updates: impl IntoIterator<Item = StreamUpdate>,
        out: &mut Vec<OwnerEffect>,
    ) {
        for update in updates {
            self.feed_hls(&update, out);
            self.cache.handle_update(&update);
            match &update {
                StreamUpdate::Frame(f)
                    if self.forward.as_ref().is_some_and(Forward::is_publishing) =>
                {
                    out.push(OwnerEffect::ForwardFrame(f.clone()));
                }
                StreamUpdate::Ended(_) => {
                    if let Some(mut fw) = self.forward.take() {
                        let mut fe = Vec::new();
                        fw.stop(&mut fe);
                        self.apply_forward(fe, out);
                        out.push(OwnerEffect::ViewChanged);
                    }
                }
                _ => {}
            }
            let resync_point = match &update {
                StreamUpdate::Frame(f) => f.flags.sync_point,
                _ => true,
            };
            for s in &mut self.subscribers {
                if s.lagging {
                    // Resynchronise at a keyframe or a state change with a fresh snapshot;
                    // a failed send marks it lagging again.
                    if resync_point {
                        s.lagging = false;
                        out.push(OwnerEffect::Update {
                            to: s.shard,
                            update: self.cache.snapshot(),
                        });
                    }
                    continue;
                }
                out.push(OwnerEffect::Update {
                    to: s.shard,
                    update: update.clone(),
                });
            }
        }
    }

    fn feed_hls(&mut self, update: &StreamUpdate, out: &mut Vec<OwnerEffect>) {
        if self.feed.is_some() {
            // The HLS pull serves the origin's own segments.
            return;
        }
        self.segment(update, out);
        self.follow_hinted(out);
        if matches!(update, StreamUpdate::Ended(_)) {
            self.segmenter = None;
            self.follow_hinted(out);
        }
    }

    fn segment(&mut self, update: &StreamUpdate, out: &mut Vec<OwnerEffect>) {
        let refused_before = self
            .segmenter
            .as_ref()
            .map_or(0, |s| s.refused_segments + s.ll_heap_chunks());
        let unaligned_before = self.segmenter.as_ref().map_or(0, |s| s.unaligned_cuts);
        let result = match update {
            StreamUpdate::Started { republish: false } => {
                let mut segmenter =
                    Segmenter::new(self.config.hls, self.store.clone(), self.key.stream());
                segmenter.set_wall_clock(self.wall_ms);
                self.segmenter = Some(segmenter);
                Ok(None)
            }
            StreamUpdate::Started { republish: true } => {
                Ok(self.segmenter.as_mut().and_then(|s| s.handle_republish()))
            }
            StreamUpdate::Frame(f) => match &mut self.segmenter {
                Some(s) => s.handle_frame(f),
                None => Ok(None),
            },
            // A stream that never made a segment (no track HLS could carry) has no playlist.
            // (The segmenter goes after the part being streamed is followed to its end.)
            StreamUpdate::Ended(_) => Ok(self
                .segmenter
                .as_mut()
                .map(|s| s.handle_end())
                .filter(|snap| !snap.segments.is_empty())),
            StreamUpdate::Unpublished
            | StreamUpdate::Snapshot { .. }
            | StreamUpdate::Unavailable { .. } => Ok(None),
        };
        // A refused TS segment, or LL-HLS chunks the arena had no room for: make room.
        let refused = self
            .segmenter
            .as_ref()
            .map_or(0, |s| s.refused_segments + s.ll_heap_chunks())
            > refused_before;
        if let Some(why) = self.segmenter.as_mut().and_then(|s| s.take_dropped()) {
            out.push(OwnerEffect::Note(OwnerNote::HlsTrackDropped(why)));
        }
        if let Some(s) = &self.segmenter {
            if s.unaligned_cuts > unaligned_before {
                out.push(OwnerEffect::Note(OwnerNote::HlsUnaligned {
                    gap_ms: s.last_unaligned_gap_ms,
                    first: unaligned_before == 0,
                }));
            }
        }
        match result {
            Ok(Some(snap)) => out.push(OwnerEffect::Hls(snap)),
            Ok(None) => {}
            Err(e) => {
                self.segmenter = None;
                out.push(OwnerEffect::Note(OwnerNote::HlsStopped(e)));
            }
        }
        if refused {
            out.push(OwnerEffect::HlsRefused);
        }
    }

    /// The shards subscribed now (for a shard that must abandon this state, e.g. after a
    /// panic inside it, and end the stream for their viewers).
    pub fn subscribers(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.subscribers.iter().map(|s| s.shard)
    }
}

#[cfg(test)]
mod tests;
