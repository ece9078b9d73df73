//! Which shard a QUIC datagram belongs to, from the connection ID it carries.
//!
//! With SO_REUSEPORT the kernel picks a shard's UDP socket by the 4-tuple, which changes when
//! a client migrates or a NAT rebinds. The connection IDs a shard issues therefore name it:
//! [`CID_LEN`] bytes, the first the shard's index, the rest random. A datagram whose
//! destination connection ID names another shard is passed to that shard; anything else
//! (a client's first Initial or 0-RTT packets, which carry the ID the client chose, a
//! version negotiation, bytes that are no QUIC packet) stays on the shard that received it.
//!
//! Owns: reading a datagram's first packet header far enough to find its destination
//! connection ID, and the layout of the IDs we issue. Must not: decrypt, validate or
//! allocate anything; panic on any bytes (every datagram the engine receives passes here
//! first).

/// The length of the connection IDs our shards issue.
pub const CID_LEN: usize = 8;

/// A new connection ID for `shard`: its index, then `random`.
pub fn issue(shard: u8, random: [u8; CID_LEN - 1]) -> [u8; CID_LEN] {
    let mut cid = [0u8; CID_LEN];
    cid[0] = shard;
    cid[1..].copy_from_slice(&random);
    cid
}

/// The shard a datagram belongs to, if its destination connection ID is one we issued and
/// names a shard that exists; `None` leaves it with the shard that received it.
pub fn shard_of(datagram: &[u8], shards: usize) -> Option<usize> {
    let first = *datagram.first()?;
    let dcid = if first & 0x80 == 0 {
        // Short header: the destination connection ID follows the first byte, at the length
        // we chose.
        datagram.get(1..1 + CID_LEN)?
    } else {
        let version = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
        if version == 0 {
            // Version negotiation: not for a connection of ours.
            return None;
        }
        // Long header types (QUIC v1): 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry. Initial and
        // 0-RTT may carry the ID the client made up; only a Handshake packet carries ours for
        // sure. (QUIC v2 numbers them differently: route its long headers by length only.)
        let ty = (first >> 4) & 0x03;
        if version == 1 && ty != 2 {
            return None;
        }
        let len = usize::from(*datagram.get(5)?);
        if len != CID_LEN {
            return None;
        }
        datagram.get(6..6 + len)?
    };
    let shard = usize::from(dcid[0]);
    (shard < shards).then_some(shard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(cid: &[u8; CID_LEN]) -> Vec<u8> {
        let mut d = vec![0x40];
        d.extend_from_slice(cid);
        d.extend_from_slice(&[0xaa; 30]);
        d
    }

    fn long(first: u8, version: u32, cid: &[u8]) -> Vec<u8> {
        let mut d = vec![first];
        d.extend_from_slice(&version.to_be_bytes());
        d.push(cid.len() as u8);
        d.extend_from_slice(cid);
        d.extend_from_slice(&[0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
        d
    }

    #[test]
    fn short_and_handshake_packets_go_to_the_shard_their_id_names() {
        let cid = issue(3, [9; 7]);
        assert_eq!(shard_of(&short(&cid), 4), Some(3));
        // Handshake (v1 type 2).
        assert_eq!(shard_of(&long(0xe0, 1, &cid), 4), Some(3));
        // A shard that does not exist (an ID from another node, or made up): stays.
        assert_eq!(shard_of(&short(&issue(7, [0; 7])), 4), None);
    }

    #[test]
    fn initials_zero_rtt_and_version_negotiation_stay() {
        let cid = issue(1, [5; 7]);
        assert_eq!(shard_of(&long(0xc0, 1, &cid), 4), None, "Initial");
        assert_eq!(shard_of(&long(0xd0, 1, &cid), 4), None, "0-RTT");
        assert_eq!(
            shard_of(&long(0x80, 0, &cid), 4),
            None,
            "version negotiation"
        );
        assert_eq!(
            shard_of(&long(0xe0, 1, &[1; 20]), 4),
            None,
            "not our length"
        );
    }

    #[test]
    fn any_bytes_are_an_answer_not_a_panic() {
        let cid = issue(2, [1; 7]);
        for d in [short(&cid), long(0xe0, 1, &cid)] {
            for end in 0..d.len() {
                let _ = shard_of(&d[..end], 4);
            }
        }
        assert_eq!(shard_of(&[], 4), None);
        assert_eq!(shard_of(&[0x40, 2], 4), None, "too short for an ID");
    }
}
