//! Media vocabulary shared by every protocol: stream keys, FLV/RTMP tag-header parsing and the
//! [`Frame`], the unit a stream fans out.
//!
//! A `Frame` carries its payload and its wire forms (RTMP chunks, FLV tag), each produced once
//! per stream and shared by reference count. Nothing here knows about sockets or viewers.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::flv;
use crate::rtmp::chunk;

/// `{app}/{stream}` without any query string. Cheap to clone and `Send`, so it can cross shards.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(Arc<str>);

impl StreamKey {
    /// Builds a key from an application and a stream name, dropping any `?query`.
    ///
    /// Returns `None` for names that cannot be a stream: empty parts, slashes inside a part,
    /// or `.`/`..` (which would make URL paths ambiguous).
    pub fn new(app: &str, stream: &str) -> Option<Self> {
        let app = strip_query(app);
        let stream = strip_query(stream);
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
        };
        if !valid(app) || !valid(stream) {
            return None;
        }
        Some(Self(Arc::from(format!("{app}/{stream}"))))
    }

    /// The `app/stream` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The app, without the stream name.
    pub fn app(&self) -> &str {
        self.0.split_once('/').map_or("", |(a, _)| a)
    }

    /// The stream name, without the app.
    pub fn stream(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, s)| s)
    }

    /// A stable FNV-1a hash, the same on every shard and every run; ownership is
    /// `hash % shards`, so it must not depend on a per-process random seed.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({})", self.0)
    }
}

fn strip_query(s: &str) -> &str {
    s.split('?').next().unwrap_or("")
}

/// Which FLV/RTMP message kind a frame is. The discriminants are the RTMP message type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio = 8,
    Video = 9,
    /// AMF0 data (`onMetaData`).
    Data = 18,
}

impl MediaKind {
    /// The RTMP message type id, which is also the FLV tag type.
    pub fn type_id(self) -> u8 {
        self as u8
    }

    /// Parses an RTMP message type id.
    pub fn from_type_id(id: u8) -> Option<Self> {
        match id {
            8 => Some(Self::Audio),
            9 => Some(Self::Video),
            18 => Some(Self::Data),
            _ => None,
        }
    }
}

/// Errors in a media tag body. Each closes the offending publisher, never the shard.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// The tag body is shorter than its header says it must be.
    #[error("{kind:?} tag too short: {len} bytes")]
    TooShort { kind: MediaKind, len: usize },
}

/// Video codecs the engine recognises. Everything else passes through untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Avc,
    /// Enhanced RTMP `hvc1`.
    Hevc,
    /// Enhanced RTMP `av01`: no composition time; HLS carries it in fMP4 only.
    Av1,
    /// Any other legacy codec id or enhanced-RTMP FourCC.
    Other,
}

impl VideoCodec {
    /// Enhanced RTMP's CodedFrames carry an SI24 composition time for these codecs only.
    pub fn has_composition_time(self) -> bool {
        matches!(self, VideoCodec::Avc | VideoCodec::Hevc)
    }
}

/// What the engine needs to know about a video tag; the body itself is never rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoTag {
    pub codec: VideoCodec,
    pub keyframe: bool,
    /// AVC sequence header / enhanced `SequenceStart`.
    pub sequence_header: bool,
    /// AVC end-of-sequence / enhanced `SequenceEnd`.
    pub end_of_sequence: bool,
    /// A command frame (frame type 5) or enhanced metadata: carries no picture.
    pub info_only: bool,
    /// Composition time offset (PTS − DTS) in milliseconds.
    pub composition_ms: i32,
}

/// Parses the header of an FLV/RTMP video body, legacy or enhanced RTMP.
pub fn parse_video_tag(body: &[u8]) -> Result<VideoTag, MediaError> {
    let short = || MediaError::TooShort {
        kind: MediaKind::Video,
        len: body.len(),
    };
    let b0 = *body.first().ok_or_else(short)?;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [1 IsExHeader][3 FrameType][4 PacketType][FourCC][...].
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        if body.len() < 5 {
            return Err(short());
        }
        let codec = match &body[1..5] {
            b"hvc1" => VideoCodec::Hevc,
            b"avc1" => VideoCodec::Avc,
            b"av01" => VideoCodec::Av1,
            _ => VideoCodec::Other,
        };
        // PacketType 1 (CodedFrames) for hvc1/avc1 carries an SI24 composition time.
        let composition_ms = if packet_type == 1 && codec.has_composition_time() {
            if body.len() < 8 {
                return Err(short());
            }
            si24(&body[5..8])
        } else {
            0
        };
        return Ok(VideoTag {
            codec,
            keyframe: frame_type == 1,
            sequence_header: packet_type == 0,
            end_of_sequence: packet_type == 2,
            info_only: frame_type == 5 || packet_type == 4,
            composition_ms,
        });
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    if codec_id != 7 {
        return Ok(VideoTag {
            codec: VideoCodec::Other,
            keyframe: frame_type == 1,
            sequence_header: false,
            end_of_sequence: false,
            info_only: frame_type == 5,
            composition_ms: 0,
        });
    }
    if body.len() < 5 {
        return Err(short());
    }
    Ok(VideoTag {
        codec: VideoCodec::Avc,
        keyframe: frame_type == 1,
        sequence_header: body[1] == 0,
        end_of_sequence: body[1] == 2,
        info_only: frame_type == 5,
        composition_ms: si24(&body[2..5]),
    })
}

/// What the engine needs to know about an audio tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioTag {
    /// FLV SoundFormat: 10 is AAC.
    pub sound_format: u8,
    /// AAC AudioSpecificConfig.
    pub sequence_header: bool,
}

/// Parses the header of an FLV/RTMP audio body.
pub fn parse_audio_tag(body: &[u8]) -> Result<AudioTag, MediaError> {
    let b0 = *body.first().ok_or(MediaError::TooShort {
        kind: MediaKind::Audio,
        len: 0,
    })?;
    let sound_format = b0 >> 4;
    if sound_format == 10 {
        let b1 = *body.get(1).ok_or(MediaError::TooShort {
            kind: MediaKind::Audio,
            len: body.len(),
        })?;
        return Ok(AudioTag {
            sound_format,
            sequence_header: b1 == 0,
        });
    }
    Ok(AudioTag {
        sound_format,
        sequence_header: false,
    })
}

fn si24(b: &[u8]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

/// A media message's header, parsed once where it enters the engine (the publisher's
/// connection, or an upstream pull) and carried with it: the master, the join cache and the
/// segmenter read this instead of parsing the body again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagInfo {
    Video(VideoTag),
    Audio(AudioTag),
    /// `onMetaData` and other data messages: nothing to parse.
    Data,
}

impl TagInfo {
    pub fn kind(self) -> MediaKind {
        match self {
            TagInfo::Video(_) => MediaKind::Video,
            TagInfo::Audio(_) => MediaKind::Audio,
            TagInfo::Data => MediaKind::Data,
        }
    }

    /// A sequence header (AVC/HEVC configuration, AAC AudioSpecificConfig).
    pub fn is_sequence_header(self) -> bool {
        match self {
            TagInfo::Video(v) => v.sequence_header,
            TagInfo::Audio(a) => a.sequence_header,
            TagInfo::Data => false,
        }
    }
}

/// Parses the header of a `kind` message body, once.
pub fn parse_tag(kind: MediaKind, body: &[u8]) -> Result<TagInfo, MediaError> {
    Ok(match kind {
        MediaKind::Video => TagInfo::Video(parse_video_tag(body)?),
        MediaKind::Audio => TagInfo::Audio(parse_audio_tag(body)?),
        MediaKind::Data => TagInfo::Data,
    })
}

/// Flags a viewer queue and the join cache act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameFlags {
    /// A viewer may start here: a video keyframe, or any audio frame of an audio-only stream.
    pub sync_point: bool,
    /// A sequence header or metadata: decoders need it, so it is never dropped.
    pub header: bool,
}

/// One media message of a stream, with its wire forms built once and shared. Cloning is one
/// reference count: frames cross shards and sit in many queues at once.
#[derive(Clone, Debug)]
pub struct Frame(Arc<FrameData>);

/// What a [`Frame`] holds.
#[derive(Debug)]
pub struct FrameData {
    pub kind: MediaKind,
    /// The parsed header of `payload` (`None` when it did not parse: only frames built by
    /// [`Frame::new`] from bytes nobody validated; the engine's frames always have one).
    pub tag: Option<TagInfo>,
    /// Stream time in milliseconds, after 32-bit unwrap and republish rebasing.
    pub timestamp_ms: u64,
    pub flags: FrameFlags,
    /// The tag body as the publisher sent it.
    pub payload: Bytes,
    /// RTMP chunks (chunk size [`chunk::OUT_CHUNK_SIZE`], message stream id 1).
    pub rtmp: Bytes,
    /// FLV tag and its PreviousTagSize, framed as one HTTP/1.1 chunk (HTTP-FLV viewers).
    pub flv: Bytes,
}

impl Frame {
    /// Builds a frame, parsing its header, and serialises its RTMP and FLV forms, once.
    pub fn new(kind: MediaKind, timestamp_ms: u64, flags: FrameFlags, payload: Bytes) -> Self {
        let tag = parse_tag(kind, &payload).ok();
        Self::build(kind, tag, timestamp_ms, flags, payload)
    }

    /// [`Frame::new`] for a body whose header was parsed already.
    pub fn with_tag(tag: TagInfo, timestamp_ms: u64, flags: FrameFlags, payload: Bytes) -> Self {
        Self::build(tag.kind(), Some(tag), timestamp_ms, flags, payload)
    }

    fn build(
        kind: MediaKind,
        tag: Option<TagInfo>,
        timestamp_ms: u64,
        flags: FrameFlags,
        payload: Bytes,
    ) -> Self {
        // Wire timestamps are 32 bits; they wrap and peers unwrap them as we do.
        let ts = timestamp_ms as u32;
        let rtmp = chunk::serialize_message(
            chunk::csid_for(kind),
            ts,
            kind.type_id(),
            chunk::PLAY_STREAM_ID,
            &payload,
            chunk::OUT_CHUNK_SIZE,
        );
        let flv = flv::serialize_tag_chunked(kind.type_id(), ts, &payload);
        Self(Arc::new(FrameData {
            kind,
            tag,
            timestamp_ms,
            flags,
            payload,
            rtmp,
            flv,
        }))
    }

    /// Bytes this frame holds: what it costs a cache or a queue to keep it.
    pub fn cost_bytes(&self) -> usize {
        self.rtmp.len()
    }
}

/// Two frames are equal when they are the same shared frame (one stream's message), not
/// merely equal bytes.
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for Frame {
    type Target = FrameData;

    fn deref(&self) -> &FrameData {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_key_strips_query_and_rejects_bad_names() {
        let k = StreamKey::new("live", "x?token=abc").unwrap();
        assert_eq!(k.as_str(), "live/x");
        assert!(StreamKey::new("", "x").is_none());
        assert!(StreamKey::new("live", "..").is_none());
        assert!(StreamKey::new("live", "a/b").is_none());
        assert!(StreamKey::new("live", "sp ace").is_none());
        assert_eq!(
            StreamKey::new("live", "x").unwrap().stable_hash(),
            StreamKey::new("live", "x").unwrap().stable_hash()
        );
    }

    #[test]
    fn avc_tags() {
        let seq = [0x17, 0x00, 0, 0, 0, 1, 2];
        let t = parse_video_tag(&seq).unwrap();
        assert!(t.keyframe && t.sequence_header && t.codec == VideoCodec::Avc);
        // Inter frame with composition time -2 ms (0xFFFFFE).
        let inter = [0x27, 0x01, 0xff, 0xff, 0xfe, 9];
        let t = parse_video_tag(&inter).unwrap();
        assert!(!t.keyframe && !t.sequence_header);
        assert_eq!(t.composition_ms, -2);
        let eos = [0x17, 0x02, 0, 0, 0];
        assert!(parse_video_tag(&eos).unwrap().end_of_sequence);
        assert!(parse_video_tag(&[0x17, 0x01]).is_err());
        assert!(parse_video_tag(&[]).is_err());
    }

    #[test]
    fn enhanced_hevc_tags() {
        // IsExHeader | FrameType 1 (key) | PacketType 0 (SequenceStart), FourCC hvc1.
        let seq = [0x90, b'h', b'v', b'c', b'1', 1, 2, 3];
        let t = parse_video_tag(&seq).unwrap();
        assert_eq!(t.codec, VideoCodec::Hevc);
        assert!(t.keyframe && t.sequence_header);
        // FrameType 2 (inter) | PacketType 1 (CodedFrames) with composition time 40.
        let coded = [0xA1, b'h', b'v', b'c', b'1', 0, 0, 40, 0xaa];
        let t = parse_video_tag(&coded).unwrap();
        assert!(!t.keyframe && !t.sequence_header);
        assert_eq!(t.composition_ms, 40);
        // PacketType 3 (CodedFramesX): no composition time field.
        let x = [0x93, b'h', b'v', b'c', b'1', 0xaa];
        let t = parse_video_tag(&x).unwrap();
        assert!(t.keyframe && t.composition_ms == 0);
        assert!(parse_video_tag(&[0x90, b'h', b'v']).is_err());
    }

    #[test]
    fn aac_tags() {
        let t = parse_audio_tag(&[0xaf, 0x00, 0x12, 0x10]).unwrap();
        assert!(t.sequence_header && t.sound_format == 10);
        let t = parse_audio_tag(&[0xaf, 0x01, 0x21]).unwrap();
        assert!(!t.sequence_header);
        assert!(parse_audio_tag(&[0xaf]).is_err());
        // MP3 has no sequence header.
        assert!(!parse_audio_tag(&[0x2f, 0xff]).unwrap().sequence_header);
    }
}
