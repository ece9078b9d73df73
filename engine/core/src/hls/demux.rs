//! MPEG-TS → FLV tag bodies, sans-IO: what lets RTMP and HTTP-FLV viewers at an edge watch
//! an origin that gives only HLS. The inverse of [`super::ts`], for what HLS origins carry:
//! H.264 (stream type 0x1b) and AAC in ADTS (0x0f).
//!
//! Bytes go in as they come, in pieces of any size ([`TsDemuxer::handle_bytes`]); the end
//! of a segment flushes the last PES of each stream ([`TsDemuxer::handle_end`]). Out come
//! [`EsFrame`]s in the order their PES packets completed, each an FLV tag body with its raw
//! 33-bit DTS. Putting them on a stream's timeline is the caller's ([`super::feed`]).
//!
//! - H.264: Annex B → AVCC with 4-byte lengths. SPS and PPS become an
//!   AVCDecoderConfigurationRecord, sent as a sequence header before the first frame and
//!   again when they change; they, access unit delimiters and end-of-sequence units leave
//!   the frames. Every other NAL unit (SEI included) stays.
//! - AAC: each ADTS frame becomes a raw frame; its header becomes an AudioSpecificConfig,
//!   sent the same way. Frames after the first of a PES are timed from the sample rate.
//! - Other elementary streams (HEVC, MP3, private data) are skipped and counted.
//!
//! Bounds: a PES is at most [`MAX_PES_BYTES`]; PSI sections are read from one packet.
//! Malformed input is an error for the caller to act on (skip the segment), never a panic.
//!
//! Must not: read a clock, pace frames, or know about segments, streams or viewers.

use bytes::{BufMut, Bytes, BytesMut};

use super::packets::{PacketCarry, PACKET};
use super::ts::annexb_nal_units;
use crate::media::MediaKind;

const SYNC: u8 = 0x47;
/// The largest PES accepted (a video access unit and its header).
pub const MAX_PES_BYTES: usize = 8 << 20;
/// Samples in an AAC frame.
const AAC_SAMPLES: u64 = 1024;
const TIMESTAMP_MASK: u64 = (1 << 33) - 1;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_ADTS_AAC: u8 = 0x0f;
/// ADTS sampling frequency indices.
pub(crate) const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Malformed transport stream input. The segment it came from cannot be trusted further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    /// A packet did not start with the sync byte.
    #[error("TS sync lost")]
    SyncLost,
    /// An adaptation field runs past its packet.
    #[error("TS adaptation field of {0} bytes does not fit its packet")]
    BadAdaptation(usize),
    /// A PES grew past [`MAX_PES_BYTES`].
    #[error("PES larger than {MAX_PES_BYTES} bytes")]
    PesTooLarge,
    /// A PES header is malformed (start code, header length, timestamps).
    #[error("malformed PES header")]
    BadPes,
    /// An ADTS frame header is malformed or runs past its PES.
    #[error("malformed ADTS frame")]
    BadAdts,
    /// Bytes left over at the end of a segment: not a whole number of packets.
    #[error("segment ends inside a TS packet ({0} bytes left over)")]
    PartialPacket(usize),
}

/// One frame out of the demuxer: an FLV tag body and its decode time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsFrame {
    pub kind: MediaKind,
    /// Decode timestamp, 90 kHz, modulo 2^33 as the stream carries it.
    pub dts_90k: u64,
    pub body: Bytes,
}

/// What was skipped, for the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxCounts {
    /// PES packets of elementary streams that are not H.264 or AAC.
    pub unsupported_pes: u64,
    /// Video access units before any SPS and PPS (undecodable, dropped).
    pub frames_before_config: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EsKind {
    Avc,
    Aac,
    Other,
}

#[derive(Debug)]
struct Es {
    pid: u16,
    kind: EsKind,
    /// The PES being gathered (`None` until a packet starts one).
    pes: Option<Vec<u8>>,
}

/// A transport stream being read.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    carry: PacketCarry,
    pmt_pid: Option<u16>,
    streams: Vec<Es>,
    /// The parameter sets in force, and the record last sent for them.
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    sent_avc_record: Option<Bytes>,
    sent_asc: Option<[u8; 2]>,
    pub counts: DemuxCounts,
}

impl TsDemuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next bytes, in pieces of any size; completed frames go to `out`.
    pub fn handle_bytes(&mut self, data: &[u8], out: &mut Vec<EsFrame>) -> Result<(), DemuxError> {
        let mut carry = std::mem::take(&mut self.carry);
        let result = carry.feed(data, |p| self.packet(p, out));
        self.carry = carry;
        result
    }

    /// The end of a segment: every PES under way is complete (HLS segments end on PES
    /// boundaries), and the next bytes start a new packet.
    pub fn handle_end(&mut self, out: &mut Vec<EsFrame>) -> Result<(), DemuxError> {
        let partial = self.carry.pending();
        self.carry.clear();
        for i in 0..self.streams.len() {
            if let Some(pes) = self.streams[i].pes.take() {
                let kind = self.streams[i].kind;
                self.pes(kind, &pes, out)?;
            }
        }
        if partial > 0 {
            return Err(DemuxError::PartialPacket(partial));
        }
        Ok(())
    }

    /// After an error: drops what was gathered (the codec configuration stays, so the next
    /// segment's frames need no new sequence header unless it changes).
    pub fn reset(&mut self) {
        self.carry.clear();
        for s in &mut self.streams {
            s.pes = None;
        }
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<EsFrame>) -> Result<(), DemuxError> {
        if p[0] != SYNC {
            return Err(DemuxError::SyncLost);
        }
        let start = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let control = (p[3] >> 4) & 0x03;
        let mut at = 4;
        if control & 0x02 != 0 {
            let len = usize::from(p[4]);
            at = 5 + len;
            if at > PACKET {
                return Err(DemuxError::BadAdaptation(len));
            }
        }
        if control & 0x01 == 0 || at >= PACKET {
            return Ok(());
        }
        let payload = &p[at..];
        if pid == 0 {
            if start {
                self.pat(payload);
            }
            return Ok(());
        }
        if Some(pid) == self.pmt_pid {
            if start {
                self.pmt(payload, out)?;
            }
            return Ok(());
        }
        let Some(i) = self.streams.iter().position(|s| s.pid == pid) else {
            return Ok(());
        };
        if start {
            if let Some(done) = self.streams[i].pes.take() {
                let kind = self.streams[i].kind;
                self.pes(kind, &done, out)?;
            }
            self.streams[i].pes = Some(Vec::with_capacity(payload.len()));
        }
        let Some(pes) = &mut self.streams[i].pes else {
            // Joined in the middle of a PES: wait for the next start.
            return Ok(());
        };
        if pes.len() + payload.len() > MAX_PES_BYTES {
            self.streams[i].pes = None;
            return Err(DemuxError::PesTooLarge);
        }
        pes.extend_from_slice(payload);
        Ok(())
    }

    /// The first program's PMT PID.
    fn pat(&mut self, payload: &[u8]) {
        let Some(section) = psi_section(payload, 0x00) else {
            return;
        };
        // transport_stream_id, version, section numbers: 5 bytes, then 4-byte entries.
        let entries = section.get(5..).unwrap_or(&[]);
        for e in entries.chunks_exact(4) {
            let program = u16::from_be_bytes([e[0], e[1]]);
            if program != 0 {
                self.pmt_pid = Some(u16::from_be_bytes([e[2] & 0x1f, e[3]]));
                return;
            }
        }
    }

    /// The program's elementary streams. A PID that keeps its stream type keeps its PES
    /// under way.
    fn pmt(&mut self, payload: &[u8], out: &mut Vec<EsFrame>) -> Result<(), DemuxError> {
        let Some(section) = psi_section(payload, 0x02) else {
            return Ok(());
        };
        // program_number, version, section numbers (5), PCR PID (2), program_info_length.
        let Some(&[hi, lo]) = section.get(7..9) else {
            return Ok(());
        };
        let info_len = usize::from(u16::from_be_bytes([hi & 0x0f, lo]));
        let mut rest = section.get(9 + info_len..).unwrap_or(&[]);
        let mut streams = Vec::new();
        while rest.len() >= 5 {
            let stream_type = rest[0];
            let pid = u16::from_be_bytes([rest[1] & 0x1f, rest[2]]);
            let es_info = usize::from(u16::from_be_bytes([rest[3] & 0x0f, rest[4]]));
            rest = rest.get(5 + es_info..).unwrap_or(&[]);
            let kind = match stream_type {
                STREAM_TYPE_H264 => EsKind::Avc,
                STREAM_TYPE_ADTS_AAC => EsKind::Aac,
                _ => EsKind::Other,
            };
            if streams.iter().any(|s: &Es| s.pid == pid) {
                continue;
            }
            let pes = self
                .streams
                .iter_mut()
                .find(|s| s.pid == pid && s.kind == kind)
                .and_then(|s| s.pes.take());
            streams.push(Es { pid, kind, pes });
        }
        // Streams the new table dropped end here.
        for s in std::mem::replace(&mut self.streams, streams) {
            if let Some(pes) = s.pes {
                self.pes(s.kind, &pes, out)?;
            }
        }
        Ok(())
    }

    fn pes(&mut self, kind: EsKind, pes: &[u8], out: &mut Vec<EsFrame>) -> Result<(), DemuxError> {
        if kind == EsKind::Other {
            self.counts.unsupported_pes += 1;
            return Ok(());
        }
        let (pts, dts, data) = parse_pes(pes)?;
        match kind {
            EsKind::Avc => self.avc(pts, dts, data, out),
            EsKind::Aac => self.aac(pts, data, out),
            EsKind::Other => Ok(()),
        }
    }

    fn avc(
        &mut self,
        pts: u64,
        dts: u64,
        data: &[u8],
        out: &mut Vec<EsFrame>,
    ) -> Result<(), DemuxError> {
        let mut keyframe = false;
        let mut new_sps = Vec::new();
        let mut new_pps = Vec::new();
        let mut avcc = BytesMut::with_capacity(data.len() + 5);
        let composition = cts_ms(pts, dts);
        avcc.put_u8(0); // frame type, set below
        avcc.put_u8(1); // AVC NALU
        avcc.put_slice(&composition.to_be_bytes()[1..]);
        for nal in annexb_nal_units(data) {
            match nal[0] & 0x1f {
                // AUD, end of sequence, end of stream, filler: not carried in FLV.
                9..=12 => {}
                7 => new_sps.push(Bytes::copy_from_slice(nal)),
                8 => new_pps.push(Bytes::copy_from_slice(nal)),
                t => {
                    keyframe |= t == 5;
                    avcc.put_u32(nal.len() as u32);
                    avcc.put_slice(nal);
                }
            }
        }
        if !new_sps.is_empty() {
            self.sps = new_sps;
        }
        if !new_pps.is_empty() {
            self.pps = new_pps;
        }
        if let Some(record) = avc_record(&self.sps, &self.pps) {
            if self.sent_avc_record.as_ref() != Some(&record) {
                let mut header = BytesMut::with_capacity(record.len() + 5);
                header.put_slice(&[0x17, 0, 0, 0, 0]);
                header.put_slice(&record);
                out.push(EsFrame {
                    kind: MediaKind::Video,
                    dts_90k: dts,
                    body: header.freeze(),
                });
                self.sent_avc_record = Some(record);
            }
        }
        if avcc.len() == 5 {
            return Ok(()); // Parameter sets or delimiters only: no picture.
        }
        if self.sent_avc_record.is_none() {
            self.counts.frames_before_config += 1;
            return Ok(());
        }
        avcc[0] = if keyframe { 0x17 } else { 0x27 };
        out.push(EsFrame {
            kind: MediaKind::Video,
            dts_90k: dts,
            body: avcc.freeze(),
        });
        Ok(())
    }

    fn aac(&mut self, pts: u64, mut data: &[u8], out: &mut Vec<EsFrame>) -> Result<(), DemuxError> {
        let mut n: u64 = 0;
        while !data.is_empty() {
            let h = data.get(..7).ok_or(DemuxError::BadAdts)?;
            if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
                return Err(DemuxError::BadAdts);
            }
            let header_len = if h[1] & 0x01 == 0 { 9 } else { 7 };
            let profile = h[2] >> 6;
            let rate_index = (h[2] >> 2) & 0x0f;
            let channels = ((h[2] & 0x01) << 2) | (h[3] >> 6);
            let frame_len = (usize::from(h[3] & 0x03) << 11)
                | (usize::from(h[4]) << 3)
                | usize::from(h[5] >> 5);
            let raw_blocks = h[6] & 0x03;
            let rate = *AAC_RATES
                .get(usize::from(rate_index))
                .ok_or(DemuxError::BadAdts)?;
            if frame_len < header_len || frame_len > data.len() || raw_blocks != 0 {
                return Err(DemuxError::BadAdts);
            }
            let raw = &data[header_len..frame_len];
            data = &data[frame_len..];
            let object_type = profile + 1;
            let asc = [
                (object_type << 3) | (rate_index >> 1),
                ((rate_index & 0x01) << 7) | (channels << 3),
            ];
            let at = (pts + n * AAC_SAMPLES * 90_000 / u64::from(rate)) & TIMESTAMP_MASK;
            n += 1;
            let flags = if channels == 1 { 0xae } else { 0xaf };
            if self.sent_asc != Some(asc) {
                out.push(EsFrame {
                    kind: MediaKind::Audio,
                    dts_90k: at,
                    body: Bytes::copy_from_slice(&[flags, 0, asc[0], asc[1]]),
                });
                self.sent_asc = Some(asc);
            }
            let mut body = BytesMut::with_capacity(raw.len() + 2);
            body.put_slice(&[flags, 1]);
            body.put_slice(raw);
            out.push(EsFrame {
                kind: MediaKind::Audio,
                dts_90k: at,
                body: body.freeze(),
            });
        }
        Ok(())
    }
}

/// A PSI section of `table_id` that starts in this packet's payload, without its CRC.
fn psi_section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    if *s.first()? != table_id {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*s.get(1)? & 0x0f, *s.get(2)?]));
    // The section's body after its 3-byte header, less the 4-byte CRC.
    s.get(3..(3 + len).checked_sub(4)?)
}

/// PTS, DTS (the PTS when absent) and payload of a whole PES.
fn parse_pes(pes: &[u8]) -> Result<(u64, u64, &[u8]), DemuxError> {
    let h = pes.get(..9).ok_or(DemuxError::BadPes)?;
    if h[..3] != [0, 0, 1] {
        return Err(DemuxError::BadPes);
    }
    let declared = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let flags = h[7];
    let header_end = 9 + usize::from(h[8]);
    let end = if declared == 0 {
        pes.len()
    } else {
        (6 + declared).min(pes.len())
    };
    if header_end > end {
        return Err(DemuxError::BadPes);
    }
    let pts = match flags >> 6 {
        0b10 | 0b11 => timestamp(pes.get(9..14).ok_or(DemuxError::BadPes)?),
        _ => return Err(DemuxError::BadPes),
    };
    let dts = if flags >> 6 == 0b11 {
        timestamp(pes.get(14..19).ok_or(DemuxError::BadPes)?)
    } else {
        pts
    };
    Ok((pts, dts, &pes[header_end..end]))
}

fn timestamp(b: &[u8]) -> u64 {
    (u64::from((b[0] >> 1) & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// PTS − DTS in ms, as FLV's signed 24-bit composition time.
fn cts_ms(pts: u64, dts: u64) -> i32 {
    let diff = pts.wrapping_sub(dts) & TIMESTAMP_MASK;
    // Modulo 2^33: a "difference" past half the range is negative.
    let signed = if diff >= 1 << 32 {
        diff as i64 - (1 << 33)
    } else {
        diff as i64
    };
    (signed / 90).clamp(-(1 << 23), (1 << 23) - 1) as i32
}

/// An AVCDecoderConfigurationRecord for these parameter sets (4-byte NAL lengths).
fn avc_record(sps: &[Bytes], pps: &[Bytes]) -> Option<Bytes> {
    let first = sps.first().filter(|s| s.len() >= 4)?;
    if pps.is_empty() || sps.len() > 31 || pps.len() > 255 {
        return None;
    }
    let mut r = BytesMut::new();
    r.put_slice(&[
        1,
        first[1],
        first[2],
        first[3],
        0xff,
        0xe0 | sps.len() as u8,
    ]);
    for s in sps {
        r.put_u16(u16::try_from(s.len()).ok()?);
        r.put_slice(s);
    }
    r.put_u8(pps.len() as u8);
    for p in pps {
        r.put_u16(u16::try_from(p.len()).ok()?);
        r.put_slice(p);
    }
    Some(r.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::ts::{AudioConfig, TsMuxer, VideoConfig};

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

    fn record() -> Vec<u8> {
        let mut r = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, SPS.len() as u8];
        r.extend_from_slice(SPS);
        r.extend_from_slice(&[1, 0, PPS.len() as u8]);
        r.extend_from_slice(PPS);
        r
    }

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    /// A segment our own muxer writes: tables, then per frame (dts ms, cts ms, key, NALs),
    /// and AAC frames every 23 ms.
    fn segment(frames: &[(u64, i32, bool, Vec<u8>)], audio: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut m = TsMuxer::new();
        m.set_video_config(VideoConfig::from_avcc(&record()).unwrap());
        m.set_audio_config(AudioConfig::from_asc(&[0x12, 0x10]).unwrap());
        let mut out = Vec::new();
        m.write_tables(&mut out).unwrap();
        let mut a = audio.iter().peekable();
        for (dts, cts, key, data) in frames {
            while let Some((t, raw)) = a.next_if(|(t, _)| t <= dts) {
                m.write_audio(&mut out, *t, raw).unwrap();
            }
            m.write_video(&mut out, *dts, *cts, *key, data).unwrap();
        }
        for (t, raw) in a {
            m.write_audio(&mut out, *t, raw).unwrap();
        }
        m.flush_audio(&mut out).unwrap();
        out
    }

    fn demux_split(bytes: &[u8], at: usize) -> Vec<EsFrame> {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        d.handle_bytes(&bytes[..at], &mut out).unwrap();
        d.handle_bytes(&bytes[at..], &mut out).unwrap();
        d.handle_end(&mut out).unwrap();
        out
    }

    fn ms(f: &EsFrame) -> u64 {
        (f.dts_90k - crate::hls::ts::TS_OFFSET_90K) / 90
    }

    #[test]
    fn our_own_segments_come_back_as_the_frames_that_went_in() {
        let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
        let sei: &[u8] = &[0x06, 0x05, 0x01, 0x80];
        let p: &[u8] = &[0x41, 0x9a, 0x00, 0x10];
        let frames = vec![
            (0, 80, true, avcc(&[sei, idr])),
            (40, 120, false, avcc(&[p])),
            (80, 40, false, avcc(&[p, p])),
        ];
        let audio: Vec<(u64, Vec<u8>)> = (0..6).map(|i| (i * 23, vec![0x21, i as u8, 7])).collect();
        let bytes = segment(&frames, &audio);
        let whole = demux_split(&bytes, 0);
        let video: Vec<&EsFrame> = whole
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .collect();
        let audio_out: Vec<&EsFrame> = whole
            .iter()
            .filter(|f| f.kind == MediaKind::Audio)
            .collect();
        // The sequence header first, then the pictures, without the SPS/PPS/AUD the muxer
        // added, and with their composition times.
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(&record());
        assert_eq!(video[0].body, header);
        assert_eq!(video.len(), 4);
        for (out, (dts, cts, key, data)) in video[1..].iter().zip(&frames) {
            let mut want = vec![if *key { 0x17 } else { 0x27 }, 1];
            want.extend_from_slice(&cts.to_be_bytes()[1..]);
            want.extend_from_slice(data);
            assert_eq!(out.body, want);
            assert_eq!(ms(out), *dts);
        }
        // The AudioSpecificConfig, then every raw frame at its time (the muxer gathered
        // several in a PES; their times come back from the sample rate, 23.2 ms apart).
        assert_eq!(audio_out[0].body, &[0xaf, 0, 0x12, 0x10][..]);
        assert_eq!(audio_out.len(), 7);
        for (i, (out, (t, raw))) in audio_out[1..].iter().zip(&audio).enumerate() {
            let mut want = vec![0xaf, 1];
            want.extend_from_slice(raw);
            assert_eq!(out.body, want, "audio frame {i}");
            assert!(
                ms(out).abs_diff(*t) <= 1,
                "audio frame {i}: {} vs {t}",
                ms(out)
            );
        }
        // Split anywhere, the same frames.
        for at in 1..bytes.len() {
            assert_eq!(demux_split(&bytes, at), whole, "split at {at}");
        }
    }

    #[test]
    fn frames_wait_for_parameter_sets_and_a_new_pair_is_a_new_header() {
        let p: &[u8] = &[0x41, 0x9a];
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        // Without configuration, the muxer writes nothing; a hand-made PES stands in for an
        // origin that starts mid-GOP.
        let mut m = TsMuxer::new();
        m.set_video_config(VideoConfig::from_avcc(&record()).unwrap());
        let mut bytes = Vec::new();
        m.write_tables(&mut bytes).unwrap();
        // A non-IDR frame: the muxer adds no SPS/PPS, so the demuxer has none yet.
        m.write_video(&mut bytes, 0, 0, false, &avcc(&[p])).unwrap();
        d.handle_bytes(&bytes, &mut out).unwrap();
        d.handle_end(&mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(d.counts.frames_before_config, 1);
        // A keyframe brings them: header, then the picture.
        let mut bytes = Vec::new();
        m.write_tables(&mut bytes).unwrap();
        m.write_video(&mut bytes, 40, 0, true, &avcc(&[&[0x65, 1]]))
            .unwrap();
        m.write_video(&mut bytes, 80, 0, true, &avcc(&[&[0x65, 2]]))
            .unwrap();
        d.handle_bytes(&bytes, &mut out).unwrap();
        d.handle_end(&mut out).unwrap();
        assert_eq!(out.len(), 3, "one header for two keyframes: {out:?}");
        // New parameter sets: a second header.
        let sps2: &[u8] = &[0x67, 0x42, 0x00, 0x1e, 0x01];
        let mut rec2 = vec![1, 0x42, 0x00, 0x1e, 0xff, 0xe1, 0, sps2.len() as u8];
        rec2.extend_from_slice(sps2);
        rec2.extend_from_slice(&[1, 0, PPS.len() as u8]);
        rec2.extend_from_slice(PPS);
        m.set_video_config(VideoConfig::from_avcc(&rec2).unwrap());
        let mut bytes = Vec::new();
        m.write_video(&mut bytes, 120, 0, true, &avcc(&[&[0x65, 3]]))
            .unwrap();
        out.clear();
        d.handle_bytes(&bytes, &mut out).unwrap();
        d.handle_end(&mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0].body[5..], &rec2[..]);
    }

    #[test]
    fn malformed_input_is_an_error_and_other_streams_are_counted() {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        assert_eq!(
            d.handle_bytes(&[0x48; 188], &mut out),
            Err(DemuxError::SyncLost)
        );
        let mut p = [0xffu8; 188];
        p[..5].copy_from_slice(&[0x47, 0x01, 0x00, 0x30, 190]);
        assert_eq!(
            d.handle_bytes(&p, &mut out),
            Err(DemuxError::BadAdaptation(190))
        );
        d.reset();
        d.handle_bytes(&[0x47; 100], &mut out).unwrap();
        assert_eq!(d.handle_end(&mut out), Err(DemuxError::PartialPacket(100)));
        // An ADTS frame that claims more bytes than its PES has.
        let mut m = TsMuxer::new();
        m.set_audio_config(AudioConfig::from_asc(&[0x12, 0x10]).unwrap());
        let mut bytes = Vec::new();
        m.write_tables(&mut bytes).unwrap();
        m.write_audio(&mut bytes, 0, &[1, 2, 3]).unwrap();
        m.flush_audio(&mut bytes).unwrap();
        let adts = bytes.windows(2).position(|w| w == [0xff, 0xf1]).unwrap();
        bytes[adts + 4] = 0xff;
        let mut d = TsDemuxer::new();
        d.handle_bytes(&bytes, &mut out).unwrap();
        assert_eq!(d.handle_end(&mut out), Err(DemuxError::BadAdts));
    }

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x68, 3,
        ];
        let nals: Vec<&[u8]> = annexb_nal_units(&data).collect();
        assert_eq!(nals, vec![&[9, 0xf0][..], &[0x67, 1, 2], &[0x68, 3]]);
        assert_eq!(annexb_nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(cts_ms(90, (1 << 33) - 90), 2);
        assert_eq!(cts_ms(0, 900), -10);
    }
}
