//! The client side of HTTP/1.1 for the engine's origin requests (an HLS pull), sans-IO: the
//! request it sends, and a body reader over [`crate::http`]'s head parser and dechunker that
//! knows the three framings (`Content-Length`, `chunked`, until the connection closes).
//!
//! Must not: touch a socket, or decide what a failure means for a stream (the pull does).

use crate::http::{Dechunker, HttpError, ResponseHead};

/// How a response body ends.
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(Dechunker),
    UntilClose,
    Done,
}

/// Reads one response body, split anywhere.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    /// Only a length-framed (or empty) body leaves the connection at a clean boundary: the
    /// dechunker stops at the last chunk, before any trailer.
    reusable: bool,
}

impl BodyReader {
    /// The body that follows `head` (none for a HEAD request, 1xx, 204 and 304: RFC 9112
    /// §6.3; chunked wins over a length).
    pub fn new(head: &ResponseHead, head_only: bool) -> Self {
        let no_body = head_only || head.status < 200 || head.status == 204 || head.status == 304;
        let framing = if no_body {
            Framing::Done
        } else if head.chunked {
            Framing::Chunked(Dechunker::default())
        } else {
            match head.content_length {
                Some(0) => Framing::Done,
                Some(n) => Framing::Length(n as u64),
                None => Framing::UntilClose,
            }
        };
        let reusable = matches!(framing, Framing::Length(_) | Framing::Done);
        Self { framing, reusable }
    }

    /// Whether the connection can carry another request once the body is read.
    pub fn reusable(&self, head: &ResponseHead) -> bool {
        !head.close && self.reusable
    }

    /// Appends the body bytes at the front of `input` to `out`; returns how many input bytes
    /// it consumed (framing included; a partial chunk-size line stays for the next call).
    pub fn read(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        match &mut self.framing {
            Framing::Done => Ok(0),
            Framing::Length(left) => {
                let n = (input.len() as u64).min(*left) as usize;
                out.extend_from_slice(&input[..n]);
                *left -= n as u64;
                if *left == 0 {
                    self.framing = Framing::Done;
                }
                Ok(n)
            }
            Framing::Chunked(d) => {
                let used = d.decode(input, out)?;
                if d.done {
                    self.framing = Framing::Done;
                }
                Ok(used)
            }
            Framing::UntilClose => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
        }
    }

    /// Whether the body is complete.
    pub fn done(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    /// The connection closed: whether that completed the body (it does only for an
    /// until-close body).
    pub fn closed(&mut self) -> bool {
        if matches!(self.framing, Framing::UntilClose) {
            self.framing = Framing::Done;
        }
        self.done()
    }
}

/// A GET (or HEAD) for `path_and_query` at `authority`, kept alive.
pub fn request(method: &str, authority: &str, path_and_query: &str) -> Vec<u8> {
    format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: edge-engine/{}\r\n\
Accept: */*\r\nConnection: keep-alive\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Reads a whole response from `input` split at `cut` (the tests and the fuzzer): the head,
/// the body, and whether the body completed (the input's end counts as the connection's).
pub fn read_split(
    input: &[u8],
    cut: usize,
    head_only: bool,
) -> Result<Option<(ResponseHead, Vec<u8>, bool)>, HttpError> {
    let Some(head) = crate::http::parse_response_head(input)? else {
        return Ok(None);
    };
    let mut body = BodyReader::new(&head, head_only);
    let rest = &input[head.len..];
    let cut = cut.min(rest.len());
    let (mut pending, mut out) = (rest[..cut].to_vec(), Vec::new());
    let used = body.read(&pending, &mut out)?;
    pending.drain(..used);
    pending.extend_from_slice(&rest[cut..]);
    while !body.done() {
        let used = body.read(&pending, &mut out)?;
        if used == 0 {
            break;
        }
        pending.drain(..used);
    }
    let done = body.done() || body.closed();
    Ok(Some((head, out, done)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_split(input: &[u8], head_only: bool) -> (ResponseHead, Vec<u8>, bool) {
        let whole = read_split(input, usize::MAX, head_only).unwrap().unwrap();
        for cut in 0..input.len() {
            let split = read_split(input, cut, head_only).unwrap().unwrap();
            assert_eq!((&split.1, split.2), (&whole.1, whole.2), "cut at {cut}");
        }
        whole
    }

    #[test]
    fn the_three_framings() {
        let (head, body, done) = every_split(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
            false,
        );
        assert_eq!(
            (head.status, body.as_slice(), done),
            (200, &b"hello"[..], true)
        );
        assert!(BodyReader::new(&head, false).reusable(&head));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
        let (_, body, done) = every_split(chunked, false);
        assert_eq!((body.as_slice(), done), (&b"hello world"[..], true));
        let (head, body, done) = every_split(b"HTTP/1.0 200 OK\r\n\r\nabc", false);
        assert_eq!(
            (body.as_slice(), done),
            (&b"abc"[..], true),
            "ends at close"
        );
        assert!(!BodyReader::new(&head, false).reusable(&head));
    }

    #[test]
    fn truncated_bodies_are_not_complete() {
        let (_, body, done) =
            every_split(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false);
        assert_eq!((body.as_slice(), done), (&b"abc"[..], false));
        let (_, _, done) = every_split(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            false,
        );
        assert!(!done, "no last chunk");
    }

    #[test]
    fn head_and_bodiless_statuses() {
        let (_, body, done) = every_split(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true);
        assert!(body.is_empty() && done);
        let (head, _, done) = every_split(b"HTTP/1.1 304 Not Modified\r\n\r\n", false);
        assert_eq!((head.status, done), (304, true));
    }

    #[test]
    fn bad_chunks_are_errors() {
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(read_split(bad, usize::MAX, false).is_err());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY";
        assert!(read_split(bad, usize::MAX, false).is_err());
    }
}
