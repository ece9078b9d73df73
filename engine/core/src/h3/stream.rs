//! What a client may send on each kind of HTTP/3 stream, as small state machines over
//! [`FrameReader`]: a request stream's HEADERS (decoded into a [`Request`]), the control
//! stream's SETTINGS and GOAWAY, and which unidirectional streams to read at all. Each error
//! carries the code to close the stream or the connection with.

use super::frame::{Frame, FrameError, FrameReader};
use super::message::{MessageError, Request};
use super::qpack::{self, QpackError};
use super::{code, setting, stream_type, varint, MAX_FIELD_SECTION_SIZE};
use crate::http::MAX_BODY_BYTES;

/// A protocol error on a stream: close with [`StreamError::code`]. `connection` says whether
/// it ends the connection (a frame or QPACK error) or only the request (a malformed request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Qpack(#[from] QpackError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("the control stream did not start with SETTINGS")]
    MissingSettings,
    #[error("the peer's QPACK encoder stream used the dynamic table")]
    EncoderStream,
}

impl StreamError {
    pub fn code(&self) -> u64 {
        match self {
            StreamError::Frame(e) => e.code(),
            StreamError::Qpack(e) => e.code(),
            StreamError::Message(e) => e.code(),
            StreamError::MissingSettings => code::MISSING_SETTINGS,
            StreamError::EncoderStream => code::QPACK_DECOMPRESSION_FAILED,
        }
    }

    /// Whether the whole connection closes (else only the request stream is reset).
    pub fn is_connection_error(&self) -> bool {
        !matches!(self, StreamError::Message(_))
    }
}

/// A client's request stream: one HEADERS with the request; for GET and HEAD nothing after it
/// matters (DATA is skipped, trailers are ignored) and the request is complete at once; any
/// other method's DATA is its body (kept up to [`MAX_BODY_BYTES`], counted beyond), and the
/// request is complete when the stream ends ([`RequestStream::finish`]).
#[derive(Debug, Default)]
pub struct RequestStream {
    frames: FrameReader,
    /// The request has been read.
    headed: bool,
    /// A request whose body is still coming.
    pending: Option<Request>,
}

impl RequestStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of the stream; the request once its HEADERS is complete (once).
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Request>, StreamError> {
        self.frames.push(data);
        let mut request = None;
        while let Some(frame) = self.frames.poll()? {
            match frame {
                Frame::Headers(block) if !self.headed => {
                    self.headed = true;
                    let fields = qpack::decode_field_section(&block, MAX_FIELD_SECTION_SIZE)?;
                    let r = Request::from_fields(fields)?;
                    if r.takes_body() {
                        self.frames.keep_data(MAX_BODY_BYTES as u64);
                        self.pending = Some(r);
                    } else {
                        request = Some(r);
                    }
                }
                Frame::DataPayload(data) if self.pending.is_some() => {
                    if let Some(r) = self.pending.as_mut() {
                        r.body_len += data.len() as u64;
                        if r.body_len <= MAX_BODY_BYTES as u64 {
                            r.body.extend_from_slice(&data);
                        } else {
                            // Too long: only its length is kept, which the routes refuse.
                            r.body = bytes::BytesMut::new();
                            self.frames.keep_data(0);
                        }
                    }
                }
                Frame::Data { len } if self.pending.is_some() => {
                    if let Some(r) = self.pending.as_mut() {
                        r.body_len = r.body_len.saturating_add(len);
                        r.body = bytes::BytesMut::new();
                        self.frames.keep_data(0);
                    }
                }
                // Trailers, and a GET's or HEAD's DATA: nothing it needs.
                Frame::Headers(_) | Frame::Data { .. } | Frame::DataPayload(_) if self.headed => {}
                other => return Err(FrameError::Unexpected(other.kind()).into()),
            }
        }
        Ok(request)
    }

    /// The client finished its side: the request whose body it ended (none for a GET or
    /// HEAD, which [`push`](Self::push) gave already); an error if it ended without a
    /// request or inside a frame (`H3_REQUEST_INCOMPLETE`).
    pub fn finish(&mut self) -> Result<Option<Request>, u64> {
        if self.headed && self.frames.at_frame_boundary() {
            Ok(self.pending.take())
        } else {
            Err(code::REQUEST_INCOMPLETE)
        }
    }
}

/// What a unidirectional stream from a client is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniStream {
    Control,
    QpackEncoder,
    QpackDecoder,
    /// A client may not open push streams: `H3_STREAM_CREATION_ERROR`.
    Push,
    /// Unknown and reserved types: read and discard (RFC 9114 §6.2).
    Unknown(u64),
}

impl UniStream {
    /// The stream type at the start of `buf`, and its length; `None` while incomplete.
    pub fn classify(buf: &[u8]) -> Option<(UniStream, usize)> {
        let (ty, n) = varint::decode(buf)?;
        let kind = match ty {
            stream_type::CONTROL => UniStream::Control,
            stream_type::QPACK_ENCODER => UniStream::QpackEncoder,
            stream_type::QPACK_DECODER => UniStream::QpackDecoder,
            stream_type::PUSH => UniStream::Push,
            other => UniStream::Unknown(other),
        };
        Some((kind, n))
    }
}

/// What the client's control stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// Its SETTINGS: the largest field section it takes, if it said.
    Settings { max_field_section_size: Option<u64> },
    /// It goes away: push IDs from this one on are not processed (we send no pushes).
    Goaway(u64),
}

/// The client's control stream (after its type byte): SETTINGS first and once, then GOAWAY,
/// MAX_PUSH_ID and CANCEL_PUSH; nothing else.
#[derive(Debug, Default)]
pub struct ControlStream {
    frames: FrameReader,
    settled: bool,
}

impl ControlStream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8], events: &mut Vec<ControlEvent>) -> Result<(), StreamError> {
        self.frames.push(data);
        while let Some(frame) = self.frames.poll()? {
            match frame {
                Frame::Settings(list) if !self.settled => {
                    self.settled = true;
                    let max_field_section_size = list
                        .iter()
                        .find(|(id, _)| *id == setting::MAX_FIELD_SECTION_SIZE)
                        .map(|(_, v)| *v);
                    events.push(ControlEvent::Settings {
                        max_field_section_size,
                    });
                }
                _ if !self.settled => return Err(StreamError::MissingSettings),
                Frame::Goaway(id) => events.push(ControlEvent::Goaway(id)),
                Frame::MaxPushId(_) | Frame::CancelPush(_) => {}
                other => return Err(FrameError::Unexpected(other.kind()).into()),
            }
        }
        Ok(())
    }
}

/// The client's QPACK encoder stream (after its type byte). With a table capacity of 0 the
/// only instruction it may send is "Set Dynamic Table Capacity" to 0 (RFC 9204 §4.3.1);
/// anything else refers to a table we never allowed.
#[derive(Debug, Default)]
pub struct EncoderStream;

impl EncoderStream {
    pub fn new() -> Self {
        Self
    }

    pub fn push(&mut self, data: &[u8]) -> Result<(), StreamError> {
        // 001 capacity(5): capacity 0 is the single byte 0x20, and nothing else may come.
        if data.iter().all(|&b| b == 0x20) {
            Ok(())
        } else {
            Err(StreamError::EncoderStream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h3::frame::{write_head, write_headers, write_server_settings};

    fn get(path: &str) -> Vec<u8> {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.as_bytes()),
        ];
        let mut block = Vec::new();
        qpack::encode_field_section(&fields, &mut block);
        let mut out = Vec::new();
        write_headers(&block, &mut out);
        out
    }

    #[test]
    fn a_request_stream_gives_its_request_once_a_byte_at_a_time() {
        let bytes = get("/live/x.m3u8");
        let mut s = RequestStream::new();
        let mut got = Vec::new();
        for b in &bytes {
            if let Some(r) = s.push(std::slice::from_ref(b)).unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/live/x.m3u8");
        assert!(
            s.finish().unwrap().is_none(),
            "given at its HEADERS already"
        );
    }

    fn post(path: &str, bodies: &[&[u8]]) -> Vec<u8> {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.as_bytes()),
            (b"content-length", b"1"),
        ];
        let mut block = Vec::new();
        qpack::encode_field_section(&fields, &mut block);
        let mut out = Vec::new();
        write_headers(&block, &mut out);
        for body in bodies {
            write_head(crate::h3::frame::kind::DATA, body.len() as u64, &mut out);
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn a_posts_body_is_its_data_and_the_request_is_complete_when_the_stream_ends() {
        let bytes = post(
            "/live/x/whep",
            &[b"v=0\r\n", b"", b"o=- 1 1 IN IP4 0.0.0.0\r\n"],
        );
        let mut s = RequestStream::new();
        for b in &bytes {
            assert!(s.push(std::slice::from_ref(b)).unwrap().is_none());
        }
        let r = s
            .finish()
            .unwrap()
            .expect("the request, at the stream's end");
        assert_eq!(&r.body[..], b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n");
        assert_eq!(r.body_len, 29);
        let head = String::from_utf8(r.to_http1()).unwrap();
        // The body's own length, not the client's claim.
        assert!(head.contains("content-length: 29\r\n"), "{head}");
        assert!(!head.contains("content-length: 1\r\n"), "{head}");
        // Past the limit only the length is kept: the routes refuse it by that.
        let big = vec![b'x'; MAX_BODY_BYTES - 10];
        let bytes = post("/live/x/whep", &[&big, &[b'y'; 20], &vec![b'z'; 100_000]]);
        let mut s = RequestStream::new();
        for piece in bytes.chunks(1000) {
            assert!(s.push(piece).unwrap().is_none());
        }
        let r = s.finish().unwrap().unwrap();
        assert!(r.body.is_empty());
        assert_eq!(r.body_len, (MAX_BODY_BYTES + 10 + 100_000) as u64);
        // Ending inside a DATA frame is an incomplete request.
        let bytes = post("/x", &[b"abc"]);
        let mut s = RequestStream::new();
        assert!(s.push(&bytes[..bytes.len() - 1]).unwrap().is_none());
        assert_eq!(s.finish().unwrap_err(), code::REQUEST_INCOMPLETE);
    }

    #[test]
    fn request_stream_errors() {
        let mut s = RequestStream::new();
        let mut data = Vec::new();
        write_head(crate::h3::frame::kind::DATA, 1, &mut data);
        data.push(0);
        assert_eq!(
            s.push(&data).unwrap_err().code(),
            code::FRAME_UNEXPECTED,
            "DATA before HEADERS"
        );
        let mut s = RequestStream::new();
        let mut empty = Vec::new();
        write_head(crate::h3::frame::kind::DATA, 0, &mut empty);
        assert_eq!(
            s.push(&empty).unwrap_err().code(),
            code::FRAME_UNEXPECTED,
            "an empty DATA before HEADERS"
        );
        let mut s = RequestStream::new();
        let mut settings = Vec::new();
        write_server_settings(&mut settings);
        assert_eq!(
            s.push(&settings).unwrap_err().code(),
            code::FRAME_UNEXPECTED
        );
        let mut s = RequestStream::new();
        let bytes = get("/x");
        s.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(s.finish().unwrap_err(), code::REQUEST_INCOMPLETE);
        let mut s = RequestStream::new();
        let e = s.push(&get("no-slash")).unwrap_err();
        assert!(!e.is_connection_error());
        assert_eq!(e.code(), code::MESSAGE_ERROR);
    }

    #[test]
    fn the_control_stream_starts_with_settings_once() {
        let mut c = ControlStream::new();
        let mut ev = Vec::new();
        let mut bytes = Vec::new();
        write_server_settings(&mut bytes);
        crate::h3::frame::write_goaway(4, &mut bytes);
        c.push(&bytes, &mut ev).unwrap();
        assert_eq!(
            ev,
            vec![
                ControlEvent::Settings {
                    max_field_section_size: Some(MAX_FIELD_SECTION_SIZE)
                },
                ControlEvent::Goaway(4)
            ]
        );
        let mut again = Vec::new();
        write_server_settings(&mut again);
        assert_eq!(
            c.push(&again, &mut ev).unwrap_err().code(),
            code::FRAME_UNEXPECTED
        );
        let mut c = ControlStream::new();
        let mut goaway = Vec::new();
        crate::h3::frame::write_goaway(0, &mut goaway);
        assert_eq!(
            c.push(&goaway, &mut ev).unwrap_err().code(),
            code::MISSING_SETTINGS
        );
    }

    #[test]
    fn uni_streams_and_the_encoder_stream() {
        assert_eq!(UniStream::classify(&[0x00]), Some((UniStream::Control, 1)));
        assert_eq!(
            UniStream::classify(&[0x02]),
            Some((UniStream::QpackEncoder, 1))
        );
        assert_eq!(
            UniStream::classify(&[0x03]),
            Some((UniStream::QpackDecoder, 1))
        );
        assert_eq!(UniStream::classify(&[0x01]), Some((UniStream::Push, 1)));
        assert_eq!(
            UniStream::classify(&[0x40, 0x21]),
            Some((UniStream::Unknown(0x21), 2))
        );
        assert_eq!(UniStream::classify(&[0x40]), None);
        let mut e = EncoderStream::new();
        e.push(&[0x20, 0x20]).unwrap();
        assert_eq!(
            e.push(&[0x3f, 0x01]).unwrap_err().code(),
            code::QPACK_DECOMPRESSION_FAILED
        );
    }
}
