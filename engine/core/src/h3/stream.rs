//! What a client may send on each kind of HTTP/3 stream, as small state machines over
//! [`FrameReader`]: a request stream's HEADERS (decoded into a [`Request`]), the control
//! stream's SETTINGS and GOAWAY, and which unidirectional streams to read at all. Each error
//! carries the code to close the stream or the connection with.

use super::frame::{Frame, FrameError, FrameReader};
use super::message::{MessageError, Request};
use super::qpack::{self, QpackError};
use super::{code, setting, stream_type, varint, MAX_FIELD_SECTION_SIZE};

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

/// A client's request stream: one HEADERS with the request, then (for GET and HEAD) nothing
/// that matters: DATA is skipped, trailers are ignored.
#[derive(Debug, Default)]
pub struct RequestStream {
    frames: FrameReader,
    /// The request has been read.
    headed: bool,
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
                    request = Some(Request::from_fields(fields)?);
                }
                // Trailers, and a body's DATA: nothing a GET or HEAD needs.
                Frame::Headers(_) | Frame::Data { .. } if self.headed => {}
                other => return Err(FrameError::Unexpected(other.kind()).into()),
            }
        }
        Ok(request)
    }

    /// The client finished its side: an error if it ended without a request or inside a frame
    /// (`H3_REQUEST_INCOMPLETE`).
    pub fn finish(&self) -> Result<(), u64> {
        if self.headed && self.frames.at_frame_boundary() {
            Ok(())
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
        assert_eq!(s.finish(), Ok(()));
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
        let mut settings = Vec::new();
        write_server_settings(&mut settings);
        assert_eq!(
            s.push(&settings).unwrap_err().code(),
            code::FRAME_UNEXPECTED
        );
        let mut s = RequestStream::new();
        let bytes = get("/x");
        s.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(s.finish(), Err(code::REQUEST_INCOMPLETE));
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
