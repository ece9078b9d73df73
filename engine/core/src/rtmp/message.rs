//! RTMP messages: what a reassembled [`RawMessage`] means, and the control and command
//! messages the engine's sessions write.
//!
//! Decoding is total: every peer-sent body becomes a [`Message`] or a [`MessageError`],
//! never a panic (rml_rtmp's `Amf0Command` decoding did `drain(..3)` on a body with fewer
//! than three values). Encoding uses full (type 0) chunk headers on fixed chunk streams, so
//! the bytes never depend on what was sent before and may be interleaved with the stream's
//! shared media chunks (see [`super::chunk`]).
//!
//! Must not: keep state. Sessions own it ([`super::server`], [`super::client`]).

use bytes::Bytes;

use super::amf::{self, Amf0Value, AmfError};
use super::chunk::{self, OUT_CHUNK_SIZE};
use super::reader::RawMessage;

/// Message type ids (RTMP spec 5.4, 7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_SHARED_OBJECT: u8 = 16;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_SHARED_OBJECT: u8 = 19;
    pub const AMF0_COMMAND: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream for protocol control and user control messages (the spec requires 2).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for commands on message stream 0 (connect, createStream, results).
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for a client's commands on its media stream (publish, play).
pub const CSID_STREAM_COMMAND: u32 = 5;
/// Chunk streams for media a client publishes (a server's shared media uses 7 and 8).
pub const CSID_PUBLISH_AUDIO: u32 = 4;
pub const CSID_PUBLISH_VIDEO: u32 = 6;

/// User control event types (spec 7.1.7).
pub mod event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// A message body that does not decode. The peer that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum MessageError {
    /// A control message shorter than its type requires.
    #[error("message type {type_id} with a {len}-byte body")]
    ShortControl { type_id: u8, len: usize },
    /// A command message whose first value is not a string (e.g. an empty body).
    #[error("command message without a command name")]
    NoCommandName,
    /// The AMF body of a command or data message is malformed.
    #[error(transparent)]
    Amf(#[from] AmfError),
}

/// An AMF command: `name(transaction_id, object, args…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// The command object (`null` for most commands, the properties for `connect`).
    pub object: Amf0Value,
    /// The values after the command object.
    pub args: Vec<Amf0Value>,
}

/// What a message means.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Applied by the chunk reader already.
    SetChunkSize(u32),
    /// Applied by the chunk reader already.
    Abort(u32),
    Ack(u32),
    WindowAckSize(u32),
    SetPeerBandwidth(u32),
    /// A user control event: its type and first 4-byte value (stream id or timestamp; 0 when
    /// the event carries none).
    UserControl {
        event: u16,
        value: u32,
    },
    Audio(Bytes),
    Video(Bytes),
    /// An AMF0 data message (or AMF3 data in AMF0 form), e.g. `@setDataFrame onMetaData`.
    Data(Vec<Amf0Value>),
    Command(Command),
    /// An aggregate of FLV-style tags (see [`super::aggregate`]).
    Aggregate(Bytes),
    /// Anything else (shared objects): ignored by every session.
    Other(u8),
}

impl Message {
    /// Decodes a reassembled message.
    pub fn decode(m: &RawMessage) -> Result<Message, MessageError> {
        use type_id as t;
        let p = &m.payload;
        let u32_at = |i: usize| {
            p.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(MessageError::ShortControl {
                    type_id: m.type_id,
                    len: p.len(),
                })
        };
        Ok(match m.type_id {
            t::SET_CHUNK_SIZE => Message::SetChunkSize(u32_at(0)? & 0x7fff_ffff),
            t::ABORT => Message::Abort(u32_at(0)?),
            t::ACK => Message::Ack(u32_at(0)?),
            t::WINDOW_ACK_SIZE => Message::WindowAckSize(u32_at(0)?),
            t::SET_PEER_BANDWIDTH => Message::SetPeerBandwidth(u32_at(0)?),
            t::USER_CONTROL => {
                let event = p.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(
                    MessageError::ShortControl {
                        type_id: m.type_id,
                        len: p.len(),
                    },
                )?;
                // Events without a value are rare and carry nothing the engine reads.
                let value = u32_at(2).unwrap_or(0);
                Message::UserControl { event, value }
            }
            t::AUDIO => Message::Audio(p.clone()),
            t::VIDEO => Message::Video(p.clone()),
            t::AMF0_DATA => Message::Data(amf::decode(p)?),
            // AMF3 data and commands start with a format byte, then AMF0 values (what every
            // encoder that sends them writes; true AMF3 values are refused by the reader).
            t::AMF3_DATA => Message::Data(amf::decode(p.get(1..).unwrap_or_default())?),
            t::AMF0_COMMAND => Message::Command(command(&amf::decode(p)?)?),
            t::AMF3_COMMAND => {
                Message::Command(command(&amf::decode(p.get(1..).unwrap_or_default())?)?)
            }
            t::AGGREGATE => Message::Aggregate(p.clone()),
            other => Message::Other(other),
        })
    }
}

fn command(values: &[Amf0Value]) -> Result<Command, MessageError> {
    let name = amf::str_at(values, 0).ok_or(MessageError::NoCommandName)?;
    Ok(Command {
        name: name.to_string(),
        transaction_id: amf::number_at(values, 1).unwrap_or(0.0),
        object: values.get(2).cloned().unwrap_or(Amf0Value::Null),
        args: values.get(3..).map(<[_]>::to_vec).unwrap_or_default(),
    })
}

/// A protocol control message with one 4-byte value.
fn control_u32(type_id: u8, v: u32) -> Bytes {
    chunk::serialize_message(
        CSID_CONTROL,
        0,
        type_id,
        0,
        &v.to_be_bytes(),
        OUT_CHUNK_SIZE,
    )
}

/// `SetChunkSize(size)`.
pub fn set_chunk_size(size: u32) -> Bytes {
    control_u32(type_id::SET_CHUNK_SIZE, size)
}

/// `WindowAcknowledgementSize(size)`.
pub fn window_ack_size(size: u32) -> Bytes {
    control_u32(type_id::WINDOW_ACK_SIZE, size)
}

/// `Acknowledgement(bytes received so far, mod 2^32)`.
pub fn ack(sequence: u32) -> Bytes {
    control_u32(type_id::ACK, sequence)
}

/// `SetPeerBandwidth(size, dynamic)`.
pub fn set_peer_bandwidth(size: u32) -> Bytes {
    let mut body = size.to_be_bytes().to_vec();
    body.push(2);
    chunk::serialize_message(
        CSID_CONTROL,
        0,
        type_id::SET_PEER_BANDWIDTH,
        0,
        &body,
        OUT_CHUNK_SIZE,
    )
}

/// A user control event with one 4-byte value.
pub fn user_control(event: u16, value: u32) -> Bytes {
    let mut body = event.to_be_bytes().to_vec();
    body.extend_from_slice(&value.to_be_bytes());
    chunk::serialize_message(
        CSID_CONTROL,
        0,
        type_id::USER_CONTROL,
        0,
        &body,
        OUT_CHUNK_SIZE,
    )
}

/// `SetBufferLength(stream, ms)`: the one user control event with two values.
pub fn set_buffer_length(stream_id: u32, ms: u32) -> Bytes {
    let mut body = event::SET_BUFFER_LENGTH.to_be_bytes().to_vec();
    body.extend_from_slice(&stream_id.to_be_bytes());
    body.extend_from_slice(&ms.to_be_bytes());
    chunk::serialize_message(
        CSID_CONTROL,
        0,
        type_id::USER_CONTROL,
        0,
        &body,
        OUT_CHUNK_SIZE,
    )
}

/// An AMF0 command body on `csid`, message stream `stream_id`.
pub fn command_message(csid: u32, stream_id: u32, body: &[u8]) -> Bytes {
    chunk::serialize_message(
        csid,
        0,
        type_id::AMF0_COMMAND,
        stream_id,
        body,
        OUT_CHUNK_SIZE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::reader::ChunkReader;

    fn raw(type_id: u8, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid: 3,
            type_id,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Regression (rml_rtmp `messages/types/amf0_command.rs:35`, `drain(..3)`): the 12-byte
    /// `03 000000 000000 14 00000000` and its AMF3 twin (type 17) are errors, not panics.
    #[test]
    fn regression_zero_length_commands() {
        for wire in [
            [0x03, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0],
            [0x03, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0],
        ] {
            let mut r = ChunkReader::new();
            let mut input = &wire[..];
            let m = r.read_message(&mut input).unwrap().unwrap();
            assert_eq!(Message::decode(&m), Err(MessageError::NoCommandName));
        }
        // A name but nothing after it is a command with defaults.
        let mut w = amf::Writer::new();
        w.string("createStream");
        assert_eq!(
            Message::decode(&raw(20, &w.finish())),
            Ok(Message::Command(Command {
                name: "createStream".into(),
                transaction_id: 0.0,
                object: Amf0Value::Null,
                args: vec![],
            }))
        );
    }

    #[test]
    fn amf3_command_skips_its_format_byte() {
        let mut w = amf::Writer::new();
        w.raw(&[0]).string("play").number(4.0).null().string("cam");
        let Message::Command(c) = Message::decode(&raw(17, &w.finish())).unwrap() else {
            panic!()
        };
        assert_eq!((c.name.as_str(), c.transaction_id), ("play", 4.0));
        assert_eq!(amf::str_at(&c.args, 0), Some("cam"));
    }

    #[test]
    fn short_control_messages_are_errors() {
        for t in [1u8, 2, 3, 5, 6] {
            assert_eq!(
                Message::decode(&raw(t, &[0, 0, 1])),
                Err(MessageError::ShortControl { type_id: t, len: 3 })
            );
        }
        assert!(Message::decode(&raw(4, &[0])).is_err());
        assert_eq!(
            Message::decode(&raw(4, &[0, 6, 0, 0, 0, 9])),
            Ok(Message::UserControl {
                event: event::PING_REQUEST,
                value: 9
            })
        );
        assert_eq!(Message::decode(&raw(19, b"so")), Ok(Message::Other(19)));
    }

    #[test]
    fn control_messages_read_back() {
        let mut wire = set_chunk_size(4096).to_vec();
        wire.extend_from_slice(&window_ack_size(5_000_000));
        wire.extend_from_slice(&set_peer_bandwidth(5_000_000));
        wire.extend_from_slice(&user_control(event::STREAM_BEGIN, 1));
        wire.extend_from_slice(&set_buffer_length(1, 3000));
        let mut r = ChunkReader::new();
        let mut input = &wire[..];
        let mut out = Vec::new();
        while let Some(m) = r.read_message(&mut input).unwrap() {
            out.push(Message::decode(&m).unwrap());
        }
        assert_eq!(
            out,
            vec![
                Message::SetChunkSize(4096),
                Message::WindowAckSize(5_000_000),
                Message::SetPeerBandwidth(5_000_000),
                Message::UserControl {
                    event: event::STREAM_BEGIN,
                    value: 1
                },
                Message::UserControl {
                    event: event::SET_BUFFER_LENGTH,
                    value: 1
                },
            ]
        );
        assert_eq!(r.chunk_size(), 4096);
    }
}
