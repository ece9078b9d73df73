//! RTMP: the standalone chunk serialiser used to build media once per stream, timestamp
//! unwrapping, aggregate-message splitting, and sans-IO server and client sessions built on
//! rml_rtmp (handshake, control messages and commands).

pub mod aggregate;
pub mod amf;
pub mod chunk;
pub mod client;
pub mod server;
pub mod timestamp;
