//! RTMP, all of it ours but the handshake: the chunk reader (peer bytes → messages, every
//! size bounded), message decoding and the control messages we write, a bounded AMF0 reader
//! and an ordered writer, the standalone chunk serialiser used to build media once per
//! stream, timestamp unwrapping, aggregate-message splitting, sans-IO server and client
//! sessions, and where a client put the stream name and its query ([`name`]). rml_rtmp supplies the handshake and rml_amf0 the AMF0 value type (see the
//! README's design notes for why the rest is not theirs).

pub mod aggregate;
pub mod amf;
pub mod chunk;
pub mod client;
pub mod message;
pub mod name;
pub mod reader;
pub mod server;
pub mod timestamp;
