//! A standalone RTMP chunk serialiser for media that is serialised once and shared by every
//! player of a stream.
//!
//! Every message starts with a type-0 (full) header, so the bytes depend on nothing a session
//! has sent before: any player can receive them at any point. Continuation chunks are type 3
//! and repeat the extended timestamp when there is one, as Flash, FFmpeg and rml_rtmp expect.
//! The chunk stream ids are ours alone; rml_rtmp's per-session serialiser uses 2..=6 and keeps
//! compressing its own headers undisturbed.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::MediaKind;

/// The chunk size the engine announces to every peer and serialises shared media with.
pub const OUT_CHUNK_SIZE: usize = 4096;

/// The message stream id players get from their first `createStream` (rml_rtmp starts at 1).
pub const PLAY_STREAM_ID: u32 = 1;

/// Chunk stream for shared audio.
pub const CSID_AUDIO: u32 = 7;
/// Chunk stream for shared video.
pub const CSID_VIDEO: u32 = 8;
/// Chunk stream for shared data messages and our own status commands.
pub const CSID_DATA: u32 = 9;

const MAX_TIMESTAMP_FIELD: u32 = 0x00ff_ffff;

/// The chunk stream a media kind is serialised on.
pub fn csid_for(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => CSID_AUDIO,
        MediaKind::Video => CSID_VIDEO,
        MediaKind::Data => CSID_DATA,
    }
}

/// Serialises one RTMP message into chunks of at most `chunk_size` payload bytes.
///
/// `csid` must be in 2..=63 (one-byte basic header); the engine only uses its own constants.
pub fn serialize_message(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Bytes {
    debug_assert!(
        (2..64).contains(&csid),
        "csid {csid} needs a longer basic header"
    );
    debug_assert!(chunk_size > 0);
    let extended = timestamp >= MAX_TIMESTAMP_FIELD;
    let chunks = payload.len().div_ceil(chunk_size).max(1);
    let ext_len = if extended { 4 } else { 0 };
    let mut out =
        BytesMut::with_capacity(12 + ext_len + payload.len() + (chunks - 1) * (1 + ext_len));
    // Type 0 header: fmt 0 | csid, timestamp (24), length (24), type id, stream id (LE 32).
    out.put_u8(csid as u8);
    put_u24(&mut out, timestamp.min(MAX_TIMESTAMP_FIELD));
    put_u24(&mut out, payload.len() as u32);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut parts = payload.chunks(chunk_size);
    if let Some(first) = parts.next() {
        out.put_slice(first);
    }
    for part in parts {
        out.put_u8(0xc0 | csid as u8);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(part);
    }
    out.freeze()
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

#[cfg(test)]
mod tests {
    use rml_rtmp::chunk_io::ChunkDeserializer;

    use super::*;

    /// Feeds `wire` to rml_rtmp's deserializer split at `at`, returning (type, ts, sid, payload).
    fn decode_split(wire: &[u8], at: usize, chunk_size: usize) -> Vec<(u8, u32, u32, Vec<u8>)> {
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(chunk_size).unwrap();
        let mut out = Vec::new();
        for piece in [&wire[..at], &wire[at..]] {
            let mut input = piece;
            while let Some(m) = d.get_next_message(input).unwrap() {
                out.push((
                    m.type_id,
                    m.timestamp.value,
                    m.message_stream_id,
                    m.data.to_vec(),
                ));
                input = &[];
            }
        }
        out
    }

    #[test]
    fn single_and_multi_chunk_messages_decode_at_every_split() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = serialize_message(CSID_VIDEO, 1234, 9, 1, &payload, OUT_CHUNK_SIZE).to_vec();
        wire.extend_from_slice(&serialize_message(
            CSID_AUDIO,
            1240,
            8,
            1,
            b"\xaf\x01abc",
            4096,
        ));
        // Three chunks for 10 000 bytes at 4096: two one-byte type-3 headers.
        assert_eq!(wire.len(), 12 + 10_000 + 2 + 12 + 5);
        for at in 0..=wire.len() {
            let msgs = decode_split(&wire, at, OUT_CHUNK_SIZE);
            assert_eq!(msgs.len(), 2, "split at {at}");
            assert_eq!(msgs[0], (9, 1234, 1, payload.clone()));
            assert_eq!(msgs[1], (8, 1240, 1, b"\xaf\x01abc".to_vec()));
        }
    }

    #[test]
    fn extended_timestamps_repeat_in_continuation_chunks() {
        let payload = vec![0x55u8; 300];
        for ts in [0x00ff_fffe, 0x00ff_ffff, 0x0100_0000, u32::MAX] {
            let wire = serialize_message(CSID_VIDEO, ts, 9, 1, &payload, 128);
            let extended = ts >= 0x00ff_ffff;
            // 3 chunks of 128/128/44 bytes.
            let expect_len = 12 + 300 + 2 + if extended { 4 * 3 } else { 0 };
            assert_eq!(wire.len(), expect_len, "ts {ts:#x}");
            for at in 0..=wire.len() {
                let msgs = decode_split(&wire, at, 128);
                assert_eq!(
                    msgs,
                    vec![(9, ts, 1, payload.clone())],
                    "ts {ts:#x} split {at}"
                );
            }
        }
    }

    #[test]
    fn empty_payload_is_one_header() {
        let wire = serialize_message(CSID_DATA, 5, 18, 1, &[], 4096);
        assert_eq!(wire.len(), 12);
        assert_eq!(decode_split(&wire, 0, 4096), vec![(18, 5, 1, vec![])]);
    }
}
