//! Stream state: the master on the owner shard (publisher lifecycle, timestamps, frames built
//! once) and the replica every shard with viewers keeps (headers plus GOP cache for joins).
//!
//! The master turns publisher input into [`StreamUpdate`]s; a replica is a pure function of
//! the updates it was fed, so the owner's own replica and every remote one agree.
//!
//! Publisher lifecycle, in steps:
//! 1. `Idle` → publish → `Live`. A second publish while `Live` is refused (`BadName`).
//! 2. The publisher leaves → `Grace` until `now + grace_ms`; viewers stay attached.
//! 3. A publish during `Grace` → `Live` again: timestamps are rebased to continue after the
//!    last one sent, and replicas drop their GOP so joins wait for the new headers.
//! 4. `Grace` expires → `Ended` goes out and the master is `Idle` (and can be freed). It says
//!    [`StreamEnd::Failed`] when the publisher was lost rather than unpublished, so viewers
//!    can tell a failure from an end.

use bytes::Bytes;

use crate::gop::{GopCache, GopLimits};
use crate::media::{Frame, FrameFlags, MediaKind, TagInfo};
use crate::rtmp::timestamp::TimestampUnwrapper;

/// Who publishes: an engine-assigned id, unique per machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublisherId(pub u64);

/// Why a publish is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// Someone is already publishing this key.
    #[error("stream is already being published")]
    AlreadyPublishing,
}

/// What a master tells the replicas.
#[derive(Debug, Clone)]
pub enum StreamUpdate {
    /// A publisher went live. `republish` is true when it continues a stream in grace.
    Started { republish: bool },
    /// A frame (media, sequence header or metadata).
    Frame(Frame),
    /// The publisher left; viewers wait for a republish.
    Unpublished,
    /// The grace period ran out (or the stream was let go): the stream is over, and how.
    Ended(StreamEnd),
    /// An edge's pull tried every origin and none gives the stream (`not_found`: each
    /// answered that it has no such stream; otherwise some could not be reached). Viewers
    /// still waiting for the stream are answered now; the pull goes on trying.
    Unavailable { not_found: bool },
    /// Everything a new replica needs, in join order.
    Snapshot { live: bool, frames: Vec<Frame> },
}

/// How a stream ended, for its viewers: a clean end and a failure are told apart where the
/// protocol allows it (RTMP: a status or an error; HTTP-FLV: a closed or a truncated body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The publisher unpublished (or the origin said its stream ended), or the stream was
    /// let go because nobody watched it.
    Finished,
    /// The source was lost (a publisher's connection dropped without unpublishing, the
    /// upstream connection failed) and nothing took its place within the grace.
    Failed,
}

/// How a publisher left its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It unpublished (RTMP `FCUnpublish`/`deleteStream`, an origin's `UnpublishNotify`).
    Unpublished,
    /// Its connection dropped or failed without a word.
    Lost,
}

/// The publisher lifecycle of a stream, as the streams API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterPhase {
    Idle,
    Live,
    /// The publisher left; viewers wait for a republish.
    Grace,
}

impl MasterPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterPhase::Idle => "idle",
            MasterPhase::Live => "live",
            MasterPhase::Grace => "grace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MasterState {
    Idle,
    Live(PublisherId),
    Grace {
        until_ms: u64,
        since_ms: u64,
        how: Departure,
    },
}

/// The owner shard's state for one stream.
#[derive(Debug)]
pub struct StreamMaster {
    state: MasterState,
    grace_ms: u64,
    unwrapper: TimestampUnwrapper,
    /// Output time = unwrapped input time + offset.
    offset_ms: i64,
    last_out_ms: Option<u64>,
    rebase_gap_ms: Option<u64>,
    has_video: bool,
}

impl StreamMaster {
    pub fn new(grace_ms: u64) -> Self {
        Self {
            state: MasterState::Idle,
            grace_ms,
            unwrapper: TimestampUnwrapper::new(),
            offset_ms: 0,
            last_out_ms: None,
            rebase_gap_ms: None,
            has_video: false,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.state == MasterState::Idle
    }

    /// Whether `publisher` is the live publisher.
    pub fn is_live(&self, publisher: PublisherId) -> bool {
        self.state == MasterState::Live(publisher)
    }

    /// Where the publisher lifecycle stands.
    pub fn phase(&self) -> MasterPhase {
        match self.state {
            MasterState::Idle => MasterPhase::Idle,
            MasterState::Live(_) => MasterPhase::Live,
            MasterState::Grace { .. } => MasterPhase::Grace,
        }
    }

    /// Ends the stream now, whatever its state (an edge's pull torn down): viewers are told it
    /// ended and the master is `Idle`.
    pub fn end(&mut self) -> Vec<StreamUpdate> {
        if self.state == MasterState::Idle {
            return Vec::new();
        }
        self.state = MasterState::Idle;
        vec![StreamUpdate::Ended(StreamEnd::Finished)]
    }

    /// A publisher asks for the key.
    pub fn handle_publish(
        &mut self,
        publisher: PublisherId,
        now_ms: u64,
    ) -> Result<Vec<StreamUpdate>, PublishError> {
        match self.state {
            MasterState::Live(_) => Err(PublishError::AlreadyPublishing),
            MasterState::Idle => {
                self.state = MasterState::Live(publisher);
                self.unwrapper = TimestampUnwrapper::new();
                self.offset_ms = 0;
                self.last_out_ms = None;
                self.rebase_gap_ms = None;
                self.has_video = false;
                Ok(vec![StreamUpdate::Started { republish: false }])
            }
            MasterState::Grace { since_ms, .. } => {
                self.state = MasterState::Live(publisher);
                self.unwrapper = TimestampUnwrapper::new();
                self.rebase_gap_ms = Some(now_ms.saturating_sub(since_ms).max(1));
                self.has_video = false;
                Ok(vec![StreamUpdate::Started { republish: true }])
            }
        }
    }

    /// A media message from `publisher`, its header parsed where it arrived (`tag`).
    /// Messages from anyone but the live publisher (late messages of a refused or replaced
    /// one) are ignored.
    pub fn handle_media(
        &mut self,
        publisher: PublisherId,
        timestamp: u32,
        body: Bytes,
        tag: TagInfo,
    ) -> Option<Frame> {
        if self.state != MasterState::Live(publisher) {
            return None;
        }
        let flags = match tag {
            TagInfo::Video(v) => {
                if v.info_only {
                    return None;
                }
                self.has_video = true;
                FrameFlags {
                    sync_point: v.keyframe && !v.sequence_header && !v.end_of_sequence,
                    header: v.sequence_header,
                }
            }
            TagInfo::Audio(a) => FrameFlags {
                sync_point: !self.has_video && !a.sequence_header,
                header: a.sequence_header,
            },
            TagInfo::Data => FrameFlags {
                sync_point: false,
                header: true,
            },
        };
        if let Some(gap) = self.rebase_gap_ms {
            // Sequence headers of a new publisher may carry any old time (an origin replays
            // them with the time they were first sent): they go out at the rebase point, and
            // the timeline is rebased on the first real frame.
            let target = self.last_out_ms.map_or(0, |l| l + gap);
            if flags.header {
                return Some(Frame::with_tag(tag, target, flags, body));
            }
        }
        let ext = self.unwrapper.unwrap(timestamp);
        if let Some(gap) = self.rebase_gap_ms.take() {
            let target = self.last_out_ms.map_or(0, |l| l + gap);
            self.offset_ms = target as i64 - ext as i64;
        }
        let out = (ext as i64 + self.offset_ms).max(0) as u64;
        self.last_out_ms = Some(self.last_out_ms.map_or(out, |l| l.max(out)));
        Some(Frame::with_tag(tag, out, flags, body))
    }

    /// `onMetaData` from `publisher`.
    pub fn handle_metadata(&mut self, publisher: PublisherId, body: Bytes) -> Option<Frame> {
        if self.state != MasterState::Live(publisher) {
            return None;
        }
        // Encoders announce video before its first message (x264's lookahead can hold it
        // back a second or more): audio is no sync point of a stream that will have video.
        if crate::rtmp::amf::metadata_declares_video(&body) {
            self.has_video = true;
        }
        let flags = FrameFlags {
            sync_point: false,
            header: true,
        };
        Some(Frame::new(MediaKind::Data, 0, flags, body))
    }

    /// The publisher left (`how`: it unpublished, or its connection was lost).
    pub fn handle_unpublish(
        &mut self,
        publisher: PublisherId,
        how: Departure,
        now_ms: u64,
    ) -> Vec<StreamUpdate> {
        if self.state != MasterState::Live(publisher) {
            return Vec::new();
        }
        self.state = MasterState::Grace {
            until_ms: now_ms + self.grace_ms,
            since_ms: now_ms,
            how,
        };
        vec![StreamUpdate::Unpublished]
    }

    /// When `handle_timeout` wants to be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            MasterState::Grace { until_ms, .. } => Some(until_ms),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<StreamUpdate> {
        match self.state {
            MasterState::Grace { until_ms, how, .. } if now_ms >= until_ms => {
                self.state = MasterState::Idle;
                vec![StreamUpdate::Ended(match how {
                    Departure::Unpublished => StreamEnd::Finished,
                    Departure::Lost => StreamEnd::Failed,
                })]
            }
            _ => Vec::new(),
        }
    }
}

/// Where a replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// No publisher yet (viewers wait, bounded by the engine's play-wait).
    Waiting,
    Live,
    /// Publisher gone, grace running.
    Unpublished,
    Ended,
}

/// What one shard keeps of a stream for its viewers.
#[derive(Debug)]
pub struct StreamReplica {
    state: ReplicaState,
    metadata: Option<Frame>,
    video_header: Option<Frame>,
    audio_header: Option<Frame>,
    has_video: bool,
    gop: GopCache,
}

impl StreamReplica {
    pub fn new(limits: GopLimits) -> Self {
        Self {
            state: ReplicaState::Waiting,
            metadata: None,
            video_header: None,
            audio_header: None,
            has_video: false,
            gop: GopCache::new(limits),
        }
    }

    pub fn state(&self) -> ReplicaState {
        self.state
    }

    /// Applies an update from the master.
    pub fn handle_update(&mut self, update: &StreamUpdate) {
        match update {
            StreamUpdate::Started { republish } => {
                if *republish {
                    self.clear();
                }
                self.state = ReplicaState::Live;
            }
            StreamUpdate::Frame(f) => self.handle_frame(f),
            StreamUpdate::Unpublished => self.state = ReplicaState::Unpublished,
            StreamUpdate::Ended(_) => {
                self.clear();
                self.state = ReplicaState::Ended;
            }
            StreamUpdate::Unavailable { .. } => {}
            StreamUpdate::Snapshot { live, frames } => {
                self.clear();
                self.state = if *live {
                    ReplicaState::Live
                } else {
                    ReplicaState::Waiting
                };
                for f in frames {
                    self.handle_frame(f);
                }
            }
        }
    }

    fn handle_frame(&mut self, f: &Frame) {
        if f.kind == MediaKind::Video
            || (f.kind == MediaKind::Data
                && f.flags.header
                && crate::rtmp::amf::metadata_declares_video(&f.payload))
        {
            self.has_video = true;
        }
        if f.flags.header {
            let slot = match f.kind {
                MediaKind::Data => &mut self.metadata,
                MediaKind::Video => &mut self.video_header,
                MediaKind::Audio => &mut self.audio_header,
            };
            *slot = Some(f.clone());
        } else {
            self.gop.handle_frame(f, self.has_video);
        }
    }

    fn clear(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.has_video = false;
        self.gop.clear();
    }

    /// What a joining viewer gets first, in order: metadata, sequence headers, the GOP.
    pub fn join_frames(&self) -> impl Iterator<Item = &Frame> {
        self.metadata
            .iter()
            .chain(self.video_header.iter())
            .chain(self.audio_header.iter())
            .chain(self.gop.frames())
    }

    /// Whether a viewer joining now must skip to the next keyframe: the stream has (or
    /// announced) video and the join cache holds no keyframe yet, so what comes live next
    /// (audio, or pictures that depend on a keyframe it never got) must not reach it first.
    /// Players differ here; GStreamer's flvdemux gives up on a stream whose first frames are
    /// audio when only its video is wanted.
    pub fn join_needs_keyframe(&self) -> bool {
        self.has_video && self.gop.frames().next().is_none()
    }

    /// A snapshot for a shard that subscribes now.
    pub fn snapshot(&self) -> StreamUpdate {
        StreamUpdate::Snapshot {
            live: self.state == ReplicaState::Live,
            frames: self.join_frames().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{parse_tag, MediaError};

    /// `handle_media` with the header parsed here, as the engine parses it on arrival.
    trait Feed {
        fn media(
            &mut self,
            p: PublisherId,
            k: MediaKind,
            ts: u32,
            body: Bytes,
        ) -> Result<Option<Frame>, MediaError>;
    }

    impl Feed for StreamMaster {
        fn media(
            &mut self,
            p: PublisherId,
            k: MediaKind,
            ts: u32,
            body: Bytes,
        ) -> Result<Option<Frame>, MediaError> {
            let tag = parse_tag(k, &body)?;
            Ok(self.handle_media(p, ts, body, tag))
        }
    }

    const P1: PublisherId = PublisherId(1);
    const P2: PublisherId = PublisherId(2);

    fn avc(key: bool, seq: bool) -> Bytes {
        let b0 = if key { 0x17 } else { 0x27 };
        Bytes::from(vec![b0, if seq { 0 } else { 1 }, 0, 0, 0, 0xaa])
    }

    #[test]
    fn second_publish_is_refused_and_first_continues() {
        let mut m = StreamMaster::new(10_000);
        assert!(m.handle_publish(P1, 0).is_ok());
        assert_eq!(
            m.handle_publish(P2, 1).unwrap_err(),
            PublishError::AlreadyPublishing
        );
        assert!(m
            .media(P2, MediaKind::Video, 0, avc(true, false))
            .unwrap()
            .is_none());
        assert!(m
            .media(P1, MediaKind::Video, 0, avc(true, false))
            .unwrap()
            .is_some());
    }

    #[test]
    fn republish_in_grace_continues_timestamps() {
        let mut m = StreamMaster::new(10_000);
        m.handle_publish(P1, 0).unwrap();
        let f = m
            .media(P1, MediaKind::Video, 5000, avc(true, false))
            .unwrap()
            .unwrap();
        assert_eq!(f.timestamp_ms, 5000);
        assert!(matches!(
            m.handle_unpublish(P1, Departure::Unpublished, 100)[..],
            [StreamUpdate::Unpublished]
        ));
        assert_eq!(m.poll_timeout(), Some(10_100));
        let u = m.handle_publish(P2, 350).unwrap();
        assert!(matches!(u[..], [StreamUpdate::Started { republish: true }]));
        // The new publisher's header goes out 250 ms after the last frame.
        let f = m
            .media(P2, MediaKind::Video, 0, avc(true, true))
            .unwrap()
            .unwrap();
        assert_eq!(f.timestamp_ms, 5250);
        assert!(f.flags.header && !f.flags.sync_point);
        let f = m
            .media(P2, MediaKind::Video, 40, avc(true, false))
            .unwrap()
            .unwrap();
        assert_eq!(
            f.timestamp_ms, 5250,
            "the first real frame anchors the rebase"
        );
        let f = m
            .media(P2, MediaKind::Video, 80, avc(false, false))
            .unwrap()
            .unwrap();
        assert_eq!(f.timestamp_ms, 5290);
    }

    /// A failover to another origin: its headers come with old times, its GOP with later
    /// ones. Output stays monotonic and starts right after the gap.
    #[test]
    fn rebase_ignores_header_times_of_the_new_publisher() {
        let mut m = StreamMaster::new(10_000);
        m.handle_publish(P1, 0).unwrap();
        m.media(P1, MediaKind::Video, 60_000, avc(true, false))
            .unwrap()
            .unwrap();
        m.handle_unpublish(P1, Departure::Lost, 100);
        m.handle_publish(P2, 130).unwrap();
        let h = m
            .media(P2, MediaKind::Video, 0, avc(true, true))
            .unwrap()
            .unwrap();
        assert_eq!(h.timestamp_ms, 60_030);
        let k = m
            .media(P2, MediaKind::Video, 58_000, avc(true, false))
            .unwrap()
            .unwrap();
        assert_eq!(k.timestamp_ms, 60_030);
        let f = m
            .media(P2, MediaKind::Video, 58_040, avc(false, false))
            .unwrap()
            .unwrap();
        assert_eq!(f.timestamp_ms, 60_070);
    }

    #[test]
    fn grace_expiry_ends_the_stream() {
        let mut m = StreamMaster::new(1000);
        m.handle_publish(P1, 0).unwrap();
        m.handle_unpublish(P1, Departure::Unpublished, 10);
        assert!(m.handle_timeout(1009).is_empty());
        assert!(matches!(
            m.handle_timeout(1010)[..],
            [StreamUpdate::Ended(StreamEnd::Finished)]
        ));
        assert!(m.is_idle());
        // A fresh publish after the end starts a new timeline.
        m.handle_publish(P2, 2000).unwrap();
        let f = m
            .media(P2, MediaKind::Audio, 7, Bytes::from_static(b"\xaf\x01\x00"))
            .unwrap()
            .unwrap();
        assert_eq!(f.timestamp_ms, 7);
        assert!(f.flags.sync_point, "audio before any video is a sync point");
    }

    /// A publisher lost without unpublishing, and not replaced within the grace: the end is
    /// a failure. One that comes back within the grace continues the stream.
    #[test]
    fn a_lost_publisher_ends_the_stream_as_a_failure() {
        let mut m = StreamMaster::new(1000);
        m.handle_publish(P1, 0).unwrap();
        m.handle_unpublish(P1, Departure::Lost, 10);
        assert!(matches!(
            m.handle_timeout(1010)[..],
            [StreamUpdate::Ended(StreamEnd::Failed)]
        ));
        m.handle_publish(P1, 2000).unwrap();
        m.handle_unpublish(P1, Departure::Lost, 2010);
        m.handle_publish(P2, 2500).unwrap();
        m.handle_unpublish(P2, Departure::Unpublished, 3000);
        assert!(
            matches!(
                m.handle_timeout(4000)[..],
                [StreamUpdate::Ended(StreamEnd::Finished)]
            ),
            "the last departure decides"
        );
        // Ending a stream on purpose (an idle pull) is no failure.
        m.handle_publish(P1, 5000).unwrap();
        assert!(matches!(
            m.end()[..],
            [StreamUpdate::Ended(StreamEnd::Finished)]
        ));
    }

    /// Regression (GStreamer's rtmp2src joining a few seconds after an x264 publish began got
    /// "Got EOS before any data"): a viewer arriving after the headers but before the first
    /// keyframe was sent the audio that came first. Metadata that announces video makes audio
    /// no sync point, and the joiner waits for the keyframe.
    #[test]
    fn regression_join_before_the_first_keyframe_waits_for_it() {
        let mut m = StreamMaster::new(1000);
        let mut r = StreamReplica::new(GopLimits::default());
        for u in m.handle_publish(P1, 0).unwrap() {
            r.handle_update(&u);
        }
        let mut props = std::collections::HashMap::new();
        props.insert(
            "videocodecid".into(),
            crate::rtmp::amf::Amf0Value::Number(7.0),
        );
        let meta = m
            .handle_metadata(P1, crate::rtmp::amf::metadata_body(&props))
            .unwrap();
        r.handle_update(&StreamUpdate::Frame(meta));
        let header = m
            .media(
                P1,
                MediaKind::Audio,
                0,
                Bytes::from_static(b"\xaf\x00\x12\x10"),
            )
            .unwrap()
            .unwrap();
        r.handle_update(&StreamUpdate::Frame(header));
        let audio = m
            .media(
                P1,
                MediaKind::Audio,
                23,
                Bytes::from_static(b"\xaf\x01\x01"),
            )
            .unwrap()
            .unwrap();
        assert!(
            !audio.flags.sync_point,
            "audio of a stream announcing video"
        );
        r.handle_update(&StreamUpdate::Frame(audio));
        assert!(r.join_needs_keyframe());
        assert!(
            r.join_frames().all(|f| f.flags.header),
            "no audio in the join cache"
        );
        let key = m
            .media(P1, MediaKind::Video, 900, avc(true, false))
            .unwrap()
            .unwrap();
        assert!(key.flags.sync_point);
        r.handle_update(&StreamUpdate::Frame(key));
        assert!(!r.join_needs_keyframe());
        // Audio-only streams start anywhere.
        let mut a = StreamReplica::new(GopLimits::default());
        a.handle_update(&StreamUpdate::Started { republish: false });
        assert!(!a.join_needs_keyframe());
    }

    #[test]
    fn replica_join_order_and_snapshot() {
        let mut m = StreamMaster::new(1000);
        let mut r = StreamReplica::new(GopLimits::default());
        for u in m.handle_publish(P1, 0).unwrap() {
            r.handle_update(&u);
        }
        let meta = m.handle_metadata(P1, Bytes::from_static(b"meta")).unwrap();
        let inputs = [
            (MediaKind::Video, 0, avc(true, true)),
            (MediaKind::Audio, 0, Bytes::from_static(b"\xaf\x00\x12\x10")),
            (MediaKind::Video, 0, avc(true, false)),
            (MediaKind::Audio, 10, Bytes::from_static(b"\xaf\x01\x01")),
            (MediaKind::Video, 40, avc(false, false)),
            (MediaKind::Video, 80, avc(true, false)),
            (MediaKind::Video, 120, avc(false, false)),
        ];
        r.handle_update(&StreamUpdate::Frame(meta));
        for (k, ts, b) in inputs {
            let f = m.media(P1, k, ts, b).unwrap().unwrap();
            r.handle_update(&StreamUpdate::Frame(f));
        }
        let order: Vec<(MediaKind, bool, u64)> = r
            .join_frames()
            .map(|f| (f.kind, f.flags.header, f.timestamp_ms))
            .collect();
        assert_eq!(
            order,
            vec![
                (MediaKind::Data, true, 0),
                (MediaKind::Video, true, 0),
                (MediaKind::Audio, true, 0),
                (MediaKind::Video, false, 80),
                (MediaKind::Video, false, 120),
            ]
        );
        let mut copy = StreamReplica::new(GopLimits::default());
        copy.handle_update(&r.snapshot());
        assert_eq!(copy.state(), ReplicaState::Live);
        assert_eq!(copy.join_frames().count(), 5);
        copy.handle_update(&StreamUpdate::Started { republish: true });
        assert_eq!(copy.join_frames().count(), 0);
    }
}
