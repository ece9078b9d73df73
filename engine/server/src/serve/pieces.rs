//! Response pieces the HTTP routes share: a playlist (the shared text with a viewer's query
//! after every URI) and a plain-text answer. Pure functions: no socket, no clock.

use bytes::Bytes;
use edge_core::hls::llhls;
use edge_core::http::{self, Method, Request};

/// A playlist response: the head, then the shared text with `suffix` (a viewer's query)
/// after every URI, nothing copied. The TS playlist is sent so too.
pub(crate) fn playlist_pieces(
    req: &Request,
    text: &Bytes,
    uri_ends: &[usize],
    suffix: Option<&Bytes>,
    cache: &str,
) -> Vec<Bytes> {
    let len = text.len() + suffix.map_or(0, |s| s.len() * uri_ends.len());
    let head = http::response_head(
        200,
        "application/vnd.apple.mpegurl",
        Some(len),
        cache,
        req.keep_alive,
    );
    let mut pieces = vec![head];
    if req.method != Method::Head {
        match suffix {
            Some(s) => pieces.extend(llhls::with_suffix(text, uri_ends, s)),
            None => pieces.push(text.clone()),
        }
    }
    pieces
}

/// A plain-text response (an error's reason): the head, and the body unless it is HEAD.
pub(crate) fn text_response(status: u16, body: String, cache: &str, req: &Request) -> Vec<Bytes> {
    let head = http::response_head(
        status,
        "text/plain",
        Some(body.len()),
        cache,
        req.keep_alive,
    );
    if req.method == Method::Head {
        vec![head]
    } else {
        vec![head, Bytes::from(body)]
    }
}
