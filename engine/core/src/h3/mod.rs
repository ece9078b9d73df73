//! HTTP/3 on a QUIC connection's streams (RFC 9114) and its field compression, QPACK
//! (RFC 9204), sans-IO: bytes a peer sent on a stream in, frames and header fields out; our
//! responses out as frames. The transport (QUIC, one connection's streams) is not here.
//!
//! Owns: parsing everything a peer sends on HTTP/3 streams (stream types, frames, settings,
//! field sections), each bounded, into values or errors that carry the HTTP/3 error code to
//! close with; encoding what we send; mapping an HTTP/3 request to the HTTP/1.1 request the
//! routes already answer, and an HTTP/1.1 response head back to HTTP/3 fields, so both
//! protocols serve identical bytes and headers.
//!
//! Must not: do I/O, panic on any input, buffer a frame past its limit, or keep a dynamic
//! QPACK table. We advertise `SETTINGS_QPACK_MAX_TABLE_CAPACITY` 0, so a peer may not refer
//! to one, and a field section that does is an error (`QPACK_DECOMPRESSION_FAILED`). The
//! static table and literals are enough for requests, and for our responses.

pub mod cid;
pub mod congestion;
pub mod frame;
pub mod message;
pub mod qpack;
pub mod response;
pub mod stream;
pub mod varint;

/// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2).
pub mod stream_type {
    pub const CONTROL: u64 = 0x00;
    pub const PUSH: u64 = 0x01;
    pub const QPACK_ENCODER: u64 = 0x02;
    pub const QPACK_DECODER: u64 = 0x03;
}

/// HTTP/3 and QPACK error codes (RFC 9114 §8.1, RFC 9204 §6), for closing a stream or the
/// connection.
pub mod code {
    pub const NO_ERROR: u64 = 0x100;
    pub const GENERAL_PROTOCOL_ERROR: u64 = 0x101;
    pub const INTERNAL_ERROR: u64 = 0x102;
    pub const STREAM_CREATION_ERROR: u64 = 0x103;
    pub const CLOSED_CRITICAL_STREAM: u64 = 0x104;
    pub const FRAME_UNEXPECTED: u64 = 0x105;
    pub const FRAME_ERROR: u64 = 0x106;
    pub const EXCESSIVE_LOAD: u64 = 0x107;
    pub const ID_ERROR: u64 = 0x108;
    pub const SETTINGS_ERROR: u64 = 0x109;
    pub const MISSING_SETTINGS: u64 = 0x10a;
    pub const REQUEST_REJECTED: u64 = 0x10b;
    pub const REQUEST_CANCELLED: u64 = 0x10c;
    pub const REQUEST_INCOMPLETE: u64 = 0x10d;
    pub const MESSAGE_ERROR: u64 = 0x10e;
    pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
}

/// Settings identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5).
pub mod setting {
    pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
    pub const MAX_FIELD_SECTION_SIZE: u64 = 0x06;
    pub const QPACK_BLOCKED_STREAMS: u64 = 0x07;
}

/// The largest field section we accept (`SETTINGS_MAX_FIELD_SECTION_SIZE`, counted as
/// RFC 9114 §4.2.2 says: name and value lengths plus 32 per field).
pub const MAX_FIELD_SECTION_SIZE: u64 = 16 << 10;
