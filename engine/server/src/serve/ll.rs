//! LL-HLS responses as a pure function, like [`super::routes`]: the playlist (full, delta,
//! or the one a blocking reload waited for), init segments, segments and parts, from the
//! stream's [`LlSnapshot`]. The waiting itself is the connection driver's, before this.
//!
//! Caching, by what a URL names (so a CDN in front can keep what is fixed by its URL):
//! - init segments, segments and parts never change: `public, max-age=86400, immutable`;
//! - a blocking reload (`_HLS_msn`) is a playlist that holds the part its query names, the
//!   same for everyone who asks: `public, max-age` of six target durations;
//! - the live playlist without a query changes with every part: `no-cache`;
//! - any of them carrying a viewer's token (its URIs do): `private`.
//!
//! Must not: wait, touch a socket or a clock, or count anything.

use bytes::Bytes;
use edge_core::access::Mode;
use edge_core::hls::blocking::{self, Directives, Skip};
use edge_core::hls::llhls::{LlFile, LlSnapshot};
use edge_core::http::{self, Method, Request};

use super::pieces::{playlist_pieces, text_response};

const IMMUTABLE: &str = "public, max-age=86400, immutable";

/// The response to an LL-HLS request, head and body pieces (`snap`: the stream's LL-HLS, if
/// it has any; `play_mode`: how its app's plays are checked).
pub(crate) fn respond(
    req: &Request,
    file: LlFile,
    snap: Option<&LlSnapshot>,
    play_mode: Mode,
) -> Vec<Bytes> {
    let head_only = req.method == Method::Head;
    let reply = |status: u16, ctype: &str, cache: &str, body: Vec<Bytes>| {
        let len = body.iter().map(Bytes::len).sum();
        let mut pieces = vec![http::response_head(
            status,
            ctype,
            Some(len),
            cache,
            req.keep_alive,
        )];
        if !head_only {
            pieces.extend(body);
        }
        pieces
    };
    let text = |status: u16, body: String| text_response(status, body, "no-cache", req);
    let Some(snap) = snap else {
        return text(404, "no such stream\n".into());
    };
    let found = |what: Option<Vec<Bytes>>, ctype: &str| match what {
        Some(body) => reply(200, ctype, IMMUTABLE, body),
        None => text(404, "not found\n".into()),
    };
    match file {
        LlFile::Playlist => playlist(req, snap, play_mode),
        LlFile::Init(id) => found(snap.init(id).map(|b| vec![b.clone()]), "video/mp4"),
        LlFile::Segment(seq) => found(
            snap.segment(seq).map(|s| s.pieces().cloned().collect()),
            "video/mp4",
        ),
        LlFile::Part(seq, index) => {
            found(snap.part(seq, index).map(|p| p.pieces.clone()), "video/mp4")
        }
    }
}

fn playlist(req: &Request, snap: &LlSnapshot, play_mode: Mode) -> Vec<Bytes> {
    let directives = match Directives::parse(req.query.as_deref()) {
        Ok(d) => d,
        Err(e) => return text_response(400, format!("{e}\n"), "no-cache", req),
    };
    let rendered = match (directives.skip, &snap.delta) {
        (Skip::Yes | Skip::V2, Some(delta)) => delta,
        _ => &snap.playlist,
    };
    // The viewer's own query (a token) goes on every URI, as on the TS playlist's.
    let suffix = req
        .query
        .as_deref()
        .map(blocking::viewer_query)
        .filter(|q| !q.is_empty() && play_mode != Mode::None)
        .map(|q| Bytes::from(format!("?{q}")));
    let cache = match (directives.msn, &suffix) {
        (_, Some(_)) => "private, no-cache".to_string(),
        (Some(_), None) => format!("public, max-age={}", 6 * snap.target_duration_s),
        (None, None) => "no-cache".to_string(),
    };
    playlist_pieces(
        req,
        &rendered.text,
        &rendered.uri_ends,
        suffix.as_ref(),
        &cache,
    )
}
