//! H.264 access units as RTP payloads (RFC 6184, packetization mode 1), from the FLV video
//! bodies a stream already carries.
//!
//! Owns: the stream's parameter sets (from its AVC sequence header), splitting an access
//! unit's length-prefixed NAL units, putting SPS and PPS before every IDR picture (a viewer
//! that joins or loses packets can always start at the next keyframe), and cutting a NAL unit
//! larger than [`MAX_PAYLOAD`] into FU-A fragments. A NAL unit that fits is a slice of the
//! frame's own bytes: only fragments are new buffers.
//!
//! Must not: touch RTP headers, sequence numbers or SSRCs (those are the session's), or trust a
//! length prefix: every length is checked against the body, and a bad one drops the frame with
//! an error, never panics.

use bytes::{BufMut, Bytes, BytesMut};

use crate::hls::ts::VideoConfig;
use crate::media::{parse_video_tag, VideoCodec};

/// The largest RTP payload we build: room for the RTP header, its extensions and the SRTP tag
/// inside a 1,200-byte datagram, which every path that carries WebRTC takes.
pub const MAX_PAYLOAD: usize = 1_100;

/// RTP's clock for video.
pub const CLOCK_RATE: u64 = 90_000;

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_AUD: u8 = 9;
const NAL_FILLER: u8 = 12;
const NAL_FU_A: u8 = 28;

/// Why a video body gave no access unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    #[error("not H.264")]
    NotAvc,
    #[error("no sequence header yet")]
    NoConfig,
    #[error("malformed AVC body: {0}")]
    Malformed(&'static str),
}

/// One picture's RTP payloads, in order; the last one carries the RTP marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Presentation time on RTP's 90 kHz clock (decode time plus composition offset), before
    /// the session adds its random offset.
    pub rtp_time: u64,
    /// It holds an IDR picture, with SPS and PPS before it.
    pub keyframe: bool,
    pub payloads: Vec<Bytes>,
}

/// A stream's H.264 packetizer: feed it every video body in order.
#[derive(Debug, Default)]
pub struct Packetizer {
    config: Option<VideoConfig>,
    drop_b_frames: bool,
    b_frames_dropped: u64,
}

impl Packetizer {
    /// A packetizer that gives no access unit for a picture of B slices when `drop_b_frames`.
    pub fn new(drop_b_frames: bool) -> Self {
        Packetizer {
            drop_b_frames,
            ..Packetizer::default()
        }
    }

    /// B-frames dropped so far.
    pub fn b_frames_dropped(&self) -> u64 {
        self.b_frames_dropped
    }

    /// The RTP payloads of one FLV video body at `timestamp_ms` (decode time), or `Ok(None)`
    /// for a body that carries no picture (a sequence header, which is kept, or an
    /// end-of-sequence).
    pub fn push(
        &mut self,
        timestamp_ms: u64,
        body: &Bytes,
    ) -> Result<Option<AccessUnit>, PacketizeError> {
        let tag = parse_video_tag(body).map_err(|_| PacketizeError::Malformed("short tag"))?;
        if tag.codec != VideoCodec::Avc {
            return Err(PacketizeError::NotAvc);
        }
        // Legacy AVC: [type/codec][packet type][cts ×3] then data. Enhanced `avc1`:
        // [header][fourcc ×4] then, for CodedFrames only, cts ×3.
        let data_at = if body[0] & 0x80 == 0 {
            5
        } else if body[0] & 0x0f == 1 {
            8
        } else {
            5
        };
        let data = body.slice(data_at.min(body.len())..);
        if tag.sequence_header {
            let config =
                VideoConfig::from_avcc(&data).map_err(|_| PacketizeError::Malformed("avcC"))?;
            self.config = Some(config);
            return Ok(None);
        }
        if tag.end_of_sequence || tag.info_only {
            return Ok(None);
        }
        let config = self.config.as_ref().ok_or(PacketizeError::NoConfig)?;
        let nals = split_nal_units(&data, config.nalu_length_size)?;
        // Browsers' WebRTC decoders take no B-frames: one makes Chrome decode keyframes only
        // (measured: 2 of 25 frames a second). Without them a stream plays at its I and P
        // frames' rate, decodable when no P-frame refers to a B-frame, as x264's do not.
        if self.drop_b_frames
            && nals
                .iter()
                .any(|n| nal_type(n) == 1 && slice_type(n) == Some(1))
        {
            self.b_frames_dropped += 1;
            return Ok(None);
        }
        let keyframe = nals.iter().any(|n| nal_type(n) == NAL_IDR);
        let has_sps = nals.iter().any(|n| nal_type(n) == NAL_SPS);
        let mut payloads = Vec::with_capacity(nals.len() + 2);
        if keyframe && !has_sps {
            for set in &config.parameter_sets {
                push_nal(set, &mut payloads);
            }
        }
        for nal in &nals {
            // Delimiters and filler are dropped; so are types 0 and 24–31, which a bitstream
            // must not carry and which RTP gives meanings of its own (STAP-A, FU-A, ...).
            if matches!(nal_type(nal), NAL_AUD | NAL_FILLER | 0 | 24..=31) {
                continue;
            }
            push_nal(nal, &mut payloads);
        }
        if payloads.is_empty() {
            return Ok(None);
        }
        let pts_ms =
            i64::try_from(timestamp_ms).unwrap_or(i64::MAX) + i64::from(tag.composition_ms);
        let rtp_time = u64::try_from(pts_ms.max(0)).unwrap_or(0) * CLOCK_RATE / 1_000;
        Ok(Some(AccessUnit {
            rtp_time,
            keyframe,
            payloads,
        }))
    }
}

/// The slice type (0 P, 1 B, 2 I, 3 SP, 4 SI) of a coded slice NAL unit: the second
/// Exp-Golomb number of its header, after `first_mb_in_slice`.
pub fn slice_type(nal: &[u8]) -> Option<u8> {
    // The header's first bytes, emulation prevention removed.
    let mut rbsp = Vec::with_capacity(16);
    let mut zeros = 0;
    for &b in nal.get(1..)?.iter().take(16) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut bit = 0usize;
    let mut read = || -> Option<u32> {
        let v = (rbsp.get(bit / 8)? >> (7 - bit % 8)) & 1;
        bit += 1;
        Some(u32::from(v))
    };
    let mut ue = || -> Option<u32> {
        let mut lead = 0;
        while read()? == 0 {
            lead += 1;
            if lead > 31 {
                return None;
            }
        }
        let mut v = 0u32;
        for _ in 0..lead {
            v = (v << 1) | read()?;
        }
        Some((1u32 << lead) - 1 + v)
    };
    let _first_mb = ue()?;
    Some((ue()? % 5) as u8)
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The NAL units of an AVCC body (each behind a big-endian length of `size` bytes), as
/// slices of it.
pub fn split_nal_units(data: &Bytes, size: usize) -> Result<Vec<Bytes>, PacketizeError> {
    if !matches!(size, 1 | 2 | 4) {
        return Err(PacketizeError::Malformed("NAL length size"));
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let prefix = data
            .get(pos..pos + size)
            .ok_or(PacketizeError::Malformed("truncated NAL length"))?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos += size;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or(PacketizeError::Malformed("NAL length past the body"))?;
        if len > 0 {
            out.push(data.slice(pos..end));
        }
        pos = end;
    }
    Ok(out)
}

/// One NAL unit as a single-NAL payload (a slice of it), or as FU-A fragments.
fn push_nal(nal: &Bytes, out: &mut Vec<Bytes>) {
    if nal.is_empty() {
        // An empty parameter set in a sequence header: nothing to send.
        return;
    }
    if nal.len() <= MAX_PAYLOAD {
        out.push(nal.clone());
        return;
    }
    let header = nal[0];
    let indicator = (header & 0xe0) | NAL_FU_A;
    let body = &nal[1..];
    let step = MAX_PAYLOAD - 2;
    let count = body.len().div_ceil(step);
    for (i, chunk) in body.chunks(step).enumerate() {
        let mut fu = BytesMut::with_capacity(2 + chunk.len());
        let start = if i == 0 { 0x80 } else { 0 };
        let end = if i + 1 == count { 0x40 } else { 0 };
        fu.put_u8(indicator);
        fu.put_u8(start | end | (header & 0x1f));
        fu.put_slice(chunk);
        out.push(fu.freeze());
    }
}

/// Reassembles NAL units from payloads [`Packetizer`] made (single NAL units and FU-A), for
/// tests and the fuzz target's round trip.
pub fn depacketize(payloads: &[Bytes]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in payloads {
        if p.len() >= 2 && nal_type(p) == NAL_FU_A {
            if p[1] & 0x80 != 0 {
                fu = Some(vec![(p[0] & 0xe0) | (p[1] & 0x1f)]);
            }
            if let Some(nal) = fu.as_mut() {
                nal.extend_from_slice(&p[2..]);
            }
            if p[1] & 0x40 != 0 {
                out.extend(fu.take());
            }
        } else {
            out.push(p.to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

    fn sequence_header() -> Bytes {
        let mut b = vec![0x17, 0x00, 0, 0, 0, 1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.push(1);
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(PPS);
        Bytes::from(b)
    }

    fn picture(keyframe: bool, cts: i32, nals: &[&[u8]]) -> Bytes {
        let mut b = vec![if keyframe { 0x17 } else { 0x27 }, 0x01];
        b.extend_from_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            b.extend_from_slice(&(n.len() as u32).to_be_bytes());
            b.extend_from_slice(n);
        }
        Bytes::from(b)
    }

    #[test]
    fn an_idr_gets_the_parameter_sets_and_a_large_nal_is_cut_into_fu_a() {
        let mut p = Packetizer::default();
        assert_eq!(p.push(0, &sequence_header()), Ok(None));
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000u32).map(|i| i as u8))
            .collect();
        let aud: &[u8] = &[0x09, 0xf0];
        let sei: &[u8] = &[0x06, 0x05, 0x01, 0x80];
        let au = p
            .push(1_000, &picture(true, 40, &[aud, sei, &idr]))
            .unwrap()
            .unwrap();
        assert!(au.keyframe);
        assert_eq!(au.rtp_time, 1_040 * 90);
        // SPS, PPS, SEI, then three fragments of the IDR (3,000 bytes / 1,098 per fragment).
        assert_eq!(au.payloads.len(), 6);
        assert!(au.payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let nals = depacketize(&au.payloads);
        assert_eq!(nals, vec![SPS.to_vec(), PPS.to_vec(), sei.to_vec(), idr]);
        assert_eq!(au.payloads[3][1] & 0xc0, 0x80, "first fragment has S");
        assert_eq!(au.payloads[5][1] & 0xc0, 0x40, "last fragment has E");
    }

    #[test]
    fn a_small_nal_is_a_slice_of_the_frame_and_a_p_frame_has_no_parameter_sets() {
        let mut p = Packetizer::default();
        p.push(0, &sequence_header()).unwrap();
        let body = picture(false, 0, &[&[0x41, 1, 2, 3]]);
        let au = p.push(40, &body).unwrap().unwrap();
        assert!(!au.keyframe);
        assert_eq!(au.payloads, vec![Bytes::from_static(&[0x41, 1, 2, 3])]);
        // Zero-copy: the payload points into the frame's body.
        assert_eq!(au.payloads[0].as_ptr(), body[9..].as_ptr());
    }

    #[test]
    fn pictures_before_the_sequence_header_and_bad_lengths_are_errors() {
        let mut p = Packetizer::default();
        let body = picture(true, 0, &[&[0x65, 1]]);
        assert_eq!(p.push(0, &body), Err(PacketizeError::NoConfig));
        p.push(0, &sequence_header()).unwrap();
        let mut bad = body.to_vec();
        bad[8] = 0xff; // the NAL length now runs past the body
        assert!(matches!(
            p.push(0, &Bytes::from(bad)),
            Err(PacketizeError::Malformed(_))
        ));
        assert_eq!(
            p.push(0, &Bytes::from_static(&[0x12, 0, 0, 0, 0, 0])),
            Err(PacketizeError::NotAvc)
        );
    }

    #[test]
    fn b_frames_are_dropped_when_asked_and_slice_types_read_through_emulation_prevention() {
        // first_mb_in_slice 0 ("1"), slice_type 1 ("010"): B; slice_type 5 ("00110"): P.
        let b: &[u8] = &[0x01, 0b1010_0000, 0x11];
        let p: &[u8] = &[0x41, 0b1001_1000, 0x22];
        assert_eq!(slice_type(b), Some(1));
        assert_eq!(slice_type(p), Some(0));
        // first_mb_in_slice 2^23 - 1 (23 zeros, 1, 23 zeros) and slice_type 1 ("010"),
        // written with the two emulation prevention bytes an encoder puts in them.
        let far: &[u8] = &[0x01, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x00, 0x80];
        assert_eq!(slice_type(far), Some(1));
        assert_eq!(slice_type(&[0x01]), None);
        let mut keep = Packetizer::new(false);
        let mut drop = Packetizer::new(true);
        for p in [&mut keep, &mut drop] {
            p.push(0, &sequence_header()).unwrap();
        }
        assert!(keep.push(40, &picture(false, 0, &[b])).unwrap().is_some());
        assert_eq!(drop.push(40, &picture(false, 0, &[b])), Ok(None));
        assert!(drop.push(80, &picture(false, 0, &[p])).unwrap().is_some());
        assert_eq!(drop.b_frames_dropped(), 1);
    }

    #[test]
    fn nal_types_that_rtp_gives_other_meanings_are_dropped() {
        let mut p = Packetizer::default();
        p.push(0, &sequence_header()).unwrap();
        let fu_a_lookalike: &[u8] = &[0x1c, 0x85, 1];
        let au = p
            .push(
                0,
                &picture(false, 0, &[fu_a_lookalike, &[0x00, 1], &[0x41, 7]]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(depacketize(&au.payloads), vec![vec![0x41, 7]]);
    }

    #[test]
    fn an_idr_that_carries_its_own_sps_gets_no_second_copy() {
        let mut p = Packetizer::default();
        p.push(0, &sequence_header()).unwrap();
        let au = p
            .push(0, &picture(true, 0, &[SPS, PPS, &[0x65, 9]]))
            .unwrap()
            .unwrap();
        assert_eq!(
            depacketize(&au.payloads),
            vec![SPS.to_vec(), PPS.to_vec(), vec![0x65, 9]]
        );
    }
}
