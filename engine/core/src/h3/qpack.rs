//! QPACK field sections (RFC 9204) with the static table only.
//!
//! We advertise a dynamic table capacity of 0, so every field section a peer sends must have
//! a Required Insert Count of 0 and refer to no dynamic entry (§4.2, §2.1.3): such a reference
//! is an error, `QPACK_DECOMPRESSION_FAILED`. Strings may be Huffman-coded (browsers and
//! aioquic do); the Huffman code is `httlib-huffman`'s (HPACK's table, RFC 7541 Appendix B).
//! We encode without Huffman: our responses' fields are short, and a plain literal costs no
//! CPU.

use super::code;

/// The static table (RFC 9204 Appendix A); index 0 is the first entry.
pub const STATIC: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

/// A decoded field line: name and value.
pub type Field = (Vec<u8>, Vec<u8>);

/// Why a field section cannot be decoded. Every one closes the connection with
/// `QPACK_DECOMPRESSION_FAILED`, except a section over the size limit (`EXCESSIVE_LOAD`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QpackError {
    #[error("a reference to the dynamic table, which is 0 bytes")]
    DynamicTable,
    #[error("static table index {0} does not exist")]
    BadIndex(u64),
    #[error("truncated field section")]
    Truncated,
    #[error("an integer too large")]
    Overflow,
    #[error("a Huffman-coded string that does not decode")]
    Huffman,
    #[error("the field section is over {0} bytes")]
    TooLarge(u64),
}

impl QpackError {
    pub fn code(&self) -> u64 {
        match self {
            QpackError::TooLarge(_) => code::EXCESSIVE_LOAD,
            _ => code::QPACK_DECOMPRESSION_FAILED,
        }
    }
}

/// Decodes a field section (a HEADERS frame's payload) into its field lines, in order.
/// `max_size` bounds the decoded section as RFC 9114 §4.2.2 counts it (name + value + 32 per
/// line).
pub fn decode_field_section(block: &[u8], max_size: u64) -> Result<Vec<Field>, QpackError> {
    let mut r = Reader { buf: block, pos: 0 };
    if r.int(8)? != 0 {
        return Err(QpackError::DynamicTable);
    }
    // The Base: meaningless without a dynamic table, read past.
    r.int(7)?;
    let mut fields = Vec::new();
    let mut size = 0u64;
    while let Some(&b) = r.peek() {
        let (name, value) = if b & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            let is_static = b & 0x40 != 0;
            let i = r.int(6)?;
            let (n, v) = static_entry(is_static, i)?;
            (n.as_bytes().to_vec(), v.as_bytes().to_vec())
        } else if b & 0x40 != 0 {
            // Literal field line with name reference: 01 N T index(4), then the value.
            let is_static = b & 0x10 != 0;
            let i = r.int(4)?;
            let (n, _) = static_entry(is_static, i)?;
            (n.as_bytes().to_vec(), r.string(7)?)
        } else if b & 0x20 != 0 {
            // Literal field line with literal name: 001 N H length(3), then the value.
            (r.string(3)?, r.string(7)?)
        } else {
            // Post-base forms (0001 and 0000) refer to the dynamic table.
            return Err(QpackError::DynamicTable);
        };
        size += name.len() as u64 + value.len() as u64 + 32;
        if size > max_size {
            return Err(QpackError::TooLarge(max_size));
        }
        fields.push((name, value));
    }
    Ok(fields)
}

fn static_entry(is_static: bool, i: u64) -> Result<(&'static str, &'static str), QpackError> {
    if !is_static {
        return Err(QpackError::DynamicTable);
    }
    usize::try_from(i)
        .ok()
        .and_then(|i| STATIC.get(i))
        .copied()
        .ok_or(QpackError::BadIndex(i))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<&u8> {
        self.buf.get(self.pos)
    }

    /// A prefixed integer (RFC 7541 §5.1) whose prefix is the low `bits` of the next byte.
    fn int(&mut self, bits: u8) -> Result<u64, QpackError> {
        let mask = ((1u16 << bits) - 1) as u8;
        let first = *self.peek().ok_or(QpackError::Truncated)? & mask;
        self.pos += 1;
        if first < mask {
            return Ok(u64::from(first));
        }
        let mut v = u64::from(mask);
        let mut shift = 0u32;
        loop {
            let b = *self.peek().ok_or(QpackError::Truncated)?;
            self.pos += 1;
            if shift > 56 {
                return Err(QpackError::Overflow);
            }
            v = v
                .checked_add(u64::from(b & 0x7f) << shift)
                .ok_or(QpackError::Overflow)?;
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
    }

    /// A string literal: the Huffman flag just above a length prefix of `bits`, then the
    /// bytes.
    fn string(&mut self, bits: u8) -> Result<Vec<u8>, QpackError> {
        let huffman = *self.peek().ok_or(QpackError::Truncated)? & (1 << bits) != 0;
        let len = self.int(bits)?;
        let len = usize::try_from(len).map_err(|_| QpackError::Overflow)?;
        let end = self.pos.checked_add(len).ok_or(QpackError::Overflow)?;
        let raw = self.buf.get(self.pos..end).ok_or(QpackError::Truncated)?;
        self.pos = end;
        if !huffman {
            return Ok(raw.to_vec());
        }
        let mut out = Vec::with_capacity(len * 8 / 5 + 1);
        httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FourBits)
            .map_err(|_| QpackError::Huffman)?;
        Ok(out)
    }
}

/// Appends a prefixed integer: `first` holds the bits above the `bits`-bit prefix.
fn put_int(v: u64, bits: u8, first: u8, out: &mut Vec<u8>) {
    let mask = (1u64 << bits) - 1;
    if v < mask {
        out.push(first | v as u8);
        return;
    }
    out.push(first | mask as u8);
    let mut rest = v - mask;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Encodes a field section: a static entry that matches whole is indexed, a static name is
/// referenced, anything else is a literal; no Huffman, no dynamic table. Names must be
/// lowercase already.
pub fn encode_field_section(fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    // Required Insert Count 0, Base 0.
    out.extend_from_slice(&[0, 0]);
    for &(name, value) in fields {
        if let Some(i) = STATIC
            .iter()
            .position(|(n, v)| n.as_bytes() == name && v.as_bytes() == value)
        {
            put_int(i as u64, 6, 0xc0, out);
        } else if let Some(i) = STATIC.iter().position(|(n, _)| n.as_bytes() == name) {
            put_int(i as u64, 4, 0x50, out);
            put_int(value.len() as u64, 7, 0x00, out);
            out.extend_from_slice(value);
        } else {
            put_int(name.len() as u64, 3, 0x20, out);
            out.extend_from_slice(name);
            put_int(value.len() as u64, 7, 0x00, out);
            out.extend_from_slice(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h3::MAX_FIELD_SECTION_SIZE;

    fn fields(list: &[(&str, &str)]) -> Vec<Field> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn the_rfcs_static_example_decodes() {
        // RFC 9204 Appendix B.1: a literal with a static name reference.
        let block = b"\x00\x00\x51\x0b/index.html";
        assert_eq!(
            decode_field_section(block, MAX_FIELD_SECTION_SIZE).unwrap(),
            fields(&[(":path", "/index.html")])
        );
    }

    #[test]
    fn huffman_coded_strings_decode() {
        // RFC 7541 C.4.1 and C.4.3's Huffman codes: "www.example.com" as the :authority
        // value, then "custom-key: custom-value" as a literal name and value.
        let mut block = vec![0x00, 0x00, 0x50, 0x80 | 12];
        block.extend_from_slice(&[
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ]);
        // 001 N=0 H=1, length 8: the 3-bit prefix is full (7), then 1 more.
        block.extend_from_slice(&[0x2f, 0x01]);
        block.extend_from_slice(&[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f]);
        block.push(0x80 | 9);
        block.extend_from_slice(&[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf]);
        assert_eq!(
            decode_field_section(&block, MAX_FIELD_SECTION_SIZE).unwrap(),
            fields(&[
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        // Cut anywhere inside, it is an error, never a panic.
        for end in 2..block.len() - 1 {
            let _ = decode_field_section(&block[..end], MAX_FIELD_SECTION_SIZE);
        }
        assert_eq!(
            decode_field_section(&block[..block.len() - 1], MAX_FIELD_SECTION_SIZE),
            Err(QpackError::Truncated)
        );
    }

    #[test]
    fn what_we_encode_decodes_to_the_same_fields() {
        let list: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"200"),
            (b":status", b"201"),
            (b"content-type", b"application/vnd.apple.mpegurl"),
            (b"cache-control", b"no-cache"),
            (b"x-edge-shard", b"1"),
            (b"content-length", b"123456789"),
            (
                b"a-long-header-name-past-the-three-bit-prefix",
                &[b'v'; 300],
            ),
        ];
        let mut block = Vec::new();
        encode_field_section(&list, &mut block);
        let want: Vec<Field> = list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        assert_eq!(
            decode_field_section(&block, MAX_FIELD_SECTION_SIZE).unwrap(),
            want
        );
        // Whole static entries take one byte each.
        let mut short = Vec::new();
        encode_field_section(&[(b":status", b"200"), (b":method", b"GET")], &mut short);
        assert_eq!(short, [0x00, 0x00, 0xc0 | 25, 0xc0 | 17]);
    }

    #[test]
    fn dynamic_references_bad_indexes_and_excess_are_refused() {
        let cases: [(&[u8], QpackError); 6] = [
            (b"\x02\x00\xc0", QpackError::DynamicTable),
            (b"\x00\x00\x80", QpackError::DynamicTable),
            (b"\x00\x00\x10", QpackError::DynamicTable),
            (b"\x00\x00\x00", QpackError::DynamicTable),
            (b"\x00\x00\xff\x24", QpackError::BadIndex(99)),
            (b"\x00\x00\x51\x0b/index", QpackError::Truncated),
        ];
        for (block, want) in cases {
            assert_eq!(
                decode_field_section(block, MAX_FIELD_SECTION_SIZE),
                Err(want.clone()),
                "{block:x?}"
            );
            assert_eq!(want.code(), code::QPACK_DECOMPRESSION_FAILED);
        }
        let huge = b"\x00\x00\x5f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        assert!(decode_field_section(huge, MAX_FIELD_SECTION_SIZE).is_err());
        let mut many = vec![0, 0];
        many.extend(std::iter::repeat_n(0xc0 | 17, 1000));
        assert_eq!(
            decode_field_section(&many, 1024),
            Err(QpackError::TooLarge(1024))
        );
    }
}
