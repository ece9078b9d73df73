//! QUIC variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, the first two bits
//! saying which.

/// The largest value a variable-length integer holds.
pub const MAX: u64 = (1 << 62) - 1;

/// Reads one from the start of `buf`: its value and length, `None` while incomplete.
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

/// The bytes `v` takes (values over [`MAX`] are written as [`MAX`]).
pub fn len(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Appends `v` (values over [`MAX`] are written as [`MAX`]).
pub fn encode(v: u64, out: &mut Vec<u8>) {
    let v = v.min(MAX);
    match len(v) {
        1 => out.push(v as u8),
        2 => out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes()),
        4 => out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes()),
        _ => out.extend_from_slice(&(0xc000_0000_0000_0000 | v).to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfcs_examples_decode() {
        // RFC 9000 Appendix A.1.
        assert_eq!(
            decode(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(decode(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(decode(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(decode(&[0x25]), Some((37, 1)));
        assert_eq!(decode(&[0x40, 0x25]), Some((37, 2)));
        assert_eq!(decode(&[0x9d, 0x7f, 0x3e]), None, "incomplete");
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn every_length_round_trips() {
        for v in [0, 63, 64, 16_383, 16_384, 1_073_741_823, 1_073_741_824, MAX] {
            let mut out = Vec::new();
            encode(v, &mut out);
            assert_eq!(out.len(), len(v));
            assert_eq!(decode(&out), Some((v, out.len())), "{v}");
        }
    }
}
