//! LL-HLS (RFC 8216bis, version 9): fMP4 parts and segments and their playlist, one muxer
//! per stream beside the TS segmenter.
//!
//! The TS [`Segmenter`](super::Segmenter) decides every cut (its timeline cells, its
//! numbers, its discontinuities) and tells this muxer: segments here have the TS segments'
//! numbers and durations. Inside a segment, a part closes before the frame that would take
//! it past `part_ms` (at the frame cadence seen so far, so a part's duration stays within the
//! PART-TARGET).
//!
//! A part is CMAF chunks: one fragment (`moof` + `mdat`) per video picture, written the
//! moment the picture arrives, with the audio that arrived since the previous one (an
//! audio-only stream: one per audio frame). So the part being written can be streamed to
//! the requests for it chunk by chunk ([`LlMuxer::part_state`]), and the closed part is the
//! same bytes. A picture's duration is not known until the next one arrives, so its sample
//! says the stream's frame interval (the shorter of the last two); the next fragment's
//! `tfdt` carries the exact time. A segment is its parts' bytes, shared, never copied again.
//!
//! Each closed part renders the playlist once (full, and the delta form when it can skip
//! anything) into an [`LlSnapshot`]: blocking reloads are answered from it for every
//! waiter.
//!
//! Must not: parse a peer's bytes (the frames were parsed where they entered), keep more than
//! the window plus the extras, or decide when a request is answered (that is
//! [`super::blocking`]).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use super::fmp4::{self, AudioTrack, Sample, TrackRun, VideoCodecConfig, VideoTrack};
pub use super::llsnapshot::{with_suffix, LlFile, LlPart, LlSegment, LlSnapshot, PartId, Rendered};

/// A sample waiting for its part to close.
struct Pending {
    dts_ms: u64,
    composition_ms: i32,
    sync: bool,
    data: Bytes,
}

struct OpenSegment {
    seq: u64,
    start_ms: u64,
    discontinuity: bool,
    init_id: u32,
    parts: Vec<LlPart>,
    /// The open part: where it starts, its chunks so far, whether its first picture is a
    /// keyframe (`None` before its first picture), and the audio for its next chunk.
    part_start_ms: u64,
    chunks: Vec<Bytes>,
    independent: Option<bool>,
    audio: Vec<Pending>,
}

/// Storage for a segment's fMP4 chunks: each chunk comes back at once as shared pieces (the
/// engine's segment arena), so it can be streamed before its part closes.
pub trait ChunkStore {
    /// Copies `bytes` in; `None` when there is no room.
    fn append(&mut self, bytes: &[u8]) -> Option<Vec<Bytes>>;
}

/// Where a part is, for a request that streams it ([`LlMuxer::part_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState<'a> {
    /// Being written: its chunks so far (maybe none yet).
    Open(&'a [Bytes]),
    /// Complete: its bytes (its chunks' pieces).
    Closed(&'a [Bytes]),
    /// Not kept, or not begun.
    Unknown,
}

/// Settings of the LL-HLS muxer (from the stream's HLS settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlConfig {
    pub part_ms: u64,
    pub segment_ms: u64,
    pub window: usize,
    pub keep_extra: usize,
}

/// One stream's LL-HLS muxer (module docs).
pub struct LlMuxer {
    config: LlConfig,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// The init segments of the kept segments and of the tracks now, newest last.
    inits: VecDeque<(u32, Bytes)>,
    /// The tracks changed since the newest init was written.
    init_stale: bool,
    open: Option<OpenSegment>,
    segments: VecDeque<Arc<LlSegment>>,
    discontinuity_seq: u64,
    target_duration_s: u64,
    fragment_seq: u32,
    /// The frame interval of video (or, audio-only, audio): the shorter of the last two.
    frame_ms: u64,
    last_interval: Option<u64>,
    last_clock_dts: Option<u64>,
    /// Unix ms minus DTS: the smallest seen over the frames of the first segment (the one
    /// that arrived least late: a burst of old frames from a join cache arrives all at once,
    /// the newest of them nearly live), then frozen. A segment's PDT is its start plus this,
    /// so dates advance with the stream's timeline and never jitter with arrival times.
    wall_offset: Option<i64>,
    wall_frozen: bool,
    wall_now_ms: u64,
    /// The picture size `onMetaData` announced.
    size: (u16, u16),
    ended: bool,
    changed: bool,
    /// Where chunks are written (`None`: the heap): one store for the stream, so segments
    /// share its chunks of memory.
    store: Option<Box<dyn ChunkStore>>,
    heap_chunks: u64,
    /// Where a chunk is built before it goes to the store (reused: no allocation per chunk).
    scratch: Vec<u8>,
}

impl LlMuxer {
    pub fn new(config: LlConfig) -> Self {
        Self {
            config,
            video: None,
            audio: None,
            inits: VecDeque::new(),
            init_stale: true,
            open: None,
            segments: VecDeque::new(),
            discontinuity_seq: 0,
            target_duration_s: config.segment_ms.div_ceil(1000).max(1),
            fragment_seq: 0,
            frame_ms: 0,
            last_interval: None,
            last_clock_dts: None,
            wall_offset: None,
            wall_frozen: false,
            wall_now_ms: 0,
            size: (0, 0),
            ended: false,
            changed: false,
            store: None,
            heap_chunks: 0,
            scratch: Vec::new(),
        }
    }

    /// Where chunks are written from now on (`None`: the heap).
    pub fn set_store(&mut self, store: Option<Box<dyn ChunkStore>>) {
        self.store = store;
    }

    /// The wall clock (Unix ms) as the owner last knew it, for the frame it hands over next.
    pub fn set_wall_clock(&mut self, unix_ms: u64) {
        self.wall_now_ms = unix_ms;
    }

    /// A frame at `dts_ms` arrived now: until the first segment closes, the least late frame
    /// sets the wall clock's offset.
    fn note_wall(&mut self, dts_ms: u64) {
        if self.wall_frozen || self.wall_now_ms == 0 {
            return;
        }
        let offset = self.wall_now_ms as i64 - dts_ms as i64;
        self.wall_offset = Some(self.wall_offset.map_or(offset, |o| o.min(offset)));
    }

    /// The wall clock (Unix ms) when the frame at `dts_ms` was live.
    fn pdt(&self, dts_ms: u64) -> u64 {
        (dts_ms as i64)
            .saturating_add(self.wall_offset.unwrap_or(0))
            .max(0) as u64
    }

    pub fn set_video(&mut self, codec: VideoCodecConfig) {
        if self.video.as_ref().is_none_or(|v| v.codec != codec) {
            let (width, height) = self.size;
            self.video = Some(VideoTrack {
                codec,
                width,
                height,
            });
            self.init_stale = true;
        }
    }

    /// The picture size `onMetaData` announced.
    pub fn set_video_size(&mut self, width: u16, height: u16) {
        if let Some(v) = &mut self.video {
            if (v.width, v.height) != (width, height) {
                v.width = width;
                v.height = height;
                self.init_stale = true;
            }
        }
        self.size = (width, height);
    }

    pub fn set_audio(&mut self, track: AudioTrack) {
        if self.audio.as_ref() != Some(&track) {
            self.audio = Some(track);
            self.init_stale = true;
        }
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// A segment opens (the TS segmenter's cut).
    pub fn open_segment(&mut self, seq: u64, start_ms: u64, discontinuity: bool) {
        if self.video.is_none() && self.audio.is_none() {
            return;
        }
        if self.init_stale {
            let id = self.inits.back().map_or(1, |(id, _)| id + 1);
            let init = fmp4::init_segment(self.video.as_ref(), self.audio.as_ref());
            self.inits.push_back((id, Bytes::from(init)));
            self.init_stale = false;
        }
        self.note_wall(start_ms);
        let init_id = self.inits.back().map_or(0, |(id, _)| *id);
        self.open = Some(OpenSegment {
            seq,
            start_ms,
            discontinuity,
            init_id,
            parts: Vec::new(),
            part_start_ms: start_ms,
            chunks: Vec::new(),
            independent: None,
            audio: Vec::new(),
        });
        self.changed = true;
    }

    /// Where part `id` is: being written (its chunks so far), complete, or unknown.
    pub fn part_state(&self, (seq, index): PartId) -> PartState<'_> {
        if let Some(open) = self.open.as_ref().filter(|o| o.seq == seq) {
            let index = index as usize;
            return match open.parts.get(index) {
                Some(part) => PartState::Closed(&part.pieces),
                None if index == open.parts.len() => PartState::Open(&open.chunks),
                None => PartState::Unknown,
            };
        }
        self.segments
            .iter()
            .rev()
            .find(|s| s.seq == seq)
            .and_then(|s| s.parts.get(index as usize))
            .map_or(PartState::Unknown, |p| PartState::Closed(&p.pieces))
    }

    /// A video picture: `data` is the coded frame as the sample format wants it (AVCC or
    /// HVCC length-prefixed NAL units, AV1 OBUs).
    pub fn push_video(&mut self, dts_ms: u64, composition_ms: i32, keyframe: bool, data: Bytes) {
        self.note_wall(dts_ms);
        self.before_sample(dts_ms, true);
        let Some(open) = &mut self.open else { return };
        open.independent.get_or_insert(keyframe);
        let picture = Pending {
            dts_ms,
            composition_ms,
            sync: keyframe,
            data,
        };
        self.write_chunk(Some(picture));
    }

    /// An audio frame: AAC raw (without ADTS), or an MPEG audio frame with its header.
    pub fn push_audio(&mut self, dts_ms: u64, data: Bytes) {
        let drives = self.video.is_none();
        if drives {
            self.note_wall(dts_ms);
            self.before_sample(dts_ms, true);
        }
        let Some(open) = &mut self.open else { return };
        open.audio.push(Pending {
            dts_ms,
            composition_ms: 0,
            sync: true,
            data,
        });
        if drives {
            self.write_chunk(None);
        }
    }

    /// Writes the open part's next chunk: `picture` (if any) and the audio waiting.
    fn write_chunk(&mut self, picture: Option<Pending>) {
        let Some(open) = &mut self.open else { return };
        if picture.is_none() && open.audio.is_empty() {
            return;
        }
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        // The picture lasts until the next one, which has not arrived: the frame interval
        // (a 30 fps guess before there is one).
        let frame_ms = if self.frame_ms > 0 { self.frame_ms } else { 33 };
        let video = picture.as_slice();
        let video_end = video.first().map_or(0, |p| p.dts_ms + frame_ms);
        let video_samples = samples(video, video_end, fmp4::VIDEO_TIMESCALE, None);
        let (audio_rate, frame_samples) = self
            .audio
            .as_ref()
            .map_or((48_000, 1024), |a| (a.sample_rate, a.frame_samples));
        let audio_samples = samples(&open.audio, 0, audio_rate, Some(frame_samples));
        let mut runs = Vec::with_capacity(2);
        if let Some(first) = video.first() {
            runs.push(TrackRun {
                track_id: fmp4::VIDEO_TRACK_ID,
                base_decode_time: ticks(first.dts_ms, fmp4::VIDEO_TIMESCALE),
                samples: &video_samples,
            });
        }
        if let Some(first) = open.audio.first() {
            runs.push(TrackRun {
                track_id: fmp4::AUDIO_TRACK_ID,
                base_decode_time: ticks(first.dts_ms, audio_rate),
                samples: &audio_samples,
            });
        }
        let header = fmp4::fragment_header(self.fragment_seq, &runs);
        // Built in the muxer's scratch buffer, then copied once into the store (the segment
        // arena in the engine), or onto the heap when the store is full or absent.
        let bytes = &mut self.scratch;
        bytes.clear();
        bytes.extend_from_slice(&header);
        for s in video.iter().chain(&open.audio) {
            bytes.extend_from_slice(&s.data);
        }
        open.audio.clear();
        match self.store.as_mut().and_then(|s| s.append(bytes)) {
            Some(pieces) => open.chunks.extend(pieces),
            None => {
                if self.store.is_some() {
                    self.heap_chunks += 1;
                }
                open.chunks.push(Bytes::copy_from_slice(bytes));
            }
        }
    }

    /// Chunks that went to the heap because the store had no room (the engine then makes
    /// room, as for a refused TS segment).
    pub fn heap_chunks(&self) -> u64 {
        self.heap_chunks
    }

    /// Closes the open part before a clock-driving sample at `dts_ms` that would take it
    /// past `part_ms`.
    fn before_sample(&mut self, dts_ms: u64, drives_clock: bool) {
        if !drives_clock {
            return;
        }
        if let Some(last) = self.last_clock_dts.replace(dts_ms) {
            if dts_ms > last {
                // The shorter of the last two intervals: millisecond timestamps of 30 fps
                // alternate 33 and 34, and a part must not close a frame early.
                let interval = dts_ms - last;
                self.frame_ms = match self.last_interval.replace(interval) {
                    Some(prev) => prev.min(interval),
                    None => interval,
                };
            }
        }
        let Some(open) = &self.open else { return };
        if open.chunks.is_empty() && open.audio.is_empty() {
            return;
        }
        let span = dts_ms
            .saturating_sub(open.part_start_ms)
            .saturating_add(self.frame_ms);
        if span > self.config.part_ms {
            self.close_part(dts_ms);
        }
    }

    /// Closes the open part at `end_ms`: the audio still waiting is its last chunk, and its
    /// chunks, joined, are its bytes.
    fn close_part(&mut self, end_ms: u64) {
        self.write_chunk(None);
        let Some(open) = &mut self.open else { return };
        if open.chunks.is_empty() {
            return;
        }
        open.parts.push(LlPart {
            pieces: std::mem::take(&mut open.chunks),
            duration_ms: end_ms.saturating_sub(open.part_start_ms).max(1),
            independent: open.independent.take().unwrap_or(true),
        });
        open.part_start_ms = end_ms;
        self.changed = true;
    }

    /// The open segment closes at `end_ms` (the TS segmenter's cut, or the end).
    pub fn close_segment(&mut self, end_ms: u64) {
        self.close_part(end_ms);
        let Some(open) = self.open.take() else { return };
        if open.parts.is_empty() {
            return;
        }
        let duration_ms = end_ms.saturating_sub(open.start_ms).max(1);
        self.target_duration_s = self.target_duration_s.max(duration_ms.div_ceil(1000));
        // From the first segment's end, dates no longer move.
        self.wall_frozen = true;
        self.segments.push_back(Arc::new(LlSegment {
            seq: open.seq,
            duration_ms,
            discontinuity: open.discontinuity,
            pdt_unix_ms: self.pdt(open.start_ms),
            init_id: open.init_id,
            parts: open.parts,
        }));
        while self.segments.len() > self.config.window + self.config.keep_extra {
            self.segments.pop_front();
        }
        let listed_start = self.segments.len().saturating_sub(self.config.window);
        if listed_start > 0 && self.segments[listed_start - 1].discontinuity {
            self.discontinuity_seq += 1;
        }
        // Inits no kept segment needs, except the newest.
        let oldest = self.segments.front().map_or(u32::MAX, |s| s.init_id);
        while self.inits.len() > 1 && self.inits[0].0 < oldest {
            self.inits.pop_front();
        }
        self.changed = true;
    }

    /// A republish: the timeline starts again.
    pub fn restart(&mut self) {
        self.last_clock_dts = None;
        self.last_interval = None;
        self.wall_offset = None;
        self.wall_frozen = false;
        self.video = None;
        self.audio = None;
        self.init_stale = true;
    }

    pub fn end(&mut self, end_ms: u64) {
        if let Some(open) = &self.open {
            let end = end_ms.max(open.start_ms + 1);
            self.close_segment(end);
        }
        self.ended = true;
        self.changed = true;
    }

    /// Drops the segments kept past the window (memory pressure).
    pub fn shed(&mut self) {
        while self.segments.len() > self.config.window {
            self.segments.pop_front();
            self.changed = true;
        }
    }

    /// A new snapshot when anything changed since the last one.
    pub fn take_snapshot(&mut self) -> Option<LlSnapshot> {
        if !std::mem::take(&mut self.changed)
            || (self.segments.is_empty() && self.open.as_ref().is_none_or(|o| o.parts.is_empty()))
        {
            return None;
        }
        Some(self.snapshot())
    }

    pub fn snapshot(&self) -> LlSnapshot {
        let skip = self.skippable();
        LlSnapshot {
            playlist: self.render(0),
            delta: (skip > 0).then(|| self.render(skip)),
            inits: self.inits.iter().cloned().collect(),
            segments: self.segments.iter().cloned().collect(),
            open_seq: self.open.as_ref().map(|o| o.seq),
            open_parts: self
                .open
                .as_ref()
                .map(|o| o.parts.clone())
                .unwrap_or_default(),
            part_target_ms: self.config.part_ms,
            target_duration_s: self.target_duration_s,
            ended: self.ended,
        }
    }

    /// The listed segments.
    fn listed(&self) -> impl Iterator<Item = &Arc<LlSegment>> + Clone {
        self.segments
            .iter()
            .skip(self.segments.len().saturating_sub(self.config.window))
    }

    /// CAN-SKIP-UNTIL, in ms: six target durations.
    fn skip_until_ms(&self) -> u64 {
        6 * self.target_duration_s * 1000
    }

    /// How many listed segments a delta playlist leaves out: those that end more than
    /// CAN-SKIP-UNTIL before the end of the playlist.
    fn skippable(&self) -> usize {
        let listed: Vec<_> = self.listed().collect();
        let open_ms = self
            .open
            .as_ref()
            .map_or(0, |o| o.parts.iter().map(|p| p.duration_ms).sum());
        let mut from_end = open_ms;
        let mut keep = 0;
        for s in listed.iter().rev() {
            if from_end >= self.skip_until_ms() {
                break;
            }
            from_end += s.duration_ms;
            keep += 1;
        }
        listed.len() - keep
    }

    /// Renders the playlist, leaving out the first `skip` listed segments (a delta playlist).
    fn render(&self, skip: usize) -> Rendered {
        let mut p = String::with_capacity(2048);
        let mut uri_ends = Vec::new();
        let part_s = Secs(self.config.part_ms);
        let _ = write!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n#EXT-X-PART-INF:PART-TARGET={part_s}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}\n",
            self.target_duration_s,
            Secs(3 * self.config.part_ms),
            Secs(self.skip_until_ms()),
        );
        let listed: Vec<_> = self.listed().collect();
        let first_seq = listed
            .first()
            .map(|s| s.seq)
            .or(self.open.as_ref().map(|o| o.seq))
            .unwrap_or(0);
        let _ = writeln!(p, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
        if self.discontinuity_seq > 0 {
            let _ = writeln!(
                p,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_seq
            );
        }
        if skip > 0 {
            let _ = writeln!(p, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}");
        }
        // Parts are listed for the segments within three target durations of the end.
        let mut recent_from = listed.len();
        let mut span = 0;
        while recent_from > 0 && span < 3 * self.target_duration_s * 1000 {
            recent_from -= 1;
            span += listed[recent_from].duration_ms;
        }
        let mut map = None;
        let mut uri = |p: &mut String, text: std::fmt::Arguments<'_>, close: &str| {
            let _ = p.write_fmt(text);
            uri_ends.push(p.len());
            p.push_str(close);
        };
        for (i, s) in listed.iter().enumerate().skip(skip) {
            if s.discontinuity && i > skip {
                p.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(s.init_id) {
                map = Some(s.init_id);
                uri(
                    &mut p,
                    format_args!("#EXT-X-MAP:URI=\"init-{}.mp4", s.init_id),
                    "\"\n",
                );
            }
            let _ = writeln!(p, "#EXT-X-PROGRAM-DATE-TIME:{}", Rfc3339(s.pdt_unix_ms));
            if i >= recent_from {
                for (k, part) in s.parts.iter().enumerate() {
                    part_line(&mut p, &mut uri, s.seq, k, part);
                }
            }
            let _ = writeln!(p, "#EXTINF:{},", Secs(s.duration_ms));
            uri(&mut p, format_args!("seg-{}.m4s", s.seq), "\n");
        }
        if let Some(open) = &self.open {
            if open.discontinuity && !listed.is_empty() {
                p.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(open.init_id) {
                uri(
                    &mut p,
                    format_args!("#EXT-X-MAP:URI=\"init-{}.mp4", open.init_id),
                    "\"\n",
                );
            }
            let pdt = self.pdt(open.start_ms);
            let _ = writeln!(p, "#EXT-X-PROGRAM-DATE-TIME:{}", Rfc3339(pdt));
            for (k, part) in open.parts.iter().enumerate() {
                part_line(&mut p, &mut uri, open.seq, k, part);
            }
            if !self.ended {
                uri(
                    &mut p,
                    format_args!(
                        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-{}.{}.m4s",
                        open.seq,
                        open.parts.len()
                    ),
                    "\"\n",
                );
            }
        }
        if self.ended {
            p.push_str("#EXT-X-ENDLIST\n");
        }
        Rendered {
            text: Bytes::from(p),
            uri_ends,
        }
    }
}

fn part_line(
    p: &mut String,
    uri: &mut impl FnMut(&mut String, std::fmt::Arguments<'_>, &str),
    seq: u64,
    index: usize,
    part: &LlPart,
) {
    let _ = write!(p, "#EXT-X-PART:DURATION={},", Secs(part.duration_ms));
    let close = if part.independent {
        "\",INDEPENDENT=YES\n"
    } else {
        "\"\n"
    };
    uri(p, format_args!("URI=\"part-{seq}.{index}.m4s"), close);
}

/// Milliseconds as a decimal number of seconds (`1.5` → "1.500").
struct Secs(u64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Unix ms as an RFC 3339 date-time in UTC (`2026-12-06T18:34:10.123Z`).
pub struct Rfc3339(pub u64);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, day_secs) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            day_secs / 3600,
            day_secs / 60 % 60,
            day_secs % 60
        )
    }
}

/// Milliseconds in a timescale.
fn ticks(ms: u64, timescale: u32) -> u64 {
    ms.saturating_mul(u64::from(timescale)) / 1000
}

/// A part's samples of one track: durations from the next sample's DTS (the last one's to
/// `end_ms`, or `fixed` for codecs whose frames have one length), sizes, flags and
/// composition offsets in `timescale`.
fn samples(pending: &[Pending], end_ms: u64, timescale: u32, fixed: Option<u32>) -> Vec<Sample> {
    let mut out = Vec::with_capacity(pending.len());
    for (i, s) in pending.iter().enumerate() {
        let duration = match (fixed, pending.get(i + 1)) {
            (Some(d), _) => d,
            (None, Some(next)) => {
                ticks(next.dts_ms, timescale).saturating_sub(ticks(s.dts_ms, timescale)) as u32
            }
            (None, None) => ticks(end_ms.max(s.dts_ms), timescale)
                .saturating_sub(ticks(s.dts_ms, timescale)) as u32,
        };
        let composition_offset = (i64::from(s.composition_ms) * i64::from(timescale) / 1000) as i32;
        out.push(Sample {
            duration,
            size: s.data.len() as u32,
            flags: if s.sync {
                fmp4::SYNC_SAMPLE
            } else {
                fmp4::NON_SYNC_SAMPLE
            },
            composition_offset,
        });
    }
    out
}
