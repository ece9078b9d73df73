//! HTTP/3 frames (RFC 9114 §7): a reader for the bytes of one stream, and the writers of what
//! we send.
//!
//! The reader buffers at most one frame's header and, for the frames it keeps, its payload
//! up to that frame type's limit. DATA payloads (a request body: we serve GET and HEAD) and
//! frames of unknown or reserved types are skipped as they arrive, never buffered.

use bytes::{Buf, Bytes, BytesMut};

use super::{code, setting, varint, MAX_FIELD_SECTION_SIZE};

/// Frame types (RFC 9114 §7.2).
pub mod kind {
    pub const DATA: u64 = 0x00;
    pub const HEADERS: u64 = 0x01;
    pub const CANCEL_PUSH: u64 = 0x03;
    pub const SETTINGS: u64 = 0x04;
    pub const PUSH_PROMISE: u64 = 0x05;
    pub const GOAWAY: u64 = 0x07;
    pub const MAX_PUSH_ID: u64 = 0x0d;
}

/// HTTP/2 frame types with no HTTP/3 meaning: receiving one is an error (RFC 9114 §7.2.8).
const HTTP2_ONLY: [u64; 4] = [0x02, 0x06, 0x08, 0x09];
/// The largest SETTINGS payload we read.
const MAX_SETTINGS_BYTES: u64 = 1024;

/// A frame, as the reader gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA: only its length (its payload is skipped).
    Data {
        len: u64,
    },
    /// DATA with its payload, from a reader told to keep them ([`FrameReader::keep_data`]).
    DataPayload(Bytes),
    /// HEADERS: the encoded field section (QPACK).
    Headers(Bytes),
    Settings(Vec<(u64, u64)>),
    Goaway(u64),
    CancelPush(u64),
    MaxPushId(u64),
}

impl Frame {
    pub fn kind(&self) -> u64 {
        match self {
            Frame::Data { .. } | Frame::DataPayload(_) => kind::DATA,
            Frame::Headers(_) => kind::HEADERS,
            Frame::Settings(_) => kind::SETTINGS,
            Frame::Goaway(_) => kind::GOAWAY,
            Frame::CancelPush(_) => kind::CANCEL_PUSH,
            Frame::MaxPushId(_) => kind::MAX_PUSH_ID,
        }
    }
}

/// What is wrong with a peer's frames; [`FrameError::code`] is the HTTP/3 error to close with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame type {kind:#x}: {len} bytes, over the limit of {max}")]
    TooLarge { kind: u64, len: u64, max: u64 },
    #[error("frame type {kind:#x}: {why}")]
    Malformed { kind: u64, why: &'static str },
    #[error("frame type {0:#x} is not allowed here")]
    Unexpected(u64),
    #[error("settings: {0}")]
    Settings(&'static str),
}

impl FrameError {
    pub fn code(&self) -> u64 {
        match self {
            FrameError::TooLarge { kind, .. } if *kind == kind::HEADERS => code::EXCESSIVE_LOAD,
            FrameError::TooLarge { .. } | FrameError::Malformed { .. } => code::FRAME_ERROR,
            FrameError::Unexpected(_) => code::FRAME_UNEXPECTED,
            FrameError::Settings(_) => code::SETTINGS_ERROR,
        }
    }
}

/// Reads the frames of one stream from its bytes as they arrive.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
    /// Payload bytes still to skip (a DATA frame's, an unknown frame's).
    skip: u64,
    /// DATA payloads up to this long (empty ones too) are kept and returned
    /// ([`Frame::DataPayload`]); longer ones are skipped like any. 0: all are skipped.
    keep_data: u64,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, DATA payloads of at most `max` bytes are returned whole
    /// ([`Frame::DataPayload`]) instead of skipped (a request body's, which the caller
    /// bounds); longer ones still come as [`Frame::Data`], skipped.
    pub fn keep_data(&mut self, max: u64) {
        self.keep_data = max;
    }

    /// Bytes the stream delivered.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = (self.skip.min(data.len() as u64)) as usize;
            self.skip -= n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held: at most a frame header and one kept frame's payload.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the stream may end here: no frame is half read.
    pub fn at_frame_boundary(&self) -> bool {
        self.buf.is_empty() && self.skip == 0
    }

    /// The next complete frame; `Ok(None)` until one is.
    pub fn poll(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if self.skip > 0 {
                return Ok(None);
            }
            let Some((ty, ty_len)) = varint::decode(&self.buf) else {
                return Ok(None);
            };
            let Some((len, len_len)) = varint::decode(&self.buf[ty_len..]) else {
                return Ok(None);
            };
            let head = ty_len + len_len;
            let max = match ty {
                kind::DATA if self.keep_data > 0 && len <= self.keep_data => {
                    let total = head + len as usize;
                    if self.buf.len() < total {
                        return Ok(None);
                    }
                    self.buf.advance(head);
                    return Ok(Some(Frame::DataPayload(
                        self.buf.split_to(len as usize).freeze(),
                    )));
                }
                kind::DATA => {
                    self.buf.advance(head);
                    self.skip_payload(len);
                    return Ok(Some(Frame::Data { len }));
                }
                kind::HEADERS => MAX_FIELD_SECTION_SIZE,
                kind::SETTINGS => MAX_SETTINGS_BYTES,
                kind::GOAWAY | kind::CANCEL_PUSH | kind::MAX_PUSH_ID => 8,
                kind::PUSH_PROMISE => return Err(FrameError::Unexpected(ty)),
                t if HTTP2_ONLY.contains(&t) => return Err(FrameError::Unexpected(ty)),
                _ => {
                    // Unknown and reserved (grease) types are skipped (RFC 9114 §9).
                    self.buf.advance(head);
                    self.skip_payload(len);
                    continue;
                }
            };
            if len > max {
                return Err(FrameError::TooLarge { kind: ty, len, max });
            }
            let total = head + len as usize;
            if self.buf.len() < total {
                return Ok(None);
            }
            self.buf.advance(head);
            let payload = self.buf.split_to(len as usize).freeze();
            return parse(ty, payload).map(Some);
        }
    }

    fn skip_payload(&mut self, len: u64) {
        let here = (len.min(self.buf.len() as u64)) as usize;
        self.buf.advance(here);
        self.skip = len - here as u64;
    }
}

fn parse(ty: u64, payload: Bytes) -> Result<Frame, FrameError> {
    let one = |payload: &[u8]| match varint::decode(payload) {
        Some((v, n)) if n == payload.len() => Ok(v),
        _ => Err(FrameError::Malformed {
            kind: ty,
            why: "not exactly one integer",
        }),
    };
    Ok(match ty {
        kind::HEADERS => Frame::Headers(payload),
        kind::SETTINGS => Frame::Settings(parse_settings(&payload)?),
        kind::GOAWAY => Frame::Goaway(one(&payload)?),
        kind::CANCEL_PUSH => Frame::CancelPush(one(&payload)?),
        kind::MAX_PUSH_ID => Frame::MaxPushId(one(&payload)?),
        _ => return Err(FrameError::Unexpected(ty)),
    })
}

fn parse_settings(mut p: &[u8]) -> Result<Vec<(u64, u64)>, FrameError> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    while !p.is_empty() {
        let (Some((id, a)), rest) = (varint::decode(p), p) else {
            return Err(FrameError::Malformed {
                kind: kind::SETTINGS,
                why: "truncated identifier",
            });
        };
        let Some((value, b)) = varint::decode(&rest[a..]) else {
            return Err(FrameError::Malformed {
                kind: kind::SETTINGS,
                why: "truncated value",
            });
        };
        p = &rest[a + b..];
        // HTTP/2's settings have no meaning in HTTP/3 (RFC 9114 §7.2.4.1).
        if matches!(id, 0x00 | 0x02 | 0x03 | 0x04 | 0x05) {
            return Err(FrameError::Settings("an HTTP/2 setting"));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(FrameError::Settings("a setting sent twice"));
        }
        out.push((id, value));
    }
    Ok(out)
}

/// Appends a frame header: its type and payload length.
pub fn write_head(ty: u64, len: u64, out: &mut Vec<u8>) {
    varint::encode(ty, out);
    varint::encode(len, out);
}

/// Appends a HEADERS frame around an encoded field section.
pub fn write_headers(block: &[u8], out: &mut Vec<u8>) {
    write_head(kind::HEADERS, block.len() as u64, out);
    out.extend_from_slice(block);
}

/// Appends the SETTINGS a server sends first on its control stream: no dynamic QPACK table,
/// no blocked streams, and the largest field section it takes.
pub fn write_server_settings(out: &mut Vec<u8>) {
    let mut payload = Vec::new();
    for (id, value) in [
        (setting::QPACK_MAX_TABLE_CAPACITY, 0),
        (setting::QPACK_BLOCKED_STREAMS, 0),
        (setting::MAX_FIELD_SECTION_SIZE, MAX_FIELD_SECTION_SIZE),
    ] {
        varint::encode(id, &mut payload);
        varint::encode(value, &mut payload);
    }
    write_head(kind::SETTINGS, payload.len() as u64, out);
    out.extend_from_slice(&payload);
}

/// Appends a GOAWAY naming the first request stream that will not be served.
pub fn write_goaway(stream_id: u64, out: &mut Vec<u8>) {
    write_head(kind::GOAWAY, varint::len(stream_id) as u64, out);
    varint::encode(stream_id, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8], step: usize) -> Result<Vec<Frame>, FrameError> {
        let mut r = FrameReader::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            r.push(piece);
            while let Some(f) = r.poll()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_read_the_same_whole_and_a_byte_at_a_time() {
        let mut bytes = Vec::new();
        write_server_settings(&mut bytes);
        // A grease frame (0x1f * N + 0x21) with a payload, skipped.
        write_head(0x21 + 0x1f * 7, 3, &mut bytes);
        bytes.extend_from_slice(b"xyz");
        write_headers(b"\x00\x00\xd1", &mut bytes);
        write_head(kind::DATA, 5, &mut bytes);
        bytes.extend_from_slice(b"hello");
        write_goaway(8, &mut bytes);
        let want = vec![
            Frame::Settings(vec![(0x01, 0), (0x07, 0), (0x06, MAX_FIELD_SECTION_SIZE)]),
            Frame::Headers(Bytes::from_static(b"\x00\x00\xd1")),
            Frame::Data { len: 5 },
            Frame::Goaway(8),
        ];
        for step in [1, 2, 3, 7, bytes.len()] {
            assert_eq!(frames(&bytes, step).unwrap(), want, "step {step}");
        }
    }

    #[test]
    fn a_data_payload_is_skipped_not_buffered() {
        let mut r = FrameReader::new();
        let mut head = Vec::new();
        write_head(kind::DATA, 1 << 30, &mut head);
        r.push(&head);
        assert_eq!(r.poll().unwrap(), Some(Frame::Data { len: 1 << 30 }));
        r.push(&[0u8; 64 << 10]);
        assert_eq!(r.buffered(), 0);
        assert!(!r.at_frame_boundary());
        assert_eq!(r.poll().unwrap(), None);
    }

    #[test]
    fn limits_and_forbidden_frames_are_errors_with_their_codes() {
        let mut big = Vec::new();
        write_head(kind::HEADERS, MAX_FIELD_SECTION_SIZE + 1, &mut big);
        let e = frames(&big, 100).unwrap_err();
        assert_eq!(e.code(), code::EXCESSIVE_LOAD);
        let mut settings = Vec::new();
        write_head(kind::SETTINGS, 2000, &mut settings);
        assert_eq!(
            frames(&settings, 100).unwrap_err().code(),
            code::FRAME_ERROR
        );
        for ty in [kind::PUSH_PROMISE, 0x02, 0x06, 0x08, 0x09] {
            let mut f = Vec::new();
            write_head(ty, 0, &mut f);
            assert_eq!(frames(&f, 1).unwrap_err().code(), code::FRAME_UNEXPECTED);
        }
        let mut goaway = Vec::new();
        write_head(kind::GOAWAY, 2, &mut goaway);
        goaway.extend_from_slice(&[0x05, 0x00]);
        assert_eq!(frames(&goaway, 1).unwrap_err().code(), code::FRAME_ERROR);
    }

    #[test]
    fn bad_settings_are_settings_errors() {
        for payload in [&[0x02u8, 0x00][..], &[0x06, 0x01, 0x06, 0x02][..]] {
            let mut f = Vec::new();
            write_head(kind::SETTINGS, payload.len() as u64, &mut f);
            f.extend_from_slice(payload);
            assert_eq!(frames(&f, 1).unwrap_err().code(), code::SETTINGS_ERROR);
        }
        let mut f = Vec::new();
        write_head(kind::SETTINGS, 1, &mut f);
        f.push(0x06);
        assert_eq!(frames(&f, 1).unwrap_err().code(), code::FRAME_ERROR);
    }
}
