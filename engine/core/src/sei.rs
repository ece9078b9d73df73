//! Latency probes in the video itself: an H.264 SEI `user_data_unregistered` message with a
//! fixed UUID that carries the publisher's send time (microseconds since the Unix epoch) and
//! the frame's sequence number (so a viewer can tell a gap from a late frame).
//!
//! Decoders ignore it and it survives every remux the engine does (RTMP, FLV, TS), so any
//! viewer — RTMP, HTTP-FLV or HLS — can measure publish-to-receive latency. The load generator
//! embeds it with [`embed_avcc`] and finds it with [`find_in_avcc`] or [`find_in_annexb`].

use bytes::{BufMut, Bytes, BytesMut};

/// Identifies our probe among other user data.
pub const PROBE_UUID: [u8; 16] = *b"edge-engine:lat1";

const NAL_SEI: u8 = 6;
const NAL_AUD: u8 = 9;
const PAYLOAD_USER_DATA_UNREGISTERED: u8 = 5;
const PAYLOAD_BYTES: usize = 32;

/// What a probe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Publisher wall clock at send, microseconds since the Unix epoch.
    pub send_time_us: u64,
    /// Video frame number of the publisher's stream, from 0.
    pub seq: u64,
}

/// The SEI NAL unit (header included, emulation prevention applied) carrying `probe`.
pub fn probe_nal(probe: Probe) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(PAYLOAD_BYTES + 4);
    rbsp.push(PAYLOAD_USER_DATA_UNREGISTERED);
    rbsp.push(PAYLOAD_BYTES as u8); // UUID + time + sequence number
    rbsp.extend_from_slice(&PROBE_UUID);
    rbsp.extend_from_slice(&probe.send_time_us.to_be_bytes());
    rbsp.extend_from_slice(&probe.seq.to_be_bytes());
    rbsp.push(0x80); // rbsp_trailing_bits
    let mut nal = vec![NAL_SEI];
    add_emulation_prevention(&rbsp, &mut nal);
    nal
}

/// A copy of an AVC video tag body (`[frame/codec][packet type][cts×3]` + length-prefixed
/// NAL units) with the probe inserted before the first picture NAL unit (after an AUD, if
/// the access unit starts with one). `nalu_length_size` comes from the avcC record.
pub fn embed_avcc(body: &[u8], nalu_length_size: usize, probe: Probe) -> Bytes {
    let nal = probe_nal(probe);
    let mut out = BytesMut::with_capacity(body.len() + nal.len() + 4);
    let header = body.len().min(5);
    out.put_slice(&body[..header]);
    let mut pos = header;
    // Keep a leading AUD first, as H.264 requires.
    if let Some((start, end)) = next_nalu(body, pos, nalu_length_size) {
        if body[start] & 0x1f == NAL_AUD {
            out.put_slice(&body[pos..end]);
            pos = end;
        }
    }
    let len = nal.len() as u32;
    out.put_slice(&len.to_be_bytes()[4 - nalu_length_size..]);
    out.put_slice(&nal);
    out.put_slice(&body[pos..]);
    out.freeze()
}

/// The probe in the NAL units of AVCC data (a tag body after its 5-byte header).
pub fn find_in_avcc(data: &[u8], nalu_length_size: usize) -> Option<Probe> {
    let mut pos = 0;
    while let Some((start, end)) = next_nalu(data, pos, nalu_length_size) {
        if let Some(t) = probe_in_nal(&data[start..end]) {
            return Some(t);
        }
        pos = end;
    }
    None
}

/// The probe in Annex B data (start-code separated, as in TS).
pub fn find_in_annexb(data: &[u8]) -> Option<Probe> {
    crate::hls::ts::annexb_nal_units(data).find_map(probe_in_nal)
}

fn next_nalu(data: &[u8], pos: usize, n: usize) -> Option<(usize, usize)> {
    let len_bytes = data.get(pos..pos + n)?;
    let len = len_bytes
        .iter()
        .fold(0usize, |a, b| (a << 8) | usize::from(*b));
    let start = pos + n;
    let end = start.checked_add(len)?;
    (len > 0 && end <= data.len()).then_some((start, end))
}

/// Parses an SEI NAL unit and returns our probe if it holds one.
pub fn probe_in_nal(nal: &[u8]) -> Option<Probe> {
    if nal.first()? & 0x1f != NAL_SEI {
        return None;
    }
    let rbsp = remove_emulation_prevention(&nal[1..]);
    let mut p = 0;
    // SEI messages: type and size are each a run of 0xFF bytes plus a final byte.
    while p < rbsp.len() && rbsp[p] != 0x80 {
        let mut kind = 0usize;
        while *rbsp.get(p)? == 0xff {
            kind += 255;
            p += 1;
        }
        kind += usize::from(rbsp[p]);
        p += 1;
        let mut size = 0usize;
        while *rbsp.get(p)? == 0xff {
            size += 255;
            p += 1;
        }
        size += usize::from(rbsp[p]);
        p += 1;
        let payload = rbsp.get(p..p + size)?;
        if kind == usize::from(PAYLOAD_USER_DATA_UNREGISTERED)
            && size >= PAYLOAD_BYTES
            && payload[..16] == PROBE_UUID
        {
            return Some(Probe {
                send_time_us: u64::from_be_bytes(payload[16..24].try_into().ok()?),
                seq: u64::from_be_bytes(payload[24..32].try_into().ok()?),
            });
        }
        p += size;
    }
    None
}

fn add_emulation_prevention(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

fn remove_emulation_prevention(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_avcc_including_emulation_prevention() {
        // Times whose bytes contain 00 00 0x runs exercise the 0x03 insertion.
        for t in [
            0u64,
            1,
            0x0000_0001_0000_0203,
            1_763_700_000_123_456,
            u64::MAX,
        ] {
            let probe = Probe {
                send_time_us: t,
                seq: t / 3,
            };
            let body = [0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a];
            let with = embed_avcc(&body, 4, probe);
            assert_eq!(&with[..5], &body[..5]);
            assert_eq!(find_in_avcc(&with[5..], 4), Some(probe), "time {t:#x}");
            // The picture is still there, after the probe.
            assert!(with.ends_with(&[0, 0, 0, 2, 0x41, 0x9a]));
            let nal = probe_nal(probe);
            assert!(
                !nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "no start code inside"
            );
        }
        assert_eq!(find_in_avcc(&[0, 0, 0, 2, 0x41, 0x9a], 4), None);
    }

    #[test]
    fn a_leading_aud_stays_first() {
        let body = [
            0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x65, 0x88,
        ];
        let probe = Probe {
            send_time_us: 42,
            seq: 7,
        };
        let with = embed_avcc(&body, 4, probe);
        assert_eq!(&with[5..11], &[0, 0, 0, 2, 0x09, 0xf0]);
        assert_eq!(with[15] & 0x1f, NAL_SEI);
        assert_eq!(find_in_avcc(&with[5..], 4), Some(probe));
    }

    #[test]
    fn survives_the_ts_muxer() {
        use crate::hls::ts::{TsMuxer, VideoConfig};
        let avcc = [
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3,
        ];
        let mut m = TsMuxer::new();
        m.set_video_config(VideoConfig::from_avcc(&avcc).unwrap());
        let probe = Probe {
            send_time_us: 1_763_700_000_000_007,
            seq: 99,
        };
        let body = embed_avcc(&[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88], 4, probe);
        let mut ts = Vec::new();
        m.write_tables(&mut ts).unwrap(); // the reader learns the PIDs from PAT/PMT
        m.write_video(&mut ts, 0, 0, true, &body[5..]).unwrap();
        // Reassemble the PES payload from the TS packets and look for the probe.
        use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
        use mpeg2ts::ts::TsPacketReader;
        let mut r = PesPacketReader::new(TsPacketReader::new(&ts[..]));
        let pes = r.read_pes_packet().unwrap().unwrap();
        assert_eq!(find_in_annexb(&pes.data), Some(probe));
    }

    #[test]
    fn other_user_data_is_ignored() {
        let mut rbsp = vec![5, 32];
        rbsp.extend_from_slice(b"some-other-uuid!");
        rbsp.extend_from_slice(&[7u8; 16]);
        rbsp.push(0x80);
        let mut nal = vec![6];
        add_emulation_prevention(&rbsp, &mut nal);
        assert_eq!(probe_in_nal(&nal), None);
        assert_eq!(probe_in_nal(&[6, 5]), None, "truncated SEI does not panic");
    }
}
