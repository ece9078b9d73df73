//! FLV framing: the file header, tags serialised once per stream, and a push demuxer that
//! reads tags back from any byte split (HTTP-FLV clients, fixtures, tests).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `FLV`, version 1, audio+video flags, header size 9, then PreviousTagSize0.
pub const FILE_HEADER: &[u8] = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";

/// Tags larger than this are refused by the demuxer (the field allows 16 MiB).
pub const MAX_TAG_BYTES: usize = 16 << 20;

/// Serialises one tag followed by its PreviousTagSize.
pub fn serialize_tag(type_id: u8, timestamp: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(11 + body.len() + 4);
    out.put_u8(type_id);
    out.put_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.put_slice(&timestamp.to_be_bytes()[1..]);
    out.put_u8((timestamp >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    out.put_slice(body);
    out.put_u32(11 + body.len() as u32);
    out.freeze()
}

/// Serialises one tag as an HTTP/1.1 chunk (`{len:x}\r\n` tag `\r\n`), the form HTTP-FLV
/// viewers receive: built once per frame, so the chunked framing costs no per-viewer work.
pub fn serialize_tag_chunked(type_id: u8, timestamp: u32, body: &[u8]) -> Bytes {
    let len = 11 + body.len() + 4;
    // The chunk-size line in hex, without a formatting allocation per frame.
    let mut hex = [0u8; 16];
    let mut at = hex.len();
    let mut v = len;
    loop {
        at -= 1;
        hex[at] = b"0123456789abcdef"[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    let mut out = BytesMut::with_capacity(hex.len() - at + 2 + len + 2);
    out.put_slice(&hex[at..]);
    out.put_slice(b"\r\n");
    out.put_slice(&serialize_tag(type_id, timestamp, body));
    out.put_slice(b"\r\n");
    out.freeze()
}

/// [`FILE_HEADER`] as the first HTTP/1.1 chunk.
pub const FILE_HEADER_CHUNKED: &[u8] = b"d\r\nFLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\r\n";

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The tag inside one chunk [`serialize_tag_chunked`] made, its body a slice of `chunk`;
/// `None` for anything else (the file header's chunk, the last chunk, or bytes that do not
/// frame one whole tag).
pub fn tag_of_chunk(chunk: &Bytes) -> Option<FlvTag> {
    let line = chunk.iter().position(|&b| b == b'\r')?;
    let tag = chunk.get(line + 2..)?;
    if tag.len() < 11 + 4 + 2 {
        return None;
    }
    let size = (usize::from(tag[1]) << 16) | (usize::from(tag[2]) << 8) | usize::from(tag[3]);
    if tag.len() != 11 + size + 4 + 2 {
        return None;
    }
    let timestamp = (u32::from(tag[7]) << 24)
        | (u32::from(tag[4]) << 16)
        | (u32::from(tag[5]) << 8)
        | u32::from(tag[6]);
    let start = line + 2 + 11;
    Some(FlvTag {
        type_id: tag[0],
        timestamp,
        body: chunk.slice(start..start + size),
    })
}

/// A demuxing error: the input is not FLV.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The first bytes are not an FLV header.
    #[error("not an FLV header")]
    BadHeader,
    /// A tag declares more than [`MAX_TAG_BYTES`].
    #[error("tag of {0} bytes exceeds the limit")]
    TagTooLarge(usize),
}

/// One demuxed tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub type_id: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

/// A push demuxer: feed bytes, pull tags.
#[derive(Debug, Default)]
pub struct FlvReader {
    buf: BytesMut,
    header_done: bool,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends input.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete tag, `Ok(None)` when more input is needed.
    pub fn poll_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_done {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvError::BadHeader);
            }
            let header_len =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=1024).contains(&header_len) {
                return Err(FlvError::BadHeader);
            }
            if self.buf.len() < header_len + 4 {
                return Ok(None);
            }
            self.buf.advance(header_len + 4);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if size > MAX_TAG_BYTES {
            return Err(FlvError::TagTooLarge(size));
        }
        if self.buf.len() < 11 + size + 4 {
            return Ok(None);
        }
        let type_id = self.buf[0] & 0x1f;
        let timestamp = u32::from_be_bytes([self.buf[7], self.buf[4], self.buf[5], self.buf[6]]);
        self.buf.advance(11);
        let body = self.buf.split_to(size).freeze();
        self.buf.advance(4);
        Ok(Some(FlvTag {
            type_id,
            timestamp,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_tag_reads_back_and_other_chunks_do_not() {
        let body = [0x17u8, 1, 0, 0, 0, 9, 9];
        let chunk = serialize_tag_chunked(9, 0x0123_4567, &body);
        let tag = tag_of_chunk(&chunk).unwrap();
        assert_eq!(
            (tag.type_id, tag.timestamp, &tag.body[..]),
            (9, 0x0123_4567, &body[..])
        );
        assert_eq!(tag_of_chunk(&Bytes::from_static(FILE_HEADER_CHUNKED)), None);
        assert_eq!(tag_of_chunk(&Bytes::from_static(LAST_CHUNK)), None);
        assert_eq!(tag_of_chunk(&chunk.slice(..chunk.len() - 1)), None);
    }

    #[test]
    fn tags_round_trip_at_every_split() {
        let mut wire = FILE_HEADER.to_vec();
        let tags = [
            (18u8, 0u32, vec![2u8, 0, 10]),
            (9, 0x0123_4567, vec![0x17, 0, 0, 0, 0, 1, 2, 3]),
            (8, 0xff00_0000, vec![0xaf, 1]),
            (9, 40, vec![]),
        ];
        for (t, ts, body) in &tags {
            wire.extend_from_slice(&serialize_tag(*t, *ts, body));
        }
        for at in 0..=wire.len() {
            let mut r = FlvReader::new();
            let mut got = Vec::new();
            for piece in [&wire[..at], &wire[at..]] {
                r.handle_input(piece);
                while let Some(tag) = r.poll_tag().unwrap() {
                    got.push((tag.type_id, tag.timestamp, tag.body.to_vec()));
                }
            }
            assert_eq!(got, tags.to_vec(), "split at {at}");
        }
    }

    #[test]
    fn chunked_tags_carry_their_length() {
        let c = serialize_tag_chunked(9, 7, &[1, 2, 3]);
        assert_eq!(&c[..4], b"12\r\n", "11 + 3 + 4 = 0x12 bytes");
        assert_eq!(&c[4..c.len() - 2], &serialize_tag(9, 7, &[1, 2, 3])[..]);
        assert!(c.ends_with(b"\r\n"));
        assert_eq!(&FILE_HEADER_CHUNKED[3..16], FILE_HEADER);
        let big = serialize_tag_chunked(9, 0, &vec![0u8; 70_000]);
        assert!(big.starts_with(b"1117f\r\n"), "70015 = 0x1117f");
    }

    #[test]
    fn rejects_non_flv() {
        let mut r = FlvReader::new();
        r.handle_input(b"HTTP/1.1 404 Not Found\r\n");
        assert_eq!(r.poll_tag(), Err(FlvError::BadHeader));
    }
}
