//! An HTTP/1.1 response, as our routes and writers produce it, turned into HTTP/3 frames as
//! it is written: its head into a HEADERS frame ([`super::message::response_fields`]), its
//! body into DATA frames. A chunked body (HTTP-FLV, a streamed LL-HLS part) is de-chunked.
//! The body's bytes are never copied: each DATA frame is a small header and a slice of the
//! `Bytes` it came in (an arena segment stays in the arena).

use bytes::Bytes;

use super::frame::{self, kind};
use super::message::{response_fields, MessageError};
use super::qpack;
use crate::http::{self, MAX_RESPONSE_HEAD_BYTES};

/// The longest chunk-size or trailer line we read (a head: the HTTP client's limit,
/// [`MAX_RESPONSE_HEAD_BYTES`]).
const MAX_LINE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error(transparent)]
    Head(#[from] MessageError),
    #[error("response head over {MAX_RESPONSE_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("bytes after the end of the response")]
    Trailing,
}

#[derive(Debug)]
enum State {
    /// The head so far.
    Head(Vec<u8>),
    /// Content-Length bytes left (`None`: until the writer ends).
    Body(Option<u64>),
    /// A chunk-size line so far.
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes of it still expected.
    ChunkEnd(u8),
    /// After the last chunk: trailer lines until an empty one (the line so far).
    Trailers(Vec<u8>),
    Done,
}

/// Converts one response. Push the writer's pieces in order; each push appends the frames
/// (as `Bytes`) to send on the request stream.
#[derive(Debug)]
pub struct ResponseFrames {
    state: State,
    /// A HEAD request: the head only, whatever it announces.
    head_only: bool,
}

impl ResponseFrames {
    pub fn new(head_only: bool) -> Self {
        Self {
            state: State::Head(Vec::new()),
            head_only,
        }
    }

    /// Whether the whole response has been converted (the stream may be finished).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The writer ended: a body read until the end is complete; anything else cut short is
    /// an error (the stream is reset, not finished).
    pub fn finish(&mut self) -> Result<(), ResponseError> {
        match self.state {
            State::Done | State::Body(None) => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(ResponseError::Chunked("the response ended early")),
        }
    }

    pub fn push(&mut self, mut piece: Bytes, out: &mut Vec<Bytes>) -> Result<(), ResponseError> {
        while !piece.is_empty() {
            match &mut self.state {
                State::Head(head) => {
                    let before = head.len();
                    head.extend_from_slice(&piece);
                    // Parsed once it is whole (the terminator may straddle two pieces).
                    let from = before.saturating_sub(3);
                    let Some(end) = head[from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|i| from + i + 4)
                    else {
                        if head.len() > MAX_RESPONSE_HEAD_BYTES {
                            return Err(ResponseError::HeadTooLarge);
                        }
                        return Ok(());
                    };
                    if end > MAX_RESPONSE_HEAD_BYTES {
                        return Err(ResponseError::HeadTooLarge);
                    }
                    let framing = match http::parse_response_head(&head[..end]) {
                        Ok(Some(h)) => h,
                        _ => return Err(MessageError("a response head that does not parse").into()),
                    };
                    let (fields, _) = response_fields(&head[..end])?;
                    let pairs: Vec<(&[u8], &[u8])> = fields
                        .iter()
                        .map(|(n, v)| (n.as_slice(), v.as_slice()))
                        .collect();
                    let mut block = Vec::new();
                    qpack::encode_field_section(&pairs, &mut block);
                    let mut headers = Vec::with_capacity(block.len() + 4);
                    frame::write_headers(&block, &mut headers);
                    out.push(Bytes::from(headers));
                    piece = piece.slice(end - before..);
                    let length = framing.content_length.map(|n| n as u64);
                    self.state =
                        if self.head_only || matches!(framing.status, 100..=199 | 204 | 304) {
                            State::Done
                        } else if framing.chunked {
                            State::ChunkSize(Vec::new())
                        } else if length == Some(0) {
                            State::Done
                        } else {
                            State::Body(length)
                        };
                }
                State::Body(left) => {
                    let take = left.map_or(piece.len(), |l| (l.min(piece.len() as u64)) as usize);
                    data(piece.split_to(take), out);
                    if let Some(l) = left {
                        *l -= take as u64;
                        if *l == 0 {
                            self.state = State::Done;
                        }
                    }
                }
                State::ChunkSize(line) => {
                    if !take_line(line, &mut piece)? {
                        return Ok(());
                    }
                    let size = chunk_size(line)?;
                    self.state = if size == 0 {
                        State::Trailers(Vec::new())
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(left) => {
                    let take = (*left).min(piece.len() as u64) as usize;
                    data(piece.split_to(take), out);
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    let want: &[u8] = if *left == 2 { b"\r\n" } else { b"\n" };
                    let n = (*left as usize).min(piece.len());
                    if piece[..n] != want[..n] {
                        return Err(ResponseError::Chunked("no CRLF after a chunk"));
                    }
                    piece = piece.slice(n..);
                    *left -= n as u8;
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Trailers(line) => {
                    if !take_line(line, &mut piece)? {
                        return Ok(());
                    }
                    // Trailers are dropped; the empty line ends the body.
                    if line.as_slice() == b"\r\n" {
                        self.state = State::Done;
                    } else {
                        line.clear();
                    }
                }
                State::Done => return Err(ResponseError::Trailing),
            }
        }
        Ok(())
    }
}

/// Moves `piece`'s bytes up to and including a LF onto `line`: whether the line is complete
/// (when it is not, all of `piece` was taken).
fn take_line(line: &mut Vec<u8>, piece: &mut Bytes) -> Result<bool, ResponseError> {
    let end = piece.iter().position(|&b| b == b'\n').map(|eol| eol + 1);
    let taken = piece.split_to(end.unwrap_or(piece.len()));
    line.extend_from_slice(&taken);
    if line.len() > MAX_LINE {
        return Err(ResponseError::Chunked(
            "a chunk-size or trailer line too long",
        ));
    }
    Ok(end.is_some())
}

fn data(payload: Bytes, out: &mut Vec<Bytes>) {
    if payload.is_empty() {
        return;
    }
    let mut head = Vec::with_capacity(9);
    frame::write_head(kind::DATA, payload.len() as u64, &mut head);
    out.push(Bytes::from(head));
    out.push(payload);
}

fn chunk_size(line: &[u8]) -> Result<u64, ResponseError> {
    let text = std::str::from_utf8(line).map_err(|_| ResponseError::Chunked("size not text"))?;
    let digits = text
        .trim_end_matches(['\r', '\n'])
        .split(';')
        .next()
        .unwrap_or("");
    u64::from_str_radix(digits.trim(), 16).map_err(|_| ResponseError::Chunked("bad chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h3::frame::{Frame, FrameReader};

    /// Converts `wire` cut at `cuts`, then reads the frames back: (status, DATA payload).
    fn convert(wire: &[u8], cuts: &[usize], head_only: bool) -> (Vec<qpack::Field>, Vec<u8>, bool) {
        let mut r = ResponseFrames::new(head_only);
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
            let c = c.clamp(at, wire.len());
            r.push(Bytes::copy_from_slice(&wire[at..c]), &mut out)
                .unwrap();
            at = c;
        }
        let done = r.is_done();
        let bytes: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let mut reader = FrameReader::new();
        let mut fields = Vec::new();
        let mut body = Vec::new();
        // DATA payloads are skipped by the reader: take them from the raw bytes instead.
        let mut pos = 0;
        while pos < bytes.len() {
            let (ty, a) = crate::h3::varint::decode(&bytes[pos..]).unwrap();
            let (len, b) = crate::h3::varint::decode(&bytes[pos + a..]).unwrap();
            let start = pos + a + b;
            let end = start + len as usize;
            if ty == kind::DATA {
                body.extend_from_slice(&bytes[start..end]);
            } else {
                reader.push(&bytes[pos..end]);
                if let Some(Frame::Headers(block)) = reader.poll().unwrap() {
                    fields = qpack::decode_field_section(&block, u64::MAX).unwrap();
                }
            }
            pos = end;
        }
        (fields, body, done)
    }

    #[test]
    fn a_chunked_flv_response_converts_the_same_at_every_cut() {
        let mut wire = crate::http::flv_response_head().to_vec();
        let head_len = wire.len();
        wire.extend_from_slice(
            b"c\r\nFLV header..\r\n4;ext=1\r\nabcd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        );
        let want_body = b"FLV header..abcd0123456789abcdef".to_vec();
        let (fields, body, done) = convert(&wire, &[], false);
        assert!(done);
        assert_eq!(body, want_body);
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        assert!(fields
            .iter()
            .all(|(n, _)| n != b"transfer-encoding" && n != b"connection"));
        for cut in 1..wire.len() {
            let got = convert(&wire, &[cut], false);
            assert_eq!(got, (fields.clone(), want_body.clone(), true), "cut {cut}");
        }
        for a in (head_len - 3..wire.len()).step_by(3) {
            let got = convert(&wire, &[a, a + 1, a + 5], false);
            assert_eq!(got.1, want_body, "cuts at {a}");
        }
    }

    #[test]
    fn content_length_head_and_statuses_without_a_body() {
        let head = crate::http::response_head(200, "video/mp2t", Some(10), "max-age=60", true);
        let mut wire = head.to_vec();
        wire.extend_from_slice(b"0123456789");
        let (fields, body, done) = convert(&wire, &[3, head.len() + 4], false);
        assert!(done);
        assert_eq!(body, b"0123456789");
        assert!(fields.contains(&(b"content-length".to_vec(), b"10".to_vec())));
        // HEAD: the head only, its Content-Length kept.
        let (fields, body, done) = convert(&head, &[], true);
        assert!(done && body.is_empty());
        assert!(fields.contains(&(b"content-length".to_vec(), b"10".to_vec())));
        let (_, body, done) = convert(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", &[], false);
        assert!(done && body.is_empty());
        // Bytes past the end are an error.
        let mut r = ResponseFrames::new(false);
        let mut out = Vec::new();
        let mut extra = wire.clone();
        extra.push(b'!');
        assert_eq!(
            r.push(Bytes::from(extra), &mut out),
            Err(ResponseError::Trailing)
        );
    }

    #[test]
    fn a_body_to_the_end_and_a_cut_short_response() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";
        let mut r = ResponseFrames::new(false);
        let mut out = Vec::new();
        r.push(Bytes::from_static(wire), &mut out).unwrap();
        assert!(!r.is_done());
        assert_eq!(r.finish(), Ok(()));
        let mut r = ResponseFrames::new(false);
        r.push(
            Bytes::from_static(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            &mut out,
        )
        .unwrap();
        assert!(r.finish().is_err());
        let mut r = ResponseFrames::new(false);
        assert!(r
            .push(
                Bytes::from_static(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
                &mut out
            )
            .is_err());
    }

    #[test]
    fn body_bytes_are_slices_of_what_came_in() {
        let head = crate::http::response_head(200, "video/mp2t", Some(4096), "max-age=60", true);
        let body = Bytes::from(vec![7u8; 4096]);
        let mut r = ResponseFrames::new(false);
        let mut out = Vec::new();
        r.push(head, &mut out).unwrap();
        r.push(body.clone(), &mut out).unwrap();
        assert!(r.is_done());
        let last = out.last().unwrap();
        assert_eq!(last.as_ptr(), body.as_ptr(), "the segment is not copied");
    }
}
