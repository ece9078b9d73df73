//! The HLS segmenter: one per stream, on its owner shard. Frames in, finished segments and a
//! playlist rendered once per segment out.
//!
//! Cutting, in steps:
//! 1. The timeline is divided into cells of `segment_ms`: a frame at DTS `t` is in cell
//!    `(t + segment_ms / 2) / segment_ms` (rounded to the nearest multiple, so an encoder's
//!    keyframes a few milliseconds either side of a multiple stay in their own cell).
//! 2. The first segment opens at the first video keyframe (or audio frame, audio-only).
//! 3. At the first video keyframe in a later cell, queued audio is flushed and the segment
//!    closes; its duration is the distance to this keyframe.
//! 4. The new segment starts with PAT/PMT and the keyframe.
//! 5. A republish or a timestamp jump (backwards, or forward by more than
//!    [`MAX_GAP_MS`]) closes the segment and marks the next one as a discontinuity; at a
//!    jump the segment ends one frame after its last frame, so its duration never spans
//!    the gap.
//! 6. The end of the stream closes the segment and adds EXT-X-ENDLIST.
//!
//! Numbering: the first segment takes its cell's number as its media sequence number, and
//! each later one the next number. Nodes that segment the same stream (an origin and the
//! edges that pull it see the publisher's timestamps) therefore cut at the same keyframes
//! and give each segment the same number, wherever each started: a player moved between
//! them asks the new node for the segment it would have asked the old one for. That holds
//! while each cell opens a segment, i.e. while keyframes are at most `segment_ms` apart. A
//! cut that skips a cell (a longer GOP, a refused segment, a jump) keeps the numbers
//! contiguous, as a playlist must, and is counted in `unaligned_cuts`: from there on this
//! node's numbers trail the cells.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::fmp4::{self, VideoCodecConfig};
use super::llhls::{ChunkStore, LlConfig, LlMuxer, LlSnapshot, PartId, PartState};
pub use super::playlist::{render_media_playlist, PlaylistHeader};
use super::ts::{AudioConfig, AudioTrack, TsError, TsMuxer, TsSink, VideoConfig};
use crate::ids::SegmentSeq;
use crate::media::{self, Frame, TagInfo, VideoCodec, VideoTag};

/// A jump in DTS larger than this starts a discontinuity.
pub const MAX_GAP_MS: u64 = 10_000;

/// Segmenter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    pub segment_ms: u64,
    /// Segments listed in the playlist.
    pub window: usize,
    /// Segments kept (and served) past the window, for downloads already under way.
    pub keep_extra: usize,
    /// LL-HLS part duration (`0`: no LL-HLS, TS only).
    pub part_ms: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_ms: 2000,
            window: 6,
            keep_extra: 2,
            part_ms: 0,
        }
    }
}

/// Storage for segment bytes: a `Vec` in tests, arena chunks in the engine.
pub trait SegmentStore {
    type Writer: TsSink;
    /// A writer for a new segment, or `None` when the budget is exhausted.
    fn writer(&mut self) -> Option<Self::Writer>;
    /// The finished bytes, in order (several pieces when storage is chunked).
    fn finish(&mut self, w: Self::Writer) -> Vec<Bytes>;
    /// Where a new LL-HLS segment's fMP4 chunks go (`None`: the heap, as [`VecStore`]).
    fn chunks(&mut self) -> Option<Box<dyn ChunkStore>> {
        None
    }
}

/// `Vec`-backed storage with no budget.
#[derive(Debug, Default, Clone, Copy)]
pub struct VecStore;

impl SegmentStore for VecStore {
    type Writer = Vec<u8>;
    fn writer(&mut self) -> Option<Vec<u8>> {
        Some(Vec::with_capacity(64 * 1024))
    }
    fn finish(&mut self, w: Vec<u8>) -> Vec<Bytes> {
        vec![Bytes::from(w)]
    }
}

/// A finished segment. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct Segment(Arc<SegmentData>);

/// What a [`Segment`] holds.
#[derive(Debug)]
pub struct SegmentData {
    pub seq: SegmentSeq,
    pub duration_ms: u64,
    pub discontinuity: bool,
    /// The TS bytes, in order.
    pub pieces: Vec<Bytes>,
    pub len: usize,
}

impl Segment {
    /// A segment made elsewhere (an HLS pull's download).
    pub fn new(data: SegmentData) -> Self {
        Segment(Arc::new(data))
    }
}

impl std::ops::Deref for Segment {
    type Target = SegmentData;
    fn deref(&self) -> &SegmentData {
        &self.0
    }
}

/// What HTTP serves for a stream: the playlist and the segments it may be asked for.
#[derive(Debug)]
pub struct HlsSnapshot {
    pub playlist: Bytes,
    /// Where each segment URI ends in `playlist` (before its newline): a viewer's query is
    /// written there, between shared pieces of the playlist.
    pub uri_ends: Vec<usize>,
    /// The window plus the kept extras, oldest first.
    pub segments: Vec<Segment>,
    pub target_duration_s: u64,
    pub ended: bool,
    /// The LL-HLS state (fMP4 parts and segments, and their playlist), when the stream
    /// makes it.
    pub ll: Option<Arc<LlSnapshot>>,
    /// The TS segments carry a track. An AV1 stream without audio has segments (its video
    /// cuts them for LL-HLS) that carry none: only its LL-HLS plays.
    pub ts_carries: bool,
}

impl HlsSnapshot {
    pub fn segment(&self, seq: SegmentSeq) -> Option<&Segment> {
        self.segments.iter().find(|s| s.seq == seq)
    }

    /// The playlist with `suffix` (a viewer's `?query`) after every segment URI, as pieces:
    /// slices of the shared playlist with the one `suffix` between them, nothing copied.
    pub fn playlist_with(&self, suffix: &Bytes) -> Vec<Bytes> {
        super::llhls::with_suffix(&self.playlist, &self.uri_ends, suffix)
    }

    /// The length of [`HlsSnapshot::playlist_with`] for a suffix of `suffix_len` bytes.
    pub fn playlist_len_with(&self, suffix_len: usize) -> usize {
        self.playlist.len() + self.uri_ends.len() * suffix_len
    }
}

struct Open<W> {
    writer: W,
    start_ms: u64,
    /// The timeline cell the segment opened in.
    cell: u64,
    seq: SegmentSeq,
    discontinuity: bool,
    /// Its PMT lists audio. Audio configured later (MP3 has no sequence header: its first
    /// frame configures it) waits for the next segment: packets of a PID the PMT does not
    /// list are dropped by every demuxer.
    audio_listed: bool,
}

/// Why the segmenter stopped: a codec HLS cannot carry, or storage refused a segment.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SegmenterError {
    #[error(transparent)]
    Ts(#[from] TsError),
}

/// One stream's segmenter.
pub struct Segmenter<S: SegmentStore> {
    config: HlsConfig,
    store: S,
    mux: TsMuxer,
    stream_name: String,
    open: Option<Open<S::Writer>>,
    /// The number the next segment takes (`None` until the first one opens).
    next_seq: Option<SegmentSeq>,
    /// The cell and start of the last segment opened.
    last_opened: Option<(u64, u64)>,
    /// Finished segments, oldest first: window plus extras.
    segments: VecDeque<Segment>,
    /// Discontinuities that left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_seq: u64,
    target_duration_s: u64,
    pending_discontinuity: bool,
    last_dts_ms: Option<u64>,
    /// The last distance between two clock-driving frames (a frame's duration, 0 until known).
    last_frame_ms: u64,
    ended: bool,
    /// Segments refused because storage was full (their frames are skipped; the engine counts
    /// and logs each).
    pub refused_segments: u64,
    /// Segments that did not open in the cell after the previous one's (a skipped cell, or a
    /// timestamp jump), so that this node's numbers no longer follow the timeline (module
    /// docs).
    pub unaligned_cuts: u64,
    /// The keyframe distance of the last unaligned cut, for the engine's log line.
    pub last_unaligned_gap_ms: u64,
    /// Tracks left out because TS cannot carry their codec (video, audio): the others go on.
    dropped: [bool; 2],
    /// Why the last track was left out, until [`Segmenter::take_dropped`] takes it.
    dropped_note: Option<String>,
    /// The LL-HLS muxer, cut where this segmenter cuts (`part_ms` > 0).
    ll: Option<LlMuxer>,
    /// Its last snapshot.
    ll_snapshot: Option<Arc<LlSnapshot>>,
    /// The video goes to LL-HLS only (AV1, which MPEG-TS cannot carry): it still cuts the
    /// segments, so both playlists keep one timeline.
    ll_only_video: bool,
}

impl<S: SegmentStore> Segmenter<S> {
    /// `stream_name` is the last path component: segments are `{stream_name}-{seq}.ts`.
    pub fn new(config: HlsConfig, store: S, stream_name: &str) -> Self {
        let mut store = store;
        let chunks = if config.part_ms > 0 {
            store.chunks()
        } else {
            None
        };
        Self {
            config,
            store,
            mux: TsMuxer::new(),
            stream_name: stream_name.to_string(),
            open: None,
            next_seq: None,
            last_opened: None,
            segments: VecDeque::new(),
            discontinuity_seq: 0,
            target_duration_s: config.segment_ms.div_ceil(1000).max(1),
            pending_discontinuity: false,
            last_dts_ms: None,
            last_frame_ms: 0,
            ended: false,
            refused_segments: 0,
            unaligned_cuts: 0,
            last_unaligned_gap_ms: 0,
            dropped: [false; 2],
            dropped_note: None,
            ll: (config.part_ms > 0).then(|| {
                let mut ll = LlMuxer::new(LlConfig {
                    part_ms: config.part_ms,
                    segment_ms: config.segment_ms,
                    window: config.window,
                    keep_extra: config.keep_extra,
                });
                ll.set_store(chunks);
                ll
            }),
            ll_snapshot: None,
            ll_only_video: false,
        }
    }

    /// The video cuts segments: TS carries it, or LL-HLS alone does.
    fn has_video(&self) -> bool {
        self.mux.has_video() || self.ll_only_video
    }

    /// Video that only fMP4 carries (AV1, with LL-HLS on): the segments are cut on its
    /// keyframes as on any video's, and its pictures go to the LL-HLS muxer alone.
    fn handle_ll_only_video(
        &mut self,
        frame: &Frame,
        tag: VideoTag,
    ) -> Result<Option<HlsSnapshot>, SegmenterError> {
        let body = &frame.payload;
        let offset = video_data_offset(body, tag.codec).min(body.len());
        let Some(ll) = &mut self.ll else {
            return Ok(None);
        };
        if tag.sequence_header {
            ll.set_video(VideoCodecConfig::Av1(body.slice(offset..)));
            if !self.ll_only_video {
                self.ll_only_video = true;
                self.dropped_note = Some(format!(
                    "video codec {}: MPEG-TS carries H.264 and H.265, so only LL-HLS (fMP4) \
                     has the video",
                    video_codec_name(body)
                ));
            }
            return Ok(None);
        }
        if tag.end_of_sequence || tag.info_only || !self.ll_only_video {
            return Ok(None);
        }
        let snapshot = self.before_frame(frame.timestamp_ms, tag.keyframe, true)?;
        if let (Some(_), Some(ll)) = (&self.open, &mut self.ll) {
            ll.push_video(frame.timestamp_ms, 0, tag.keyframe, body.slice(offset..));
        }
        Ok(snapshot)
    }

    /// LL-HLS chunks that went to the heap because the store was full.
    pub fn ll_heap_chunks(&self) -> u64 {
        self.ll.as_ref().map_or(0, LlMuxer::heap_chunks)
    }

    /// Where LL-HLS part `id` is (being written, complete, or unknown), for requests that
    /// stream it while it is written.
    pub fn ll_part_state(&self, id: PartId) -> PartState<'_> {
        self.ll
            .as_ref()
            .map_or(PartState::Unknown, |ll| ll.part_state(id))
    }

    /// The wall clock (Unix ms) now: LL-HLS dates its first segment with it.
    pub fn set_wall_clock(&mut self, unix_ms: u64) {
        if let Some(ll) = &mut self.ll {
            ll.set_wall_clock(unix_ms);
        }
    }

    /// Takes the LL-HLS muxer's news: whether a part or segment closed since last asked.
    fn take_ll(&mut self) -> bool {
        match self.ll.as_mut().and_then(LlMuxer::take_snapshot) {
            Some(snap) => {
                self.ll_snapshot = Some(Arc::new(snap));
                true
            }
            None => false,
        }
    }

    /// `onMetaData`: MP3 audio has no sequence header, so what the metadata announces
    /// (`audiocodecid` 2 or 14) configures it before the first segment's tables are written;
    /// its first frame corrects the MPEG version for later segments if the metadata's sample
    /// rate misled. (Without metadata, the first frame configures it, from the next segment.)
    fn handle_metadata(&mut self, body: &[u8]) {
        use crate::rtmp::amf::metadata_number;
        if let Some(ll) = &mut self.ll {
            let dim = |k| metadata_number(body, k).filter(|v| (1.0..65536.0).contains(v));
            if let (Some(w), Some(h)) = (dim("width"), dim("height")) {
                ll.set_video_size(w as u16, h as u16);
            }
        }
        if self.mux.has_audio() || self.dropped[1] {
            return;
        }
        if let Some(2.0 | 14.0) = metadata_number(body, "audiocodecid") {
            let rate = metadata_number(body, "audiosamplerate").unwrap_or(44_100.0);
            let mpeg1 = rate >= 32_000.0;
            self.mux.set_audio_track(AudioTrack::Mpeg { mpeg1 });
            if let Some(ll) = &mut self.ll {
                // MP3 (Layer III) as announced; its first frame's header corrects it.
                let rate = rate.clamp(8_000.0, 48_000.0) as u32;
                let frame_samples = if mpeg1 { 1152 } else { 576 };
                ll.set_audio(fmp4::AudioTrack::mpeg(mpeg1, frame_samples, rate, 2));
            }
        }
    }

    /// Why a track was just left out of HLS (once per track), for the engine's log.
    pub fn take_dropped(&mut self) -> Option<String> {
        self.dropped_note.take()
    }

    /// Leaves track `index` (0 video, 1 audio) out from now on, saying why once.
    fn drop_track(&mut self, index: usize, why: String) {
        if !self.dropped[index] {
            self.dropped[index] = true;
            self.dropped_note = Some(why);
        }
    }

    /// The timeline cell of a DTS (module docs, step 1).
    fn cell(&self, dts_ms: u64) -> u64 {
        let step = self.config.segment_ms.max(1);
        dts_ms.saturating_add(step / 2) / step
    }

    /// Feeds one frame. Returns a new snapshot when a segment (or an LL-HLS part) was
    /// finished.
    pub fn handle_frame(&mut self, frame: &Frame) -> Result<Option<HlsSnapshot>, SegmenterError> {
        let snapshot = self.handle_frame_ts(frame)?;
        let ll_changed = self.take_ll();
        // Nothing is announced before the first segment: a first playlist request waits for
        // a playlist that lists one (TS players given an empty live playlist give up).
        if (ll_changed || snapshot.is_some()) && !self.segments.is_empty() {
            // A segment's snapshot was rendered before its LL-HLS part closed.
            return Ok(Some(self.snapshot()));
        }
        Ok(None)
    }

    fn handle_frame_ts(&mut self, frame: &Frame) -> Result<Option<HlsSnapshot>, SegmenterError> {
        if self.ended {
            return Ok(None);
        }
        let body = &frame.payload;
        // The header was parsed where the frame entered the engine; frames built elsewhere
        // (tests, tools) are parsed here.
        let parsed = match frame.tag {
            Some(t) => t,
            None => media::parse_tag(frame.kind, body)
                .map_err(|e| TsError::Unsupported(e.to_string()))?,
        };
        match parsed {
            TagInfo::Data => {
                self.handle_metadata(body);
                Ok(None)
            }
            TagInfo::Video(tag) if tag.codec == VideoCodec::Av1 && self.ll.is_some() => {
                self.handle_ll_only_video(frame, tag)
            }
            TagInfo::Video(_) if self.dropped[0] => Ok(None),
            TagInfo::Video(tag) if matches!(tag.codec, VideoCodec::Other | VideoCodec::Av1) => {
                let why = format!(
                    "video codec {}: MPEG-TS carries H.264 and H.265{}",
                    video_codec_name(body),
                    if tag.codec == VideoCodec::Av1 {
                        " (LL-HLS, which is off, would carry it in fMP4)"
                    } else {
                        ""
                    }
                );
                self.drop_track(0, why);
                Ok(None)
            }
            TagInfo::Video(tag) => {
                let offset = video_data_offset(body, tag.codec);
                if tag.sequence_header {
                    let config = match tag.codec {
                        VideoCodec::Hevc => VideoConfig::from_hvcc(&body[offset..])?,
                        _ => VideoConfig::from_avcc(&body[offset..])?,
                    };
                    self.mux.set_video_config(config);
                    if let Some(ll) = &mut self.ll {
                        let record = frame.payload.slice(offset..);
                        ll.set_video(match tag.codec {
                            VideoCodec::Hevc => VideoCodecConfig::Hevc(record),
                            _ => VideoCodecConfig::Avc(record),
                        });
                    }
                    return Ok(None);
                }
                if tag.end_of_sequence || tag.info_only || !self.mux.has_video() {
                    return Ok(None);
                }
                let snapshot = self.before_frame(frame.timestamp_ms, tag.keyframe, true)?;
                if let Some(open) = &mut self.open {
                    let data = body.get(offset..).unwrap_or_default();
                    self.mux.write_video(
                        &mut open.writer,
                        frame.timestamp_ms,
                        tag.composition_ms,
                        tag.keyframe,
                        data,
                    )?;
                    if let Some(ll) = &mut self.ll {
                        let data = frame.payload.slice(offset.min(body.len())..);
                        ll.push_video(frame.timestamp_ms, tag.composition_ms, tag.keyframe, data);
                    }
                }
                Ok(snapshot)
            }
            TagInfo::Audio(_) if self.dropped[1] => Ok(None),
            TagInfo::Audio(tag) => {
                // The coded frame: after AAC's packet-type byte, or the whole rest.
                let data = match tag.sound_format {
                    10 if tag.sequence_header => {
                        let config = AudioConfig::from_asc(&body[2..])?;
                        if let Some(ll) = &mut self.ll {
                            ll.set_audio(fmp4::AudioTrack::aac(
                                frame.payload.slice(2..),
                                config.sample_rate(),
                                u16::from(config.channels),
                            ));
                        }
                        self.mux.set_audio_config(config);
                        return Ok(None);
                    }
                    10 => &body[2..],
                    // MPEG audio (2; 14 is its 8 kHz variant) carries its own frame
                    // headers; the first one says MPEG-1 or MPEG-2 (stream type 3 or 4).
                    2 | 14 => {
                        let data = body.get(1..).unwrap_or_default();
                        match AudioTrack::mpeg_from_frame(data) {
                            Some(track) if self.mux.audio_track() != Some(track) => {
                                self.mux.set_audio_track(track)
                            }
                            Some(_) => {}
                            None if self.mux.has_audio() => {}
                            None => return Ok(None),
                        }
                        if let Some(ll) = &mut self.ll {
                            if let Some(track) = fmp4::AudioTrack::mpeg_from_frame(data) {
                                ll.set_audio(track);
                            }
                        }
                        data
                    }
                    format => {
                        let why = format!(
                            "audio format {format} ({}): HLS carries AAC and MP3",
                            sound_format_name(format)
                        );
                        self.drop_track(1, why);
                        return Ok(None);
                    }
                };
                if !self.mux.has_audio() {
                    return Ok(None);
                }
                // Audio never cuts a stream that has video; it opens/cuts audio-only ones.
                let audio_only = !self.has_video();
                let snapshot = self.before_frame(frame.timestamp_ms, audio_only, audio_only)?;
                if let Some(open) = self.open.as_mut().filter(|o| o.audio_listed) {
                    self.mux
                        .write_audio(&mut open.writer, frame.timestamp_ms, data)?;
                    if let Some(ll) = &mut self.ll {
                        // After AAC's packet-type byte; MPEG audio keeps its frame header.
                        let at = if tag.sound_format == 10 { 2 } else { 1 };
                        ll.push_audio(frame.timestamp_ms, frame.payload.slice(at..));
                    }
                }
                Ok(snapshot)
            }
        }
    }

    /// Opens or cuts segments before a frame at `dts_ms` is written.
    fn before_frame(
        &mut self,
        dts_ms: u64,
        sync_point: bool,
        drives_clock: bool,
    ) -> Result<Option<HlsSnapshot>, SegmenterError> {
        let mut snapshot = None;
        if drives_clock {
            let last = self.last_dts_ms;
            self.last_dts_ms = Some(dts_ms);
            match last {
                Some(last) if dts_ms < last || dts_ms - last > MAX_GAP_MS => {
                    // The open segment ends where its own frames end, not at the frame after
                    // the jump: its EXTINF (and TARGETDURATION) must not span the gap.
                    snapshot = self.close(last + self.last_frame_ms)?;
                    self.pending_discontinuity = true;
                }
                Some(last) if dts_ms > last => self.last_frame_ms = dts_ms - last,
                _ => {}
            }
        }
        let cut = match &self.open {
            Some(open) => sync_point && self.cell(dts_ms) > open.cell,
            None => sync_point,
        };
        if cut {
            if self.open.is_some() {
                snapshot = self.close(dts_ms)?;
            }
            self.start(dts_ms)?;
        }
        Ok(snapshot)
    }

    fn start(&mut self, start_ms: u64) -> Result<(), SegmenterError> {
        let Some(mut writer) = self.store.writer() else {
            self.refused_segments += 1;
            // Skip this segment's frames; the next keyframe tries again. Playlists mark the
            // hole as a discontinuity.
            self.pending_discontinuity = true;
            return Ok(());
        };
        self.mux.write_tables(&mut writer)?;
        let cell = self.cell(start_ms);
        let seq = self.next_seq.unwrap_or(SegmentSeq(cell));
        if let Some((last_cell, last_start_ms)) = self.last_opened {
            if cell != last_cell + 1 {
                self.unaligned_cuts += 1;
                self.last_unaligned_gap_ms = start_ms.saturating_sub(last_start_ms);
            }
        }
        self.last_opened = Some((cell, start_ms));
        self.next_seq = Some(seq.next());
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        if let Some(ll) = &mut self.ll {
            ll.open_segment(seq.0, start_ms, discontinuity);
        }
        self.open = Some(Open {
            writer,
            start_ms,
            cell,
            seq,
            discontinuity,
            audio_listed: self.mux.has_audio(),
        });
        Ok(())
    }

    /// Closes the open segment at `end_ms` and returns the new snapshot.
    fn close(&mut self, end_ms: u64) -> Result<Option<HlsSnapshot>, SegmenterError> {
        let Some(mut open) = self.open.take() else {
            return Ok(None);
        };
        if let Some(ll) = &mut self.ll {
            ll.close_segment(end_ms);
        }
        let flushed = self.mux.flush_audio(&mut open.writer);
        let pieces = self.store.finish(open.writer);
        if let Err(e) = flushed {
            if e == TsError::StorageFull {
                self.refused_segments += 1;
                self.pending_discontinuity = true;
                return Ok(None);
            }
            return Err(e.into());
        }
        let duration_ms = end_ms.saturating_sub(open.start_ms).max(1);
        let len = pieces.iter().map(Bytes::len).sum();
        let seg = Segment(Arc::new(SegmentData {
            seq: open.seq,
            duration_ms,
            discontinuity: open.discontinuity,
            pieces,
            len,
        }));
        self.target_duration_s = self.target_duration_s.max(duration_ms.div_ceil(1000));
        self.segments.push_back(seg);
        // Keep the window plus extras; count discontinuities leaving the listed window.
        while self.segments.len() > self.config.window + self.config.keep_extra {
            self.segments.pop_front();
        }
        let listed_start = self.segments.len().saturating_sub(self.config.window);
        if listed_start > 0 {
            // The segment that just left the window is the one before `listed_start`.
            if self.segments[listed_start - 1].discontinuity {
                self.discontinuity_seq += 1;
            }
        }
        Ok(Some(self.snapshot()))
    }

    /// Gives memory back under pressure: drops the segments kept past the window, or if there
    /// are none, the oldest listed one. Returns the new snapshot when anything was dropped.
    pub fn shed(&mut self) -> Option<HlsSnapshot> {
        let listed = self.segments.len().min(self.config.window);
        let extras = self.segments.len() - listed;
        let drop_n = if extras > 0 {
            extras
        } else {
            usize::from(self.segments.len() > 1)
        };
        if let Some(ll) = &mut self.ll {
            ll.shed();
        }
        if drop_n == 0 {
            return None;
        }
        self.take_ll();
        for _ in 0..drop_n {
            if let Some(s) = self.segments.pop_front() {
                // A listed segment leaving (no extras) may carry a discontinuity.
                if extras == 0 && s.discontinuity {
                    self.discontinuity_seq += 1;
                }
            }
        }
        Some(self.snapshot())
    }

    /// The publisher came back (republish): the next segment is a discontinuity.
    pub fn handle_republish(&mut self) -> Option<HlsSnapshot> {
        let end = self.last_dts_ms.unwrap_or(0);
        let snap = self.close(end).ok().flatten();
        self.pending_discontinuity = true;
        self.last_dts_ms = None;
        self.mux = TsMuxer::new();
        if let Some(ll) = &mut self.ll {
            ll.restart();
        }
        self.take_ll();
        snap.map(|_| self.snapshot())
    }

    /// The stream ended: close the last segment and add EXT-X-ENDLIST.
    pub fn handle_end(&mut self) -> HlsSnapshot {
        let end = self.last_dts_ms.unwrap_or(0);
        if let Some(open) = &self.open {
            // Give the last segment the duration of what it holds, at least 1 ms.
            let end = end.max(open.start_ms + 1);
            let _ = self.close(end);
        }
        if let Some(ll) = &mut self.ll {
            ll.end(end);
        }
        self.take_ll();
        self.ended = true;
        self.snapshot()
    }

    /// The current snapshot (playlist rendered now).
    pub fn snapshot(&self) -> HlsSnapshot {
        let (playlist, uri_ends) = self.render_playlist();
        HlsSnapshot {
            playlist,
            uri_ends,
            segments: self.segments.iter().cloned().collect(),
            target_duration_s: self.target_duration_s,
            ended: self.ended,
            ll: self.ll_snapshot.clone(),
            ts_carries: self.mux.has_video() || self.mux.has_audio(),
        }
    }

    fn render_playlist(&self) -> (Bytes, Vec<usize>) {
        let listed = self
            .segments
            .iter()
            .skip(self.segments.len().saturating_sub(self.config.window));
        let first_seq = listed
            .clone()
            .next()
            .map_or(self.next_seq.unwrap_or(SegmentSeq(0)), |s| s.seq);
        render_media_playlist(
            &PlaylistHeader {
                stream_name: &self.stream_name,
                target_duration_s: self.target_duration_s,
                first_seq: first_seq.0,
                discontinuity_seq: self.discontinuity_seq,
                ended: self.ended,
            },
            listed.map(|s| (s.seq.0, s.duration_ms, s.discontinuity)),
        )
    }
}

/// Where the coded data starts in a video tag body.
pub fn video_data_offset(body: &[u8], codec: VideoCodec) -> usize {
    if body.first().is_some_and(|b| b & 0x80 != 0) {
        // Enhanced RTMP: header byte + FourCC, plus a composition time for CodedFrames.
        let packet_type = body[0] & 0x0f;
        if packet_type == 1 && codec.has_composition_time() {
            8
        } else {
            5
        }
    } else {
        5
    }
}

/// A video tag's codec, in words: an enhanced-RTMP FourCC, or a legacy FLV codec id.
fn video_codec_name(body: &[u8]) -> String {
    let Some(&b0) = body.first() else {
        return "(empty tag)".into();
    };
    if b0 & 0x80 != 0 {
        return match body.get(1..5) {
            Some(fourcc) => format!("'{}'", String::from_utf8_lossy(fourcc).escape_default()),
            None => "(a short enhanced-RTMP header)".into(),
        };
    }
    match b0 & 0x0f {
        2 => "Sorenson H.263".into(),
        3 => "Screen video".into(),
        4 => "On2 VP6".into(),
        5 => "On2 VP6 with alpha".into(),
        6 => "Screen video 2".into(),
        id => format!("id {id}"),
    }
}

/// An FLV sound format, in words.
fn sound_format_name(format: u8) -> &'static str {
    match format {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        9 => "an enhanced-RTMP FourCC",
        11 => "Speex",
        15 => "device-specific",
        _ => "reserved",
    }
}
