//! The HTTP hook client: POSTs a JSON body to an `http://HOST[:PORT]/PATH` URL and returns the
//! reply's status and body, as non-blocking I/O in the calling connection's task (the name is
//! resolved on a helper thread, see [`crate::net::dial`]). One deadline covers the whole exchange.
//! The same exchange GETs a peer's playlist for a drain's HLS migration ([`get`]).
//!
//! What a reply means is edge-core's ([`edge_core::access::hook_verdict`]).
//!
//! Must not: block the shard, follow redirects, keep connections, or read more than
//! [`MAX_REPLY`] bytes of a reply.

use std::time::Duration;

use edge_core::http::{parse_response_head, Dechunker};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use crate::config::access::HookUrl;

/// The most of a reply read (head and body).
pub(crate) const MAX_REPLY: usize = 64 * 1024;

/// Why a hook gave no reply to judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HookFailure {
    #[error("no reply within {0} ms")]
    Timeout(u64),
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("bad reply: {0}")]
    BadReply(String),
}

/// POSTs `body` (JSON) to `url`; the status and body of the reply.
pub(crate) async fn post(
    url: &HookUrl,
    body: String,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HookFailure> {
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edge-engine\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.target,
        url.authority,
        body.len()
    );
    within(url, request, timeout).await
}

/// GETs `url`; the status and body of the reply.
pub(crate) async fn get(url: &HookUrl, timeout: Duration) -> Result<(u16, Vec<u8>), HookFailure> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edge-engine\r\nConnection: close\r\n\r\n",
        url.target, url.authority
    );
    within(url, request, timeout).await
}

async fn within(
    url: &HookUrl,
    request: String,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HookFailure> {
    match monoio::time::timeout(timeout, exchange(url, request, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(HookFailure::Timeout(timeout.as_millis() as u64)),
    }
}

async fn exchange(
    url: &HookUrl,
    request: String,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HookFailure> {
    let mut stream = crate::net::dial::connect(&url.host, url.port, timeout)
        .await
        .map_err(HookFailure::Unreachable)?;
    let (res, _) = stream.write_all(request.into_bytes()).await;
    res.map_err(|e| HookFailure::Unreachable(format!("sending: {e}")))?;
    let mut got: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    let mut eof = false;
    loop {
        if let Some(done) = reply(&got, eof)? {
            return Ok(done);
        }
        if eof {
            return Err(HookFailure::BadReply("closed before a whole reply".into()));
        }
        if got.len() > MAX_REPLY {
            return Err(HookFailure::BadReply(format!(
                "longer than {MAX_REPLY} bytes"
            )));
        }
        buf.clear();
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) => eof = true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(HookFailure::Unreachable(format!("reading: {e}"))),
        }
    }
}

/// A whole reply in `got`, if there is one yet (`eof`: the server has closed).
fn reply(got: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, HookFailure> {
    let head = match parse_response_head(got) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => return Err(HookFailure::BadReply(e.to_string())),
    };
    let body = &got[head.len..];
    if head.chunked {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        d.decode(body, &mut out)
            .map_err(|e| HookFailure::BadReply(e.to_string()))?;
        return Ok(d.done.then_some((head.status, out)));
    }
    match head.content_length {
        Some(n) if body.len() >= n => Ok(Some((head.status, body[..n].to_vec()))),
        Some(_) => Ok(None),
        None if eof => Ok(Some((head.status, body.to_vec()))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_urls() {
        let u = HookUrl::parse("http://127.0.0.1:8085/api/v1/streams?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8085));
        assert_eq!(u.target, "/api/v1/streams?x=1");
        assert_eq!(u.to_string(), "http://127.0.0.1:8085/api/v1/streams?x=1");
        let u = HookUrl::parse("http://hooks.example").unwrap();
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        let u = HookUrl::parse("http://[::1]:81/h").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        for bad in ["https://a/h", "http://:80/h", "http://a:x/h", "http://a/ b"] {
            assert!(HookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_by_length_chunks_or_close() {
        let r = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n0", false).unwrap();
        assert_eq!(r, Some((200, b"0".to_vec())));
        assert_eq!(
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n0", false).unwrap(),
            None
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n0\r\n0\r\n\r\n";
        assert_eq!(reply(chunked, false).unwrap(), Some((200, b"0".to_vec())));
        let close = b"HTTP/1.0 403 Forbidden\r\n\r\nno";
        assert_eq!(reply(close, false).unwrap(), None);
        assert_eq!(reply(close, true).unwrap(), Some((403, b"no".to_vec())));
        assert!(reply(b"SSH-2.0-x\r\n\r\n", false).is_err());
    }
}
