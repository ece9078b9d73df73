//! One shard's side of one stream: the viewers it serves and the replica of the stream they
//! are fed from (headers plus GOP, [`StreamReplica`]), sans-IO.
//!
//! Inputs: a viewer arrives or leaves, an update comes from the stream's owner, a deadline
//! passes (`now_ms` always an argument). Outputs: [`ReplicaEffect`]s, appended to the caller's
//! vector, which the shard executes: subscribe or unsubscribe at the owner, deliver a join
//! to one viewer, fan a frame out to every joined viewer, end a viewer with a reason.
//!
//! Joining, in steps:
//! 1. The first viewer subscribes (the owner answers with a snapshot).
//! 2. A viewer of a live stream (or one in its republish grace) joins at once: the shard
//!    delivers [`Replica::join_frames`], and if the join cache holds no keyframe of a video
//!    stream, the viewer waits for the next keyframe.
//! 3. A viewer of a stream not live yet waits, up to `play_wait_ms`; it joins when the
//!    stream starts, or ends with [`FinishReason::NotFound`].
//! 4. The last viewer leaving unsubscribes and releases the replica.
//!
//! Must not: touch sockets or outlets (the viewer handle `V` is opaque here), read a clock,
//! or hold frames beyond the join cache's bounds.

use std::sync::Arc;

use crate::gop::GopLimits;
use crate::ids::ViewerId;
use crate::media::Frame;
use crate::stream::{ReplicaState, StreamEnd, StreamReplica, StreamUpdate};

/// What a replica needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// How long a viewer waits for a stream that is not live.
    pub play_wait_ms: u64,
    pub gop: GopLimits,
}

/// Why a viewer is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The publisher left and its grace ran out (RTMP: `NetStream.Play.UnpublishNotify`;
    /// HTTP-FLV: the body's last chunk).
    StreamEnded,
    /// Nobody published within the play-wait, or every origin said it has no such stream
    /// (RTMP: `NetStream.Play.StreamNotFound`, HTTP-FLV: 404).
    NotFound,
    /// The stream's source was lost and did not come back within the grace (RTMP: an
    /// error-level `NetStream.Play.Failed`; HTTP-FLV: the body ends without its last
    /// chunk, so a client sees a truncated transfer, not an end).
    Failed,
    /// An edge could reach none of its origins (RTMP: an error-level
    /// `NetStream.Play.Failed`; HTTP-FLV: 502).
    OriginUnavailable,
}

impl FinishReason {
    /// The RTMP `onStatus` code.
    pub fn rtmp_code(self) -> &'static str {
        match self {
            FinishReason::StreamEnded => "NetStream.Play.UnpublishNotify",
            FinishReason::NotFound => "NetStream.Play.StreamNotFound",
            FinishReason::Failed | FinishReason::OriginUnavailable => "NetStream.Play.Failed",
        }
    }

    /// The RTMP `onStatus` level: `status` for an orderly end, `error` for the rest (players
    /// such as ffmpeg exit with an error on it).
    pub fn rtmp_level(self) -> &'static str {
        match self {
            FinishReason::StreamEnded => "status",
            _ => "error",
        }
    }

    /// The HTTP status of a response that had not started.
    pub fn http_status(self) -> u16 {
        match self {
            FinishReason::StreamEnded | FinishReason::NotFound => 404,
            FinishReason::Failed | FinishReason::OriginUnavailable => 502,
        }
    }

    /// Whether the stream failed rather than ended (a started HTTP-FLV body is cut short).
    pub fn is_failure(self) -> bool {
        matches!(self, FinishReason::Failed | FinishReason::OriginUnavailable)
    }

    /// Words for a log line or a response body.
    pub fn description(self) -> &'static str {
        match self {
            FinishReason::StreamEnded => "stream ended",
            FinishReason::NotFound => "stream not found",
            FinishReason::Failed => "stream failed: its source was lost",
            FinishReason::OriginUnavailable => "no origin could be reached for this stream",
        }
    }
}

/// What the shard must do for a replica.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaEffect<V> {
    /// Ask the stream's owner for its updates; `query` is the first viewer's `?…` (it goes
    /// upstream if this starts an edge pull).
    Subscribe { query: Option<Arc<str>> },
    /// No viewers left here: tell the owner.
    Unsubscribe,
    /// Deliver the join sequence to `viewer`: its wire head, then [`Replica::join_frames`];
    /// then, with `needs_keyframe`, it skips to the next keyframe.
    Join { viewer: V, needs_keyframe: bool },
    /// Queue `frame` for every viewer in [`Replica::joined`].
    Fanout(Frame),
    /// A resync after this shard lagged: queue the frames `viewer` does not have yet
    /// (skipping to a keyframe first when the cache has none).
    Resync {
        viewer: V,
        frames: Vec<Frame>,
        gop_empty: bool,
    },
    /// A republish: `viewer` resumes at the next keyframe (fresh headers come as frames).
    RequireKeyframe { viewer: V },
    /// End `viewer` with `reason`; it is no longer this replica's.
    Finish { viewer: V, reason: FinishReason },
    /// The replica is empty: drop it.
    Released,
}

#[derive(Debug)]
struct Viewer<V> {
    id: ViewerId,
    handle: V,
    joined: bool,
    /// While waiting for the stream: when the play-wait ends.
    wait_until_ms: Option<u64>,
}

/// One stream's viewers on one shard.
#[derive(Debug)]
pub struct Replica<V> {
    config: ReplicaConfig,
    cache: StreamReplica,
    viewers: Vec<Viewer<V>>,
    subscribed: bool,
}

impl<V: Clone> Replica<V> {
    pub fn new(config: ReplicaConfig) -> Self {
        Self {
            config,
            cache: StreamReplica::new(config.gop),
            viewers: Vec::new(),
            subscribed: false,
        }
    }

    /// Where the stream stands, as this shard knows it.
    pub fn state(&self) -> ReplicaState {
        self.cache.state()
    }

    /// What a joining viewer gets first: metadata, sequence headers, the GOP.
    pub fn join_frames(&self) -> impl Iterator<Item = &Frame> {
        self.cache.join_frames()
    }

    /// The viewers that receive live frames.
    pub fn joined(&self) -> impl Iterator<Item = &V> {
        self.viewers.iter().filter(|v| v.joined).map(|v| &v.handle)
    }

    /// Every viewer, joined or waiting.
    pub fn viewers(&self) -> impl Iterator<Item = &V> {
        self.viewers.iter().map(|v| &v.handle)
    }

    pub fn len(&self) -> usize {
        self.viewers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.viewers.is_empty()
    }

    /// A viewer arrives.
    pub fn handle_add_viewer(
        &mut self,
        id: ViewerId,
        handle: V,
        query: Option<Arc<str>>,
        now_ms: u64,
        out: &mut Vec<ReplicaEffect<V>>,
    ) {
        if !self.subscribed {
            self.subscribed = true;
            out.push(ReplicaEffect::Subscribe { query });
        }
        let live = matches!(
            self.cache.state(),
            ReplicaState::Live | ReplicaState::Unpublished
        );
        if live {
            out.push(self.join_effect(handle.clone()));
        }
        self.viewers.push(Viewer {
            id,
            handle,
            joined: live,
            wait_until_ms: (!live).then(|| now_ms.saturating_add(self.config.play_wait_ms)),
        });
    }

    /// A viewer leaves (its connection closed, or it stopped playing). Returns whether it
    /// was here (one this replica ended already is not).
    pub fn handle_remove_viewer(&mut self, id: ViewerId, out: &mut Vec<ReplicaEffect<V>>) -> bool {
        let before = self.viewers.len();
        self.viewers.retain(|v| v.id != id);
        let removed = self.viewers.len() != before;
        if removed {
            self.release_if_empty(out);
        }
        removed
    }

    /// An update from the stream's owner.
    pub fn handle_update(
        &mut self,
        update: &StreamUpdate,
        _now_ms: u64,
        out: &mut Vec<ReplicaEffect<V>>,
    ) {
        self.cache.handle_update(update);
        match update {
            StreamUpdate::Frame(f) => {
                if self.viewers.iter().any(|v| v.joined) {
                    out.push(ReplicaEffect::Fanout(f.clone()));
                }
            }
            StreamUpdate::Started { republish } => {
                for i in 0..self.viewers.len() {
                    if self.viewers[i].joined {
                        if *republish {
                            let viewer = self.viewers[i].handle.clone();
                            out.push(ReplicaEffect::RequireKeyframe { viewer });
                        }
                    } else {
                        self.join(i, out);
                    }
                }
            }
            StreamUpdate::Snapshot { live, frames } => {
                let gop_empty = !frames.iter().any(|f| !f.flags.header);
                for i in 0..self.viewers.len() {
                    if self.viewers[i].joined {
                        // A resync after lag: fill the hole from the GOP.
                        out.push(ReplicaEffect::Resync {
                            viewer: self.viewers[i].handle.clone(),
                            frames: frames.clone(),
                            gop_empty,
                        });
                    } else if *live {
                        self.join(i, out);
                    }
                }
            }
            StreamUpdate::Unpublished => {}
            StreamUpdate::Ended(end) => {
                let reason = match end {
                    StreamEnd::Finished => FinishReason::StreamEnded,
                    StreamEnd::Failed => FinishReason::Failed,
                };
                for v in self.viewers.drain(..) {
                    out.push(ReplicaEffect::Finish {
                        viewer: v.handle,
                        reason,
                    });
                }
                self.release_if_empty(out);
            }
            StreamUpdate::Unavailable { not_found } => {
                let reason = if *not_found {
                    FinishReason::NotFound
                } else {
                    FinishReason::OriginUnavailable
                };
                self.finish_waiting(reason, |_| true, out);
            }
        }
    }

    /// When [`Replica::handle_timeout`] wants to run: the earliest play-wait deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.viewers.iter().filter_map(|v| v.wait_until_ms).min()
    }

    /// Ends the viewers whose play-wait is over.
    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut Vec<ReplicaEffect<V>>) {
        self.finish_waiting(
            FinishReason::NotFound,
            |v| v.wait_until_ms.is_some_and(|t| now_ms >= t),
            out,
        );
    }

    /// Ends the viewers still waiting for the stream that `pick` picks, with `reason`.
    fn finish_waiting(
        &mut self,
        reason: FinishReason,
        pick: impl Fn(&Viewer<V>) -> bool,
        out: &mut Vec<ReplicaEffect<V>>,
    ) {
        let mut ended = false;
        self.viewers.retain(|v| {
            let over = !v.joined && pick(v);
            if over {
                out.push(ReplicaEffect::Finish {
                    viewer: v.handle.clone(),
                    reason,
                });
                ended = true;
            }
            !over
        });
        if ended {
            self.release_if_empty(out);
        }
    }

    fn join(&mut self, i: usize, out: &mut Vec<ReplicaEffect<V>>) {
        self.viewers[i].joined = true;
        self.viewers[i].wait_until_ms = None;
        out.push(self.join_effect(self.viewers[i].handle.clone()));
    }

    fn join_effect(&self, viewer: V) -> ReplicaEffect<V> {
        ReplicaEffect::Join {
            viewer,
            needs_keyframe: self.cache.join_needs_keyframe(),
        }
    }

    fn release_if_empty(&mut self, out: &mut Vec<ReplicaEffect<V>>) {
        if self.viewers.is_empty() {
            if self.subscribed {
                self.subscribed = false;
                out.push(ReplicaEffect::Unsubscribe);
            }
            out.push(ReplicaEffect::Released);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::{FrameFlags, MediaKind};

    type Effects = Vec<ReplicaEffect<u32>>;

    fn config() -> ReplicaConfig {
        ReplicaConfig {
            play_wait_ms: 300,
            gop: GopLimits::default(),
        }
    }

    fn video(ts: u64, key: bool, header: bool) -> Frame {
        let b0 = if key { 0x17 } else { 0x27 };
        Frame::new(
            MediaKind::Video,
            ts,
            FrameFlags {
                sync_point: key && !header,
                header,
            },
            Bytes::from(vec![b0, u8::from(!header), 0, 0, 0, 0xaa]),
        )
    }

    fn add(r: &mut Replica<u32>, v: u32, now: u64) -> Effects {
        let mut out = Vec::new();
        r.handle_add_viewer(ViewerId(u64::from(v)), v, None, now, &mut out);
        out
    }

    fn update(r: &mut Replica<u32>, u: StreamUpdate) -> Effects {
        let mut out = Vec::new();
        r.handle_update(&u, 0, &mut out);
        out
    }

    #[test]
    fn play_before_publish_waits_then_joins_when_the_stream_starts() {
        let mut r = Replica::new(config());
        assert_eq!(
            add(&mut r, 1, 100),
            vec![ReplicaEffect::Subscribe { query: None }]
        );
        assert_eq!(add(&mut r, 2, 150), vec![], "subscribed once");
        assert_eq!(r.poll_timeout(), Some(400));
        let out = update(
            &mut r,
            StreamUpdate::Snapshot {
                live: false,
                frames: vec![],
            },
        );
        assert!(out.is_empty(), "not live yet: {out:?}");
        let out = update(&mut r, StreamUpdate::Started { republish: false });
        assert_eq!(
            out,
            vec![
                ReplicaEffect::Join {
                    viewer: 1,
                    needs_keyframe: false
                },
                ReplicaEffect::Join {
                    viewer: 2,
                    needs_keyframe: false
                }
            ]
        );
        assert_eq!(r.poll_timeout(), None);
        let f = video(0, true, false);
        assert_eq!(
            update(&mut r, StreamUpdate::Frame(f.clone())),
            vec![ReplicaEffect::Fanout(f)]
        );
        assert_eq!(r.joined().count(), 2);
    }

    #[test]
    fn play_before_publish_times_out_and_releases() {
        let mut r = Replica::new(config());
        add(&mut r, 1, 0);
        add(&mut r, 2, 200);
        let mut out = Vec::new();
        r.handle_timeout(299, &mut out);
        assert!(out.is_empty());
        r.handle_timeout(300, &mut out);
        assert_eq!(
            out,
            vec![ReplicaEffect::Finish {
                viewer: 1,
                reason: FinishReason::NotFound
            }]
        );
        assert_eq!(r.poll_timeout(), Some(500));
        out.clear();
        r.handle_timeout(500, &mut out);
        assert_eq!(
            out,
            vec![
                ReplicaEffect::Finish {
                    viewer: 2,
                    reason: FinishReason::NotFound
                },
                ReplicaEffect::Unsubscribe,
                ReplicaEffect::Released
            ]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn a_live_join_gets_the_cache_and_a_keyframe_wait_when_it_has_none() {
        let mut r = Replica::new(config());
        update(&mut r, StreamUpdate::Started { republish: false });
        update(&mut r, StreamUpdate::Frame(video(0, true, true)));
        // Headers only: a joiner must wait for the next keyframe.
        let out = add(&mut r, 7, 0);
        assert_eq!(
            out[1],
            ReplicaEffect::Join {
                viewer: 7,
                needs_keyframe: true
            }
        );
        update(&mut r, StreamUpdate::Frame(video(40, true, false)));
        let out = add(&mut r, 8, 0);
        assert_eq!(
            out,
            vec![ReplicaEffect::Join {
                viewer: 8,
                needs_keyframe: false
            }]
        );
        assert_eq!(r.join_frames().count(), 2, "header + keyframe");
    }

    #[test]
    fn republish_asks_joined_viewers_for_a_keyframe_and_end_finishes_everyone() {
        let mut r = Replica::new(config());
        update(&mut r, StreamUpdate::Started { republish: false });
        add(&mut r, 1, 0);
        assert_eq!(update(&mut r, StreamUpdate::Unpublished), vec![]);
        assert_eq!(
            update(&mut r, StreamUpdate::Started { republish: true }),
            vec![ReplicaEffect::RequireKeyframe { viewer: 1 }]
        );
        assert_eq!(
            update(&mut r, StreamUpdate::Ended(StreamEnd::Finished)),
            vec![
                ReplicaEffect::Finish {
                    viewer: 1,
                    reason: FinishReason::StreamEnded
                },
                ReplicaEffect::Unsubscribe,
                ReplicaEffect::Released
            ]
        );
    }

    #[test]
    fn a_lag_resync_goes_to_joined_viewers_and_joins_waiting_ones() {
        let mut r = Replica::new(config());
        update(&mut r, StreamUpdate::Started { republish: false });
        add(&mut r, 1, 0);
        let frames = vec![video(0, true, true), video(80, true, false)];
        let out = update(
            &mut r,
            StreamUpdate::Snapshot {
                live: true,
                frames: frames.clone(),
            },
        );
        assert_eq!(
            out,
            vec![ReplicaEffect::Resync {
                viewer: 1,
                frames,
                gop_empty: false
            }]
        );
    }

    /// A failed stream ends its viewers with a failure, not an end.
    #[test]
    fn a_failed_end_finishes_viewers_as_failed() {
        let mut r = Replica::new(config());
        update(&mut r, StreamUpdate::Started { republish: false });
        add(&mut r, 1, 0);
        assert_eq!(
            update(&mut r, StreamUpdate::Ended(StreamEnd::Failed))[0],
            ReplicaEffect::Finish {
                viewer: 1,
                reason: FinishReason::Failed
            }
        );
        assert!(FinishReason::Failed.is_failure());
        assert_eq!(FinishReason::Failed.rtmp_level(), "error");
        assert_eq!(FinishReason::StreamEnded.rtmp_level(), "status");
    }

    /// An edge whose origins all failed answers the viewers waiting for the stream at once
    /// (not at their play-wait), and leaves joined ones to the grace.
    #[test]
    fn unavailable_answers_waiting_viewers_only() {
        let mut r = Replica::new(config());
        add(&mut r, 1, 0);
        add(&mut r, 2, 0);
        assert_eq!(
            update(&mut r, StreamUpdate::Unavailable { not_found: false }),
            vec![
                ReplicaEffect::Finish {
                    viewer: 1,
                    reason: FinishReason::OriginUnavailable
                },
                ReplicaEffect::Finish {
                    viewer: 2,
                    reason: FinishReason::OriginUnavailable
                },
                ReplicaEffect::Unsubscribe,
                ReplicaEffect::Released
            ]
        );
        let mut r = Replica::new(config());
        update(&mut r, StreamUpdate::Started { republish: false });
        add(&mut r, 1, 0);
        update(&mut r, StreamUpdate::Unpublished);
        assert_eq!(
            update(&mut r, StreamUpdate::Unavailable { not_found: true }),
            vec![],
            "a joined viewer waits in the grace"
        );
        // Not found at every origin: a 404, as a play-wait that ran out.
        let mut r = Replica::new(config());
        add(&mut r, 3, 0);
        assert_eq!(
            update(&mut r, StreamUpdate::Unavailable { not_found: true })[0],
            ReplicaEffect::Finish {
                viewer: 3,
                reason: FinishReason::NotFound
            }
        );
    }

    #[test]
    fn the_last_viewer_leaving_unsubscribes() {
        let mut r = Replica::new(config());
        add(&mut r, 1, 0);
        add(&mut r, 2, 0);
        let mut out = Vec::new();
        r.handle_remove_viewer(ViewerId(1), &mut out);
        r.handle_remove_viewer(ViewerId(9), &mut out);
        assert!(out.is_empty());
        r.handle_remove_viewer(ViewerId(2), &mut out);
        assert_eq!(
            out,
            vec![ReplicaEffect::Unsubscribe, ReplicaEffect::Released]
        );
    }
}
