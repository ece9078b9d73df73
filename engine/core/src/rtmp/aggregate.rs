//! Aggregate messages (RTMP type 22): a run of FLV-style tags in one message, split back into
//! the audio, video and data messages they carry.
//!
//! Sub-message timestamps are rebased: the first sub-message takes the aggregate's timestamp
//! and the others keep their distance from it (Adobe RTMP spec, 7.1.6).

use bytes::Bytes;

use crate::media::MediaKind;

/// RTMP message type id of an aggregate message.
pub const AGGREGATE_TYPE_ID: u8 = 22;

/// A malformed aggregate message; it closes the publisher that sent it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregateError {
    /// A sub-message header or body runs past the end of the aggregate.
    #[error("aggregate truncated at offset {offset}")]
    Truncated { offset: usize },
    /// The back pointer after a sub-message does not match its size.
    #[error("aggregate back pointer {found} at offset {offset}, expected {expected}")]
    BadBackPointer {
        offset: usize,
        found: u32,
        expected: u32,
    },
}

/// One message carried inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMessage {
    /// `None` for types the engine does not carry (they are skipped by the caller).
    pub kind: Option<MediaKind>,
    pub type_id: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

/// Splits an aggregate body. `body` is sliced, not copied.
pub fn split(timestamp: u32, body: &Bytes) -> Result<Vec<SubMessage>, AggregateError> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut first_ts: Option<u32> = None;
    while offset < body.len() {
        let header = body
            .get(offset..offset + 11)
            .ok_or(AggregateError::Truncated { offset })?;
        let type_id = header[0];
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let sub_ts = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let data_start = offset + 11;
        let data_end = data_start + size;
        let back = body
            .get(data_end..data_end + 4)
            .ok_or(AggregateError::Truncated { offset })?;
        let found = u32::from_be_bytes([back[0], back[1], back[2], back[3]]);
        let expected = (size + 11) as u32;
        // Some encoders write the size without the 11-byte header; accept both.
        if found != expected && found != size as u32 {
            return Err(AggregateError::BadBackPointer {
                offset: data_end,
                found,
                expected,
            });
        }
        let base = *first_ts.get_or_insert(sub_ts);
        out.push(SubMessage {
            kind: MediaKind::from_type_id(type_id),
            type_id,
            timestamp: timestamp.wrapping_add(sub_ts.wrapping_sub(base)),
            body: body.slice(data_start..data_end),
        });
        offset = data_end + 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(type_id: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(data);
        v.extend_from_slice(&(data.len() as u32 + 11).to_be_bytes());
        v
    }

    #[test]
    fn splits_and_rebases_timestamps() {
        let mut body = tag(9, 0x0100_0010, b"\x17\x01\0\0\0vid");
        body.extend(tag(8, 0x0100_0030, b"\xaf\x01aud"));
        body.extend(tag(18, 0x0100_0050, b"\x02\0\x0aonMetaData"));
        let msgs = split(500, &Bytes::from(body)).unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].kind, Some(MediaKind::Video));
        assert_eq!(msgs[0].timestamp, 500);
        assert_eq!(&msgs[0].body[..], b"\x17\x01\0\0\0vid");
        assert_eq!(msgs[1].kind, Some(MediaKind::Audio));
        assert_eq!(msgs[1].timestamp, 532);
        assert_eq!(msgs[2].timestamp, 564);
    }

    #[test]
    fn truncation_and_bad_back_pointers_are_errors() {
        let body = tag(9, 0, b"\x17\x01\0\0\0vid");
        for cut in 1..body.len() {
            assert!(
                split(0, &Bytes::copy_from_slice(&body[..cut])).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = body.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x40;
        assert!(matches!(
            split(0, &Bytes::from(bad)),
            Err(AggregateError::BadBackPointer { .. })
        ));
        assert_eq!(split(0, &Bytes::new()).unwrap(), vec![]);
    }
}
