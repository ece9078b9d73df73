//! MPEG-TS muxing: our PES packetiser on top of the mpeg2ts packet codec.
//!
//! - H.264: AVCC → Annex B, an AUD per access unit, SPS/PPS before every IDR.
//! - H.265 (enhanced RTMP `hvc1`): HVCC → Annex B with VPS/SPS/PPS, stream type 0x24.
//! - AAC: one ADTS header per raw frame, several frames per PES within a bounded duration.
//! - MPEG audio (MP3 from RTMP's sound formats 2 and 14): the frames as they come, stream
//!   type 0x03 for MPEG-1 and 0x04 for MPEG-2/2.5 (the lower sample rates), gathered into
//!   PES packets as AAC is.
//! - PAT/PMT on demand (the segmenter writes them first in every segment), continuity
//!   counters per PID that never reset, PCR on the PCR PID at least every 100 ms,
//!   `random_access_indicator` on keyframes.
//!
//! Timestamps: DTS = stream ms × 90 + [`TS_OFFSET_90K`], PTS = DTS + composition offset × 90,
//! exactly; PCR runs [`TS_OFFSET_90K`] behind DTS so every frame arrives before it decodes.
//! Everything is modulo 2^33.

use bytes::Bytes;
use mpeg2ts::es::{StreamId, StreamType};
use mpeg2ts::pes::PesHeader;
use mpeg2ts::time::{ClockReference, Timestamp};
use mpeg2ts::ts::payload::{Bytes as TsBytes, Pat, Pes, Pmt};
use mpeg2ts::ts::{
    AdaptationField, ContinuityCounter, EsInfo, Pid, ProgramAssociation,
    TransportScramblingControl, TsHeader, TsPacket, TsPacketWriter, TsPayload, VersionNumber,
    WriteTsPacket,
};

/// Size of a TS packet.
pub const PACKET: usize = 188;
pub const PID_PMT: u16 = 0x1000;
pub const PID_VIDEO: u16 = 0x100;
pub const PID_AUDIO: u16 = 0x101;
/// 0.7 s: the distance between PCR and DTS, and the DTS of stream time zero.
pub const TS_OFFSET_90K: u64 = 63_000;
/// Audio frames are gathered into one PES up to this duration.
pub const MAX_AUDIO_PES_MS: u64 = 100;
const PCR_INTERVAL_90K: u64 = 9_000;
const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// Errors in codec configuration or frames; they stop HLS for the stream, never the shard.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TsError {
    /// The AVC/HEVC decoder configuration record is malformed.
    #[error("malformed {0} decoder configuration record")]
    BadVideoConfig(&'static str),
    /// The AAC AudioSpecificConfig is malformed.
    #[error("malformed AAC AudioSpecificConfig")]
    BadAudioConfig,
    /// A NAL unit length runs past the end of the frame.
    #[error("NAL unit length {len} exceeds the {left} bytes left")]
    BadNalu { len: usize, left: usize },
    /// A codec HLS cannot carry.
    #[error("unsupported codec for HLS: {0}")]
    Unsupported(String),
    /// The segment storage refused more bytes (cache budget).
    #[error("segment storage full")]
    StorageFull,
}

/// Where TS packets go: a `Vec`, or arena chunks in the engine.
pub trait TsSink {
    /// Appends one 188-byte packet.
    fn put_packet(&mut self, packet: &[u8; PACKET]) -> Result<(), TsError>;
}

impl TsSink for Vec<u8> {
    fn put_packet(&mut self, packet: &[u8; PACKET]) -> Result<(), TsError> {
        self.extend_from_slice(packet);
        Ok(())
    }
}

/// A video codec configuration, as Annex B parameter sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    pub hevc: bool,
    /// Bytes of the NAL unit length prefix (1, 2 or 4).
    pub nalu_length_size: usize,
    /// VPS (HEVC), SPS and PPS NAL units, in order.
    pub parameter_sets: Vec<Bytes>,
}

impl VideoConfig {
    /// Parses an AVCDecoderConfigurationRecord.
    pub fn from_avcc(rec: &[u8]) -> Result<Self, TsError> {
        let bad = TsError::BadVideoConfig("AVC");
        if rec.len() < 7 || rec[0] != 1 {
            return Err(bad);
        }
        let nalu_length_size = usize::from(rec[4] & 0x03) + 1;
        let mut pos = 5;
        let mut sets = Vec::new();
        let num_sps = usize::from(rec[pos] & 0x1f);
        pos += 1;
        for _ in 0..num_sps {
            sets.push(read_u16_prefixed(rec, &mut pos).ok_or(bad.clone())?);
        }
        let num_pps = usize::from(*rec.get(pos).ok_or(bad.clone())?);
        pos += 1;
        for _ in 0..num_pps {
            sets.push(read_u16_prefixed(rec, &mut pos).ok_or(bad.clone())?);
        }
        if nalu_length_size == 3 || sets.is_empty() {
            return Err(bad);
        }
        Ok(Self {
            hevc: false,
            nalu_length_size,
            parameter_sets: sets,
        })
    }

    /// Parses an HEVCDecoderConfigurationRecord.
    pub fn from_hvcc(rec: &[u8]) -> Result<Self, TsError> {
        let bad = TsError::BadVideoConfig("HEVC");
        if rec.len() < 23 || rec[0] != 1 {
            return Err(bad);
        }
        let nalu_length_size = usize::from(rec[21] & 0x03) + 1;
        let arrays = usize::from(rec[22]);
        let mut pos = 23;
        let mut sets = Vec::new();
        for _ in 0..arrays {
            pos += 1; // array_completeness, reserved, NAL_unit_type
            let hi = *rec.get(pos).ok_or(bad.clone())?;
            let lo = *rec.get(pos + 1).ok_or(bad.clone())?;
            pos += 2;
            for _ in 0..u16::from_be_bytes([hi, lo]) {
                sets.push(read_u16_prefixed(rec, &mut pos).ok_or(bad.clone())?);
            }
        }
        if nalu_length_size == 3 || sets.is_empty() {
            return Err(bad);
        }
        Ok(Self {
            hevc: true,
            nalu_length_size,
            parameter_sets: sets,
        })
    }
}

/// The NAL units of an Annex B byte stream, in order: start codes (3 or 4 bytes) and the
/// zero bytes that trail a unit removed. Bytes before the first start code are not a unit.
pub fn annexb_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let start_code = |d: &[u8]| d.windows(3).position(|w| w == [0, 0, 1]);
    let mut rest = start_code(data).map_or(&[][..], |i| &data[i + 3..]);
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (mut nal, next) = match start_code(rest) {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &[][..]),
        };
        rest = next;
        while let [head @ .., 0] = nal {
            nal = head;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

fn read_u16_prefixed(buf: &[u8], pos: &mut usize) -> Option<Bytes> {
    let len = usize::from(u16::from_be_bytes([*buf.get(*pos)?, *buf.get(*pos + 1)?]));
    let data = buf.get(*pos + 2..*pos + 2 + len)?;
    *pos += 2 + len;
    Some(Bytes::copy_from_slice(data))
}

/// The audio a TS stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioTrack {
    /// AAC: each raw frame gets an ADTS header (stream type 0x0f).
    Aac(AudioConfig),
    /// MPEG-1/2 audio (MP3) frames, which carry their own headers: stream type 0x03 when
    /// `mpeg1`, else 0x04.
    Mpeg { mpeg1: bool },
}

impl AudioTrack {
    /// The track an MPEG audio frame starts (its header's version bits), or `None` when
    /// `frame` does not start with a frame header.
    pub fn mpeg_from_frame(frame: &[u8]) -> Option<AudioTrack> {
        let (&b0, &b1) = (frame.first()?, frame.get(1)?);
        if b0 != 0xff || b1 & 0xe0 != 0xe0 || (b1 >> 1) & 0x03 == 0 {
            return None;
        }
        match (b1 >> 3) & 0x03 {
            0b11 => Some(AudioTrack::Mpeg { mpeg1: true }),
            0b10 | 0b00 => Some(AudioTrack::Mpeg { mpeg1: false }),
            _ => None,
        }
    }

    fn stream_type(self) -> StreamType {
        match self {
            AudioTrack::Aac(_) => StreamType::AdtsAac,
            AudioTrack::Mpeg { mpeg1: true } => StreamType::Mpeg1Audio,
            AudioTrack::Mpeg { mpeg1: false } => StreamType::Mpeg2HalvedSampleRateAudio,
        }
    }
}

/// AAC parameters an ADTS header needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    /// MPEG-4 audio object type (2 = AAC LC).
    pub object_type: u8,
    pub sample_rate_index: u8,
    pub channels: u8,
}

impl AudioConfig {
    /// The sampling rate its index names.
    pub fn sample_rate(&self) -> u32 {
        super::demux::AAC_RATES
            .get(usize::from(self.sample_rate_index))
            .copied()
            .unwrap_or(44_100)
    }

    /// Parses an AudioSpecificConfig.
    pub fn from_asc(asc: &[u8]) -> Result<Self, TsError> {
        if asc.len() < 2 {
            return Err(TsError::BadAudioConfig);
        }
        let object_type = asc[0] >> 3;
        let sample_rate_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        // ADTS has two bits for the profile (object types 1..=4) and no explicit frequency.
        if !(1..=4).contains(&object_type) || sample_rate_index > 12 || channels > 7 {
            return Err(TsError::BadAudioConfig);
        }
        Ok(Self {
            object_type,
            sample_rate_index,
            channels,
        })
    }

    /// The 7-byte ADTS header (no CRC) for a raw frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let len = (payload_len + 7) as u32;
        let profile = self.object_type - 1;
        [
            0xff,
            0xf1, // MPEG-4, layer 0, protection absent
            (profile << 6) | (self.sample_rate_index << 2) | (self.channels >> 2),
            ((self.channels & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 0x07) as u8) << 5) | 0x1f,
            0xfc,
        ]
    }
}

#[derive(Debug, Default)]
struct PendingAudio {
    data: Vec<u8>,
    first_ms: Option<u64>,
    last_ms: u64,
}

/// A TS muxer for one stream.
#[derive(Debug, Default)]
pub struct TsMuxer {
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    video: Option<VideoConfig>,
    audio: Option<AudioTrack>,
    last_pcr_90k: Option<u64>,
    audio_pending: PendingAudio,
    annexb: Vec<u8>,
}

impl TsMuxer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_video_config(&mut self, config: VideoConfig) {
        self.video = Some(config);
    }

    pub fn set_audio_config(&mut self, config: AudioConfig) {
        self.audio = Some(AudioTrack::Aac(config));
    }

    pub fn set_audio_track(&mut self, track: AudioTrack) {
        self.audio = Some(track);
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn audio_track(&self) -> Option<AudioTrack> {
        self.audio
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            PID_VIDEO
        } else {
            PID_AUDIO
        }
    }

    /// Writes PAT and PMT for the streams configured now.
    pub fn write_tables(&mut self, out: &mut impl TsSink) -> Result<(), TsError> {
        let pat = Pat {
            transport_stream_id: 1,
            version_number: VersionNumber::default(),
            table: vec![ProgramAssociation {
                program_num: 1,
                program_map_pid: pid(PID_PMT),
            }],
        };
        let cc = next_cc(&mut self.cc_pat);
        emit(out, packet(0, cc, None, TsPayload::Pat(pat)))?;
        let mut es_info = Vec::new();
        if let Some(v) = &self.video {
            es_info.push(EsInfo {
                stream_type: if v.hevc {
                    StreamType::H265
                } else {
                    StreamType::H264
                },
                elementary_pid: pid(PID_VIDEO),
                descriptors: Vec::new(),
            });
        }
        if let Some(track) = self.audio {
            es_info.push(EsInfo {
                stream_type: track.stream_type(),
                elementary_pid: pid(PID_AUDIO),
                descriptors: Vec::new(),
            });
        }
        let pmt = Pmt {
            program_num: 1,
            pcr_pid: Some(pid(self.pcr_pid())),
            version_number: VersionNumber::default(),
            program_info: Vec::new(),
            es_info,
        };
        let cc = next_cc(&mut self.cc_pmt);
        emit(out, packet(PID_PMT, cc, None, TsPayload::Pmt(pmt)))
    }

    /// Writes one video access unit. `data` is the tag's coded data after its header
    /// (length-prefixed NAL units).
    pub fn write_video(
        &mut self,
        out: &mut impl TsSink,
        dts_ms: u64,
        composition_ms: i32,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), TsError> {
        let Some(config) = &self.video else {
            return Ok(()); // No configuration yet: nothing decodable to write.
        };
        let mut annexb = std::mem::take(&mut self.annexb);
        annexb.clear();
        to_annexb(config, keyframe, data, &mut annexb)?;
        let dts = (dts_ms * 90 + TS_OFFSET_90K) & TIMESTAMP_MASK;
        let pts = ((dts_ms as i64 + i64::from(composition_ms)).max(0) as u64 * 90 + TS_OFFSET_90K)
            & TIMESTAMP_MASK;
        let result = self.write_pes(out, PID_VIDEO, 0xe0, pts, Some(dts), keyframe, &annexb);
        self.annexb = annexb;
        result
    }

    /// Queues one audio frame (a raw AAC frame, or MPEG audio frames as they come); frames
    /// go out together once they span [`MAX_AUDIO_PES_MS`] (or at [`TsMuxer::flush_audio`]).
    pub fn write_audio(
        &mut self,
        out: &mut impl TsSink,
        pts_ms: u64,
        raw: &[u8],
    ) -> Result<(), TsError> {
        let Some(track) = self.audio else {
            return Ok(());
        };
        if let Some(first) = self.audio_pending.first_ms {
            if pts_ms < self.audio_pending.last_ms
                || pts_ms.saturating_sub(first) >= MAX_AUDIO_PES_MS
            {
                self.flush_audio(out)?;
            }
        }
        let p = &mut self.audio_pending;
        p.first_ms.get_or_insert(pts_ms);
        p.last_ms = pts_ms;
        if let AudioTrack::Aac(config) = track {
            p.data.extend_from_slice(&config.adts_header(raw.len()));
        }
        p.data.extend_from_slice(raw);
        Ok(())
    }

    /// Writes queued audio frames as one PES.
    pub fn flush_audio(&mut self, out: &mut impl TsSink) -> Result<(), TsError> {
        let Some(first) = self.audio_pending.first_ms.take() else {
            return Ok(());
        };
        let data = std::mem::take(&mut self.audio_pending.data);
        let pts = (first * 90 + TS_OFFSET_90K) & TIMESTAMP_MASK;
        // An audio-only stream is its own random access point.
        let random_access = self.video.is_none();
        let result = self.write_pes(out, PID_AUDIO, 0xc0, pts, None, random_access, &data);
        self.audio_pending.data = data;
        self.audio_pending.data.clear();
        result
    }

    /// Packetises one PES into TS packets.
    #[allow(clippy::too_many_arguments)]
    fn write_pes(
        &mut self,
        out: &mut impl TsSink,
        pid_value: u16,
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        random_access: bool,
        es: &[u8],
    ) -> Result<(), TsError> {
        let dts = dts.filter(|&d| d != pts);
        let clock = dts.unwrap_or(pts);
        let want_pcr = pid_value == self.pcr_pid()
            && (random_access
                || pid_value == PID_VIDEO
                || self.last_pcr_90k.is_none_or(|last| {
                    clock.wrapping_sub(last) & TIMESTAMP_MASK >= PCR_INTERVAL_90K
                }));
        let pcr = want_pcr.then(|| clock.wrapping_sub(TS_OFFSET_90K) & TIMESTAMP_MASK);
        if let Some(p) = pcr {
            self.last_pcr_90k = Some(p + TS_OFFSET_90K);
        }
        let header = PesHeader {
            stream_id: StreamId::new(stream_id),
            priority: false,
            data_alignment_indicator: true,
            copyright: false,
            original_or_copy: false,
            pts: Some(timestamp(pts)),
            dts: dts.map(timestamp),
            escr: None,
        };
        let optional = 3 + 5 + if dts.is_some() { 5 } else { 0 };
        let total = optional + es.len();
        // Video may exceed the 16-bit length: 0 means "unbounded" for video streams.
        let pes_packet_len = if total > usize::from(u16::MAX) {
            0
        } else {
            total as u16
        };

        // First packet: PES header plus as much data as fits beside the adaptation field.
        let adaptation = (random_access || pcr.is_some()).then(|| AdaptationField {
            discontinuity_indicator: false,
            random_access_indicator: random_access,
            es_priority_indicator: false,
            pcr: pcr.map(|p| ClockReference::new(p * 300).expect("masked to 33 bits")),
            opcr: None,
            splice_countdown: None,
            transport_private_data: Vec::new(),
            extension: None,
        });
        let adaptation_len = adaptation
            .as_ref()
            .map_or(0, |a| 2 + if a.pcr.is_some() { 6 } else { 0 });
        let room = PACKET - 4 - adaptation_len - (6 + optional);
        let first_len = room.min(es.len());
        let cc = self.next_cc_for(pid_value);
        let pes = Pes {
            header,
            pes_packet_len,
            data: ts_bytes(&es[..first_len]),
        };
        emit(
            out,
            packet(pid_value, cc, adaptation, TsPayload::PesStart(pes)),
        )?;
        for chunk in es[first_len..].chunks(PACKET - 4) {
            let cc = self.next_cc_for(pid_value);
            emit(
                out,
                packet(
                    pid_value,
                    cc,
                    None,
                    TsPayload::PesContinuation(ts_bytes(chunk)),
                ),
            )?;
        }
        Ok(())
    }

    fn next_cc_for(&mut self, pid_value: u16) -> u8 {
        match pid_value {
            PID_VIDEO => next_cc(&mut self.cc_video),
            _ => next_cc(&mut self.cc_audio),
        }
    }
}

/// Converts one AVCC/HVCC access unit to Annex B with an AUD first and, on keyframes without
/// them, the parameter sets.
fn to_annexb(
    config: &VideoConfig,
    keyframe: bool,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TsError> {
    const START: [u8; 4] = [0, 0, 0, 1];
    if config.hevc {
        out.extend_from_slice(&[0, 0, 0, 1, 0x46, 0x01, 0x50]);
    } else {
        out.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
    }
    let n = config.nalu_length_size;
    let mut nalus = Vec::with_capacity(8);
    let mut pos = 0;
    while pos + n <= data.len() {
        let len = data[pos..pos + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        pos += n;
        let left = data.len() - pos;
        if len > left {
            return Err(TsError::BadNalu { len, left });
        }
        nalus.push(&data[pos..pos + len]);
        pos += len;
    }
    let nal_type = |nal: &[u8]| -> u8 {
        match (config.hevc, nal.first()) {
            (true, Some(b)) => (b >> 1) & 0x3f,
            (false, Some(b)) => b & 0x1f,
            (_, None) => 0,
        }
    };
    let (aud, sps) = if config.hevc { (35, 33) } else { (9, 7) };
    if keyframe && !nalus.iter().any(|n| nal_type(n) == sps) {
        for set in &config.parameter_sets {
            out.extend_from_slice(&START);
            out.extend_from_slice(set);
        }
    }
    for nal in nalus
        .into_iter()
        .filter(|n| !n.is_empty() && nal_type(n) != aud)
    {
        out.extend_from_slice(&START);
        out.extend_from_slice(nal);
    }
    Ok(())
}

fn next_cc(cc: &mut u8) -> u8 {
    let v = *cc;
    *cc = (v + 1) & 0x0f;
    v
}

fn pid(v: u16) -> Pid {
    Pid::new(v).expect("our PIDs are below 0x1fff")
}

fn timestamp(v: u64) -> Timestamp {
    Timestamp::new(v & TIMESTAMP_MASK).expect("masked to 33 bits")
}

fn ts_bytes(b: &[u8]) -> TsBytes {
    TsBytes::new(b).expect("callers slice at most 184 bytes")
}

fn packet(
    pid_value: u16,
    cc: u8,
    adaptation_field: Option<AdaptationField>,
    payload: TsPayload,
) -> TsPacket {
    TsPacket {
        header: TsHeader {
            transport_error_indicator: false,
            transport_priority: false,
            pid: pid(pid_value),
            transport_scrambling_control: TransportScramblingControl::NotScrambled,
            continuity_counter: ContinuityCounter::from_u8(cc).expect("cc is 4 bits"),
        },
        adaptation_field,
        payload: Some(payload),
    }
}

fn emit(out: &mut impl TsSink, p: TsPacket) -> Result<(), TsError> {
    let mut buf = [0u8; PACKET];
    let mut w = TsPacketWriter::new(&mut buf[..]);
    // A packet we build always fits 188 bytes: payload sizes are computed above.
    w.write_ts_packet(&p).expect("packet sized to 188 bytes");
    out.put_packet(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// avcC with SPS [0x67, 1, 2] and PPS [0x68, 3], 4-byte lengths.
    pub(crate) fn avcc() -> Vec<u8> {
        vec![
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3,
        ]
    }

    #[test]
    fn avcc_to_annexb_adds_aud_and_parameter_sets_on_idr() {
        let config = VideoConfig::from_avcc(&avcc()).unwrap();
        assert_eq!(config.nalu_length_size, 4);
        let data = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06];
        let mut out = Vec::new();
        to_annexb(&config, true, &data, &mut out).unwrap();
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0x09, 0xf0, // AUD
                0, 0, 0, 1, 0x67, 1, 2, // SPS
                0, 0, 0, 1, 0x68, 3, // PPS
                0, 0, 0, 1, 0x65, 0xaa, // IDR
                0, 0, 0, 1, 0x06, // SEI
            ]
        );
        out.clear();
        to_annexb(&config, false, &data[..6], &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0xaa]);
        assert!(to_annexb(&config, false, &[0, 0, 0, 9, 1], &mut out).is_err());
        assert!(VideoConfig::from_avcc(&[1, 2, 3]).is_err());
    }

    #[test]
    fn hvcc_parameter_sets_and_hevc_aud() {
        let mut rec = vec![1u8; 21];
        rec.push(0xf0 | 3); // lengthSizeMinusOne = 3
        rec.push(3); // arrays: VPS, SPS, PPS
        for (t, nal) in [
            (32u8, [0x40u8, 1, 0xaa]),
            (33, [0x42, 1, 0xbb]),
            (34, [0x44, 1, 0xcc]),
        ] {
            rec.extend([0x80 | t, 0, 1, 0, 3]);
            rec.extend(nal);
        }
        let config = VideoConfig::from_hvcc(&rec).unwrap();
        assert!(config.hevc);
        assert_eq!(config.parameter_sets.len(), 3);
        // An IDR_W_RADL (type 19) access unit gets AUD (type 35) and VPS/SPS/PPS.
        let mut out = Vec::new();
        to_annexb(&config, true, &[0, 0, 0, 3, 0x26, 1, 0xdd], &mut out).unwrap();
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0x46, 0x01, 0x50, // AUD
                0, 0, 0, 1, 0x40, 1, 0xaa, 0, 0, 0, 1, 0x42, 1, 0xbb, 0, 0, 0, 1, 0x44, 1, 0xcc, 0,
                0, 0, 1, 0x26, 1, 0xdd,
            ]
        );
        let mut m = TsMuxer::new();
        m.set_video_config(config);
        let mut tables = Vec::new();
        m.write_tables(&mut tables).unwrap();
        // PMT section: stream type 0x24 for the video PID.
        let pmt = &tables[PACKET..];
        assert!(
            pmt.windows(3).any(|w| w == [0x24, 0xe1, 0x00]),
            "H.265 stream type on PID 0x100"
        );
        assert!(VideoConfig::from_hvcc(&rec[..22]).is_err());
    }

    #[test]
    fn adts_headers_for_several_rates_and_channel_counts() {
        // (AudioSpecificConfig, payload length, expected header)
        let cases: [([u8; 2], usize, [u8; 7]); 3] = [
            // AAC LC, 44.1 kHz (index 4), stereo.
            (
                [0x12, 0x10],
                100,
                [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc],
            ),
            // AAC LC, 48 kHz (index 3), mono.
            (
                [0x11, 0x88],
                200,
                [0xff, 0xf1, 0x4c, 0x40, 0x19, 0xff, 0xfc],
            ),
            // AAC LC, 22.05 kHz (index 7), 5.1 (6 channels).
            (
                [0x13, 0xb0],
                1000,
                [0xff, 0xf1, 0x5d, 0x80, 0x7d, 0xff, 0xfc],
            ),
        ];
        for (asc, len, want) in cases {
            let c = AudioConfig::from_asc(&asc).unwrap();
            let h = c.adts_header(len);
            assert_eq!(h, want, "asc {asc:02x?}");
            // Frame length field (13 bits) includes the header.
            let frame_len =
                (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            assert_eq!(frame_len, len + 7);
        }
        assert!(AudioConfig::from_asc(&[0x12]).is_err());
        assert!(
            AudioConfig::from_asc(&[0x2a, 0x10]).is_err(),
            "object type 5 (SBR) has no ADTS profile"
        );
    }

    #[test]
    fn pes_packets_are_188_bytes_and_carry_pcr_and_random_access() {
        let mut m = TsMuxer::new();
        m.set_video_config(VideoConfig::from_avcc(&avcc()).unwrap());
        let mut out = Vec::new();
        m.write_tables(&mut out).unwrap();
        let big: Vec<u8> = [0u8, 0, 0x4e, 0x20]
            .into_iter()
            .chain([0x65])
            .chain(std::iter::repeat_n(7, 19_999))
            .collect();
        m.write_video(&mut out, 1000, 80, true, &big).unwrap();
        assert_eq!(out.len() % PACKET, 0);
        assert!(out.chunks(PACKET).all(|p| p[0] == 0x47));
        let first_video = &out[2 * PACKET..3 * PACKET];
        assert_eq!(first_video[1] & 0x40, 0x40, "payload unit start");
        assert_eq!(first_video[3] & 0x20, 0x20, "adaptation field present");
        assert_eq!(first_video[5] & 0x50, 0x50, "random access + PCR flags");
    }
}
