//! A minimal HTTP/1.1 client side: request bytes, response head parsing (httparse) and a
//! chunked-body decoder. Sans-IO; the viewers move the bytes.

use bytes::{Buf, BytesMut};

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
    /// Bytes of the head, to consume from the buffer.
    pub len: usize,
}

/// `GET path` with keep-alive.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-loadgen\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// Parses a response head from the front of `buf`; `Ok(None)` wants more bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > 16 * 1024 => {
            Err("response head too large".into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let mut content_length = None;
            let mut chunked = false;
            for h in resp.headers.iter() {
                let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                if h.name.eq_ignore_ascii_case("content-length") {
                    content_length =
                        Some(v.parse().map_err(|_| format!("bad Content-Length {v}"))?);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && v.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
            Ok(Some(Head {
                status: resp.code.unwrap_or(0),
                content_length,
                chunked,
                len,
            }))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Decodes a chunked body incrementally.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Data bytes left in the current chunk.
    left: usize,
    /// The CRLF after a chunk's data is next.
    need_crlf: bool,
    pub done: bool,
}

impl Dechunker {
    /// Moves decoded body bytes from `input` to `out`; leaves partial framing in `input`.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Result<(), String> {
        while !self.done {
            if self.left > 0 {
                let take = self.left.min(input.len());
                out.extend_from_slice(&input[..take]);
                input.advance(take);
                self.left -= take;
                if self.left > 0 {
                    return Ok(());
                }
                self.need_crlf = true;
            }
            if self.need_crlf {
                if input.len() < 2 {
                    return Ok(());
                }
                if &input[..2] != b"\r\n" {
                    return Err("chunk not followed by CRLF".into());
                }
                input.advance(2);
                self.need_crlf = false;
            }
            let Some(eol) = input.windows(2).position(|w| w == b"\r\n") else {
                if input.len() > 1024 {
                    return Err("chunk size line too long".into());
                }
                return Ok(());
            };
            let line = std::str::from_utf8(&input[..eol]).map_err(|_| "bad chunk line")?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            input.advance(eol + 2);
            if size == 0 {
                self.done = true;
            }
            self.left = size;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_at_every_split() {
        let wire = b"5\r\nhello\r\n3;x=y\r\n, w\r\n6\r\norld!!\r\n0\r\n\r\n";
        for at in 0..=wire.len() {
            let mut d = Dechunker::default();
            let mut input = BytesMut::new();
            let mut out = Vec::new();
            for piece in [&wire[..at], &wire[at..]] {
                input.extend_from_slice(piece);
                d.decode(&mut input, &mut out).unwrap();
            }
            assert_eq!(out, b"hello, world!!", "split {at}");
            assert!(d.done);
        }
        let mut bad = BytesMut::from(&b"zz\r\n"[..]);
        assert!(Dechunker::default()
            .decode(&mut bad, &mut Vec::new())
            .is_err());
    }

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.chunked, h.len),
            (200, Some(12), false, 39)
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nX").unwrap(), None);
    }
}
