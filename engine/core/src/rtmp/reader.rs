//! RTMP chunk reassembly: bytes in, whole messages out, for every RTMP peer the engine talks
//! to (publishers, players, origins) and for the load generator's players.
//!
//! It replaces rml_rtmp's `ChunkDeserializer`, which panics on peer input: it keeps one
//! buffer for all chunk streams, so a new header announcing a length below what is already
//! buffered underflows (debug) or asks `reserve` for ~2^64 bytes (release), and its extended
//! timestamp arithmetic underflows. Here every chunk stream has its own partial message, and
//! every size a peer controls is checked against a limit before it is used.
//!
//! Reading, in steps:
//! 1. Gather a chunk header (1–3 basic bytes, 0/3/7/11 message header bytes, 4 extended
//!    timestamp bytes) in a small array, so a header split across reads costs nothing.
//! 2. Resolve it against the chunk stream's previous header (RTMP spec 5.3.1.2): type 0 is
//!    absolute, types 1 and 2 carry a delta, type 3 repeats everything.
//! 3. Copy the chunk's payload straight from the input into that chunk stream's message.
//! 4. A complete message is returned at once, so `SetChunkSize` (applied here) governs the
//!    very next chunk.
//!
//! Must not: trust a length before checking it, allocate ahead of the bytes that arrived by
//! more than one chunk, or panic on any input.

use bytes::{Bytes, BytesMut};

/// Largest chunk size a peer may set (the field allows 2^31 - 1; nginx-rtmp once did
/// `malloc(2147483665)` for it).
pub const MAX_CHUNK_SIZE: u32 = 0x00ff_ffff;
/// Largest message accepted, bytes. A 4K keyframe at 50 Mbit/s is 2–4 MB; nginx-rtmp's
/// default (`max_message 1M`) refuses those.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Distinct chunk stream ids one connection may use (encoders use 2–8).
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Bytes of incomplete messages held at once, over all chunk streams of a connection.
pub const MAX_PENDING_BYTES: usize = 16 << 20;

/// The chunk size every RTMP peer starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_ABORT: u8 = 2;

/// A chunk stream violated the protocol or a limit. The connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ChunkError {
    /// A type 1, 2 or 3 header on a chunk stream that never had a type 0 header.
    #[error("chunk stream {csid}: a type {fmt} header with no earlier header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    /// A new message header while a message on the same chunk stream is incomplete.
    #[error("chunk stream {csid}: a new message header mid-message ({have} of {len} bytes)")]
    HeaderMidMessage { csid: u32, have: usize, len: usize },
    /// `SetChunkSize` of 0, or above [`MAX_CHUNK_SIZE`].
    #[error("chunk size {0} out of range (1..={MAX_CHUNK_SIZE})")]
    BadChunkSize(u32),
    /// A message longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes (limit {MAX_MESSAGE_BYTES})")]
    MessageTooLong(usize),
    /// More than [`MAX_CHUNK_STREAMS`] chunk stream ids in use.
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    /// More than [`MAX_PENDING_BYTES`] of incomplete messages.
    #[error("more than {MAX_PENDING_BYTES} bytes of incomplete messages")]
    TooMuchPending,
    /// A `SetChunkSize` or `Abort` message whose body is not 4 bytes.
    #[error("protocol control message type {0} with a {1}-byte body")]
    BadControl(u8, usize),
}

/// One reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    /// Milliseconds, as the peer counts them (wraps at 2^32).
    pub timestamp: u32,
    pub payload: Bytes,
}

#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// The last timestamp field (absolute for type 0, a delta otherwise): a type 3 header
    /// that starts a new message adds it again (spec 5.3.1.2.4).
    ts_field: u32,
    /// Whether the last header carried an extended timestamp: type 3 chunks repeat it.
    extended: bool,
    len: usize,
    type_id: u8,
    stream_id: u32,
    partial: BytesMut,
}

/// Where the reader is inside the byte stream.
#[derive(Debug, Clone, Copy)]
enum At {
    /// Gathering a header.
    Header,
    /// Inside chunk stream `index`'s payload, `left` bytes of this chunk to go.
    Payload { index: usize, left: usize },
}

/// Reassembles one peer's chunks into messages.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    pending_bytes: usize,
    at: At,
    header: [u8; 18],
    header_len: usize,
    bytes_read: u64,
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a header is, once enough of it is known: `None` until then.
struct HeaderShape {
    basic_len: usize,
    fmt: u8,
    csid: u32,
}

impl ChunkReader {
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            pending_bytes: 0,
            at: At::Header,
            header: [0; 18],
            header_len: 0,
            bytes_read: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Every byte consumed so far (for acknowledgements; wraps as the spec's counter does).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Applies a chunk size (from a `SetChunkSize` the caller decoded itself).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Consumes bytes from `input` until one message is complete, and returns it; `None`
    /// when `input` ran out first (it is then empty, and the state is kept for the next
    /// call). `SetChunkSize` and `Abort` take effect here, before the next chunk is read,
    /// and are returned too.
    pub fn read_message(&mut self, input: &mut &[u8]) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.at {
                At::Header => {
                    if !self.gather_header(input)? {
                        return Ok(None);
                    }
                }
                At::Payload { index, left } => {
                    let n = left.min(input.len());
                    let stream = &mut self.streams[index];
                    stream.partial.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    self.bytes_read += n as u64;
                    self.pending_bytes += n;
                    if self.pending_bytes > MAX_PENDING_BYTES {
                        return Err(ChunkError::TooMuchPending);
                    }
                    if n < left {
                        self.at = At::Payload {
                            index,
                            left: left - n,
                        };
                        return Ok(None);
                    }
                    self.at = At::Header;
                    if let Some(m) = self.complete(index)? {
                        return Ok(Some(m));
                    }
                }
            }
        }
    }

    /// Takes header bytes from `input`; once a whole header is in, resolves it and moves to
    /// its payload (or completes a zero-length message). `false` when more input is needed.
    fn gather_header(&mut self, input: &mut &[u8]) -> Result<bool, ChunkError> {
        loop {
            let need = match self.header_needs()? {
                Some(n) => n,
                None => self.header_len + 1,
            };
            if self.header_len >= need {
                break;
            }
            let Some((&b, rest)) = input.split_first() else {
                return Ok(false);
            };
            self.header[self.header_len] = b;
            self.header_len += 1;
            self.bytes_read += 1;
            *input = rest;
        }
        self.resolve_header()?;
        Ok(true)
    }

    fn shape(&self) -> Option<HeaderShape> {
        if self.header_len == 0 {
            return None;
        }
        let b0 = self.header[0];
        let fmt = b0 >> 6;
        let (basic_len, csid) = match b0 & 0x3f {
            0 if self.header_len >= 2 => (2, 64 + u32::from(self.header[1])),
            1 if self.header_len >= 3 => (
                3,
                64 + u32::from(self.header[1]) + 256 * u32::from(self.header[2]),
            ),
            0 | 1 => return None,
            id => (1, u32::from(id)),
        };
        Some(HeaderShape {
            basic_len,
            fmt,
            csid,
        })
    }

    /// The full header length once it can be known from the bytes gathered so far.
    fn header_needs(&self) -> Result<Option<usize>, ChunkError> {
        let Some(s) = self.shape() else {
            return Ok(None);
        };
        let msg_len = [11, 7, 3, 0][usize::from(s.fmt)];
        let fixed = s.basic_len + msg_len;
        let extended = if s.fmt == 3 {
            match self.stream_index(s.csid) {
                Some(i) => self.streams[i].extended,
                None => {
                    return Err(ChunkError::NoPreviousHeader {
                        csid: s.csid,
                        fmt: 3,
                    })
                }
            }
        } else {
            if self.header_len < s.basic_len + 3 {
                return Ok(None);
            }
            let f = &self.header[s.basic_len..s.basic_len + 3];
            f == [0xff, 0xff, 0xff]
        };
        Ok(Some(fixed + if extended { 4 } else { 0 }))
    }

    fn stream_index(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Applies the gathered header to its chunk stream and sets up its payload.
    fn resolve_header(&mut self) -> Result<(), ChunkError> {
        let s = self
            .shape()
            .ok_or(ChunkError::NoPreviousHeader { csid: 0, fmt: 0 })?;
        let h = &self.header[s.basic_len..self.header_len];
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let index = match self.stream_index(s.csid) {
            Some(i) => i,
            None if s.fmt != 0 => {
                return Err(ChunkError::NoPreviousHeader {
                    csid: s.csid,
                    fmt: s.fmt,
                })
            }
            None => {
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(ChunkError::TooManyChunkStreams);
                }
                self.streams.push(ChunkStream {
                    csid: s.csid,
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    len: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: BytesMut::new(),
                });
                self.streams.len() - 1
            }
        };
        let chunk_size = self.chunk_size as usize;
        let stream = &mut self.streams[index];
        let mid_message = !stream.partial.is_empty();
        if s.fmt != 3 && mid_message {
            return Err(ChunkError::HeaderMidMessage {
                csid: s.csid,
                have: stream.partial.len(),
                len: stream.len,
            });
        }
        if s.fmt != 3 {
            let mut field = u24(&h[0..3]);
            stream.extended = field == 0x00ff_ffff;
            if stream.extended {
                let at = [11, 7, 3][usize::from(s.fmt)];
                field = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            }
            if s.fmt <= 1 {
                let len = u24(&h[3..6]) as usize;
                if len > MAX_MESSAGE_BYTES {
                    return Err(ChunkError::MessageTooLong(len));
                }
                stream.len = len;
                stream.type_id = h[6];
            }
            if s.fmt == 0 {
                stream.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
                stream.timestamp = field;
            } else {
                stream.timestamp = stream.timestamp.wrapping_add(field);
            }
            stream.ts_field = field;
        } else if !mid_message {
            // A type 3 header starting a new message repeats the previous delta (for a type 0
            // predecessor, its timestamp field, spec 5.3.1.2.4). Where the field is extended,
            // the 4 bytes it carries are the value, as ffmpeg reads them.
            if stream.extended {
                stream.ts_field = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            }
            stream.timestamp = stream.timestamp.wrapping_add(stream.ts_field);
        }
        let left = (stream.len - stream.partial.len()).min(chunk_size);
        if !mid_message {
            // Reserve what this chunk brings, never what the header merely announces.
            stream.partial.reserve(left);
        }
        self.header_len = 0;
        self.at = At::Payload { index, left };
        Ok(())
    }

    /// Called after a chunk's payload is in: returns the message when it is whole.
    fn complete(&mut self, index: usize) -> Result<Option<RawMessage>, ChunkError> {
        let stream = &mut self.streams[index];
        if stream.partial.len() < stream.len {
            return Ok(None);
        }
        let payload = stream.partial.split().freeze();
        self.pending_bytes -= payload.len();
        let m = RawMessage {
            csid: stream.csid,
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload,
        };
        self.apply_control(&m)?;
        Ok(Some(m))
    }

    /// `SetChunkSize` and `Abort` belong to the chunk layer: they act before the next chunk.
    fn apply_control(&mut self, m: &RawMessage) -> Result<(), ChunkError> {
        match m.type_id {
            TYPE_SET_CHUNK_SIZE | TYPE_ABORT => {
                let b = m.payload.get(..4).filter(|_| m.payload.len() == 4);
                let Some(b) = b else {
                    return Err(ChunkError::BadControl(m.type_id, m.payload.len()));
                };
                // The top bit is reserved and must be zero.
                let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
                if m.type_id == TYPE_SET_CHUNK_SIZE {
                    self.set_chunk_size(v)?;
                } else if let Some(i) = self.stream_index(v) {
                    let dropped = self.streams[i].partial.len();
                    self.streams[i].partial.clear();
                    self.pending_bytes -= dropped;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::serialize_message;

    fn read_all(r: &mut ChunkReader, mut input: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut out = Vec::new();
        while let Some(m) = r.read_message(&mut input)? {
            out.push(m);
        }
        assert!(input.is_empty());
        Ok(out)
    }

    fn read_split(wire: &[u8], at: &[usize]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut r = ChunkReader::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &a in at.iter().chain(std::iter::once(&wire.len())) {
            out.extend(read_all(&mut r, &wire[last..a])?);
            last = a;
        }
        Ok(out)
    }

    fn msg(csid: u32, type_id: u8, stream_id: u32, ts: u32, p: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            type_id,
            stream_id,
            timestamp: ts,
            payload: Bytes::copy_from_slice(p),
        }
    }

    #[test]
    fn our_serialiser_reads_back_at_every_split() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut wire = serialize_message(3, 1000, 20, 0, b"cmd", 128).to_vec();
        wire.extend_from_slice(&serialize_message(8, 0x0100_0000, 9, 1, &payload, 128));
        wire.extend_from_slice(&serialize_message(9, 5, 18, 1, &[], 128));
        let expect = vec![
            msg(3, 20, 0, 1000, b"cmd"),
            msg(8, 9, 1, 0x0100_0000, &payload),
            msg(9, 18, 1, 5, &[]),
        ];
        for a in 0..=wire.len() {
            assert_eq!(read_split(&wire, &[a]).unwrap(), expect, "split at {a}");
        }
        // And byte by byte.
        let every: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(read_split(&wire, &every).unwrap(), expect);
    }

    #[test]
    fn compressed_headers_resolve_deltas() {
        // Type 0 at ts 100 (len 2, audio, stream 1), then type 2 (delta 20), then type 3
        // (repeats delta 20), then type 1 (delta 5, new length 1, video).
        let mut w = vec![0x04, 0, 0, 100, 0, 0, 2, 8, 1, 0, 0, 0, 0xa1, 0xa2];
        w.extend_from_slice(&[0x84, 0, 0, 20, 0xb1, 0xb2]);
        w.extend_from_slice(&[0xc4, 0xc1, 0xc2]);
        w.extend_from_slice(&[0x44, 0, 0, 5, 0, 0, 1, 9, 0xd1]);
        let expect = vec![
            msg(4, 8, 1, 100, &[0xa1, 0xa2]),
            msg(4, 8, 1, 120, &[0xb1, 0xb2]),
            msg(4, 8, 1, 140, &[0xc1, 0xc2]),
            msg(4, 9, 1, 145, &[0xd1]),
        ];
        for a in 0..=w.len() {
            assert_eq!(read_split(&w, &[a]).unwrap(), expect, "split at {a}");
        }
    }

    #[test]
    fn type3_after_type0_adds_the_type0_timestamp() {
        // Spec 5.3.1.2.4: the delta of a type 3 following a type 0 is the type 0 timestamp.
        let w = [0x05, 0, 0, 40, 0, 0, 1, 8, 1, 0, 0, 0, 0xaa, 0xc5, 0xbb];
        assert_eq!(
            read_split(&w, &[]).unwrap(),
            vec![msg(5, 8, 1, 40, &[0xaa]), msg(5, 8, 1, 80, &[0xbb])]
        );
    }

    #[test]
    fn two_and_three_byte_basic_headers() {
        // csid 64 + 10 = 74 in the two-byte form, 64 + 1 + 256 = 321 in the three-byte form.
        let mut w = vec![0x00, 10, 0, 0, 1, 0, 0, 1, 8, 1, 0, 0, 0, 0x11];
        w.extend_from_slice(&[0x01, 1, 1, 0, 0, 2, 0, 0, 1, 9, 1, 0, 0, 0, 0x22]);
        for a in 0..=w.len() {
            assert_eq!(
                read_split(&w, &[a]).unwrap(),
                vec![msg(74, 8, 1, 1, &[0x11]), msg(321, 9, 1, 2, &[0x22])]
            );
        }
    }

    #[test]
    fn set_chunk_size_applies_to_the_next_chunk_in_the_same_read() {
        let mut w = serialize_message(2, 0, 1, 0, &4096u32.to_be_bytes(), 128).to_vec();
        let big = vec![7u8; 5000];
        w.extend_from_slice(&serialize_message(6, 0, 9, 1, &big, 4096));
        let out = read_split(&w, &[]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].payload.len(), 5000);
    }

    #[test]
    fn abort_drops_a_partial_message() {
        // 300-byte message at chunk size 128: send the first chunk, abort csid 6, then a
        // fresh message on csid 6.
        let full = serialize_message(6, 0, 9, 1, &[1u8; 300], 128);
        let mut w = full[..12 + 128].to_vec();
        w.extend_from_slice(&serialize_message(2, 0, 2, 0, &6u32.to_be_bytes(), 128));
        w.extend_from_slice(&serialize_message(6, 7, 9, 1, b"x", 128));
        let out = read_split(&w, &[]).unwrap();
        assert_eq!(out.last().unwrap(), &msg(6, 9, 1, 7, b"x"));
    }

    /// Regression (rml_rtmp `chunk_io/deserializer.rs:371/388`): set chunk size 1, start a
    /// 2-byte message, then a new header on another chunk stream announcing length 0.
    #[test]
    fn regression_new_header_shorter_than_buffered() {
        let mut w = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        w.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0xaa]);
        w.extend_from_slice(&[0x43, 0, 0, 0, 0, 0, 0, 8]);
        assert_eq!(
            read_split(&w, &[]),
            Err(ChunkError::HeaderMidMessage {
                csid: 3,
                have: 1,
                len: 2
            })
        );
        // On different chunk streams, interleaving is legal.
        let mut ok = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        ok.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0xaa]);
        ok.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 0, 8, 1, 0, 0, 0]);
        ok.extend_from_slice(&[0xc3, 0xbb]);
        let out = read_split(&ok, &[]).unwrap();
        assert_eq!(out[1], msg(4, 8, 1, 0, &[]));
        assert_eq!(out[2], msg(3, 8, 1, 0, &[0xaa, 0xbb]));
    }

    /// Regression (rml_rtmp `chunk_io/deserializer.rs:358`): an extended timestamp with a
    /// type 3 continuation underflowed `timestamp - MAX_INITIAL_TIMESTAMP`.
    #[test]
    fn regression_extended_timestamp_in_type3() {
        let w = [
            0x03, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xc3, 0, 0, 0, 0,
            0xbb,
        ];
        assert_eq!(
            read_split(&w, &[]).unwrap(),
            vec![msg(3, 8, 1, 0, &[0xaa]), msg(3, 8, 1, 0, &[0xbb])]
        );
    }

    #[test]
    fn limits_are_errors() {
        let scs = |v: u32| serialize_message(2, 0, 1, 0, &v.to_be_bytes(), 128);
        assert_eq!(
            read_split(&scs(0x0100_0000), &[]),
            Err(ChunkError::BadChunkSize(0x0100_0000))
        );
        assert_eq!(read_split(&scs(0), &[]), Err(ChunkError::BadChunkSize(0)));
        // 2^31 - 1, as sent to nginx-rtmp.
        assert_eq!(
            read_split(&scs(0x7fff_ffff), &[]),
            Err(ChunkError::BadChunkSize(0x7fff_ffff))
        );
        assert_eq!(
            read_split(&serialize_message(2, 0, 1, 0, &[0, 1], 128), &[]),
            Err(ChunkError::BadControl(1, 2))
        );
        // A 9 MiB message is refused at its header, before any byte is buffered.
        let mut w = vec![0x04, 0, 0, 0, 0x90, 0, 0, 9, 1, 0, 0, 0];
        w.push(0);
        assert_eq!(
            read_split(&w, &[]),
            Err(ChunkError::MessageTooLong(0x90_0000))
        );
        // A type 1 header on a chunk stream never seen.
        assert_eq!(
            read_split(&[0x45, 0, 0, 0, 0, 0, 1, 8], &[]),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 1 })
        );
        assert_eq!(
            read_split(&[0xc5], &[]),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 3 })
        );
        // 100 chunk stream ids, one-byte basic headers up to 63, two-byte ones after.
        let mut many = Vec::new();
        for csid in 2..102u32 {
            if csid < 64 {
                many.push(csid as u8);
            } else {
                many.extend_from_slice(&[0x00, (csid - 64) as u8]);
            }
            many.extend_from_slice(&[0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, b'a']);
        }
        assert_eq!(read_split(&many, &[]), Err(ChunkError::TooManyChunkStreams));
    }

    #[test]
    fn pending_bytes_are_bounded_across_chunk_streams() {
        // 8 MiB messages in 4 MiB chunks, interleaved: the first chunk of each of five
        // chunk streams makes 20 MiB pending.
        let mut r = ChunkReader::new();
        let scs = serialize_message(2, 0, 1, 0, &(4u32 << 20).to_be_bytes(), 128);
        let mut input = &scs[..];
        assert!(r.read_message(&mut input).unwrap().is_some());
        let body = vec![0u8; 4 << 20];
        let mut result = Ok(None);
        for csid in 3..8u8 {
            let mut w = vec![csid, 0, 0, 0, 0x80, 0, 0, 9, 1, 0, 0, 0];
            w.extend_from_slice(&body);
            let mut input = &w[..];
            result = r.read_message(&mut input);
            if result.is_err() {
                assert_eq!(csid, 7, "the fifth chunk crosses 16 MiB");
                break;
            }
        }
        assert_eq!(result, Err(ChunkError::TooMuchPending));
    }

    #[test]
    fn bytes_read_counts_every_byte() {
        let w = serialize_message(3, 0, 20, 0, &[1u8; 200], 128);
        let mut r = ChunkReader::new();
        for b in w.chunks(1) {
            let mut input = b;
            let _ = r.read_message(&mut input).unwrap();
        }
        assert_eq!(r.bytes_read(), w.len() as u64);
    }
}
