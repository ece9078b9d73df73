//! An HLS pull's segments as a live stream of frames, sans-IO: the "hybrid pull" that lets
//! RTMP and HTTP-FLV viewers at an edge watch an origin that gives only HLS. The stream's
//! owner runs one, as if it were a publisher; the segments are the ones the HLS pull
//! fetched anyway (once per machine), demuxed once.
//!
//! A segment, in steps:
//! 1. It arrives whole ([`HlsFeed::handle_segment`]), in any order, or as failed
//!    ([`HlsFeed::handle_segment_failed`]). The feed takes them in the edge's order from
//!    the newest one the pull listed when the feed started: a player joins at the live
//!    edge. It waits for a missing one while at most [`MAX_REORDER`] later ones are here,
//!    then skips it.
//! 2. [`TsDemuxer`] turns it into FLV tag bodies. A segment that does not demux is skipped
//!    whole; the frames before the error are not let through.
//! 3. Its 33-bit 90 kHz timestamps are unwrapped and rebased onto one millisecond
//!    timeline that starts at 0 and never goes back: at the first segment, after an
//!    EXT-X-DISCONTINUITY (an origin failover or restart), after a jump of more than
//!    [`MAX_JUMP_MS`], and when a track starts a segment more than [`BACK_TOLERANCE_MS`]
//!    before it ended the last, the next frame continues [`DISCONTINUITY_GAP_MS`] after
//!    the last. No track's time ever goes back.
//! 4. Frames are paced: each leaves when its time comes, measured from the first frame's
//!    release, as a publisher would send it. A segment that arrives late is let through at
//!    once. More than [`MAX_QUEUE_MS`] of media (or [`MAX_QUEUE_BYTES`]) waiting moves the
//!    clock forward so the surplus leaves at once: the queue is bounded.
//!
//! Must not: hold segments beyond the reorder window, read a clock, or know about
//! sockets and viewers.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::demux::{DemuxError, EsFrame, TsDemuxer};
use crate::media::MediaKind;

/// Later segments held while an earlier one is awaited.
pub const MAX_REORDER: usize = 3;
/// A timestamp jump (between segments) larger than this is a discontinuity.
pub const MAX_JUMP_MS: u64 = 10_000;
/// How far a track may start a segment before it ended the last without a rebase.
pub const BACK_TOLERANCE_MS: u64 = 100;
/// Where the timeline continues after a discontinuity: one frame's worth after the last.
pub const DISCONTINUITY_GAP_MS: u64 = 40;
/// Media waiting to be paced out, at most.
pub const MAX_QUEUE_MS: u64 = 10_000;
/// Bytes waiting to be paced out, at most.
pub const MAX_QUEUE_BYTES: usize = 32 << 20;
/// Frames due this soon leave together: one wake-up per 10 ms, not one per frame.
pub const PACE_SLACK_MS: u64 = 10;
const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// A frame leaving the feed: an FLV tag body at its stream time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFrame {
    pub kind: MediaKind,
    /// Milliseconds on the feed's timeline (RTMP's 32 bits wrap after 49 days).
    pub timestamp: u32,
    pub body: Bytes,
}

/// Why a segment left no frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSkip {
    /// The pull could not fetch it.
    Failed,
    /// It never arrived while later ones did.
    Missing,
    /// It did not demux.
    Demux(DemuxError),
}

/// For the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedNote {
    /// Segment `seq` gave `frames` frames.
    Demuxed {
        seq: u64,
        frames: usize,
    },
    Skipped {
        seq: u64,
        why: FeedSkip,
    },
    /// The timeline was rebased (a discontinuity or a jump).
    Rebased {
        seq: u64,
    },
}

/// Counters of one feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedCounts {
    pub segments: u64,
    pub skipped: u64,
    pub frames: u64,
}

/// A segment as it waits for its turn (`None`: it failed).
type Waiting = Option<(bool, Vec<Bytes>)>;

/// One stream's feed.
#[derive(Debug, Default)]
pub struct HlsFeed {
    demux: TsDemuxer,
    /// The next segment to take (`None`: not started).
    next: Option<u64>,
    waiting: BTreeMap<u64, Waiting>,
    /// The previous segment was skipped or failed: treat the next as discontinuous.
    broken: bool,
    /// Unwrapping: the last raw DTS seen and its unwrapped value.
    last_raw: Option<(u64, u64)>,
    /// The newest unwrapped DTS taken per track (video, audio), in 90 kHz.
    last_in: [Option<u64>; 2],
    /// The newest timeline ms given out per track (video, audio).
    last_track_ms: [Option<u64>; 2],
    /// Rebasing: unwrapped DTS `in_base` is timeline ms `out_base`.
    in_base: u64,
    out_base: u64,
    queue: VecDeque<(u64, MediaKind, Bytes)>,
    queued_bytes: usize,
    /// Pacing: timeline ms `.1` leaves at shard time `.0`.
    anchor: Option<(u64, u64)>,
    pub counts: FeedCounts,
}

impl HlsFeed {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the feed has started (its first segment arrived).
    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Segment `seq` is complete. `newest` is the newest segment the pull knows now: the
    /// first call starts the feed there (older segments are not played).
    pub fn handle_segment(
        &mut self,
        seq: u64,
        newest: u64,
        discontinuity: bool,
        pieces: Vec<Bytes>,
        notes: &mut Vec<FeedNote>,
    ) {
        let next = *self.next.get_or_insert(newest);
        if seq < next {
            return;
        }
        self.waiting.insert(seq, Some((discontinuity, pieces)));
        self.drain(notes);
    }

    /// Segment `seq` could not be fetched.
    pub fn handle_segment_failed(&mut self, seq: u64, notes: &mut Vec<FeedNote>) {
        if self.next.is_some_and(|n| seq >= n) {
            self.waiting.insert(seq, None);
            self.drain(notes);
        }
    }

    fn drain(&mut self, notes: &mut Vec<FeedNote>) {
        let Some(mut next) = self.next else {
            return;
        };
        loop {
            match self.waiting.remove(&next) {
                Some(Some((discontinuity, pieces))) => {
                    self.take(next, discontinuity, &pieces, notes);
                }
                Some(None) => {
                    self.skip(next, FeedSkip::Failed, notes);
                }
                None if self.waiting.len() > MAX_REORDER => {
                    // On to the first segment that is here, however far (one note).
                    let Some(&first) = self.waiting.keys().next() else {
                        break;
                    };
                    self.skip(next, FeedSkip::Missing, notes);
                    next = first;
                    continue;
                }
                None => break,
            }
            // Past u64::MAX there is nothing to wait for: the loop ends at the next lookup.
            next = next.saturating_add(1);
        }
        self.next = Some(next);
    }

    fn skip(&mut self, seq: u64, why: FeedSkip, notes: &mut Vec<FeedNote>) {
        self.counts.skipped += 1;
        self.broken = true;
        notes.push(FeedNote::Skipped { seq, why });
    }

    fn take(&mut self, seq: u64, discontinuity: bool, pieces: &[Bytes], notes: &mut Vec<FeedNote>) {
        let mut frames = Vec::new();
        let demuxed = pieces
            .iter()
            .try_for_each(|p| self.demux.handle_bytes(p, &mut frames))
            .and_then(|()| self.demux.handle_end(&mut frames));
        if let Err(e) = demuxed {
            self.demux.reset();
            return self.skip(seq, FeedSkip::Demux(e), notes);
        }
        self.counts.segments += 1;
        notes.push(FeedNote::Demuxed {
            seq,
            frames: frames.len(),
        });
        let discontinuity = discontinuity || std::mem::take(&mut self.broken);
        let unwrapped: Vec<u64> = frames.iter().map(|f| self.unwrap(f.dts_90k)).collect();
        let Some(&first) = unwrapped.iter().min() else {
            return;
        };
        let newest_before = self.last_in.iter().flatten().max().copied();
        // A track that starts this segment more than BACK_TOLERANCE_MS before it ended the
        // last one went back: a restart the origin did not mark.
        let went_back = [MediaKind::Video, MediaKind::Audio].iter().any(|&kind| {
            let first_here = unwrapped
                .iter()
                .zip(&frames)
                .filter(|(_, f)| f.kind == kind)
                .map(|(&ext, _)| ext)
                .min();
            first_here
                .zip(self.last_in[track(kind)])
                .is_some_and(|(here, last)| here.saturating_add(BACK_TOLERANCE_MS * 90) < last)
        });
        let jump = newest_before.is_none_or(|last| first.abs_diff(last) > MAX_JUMP_MS * 90);
        if discontinuity || jump || went_back {
            self.in_base = first;
            let last_out_ms = self.last_track_ms.iter().flatten().max();
            self.out_base = last_out_ms.map_or(0, |l| l.saturating_add(DISCONTINUITY_GAP_MS));
            if newest_before.is_some() {
                notes.push(FeedNote::Rebased { seq });
            }
        }
        let mut timed: Vec<(u64, u64, EsFrame)> = unwrapped
            .iter()
            .zip(frames)
            .map(|(&ext, f)| {
                let ms = self
                    .out_base
                    .saturating_add(ext.saturating_sub(self.in_base) / 90);
                (ms, ext, f)
            })
            .collect();
        // Tracks interleave by PES; the timeline goes out in time order (stable: a sequence
        // header stays before its frame).
        timed.sort_by_key(|(ms, ..)| *ms);
        for (ms, ext, f) in timed {
            let t = track(f.kind);
            // Within the tolerance a track may start a segment a little before it ended the
            // last (rounded audio times): it is held at its last time, never sent back.
            let ms = self.last_track_ms[t].map_or(ms, |l| l.max(ms));
            self.last_track_ms[t] = Some(ms);
            self.last_in[t] = Some(self.last_in[t].map_or(ext, |l| l.max(ext)));
            self.queued_bytes += f.body.len();
            self.queue.push_back((ms, f.kind, f.body));
        }
    }

    /// A raw 33-bit DTS on an unbounded scale: within ±2^32 of the previous one.
    fn unwrap(&mut self, raw: u64) -> u64 {
        let ext = match self.last_raw {
            None => raw,
            Some((last_raw, last_ext)) => {
                let delta = raw.wrapping_sub(last_raw) & TIMESTAMP_MASK;
                if delta < 1 << 32 {
                    last_ext.saturating_add(delta)
                } else {
                    last_ext.saturating_sub((1 << 33) - delta)
                }
            }
        };
        self.last_raw = Some((raw, ext));
        ext
    }

    /// When [`HlsFeed::poll_frames`] has frames to give.
    pub fn poll_timeout(&self) -> Option<u64> {
        let &(ms, ..) = self.queue.front()?;
        Some(match self.anchor {
            // Not started: at once.
            None => 0,
            Some(anchor) => due(anchor, ms).saturating_sub(PACE_SLACK_MS),
        })
    }

    /// The frames whose time has come.
    pub fn poll_frames(&mut self, now_ms: u64, out: &mut Vec<FeedFrame>) {
        let Some(&(front, ..)) = self.queue.front() else {
            return;
        };
        let anchor = *self.anchor.get_or_insert((now_ms, front));
        let back = self.queue.back().map_or(front, |b| b.0);
        // Over the bounds: move the clock so the surplus is due now.
        let over_span = back.saturating_sub(front) > MAX_QUEUE_MS;
        if over_span || self.queued_bytes > MAX_QUEUE_BYTES {
            let keep_from = if over_span { back - MAX_QUEUE_MS } else { back };
            if due(anchor, keep_from) > now_ms {
                self.anchor = Some((now_ms, keep_from));
            }
        }
        let anchor = self.anchor.unwrap_or(anchor);
        while let Some(&(ms, ..)) = self.queue.front() {
            if due(anchor, ms) > now_ms + PACE_SLACK_MS {
                break;
            }
            let Some((ms, kind, body)) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= body.len();
            self.counts.frames += 1;
            out.push(FeedFrame {
                kind,
                timestamp: ms as u32,
                body,
            });
        }
    }
}

/// The per-track index of a kind (the demuxer makes only video and audio).
fn track(kind: MediaKind) -> usize {
    usize::from(kind == MediaKind::Audio)
}

/// When timeline ms `ms` leaves, for an anchor (shard ms, timeline ms).
fn due((at, base): (u64, u64), ms: u64) -> u64 {
    if ms >= base {
        at.saturating_add(ms - base)
    } else {
        at.saturating_sub(base - ms)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hls::ts::{AudioConfig, TsMuxer, VideoConfig, PID_AUDIO, PID_VIDEO, TS_OFFSET_90K};

    fn record() -> Vec<u8> {
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac];
        let pps = [0x68, 0xeb];
        let mut r = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, sps.len() as u8];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        r
    }

    /// A 1 s segment of 25 fps video from `start_ms` (a keyframe first) and AAC, written by
    /// our muxer with `offset_90k` added to every timestamp (modulo 2^33).
    pub(crate) fn segment(start_ms: u64, offset_90k: u64) -> Vec<Bytes> {
        let mut m = TsMuxer::new();
        m.set_video_config(VideoConfig::from_avcc(&record()).unwrap());
        m.set_audio_config(AudioConfig::from_asc(&[0x12, 0x10]).unwrap());
        let mut out = Vec::new();
        m.write_tables(&mut out).unwrap();
        // AAC frames are 1024 samples at 44.1 kHz: 23.2 ms apart, as the demuxer times them.
        let mut audio = (0..44u64)
            .map(|j| start_ms + j * 1024 * 1000 / 44_100)
            .peekable();
        for i in 0..25u64 {
            let t = start_ms + i * 40;
            let nal = if i == 0 { 0x65 } else { 0x41 };
            let data = [0, 0, 0, 3, nal, i as u8, 0x80];
            while let Some(a) = audio.next_if(|&a| a <= t) {
                m.write_audio(&mut out, a, &[0x21, a as u8]).unwrap();
            }
            m.write_video(&mut out, t, 0, i == 0, &data).unwrap();
        }
        for a in audio {
            m.write_audio(&mut out, a, &[0x21, a as u8]).unwrap();
        }
        m.flush_audio(&mut out).unwrap();
        if offset_90k != 0 {
            shift_timestamps(&mut out, offset_90k);
        }
        // In pieces, as a download arrives.
        out.chunks(1000).map(Bytes::copy_from_slice).collect()
    }

    /// Adds `offset` to every PTS/DTS and PCR of a segment our muxer wrote.
    fn shift_timestamps(ts: &mut [u8], offset: u64) {
        fn put(b: &mut [u8], marker: u8, t: u64) {
            b[0] = marker | (((t >> 30) as u8 & 0x07) << 1) | 1;
            b[1] = (t >> 22) as u8;
            b[2] = (((t >> 15) as u8) << 1) | 1;
            b[3] = (t >> 7) as u8;
            b[4] = ((t as u8) << 1) | 1;
        }
        fn get(b: &[u8]) -> u64 {
            (u64::from((b[0] >> 1) & 7) << 30)
                | (u64::from(b[1]) << 22)
                | (u64::from(b[2] >> 1) << 15)
                | (u64::from(b[3]) << 7)
                | u64::from(b[4] >> 1)
        }
        for p in ts.chunks_mut(188) {
            let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
            if p[1] & 0x40 == 0 || ![PID_VIDEO, PID_AUDIO].contains(&pid) {
                continue;
            }
            let at = if p[3] & 0x20 != 0 {
                5 + usize::from(p[4])
            } else {
                4
            };
            let pes = &mut p[at..];
            let flags = pes[7] >> 6;
            let pts = (get(&pes[9..14]) + offset) & TIMESTAMP_MASK;
            put(&mut pes[9..14], if flags == 3 { 0x30 } else { 0x20 }, pts);
            if flags == 3 {
                let dts = (get(&pes[14..19]) + offset) & TIMESTAMP_MASK;
                put(&mut pes[14..19], 0x10, dts);
            }
        }
    }

    /// The notes but the per-segment `Demuxed` ones.
    fn problems(notes: &[FeedNote]) -> Vec<FeedNote> {
        notes
            .iter()
            .filter(|n| !matches!(n, FeedNote::Demuxed { .. }))
            .cloned()
            .collect()
    }

    fn drain_all(f: &mut HlsFeed, now: u64) -> Vec<FeedFrame> {
        let mut out = Vec::new();
        f.poll_frames(now, &mut out);
        out
    }

    /// Everything queued, whenever it is due.
    fn drain_everything(f: &mut HlsFeed) -> Vec<FeedFrame> {
        let mut out = drain_all(f, 0);
        out.extend(drain_all(f, 1 << 40));
        out
    }

    fn pictures(frames: &[FeedFrame]) -> Vec<(u32, u8)> {
        frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video && f.body[1] == 1)
            .map(|f| (f.timestamp, f.body[10]))
            .collect()
    }

    #[test]
    fn segments_play_in_order_from_the_newest_paced_on_one_timeline() {
        let mut f = HlsFeed::new();
        let mut notes = Vec::new();
        // The pull knows 10..=12; 11 completes first, then 12: the feed starts at 12.
        f.handle_segment(11, 12, false, segment(11_000, 0), &mut notes);
        assert!(f.started() && f.poll_timeout().is_none());
        f.handle_segment(12, 12, false, segment(12_000, 0), &mut notes);
        assert_eq!(f.poll_timeout(), Some(0));
        // The first frames leave at once; the rest as their time comes.
        let first = drain_all(&mut f, 5_000);
        assert_eq!(pictures(&first), vec![(0, 0)]);
        assert_eq!(first[0].body[..2], [0x17, 0], "the sequence header first");
        assert!(first
            .iter()
            .any(|x| x.kind == MediaKind::Audio && x.body[1] == 0));
        // Next: the audio frame at 23 ms, due at 5,023 (woken 10 ms early).
        assert_eq!(f.poll_timeout(), Some(5_013));
        assert_eq!(pictures(&drain_all(&mut f, 5_030)), vec![(40, 1)]);
        // 14 before 13: held, then both in order.
        f.handle_segment(14, 14, false, segment(14_000, 0), &mut notes);
        f.handle_segment(13, 14, false, segment(13_000, 0), &mut notes);
        let rest = pictures(&drain_all(&mut f, 8_000));
        let times: Vec<u32> = rest.iter().map(|p| p.0).collect();
        assert_eq!(times, (2..75).map(|i| i * 40).collect::<Vec<_>>());
        assert_eq!(f.counts.segments, 3);
        assert_eq!(problems(&notes), vec![]);
        // Audio never goes back either.
        assert!(f.poll_timeout().is_none());
    }

    #[test]
    fn a_failed_or_missing_segment_is_skipped_and_a_discontinuity_continues_the_timeline() {
        let mut f = HlsFeed::new();
        let mut notes = Vec::new();
        f.handle_segment(5, 5, false, segment(5_000, 0), &mut notes);
        f.handle_segment_failed(6, &mut notes);
        // After a failure the next segment is rebased, as after a discontinuity.
        f.handle_segment(7, 7, false, segment(7_000, 0), &mut notes);
        // A failover: new origin, unrelated timestamps, marked.
        f.handle_segment(8, 8, true, segment(100, 1 << 32), &mut notes);
        let frames = drain_everything(&mut f);
        // Each segment's pictures are 40 ms apart; a rebased one starts 40 ms after the
        // last frame (audio included) before it.
        let mut last_any = None::<u32>;
        let mut starts = Vec::new();
        let mut previous = None;
        for x in &frames {
            if x.kind == MediaKind::Video && x.body[1] == 1 {
                if x.body[9] == 0x65 {
                    starts.push((x.timestamp, last_any));
                } else {
                    assert_eq!(Some(x.timestamp), previous.map(|p| p + 40));
                }
                previous = Some(x.timestamp);
            }
            assert!(last_any.is_none_or(|l| x.timestamp >= l), "never back");
            last_any = Some(last_any.map_or(x.timestamp, |l| l.max(x.timestamp)));
        }
        assert_eq!(starts.len(), 3);
        assert_eq!(starts[0].0, 0);
        for &(at, before) in &starts[1..] {
            assert_eq!(Some(at), before.map(|b| b + 40), "{starts:?}");
        }
        assert_eq!(
            problems(&notes),
            vec![
                FeedNote::Skipped {
                    seq: 6,
                    why: FeedSkip::Failed
                },
                FeedNote::Rebased { seq: 7 },
                FeedNote::Rebased { seq: 8 },
            ]
        );
        // A segment that never comes: skipped once MAX_REORDER later ones wait.
        notes.clear();
        for seq in 10..=13 {
            f.handle_segment(seq, seq, false, segment(seq * 1000, 0), &mut notes);
        }
        assert_eq!(
            problems(&notes)[0],
            FeedNote::Skipped {
                seq: 9,
                why: FeedSkip::Missing
            }
        );
        assert_eq!(f.counts.segments, 7);
    }

    #[test]
    fn segment_numbers_at_the_end_of_u64_and_far_gaps_do_not_spin() {
        let mut f = HlsFeed::new();
        let mut notes = Vec::new();
        let top = u64::MAX - 1;
        f.handle_segment(top, top, false, segment(0, 0), &mut notes);
        f.handle_segment(u64::MAX, u64::MAX, false, segment(1_000, 0), &mut notes);
        assert_eq!(f.counts.segments, 2);
        // A feed waiting at 10 for segments that arrive from 2^40 on: one skip, not 2^40.
        let mut f = HlsFeed::new();
        f.handle_segment(10, 10, false, segment(0, 0), &mut notes);
        for seq in (1 << 40)..(1 << 40) + 4 {
            f.handle_segment(seq, seq, false, segment(seq % 100 * 1000, 0), &mut notes);
        }
        assert_eq!((f.counts.segments, f.counts.skipped), (5, 1));
    }

    #[test]
    fn timestamps_that_wrap_at_33_bits_keep_counting() {
        let mut f = HlsFeed::new();
        let mut notes = Vec::new();
        // Starts 0.5 s before the wrap: DTS runs past 2^33 inside the segment.
        let to_wrap = (1u64 << 33) - TS_OFFSET_90K - 45_000;
        f.handle_segment(1, 1, false, segment(0, to_wrap), &mut notes);
        f.handle_segment(2, 2, false, segment(1_000, to_wrap), &mut notes);
        let times: Vec<u32> = pictures(&drain_everything(&mut f))
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(times, (0..50).map(|i| i * 40).collect::<Vec<_>>());
        assert_eq!(problems(&notes), vec![]);
    }

    #[test]
    fn a_broken_segment_is_skipped_whole_and_the_queue_is_bounded() {
        let mut f = HlsFeed::new();
        let mut notes = Vec::new();
        let mut bad: Vec<u8> = segment(0, 0).concat();
        bad[188 * 3] = 0; // not a sync byte
        f.handle_segment(1, 1, false, vec![Bytes::from(bad)], &mut notes);
        assert!(matches!(
            notes[..],
            [FeedNote::Skipped {
                seq: 1,
                why: FeedSkip::Demux(_)
            }]
        ));
        assert!(f.poll_timeout().is_none(), "nothing from a broken segment");
        // 20 s of media at once (an origin that caught up): past MAX_QUEUE_MS is let
        // through now, the rest paced.
        for seq in 2..22 {
            f.handle_segment(seq, seq, false, segment(seq * 1000, 0), &mut notes);
        }
        let now = drain_all(&mut f, 0);
        let last = pictures(&now).last().unwrap().0;
        assert!((9_900..=10_100).contains(&last), "{last}");
        let later = drain_all(&mut f, 5_000);
        assert_eq!(pictures(&later).last().unwrap().0, last + 5_000);
    }
}
