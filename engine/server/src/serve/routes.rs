//! HTTP routing as a pure function: a parsed request and a read-only view of the node in,
//! the whole response out (status, Content-Type, Content-Length, Cache-Control, CORS, HEAD
//! without a body, keep-alive) and what the driver must do besides ([`Reply::drain`]).
//!
//! Caching, by what a URL names:
//! - a segment never changes: `public, max-age=86400, immutable`;
//! - a playlist is short-lived: `max-age` of half the target duration, `private` when it
//!   carries a viewer's token (its segment URIs do);
//! - everything else, errors included: `no-cache` (a refusal: `no-store`).
//!
//! Must not: touch a socket, a shard's fields or a clock, or decide what only the driver can
//! (waiting for a pull, serving a download under way, access hooks): those run before
//! [`respond`], in the connection driver.

use std::sync::Arc;

use bytes::Bytes;
use edge_core::access::Mode;
use edge_core::hls::HlsSnapshot;
use edge_core::http::{self, Method, PlayerLib, Request, Route};
use edge_core::StreamKey;

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

/// What a response needs of the node, read-only.
pub(crate) trait NodeView {
    /// The HLS state of `key` as this shard knows it.
    fn hls(&self, key: &StreamKey) -> Option<Arc<HlsSnapshot>>;
    /// How plays of `app` are checked (a token mode puts the viewer's query on segment URIs).
    fn play_mode(&self, app: &str) -> Mode;
    fn health_json(&self) -> String;
    fn streams_json(&self) -> String;
    fn metrics_text(&self) -> String;
    fn summary_json(&self) -> String;
    /// The registry's view of the cluster (`None` without `--registry`).
    fn cluster_json(&self) -> Option<String>;
    fn draining(&self) -> bool;
    /// `--admin-token`.
    fn admin_token(&self) -> Option<&str>;
    fn console_page(&self) -> Bytes;
    fn player_page(&self) -> Bytes;
    /// A player library from `--player-assets` (`None` without it).
    fn player_lib(&self, lib: PlayerLib) -> Option<Bytes>;
}

/// A response, and what the driver does besides writing it.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The head, then the body's pieces (shared, not copied).
    pub pieces: Vec<Bytes>,
    pub keep_alive: bool,
    /// `POST /api/v1/drain` with the admin token: start a drain.
    pub drain: bool,
}

/// The response to a request that streams nothing (the FLV viewer and the waits are the
/// driver's).
pub(crate) fn respond(req: &Request, node: &impl NodeView) -> Reply {
    let keep_alive = req.keep_alive;
    let head_only = req.method == Method::Head;
    let reply = |status: u16, ctype: &str, cache: &str, body: Bytes| {
        let head = http::response_head(status, ctype, Some(body.len()), cache, keep_alive);
        let pieces = if head_only || body.is_empty() {
            vec![head]
        } else {
            vec![head, body]
        };
        Reply {
            pieces,
            keep_alive,
            drain: false,
        }
    };
    let text = |status: u16, body: &'static str| {
        reply(
            status,
            TEXT,
            "no-cache",
            Bytes::from_static(body.as_bytes()),
        )
    };
    let json = |body: String| reply(200, JSON, "no-cache", Bytes::from(body));
    let get = matches!(req.method, Method::Get | Method::Head);
    match (req.method, Route::parse(&req.path)) {
        (Method::Options, _) => reply(204, "", "no-cache", Bytes::new()),
        (_, Route::Health) if get => json(node.health_json()),
        (_, Route::Streams) if get => json(node.streams_json()),
        (_, Route::Summary) if get => json(node.summary_json()),
        (_, Route::Cluster) if get => match node.cluster_json() {
            Some(body) => json(body),
            None => text(404, "no cluster: start with --registry\n"),
        },
        (_, Route::Metrics) if get => reply(
            200,
            "text/plain; version=0.0.4",
            "no-cache",
            Bytes::from(node.metrics_text()),
        ),
        (_, Route::Playlist(key)) if get => match node.hls(&key) {
            Some(hls) if hls.ts_carries => playlist(req, &key, &hls, node),
            Some(_) => text(404, NO_TS),
            None => text(404, "no such stream\n"),
        },
        (_, Route::Segment(key, seq)) if get => {
            match node
                .hls(&key)
                .as_ref()
                .filter(|h| h.ts_carries)
                .and_then(|h| h.segment(seq).cloned())
            {
                Some(seg) => {
                    let head = http::response_head(
                        200,
                        "video/mp2t",
                        Some(seg.len),
                        "public, max-age=86400, immutable",
                        keep_alive,
                    );
                    let mut pieces = Vec::with_capacity(1 + seg.pieces.len());
                    pieces.push(head);
                    if !head_only {
                        pieces.extend(seg.pieces.iter().cloned());
                    }
                    Reply {
                        pieces,
                        keep_alive,
                        drain: false,
                    }
                }
                None => text(404, "no such segment\n"),
            }
        }
        (_, Route::Ll(key, file)) if get => {
            let hls = node.hls(&key);
            let ll = hls.as_ref().and_then(|h| h.ll.as_deref());
            if hls.is_some() && ll.is_none() {
                return text(404, NO_LL);
            }
            Reply {
                pieces: super::ll::respond(req, file, ll, node.play_mode(key.app())),
                keep_alive,
                drain: false,
            }
        }
        // HTTP-FLV is sent chunked, which HTTP/1.0 does not have.
        (Method::Get, Route::Flv(_)) => text(505, "HTTP-FLV needs HTTP/1.1\n"),
        // HEAD of a live FLV stream: the head a GET would get, no body, and the end.
        (Method::Head, Route::Flv(_)) => Reply {
            pieces: vec![http::flv_response_head()],
            keep_alive: false,
            drain: false,
        },
        (_, Route::Ready) if get && node.draining() => text(503, "draining\n"),
        (_, Route::Ready) if get => text(200, "ready\n"),
        (Method::Post, Route::Drain) => match node.admin_token() {
            None => text(403, "no --admin-token is set: drain with SIGTERM\n"),
            Some(token) if bearer_matches(req.bearer.as_deref(), token) => Reply {
                drain: true,
                ..text(202, "draining\n")
            },
            Some(_) => text(401, "Authorization: Bearer <--admin-token> required\n"),
        },
        (_, Route::Console) if get => reply(200, HTML, "max-age=60", node.console_page()),
        (_, Route::Player) if get => reply(200, HTML, "max-age=60", node.player_page()),
        (_, Route::PlayerAsset(lib)) if get => match node.player_lib(lib) {
            Some(body) => reply(
                200,
                "text/javascript; charset=utf-8",
                "public, max-age=3600",
                body,
            ),
            None => text(
                404,
                "no local player libraries: start with --player-assets DIR\n",
            ),
        },
        _ if get => text(404, "not found\n"),
        _ => text(405, "method not allowed\n"),
    }
}

/// Why a stream with a TS playlist has no LL-HLS (the player falls back to TS on it).
const NO_LL: &str = "no LL-HLS for this stream here (--ll-hls off, or an edge of an HLS \
                     origin): play its .m3u8\n";

/// Why a stream with segments has no TS playlist.
const NO_TS: &str = "MPEG-TS cannot carry this stream's codec: play its LL-HLS, llhls.m3u8\n";

/// A live playlist. Under token or hook play, segment URIs carry the viewer's query (players
/// drop the playlist's query when they resolve relative URIs): the pieces are the shared
/// playlist's, with the one query between them.
fn playlist(req: &Request, key: &StreamKey, hls: &HlsSnapshot, node: &impl NodeView) -> Reply {
    let suffix = match &req.query {
        Some(q) if !q.is_empty() && node.play_mode(key.app()) != Mode::None => {
            Some(Bytes::from(format!("?{q}")))
        }
        _ => None,
    };
    // Short enough that a player never sees a playlist older than half a target; private
    // when it carries a viewer's token.
    let cache = match suffix {
        Some(_) => format!("private, max-age={}", hls.target_duration_s / 2),
        None => format!("max-age={}", hls.target_duration_s / 2),
    };
    let pieces =
        super::pieces::playlist_pieces(req, &hls.playlist, &hls.uri_ends, suffix.as_ref(), &cache);
    Reply {
        pieces,
        keep_alive: req.keep_alive,
        drain: false,
    }
}

/// A refused request: `status` (a play's 403, 410 or 503, or early data's 425) with the
/// reason in the body, never the token.
pub(crate) fn denial(status: u16, reason: &str, req: &Request) -> Vec<Bytes> {
    super::pieces::text_response(status, format!("{reason}\n"), "no-store", req)
}

/// Compares the presented token with the admin token in time independent of where they
/// differ.
fn bearer_matches(given: Option<&str>, token: &str) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::hls::{HlsConfig, Segmenter, VecStore};
    use edge_core::media::{Frame, FrameFlags, MediaKind};

    /// A node with one stream, `live/x`, that has ended with a few 2 s segments.
    struct Node {
        hls: Arc<HlsSnapshot>,
        play: Mode,
        draining: bool,
        admin: Option<String>,
        cluster: Option<String>,
        libs: bool,
    }

    impl Default for Node {
        fn default() -> Self {
            let mut s = Segmenter::new(HlsConfig::default(), VecStore, "x");
            let mut avcc = vec![0x17, 0, 0, 0, 0];
            avcc.extend([
                1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3,
            ]);
            let header = FrameFlags {
                sync_point: false,
                header: true,
            };
            s.handle_frame(&Frame::new(MediaKind::Video, 0, header, avcc.into()))
                .unwrap();
            for n in 0..150u64 {
                let key = n % 25 == 0;
                let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 2];
                body.extend([if key { 0x65 } else { 0x41 }, 0xab]);
                let flags = FrameFlags {
                    sync_point: key,
                    header: false,
                };
                s.handle_frame(&Frame::new(MediaKind::Video, n * 40, flags, body.into()))
                    .unwrap();
            }
            Node {
                hls: Arc::new(s.handle_end()),
                play: Mode::None,
                draining: false,
                admin: None,
                cluster: None,
                libs: false,
            }
        }
    }

    impl NodeView for Node {
        fn hls(&self, key: &StreamKey) -> Option<Arc<HlsSnapshot>> {
            (key.as_str() == "live/x").then(|| Arc::clone(&self.hls))
        }
        fn play_mode(&self, _app: &str) -> Mode {
            self.play
        }
        fn health_json(&self) -> String {
            "{\"status\":\"ok\"}".into()
        }
        fn streams_json(&self) -> String {
            "{\"streams\":[]}".into()
        }
        fn metrics_text(&self) -> String {
            "edge_up 1\n".into()
        }
        fn summary_json(&self) -> String {
            "{\"draining\":false}".into()
        }
        fn cluster_json(&self) -> Option<String> {
            self.cluster.clone()
        }
        fn draining(&self) -> bool {
            self.draining
        }
        fn admin_token(&self) -> Option<&str> {
            self.admin.as_deref()
        }
        fn console_page(&self) -> Bytes {
            Bytes::from_static(b"<html>console</html>")
        }
        fn player_page(&self) -> Bytes {
            Bytes::from_static(b"<html>player</html>")
        }
        fn player_lib(&self, _lib: PlayerLib) -> Option<Bytes> {
            self.libs.then(|| Bytes::from_static(b"var Hls;"))
        }
    }

    fn request(method: &str, target: &str, extra: &str) -> Request {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        edge_core::http::parse_request(raw.as_bytes())
            .unwrap()
            .unwrap()
            .0
    }

    /// The response as a client reads it: status, head text, body.
    fn send(node: &Node, method: &str, target: &str, extra: &str) -> (u16, String, Vec<u8>, Reply) {
        let r = respond(&request(method, target, extra), node);
        let all: Vec<u8> = r.pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let head = edge_core::http::parse_response_head(&all).unwrap().unwrap();
        let text = String::from_utf8_lossy(&all[..head.len]).into_owned();
        let body = all[head.len..].to_vec();
        if let Some(len) = head.content_length {
            if method != "HEAD" {
                assert_eq!(body.len(), len, "{target}: Content-Length");
            }
        }
        (head.status, text, body, r)
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    #[test]
    fn options_answers_204_with_cors() {
        let (status, head, body, _) = send(&Node::default(), "OPTIONS", "/live/x.m3u8", "");
        assert_eq!(status, 204);
        assert_eq!(header(&head, "Access-Control-Allow-Origin"), Some("*"));
        assert!(body.is_empty());
    }

    #[test]
    fn the_json_apis_are_uncached_json() {
        let node = Node::default();
        for (path, body) in [
            ("/healthz", "{\"status\":\"ok\"}"),
            ("/api/v1/streams", "{\"streams\":[]}"),
            ("/api/v1/summary", "{\"draining\":false}"),
        ] {
            let (status, head, got, _) = send(&node, "GET", path, "");
            assert_eq!(status, 200, "{path}");
            assert_eq!(header(&head, "Content-Type"), Some(JSON), "{path}");
            assert_eq!(header(&head, "Cache-Control"), Some("no-cache"), "{path}");
            assert_eq!(got, body.as_bytes(), "{path}");
        }
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let (status, head, body, _) = send(&Node::default(), "GET", "/metrics", "");
        assert_eq!(status, 200);
        assert_eq!(
            header(&head, "Content-Type"),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(body, b"edge_up 1\n");
    }

    #[test]
    fn the_cluster_is_a_404_without_a_registry() {
        let mut node = Node::default();
        let (status, _, body, _) = send(&node, "GET", "/api/v1/cluster", "");
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("--registry"));
        node.cluster = Some("{\"nodes\":[]}".into());
        assert_eq!(send(&node, "GET", "/api/v1/cluster", "").0, 200);
    }

    #[test]
    fn a_playlist_is_cached_half_a_target_and_shared_whole() {
        let node = Node::default();
        let (status, head, body, r) = send(&node, "GET", "/live/x.m3u8", "");
        assert_eq!(status, 200);
        assert_eq!(
            header(&head, "Content-Type"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(header(&head, "Cache-Control"), Some("max-age=1"));
        assert_eq!(body, node.hls.playlist.to_vec());
        assert_eq!(r.pieces.len(), 2, "the head and the shared playlist");
    }

    #[test]
    fn a_token_goes_on_every_segment_uri_and_the_playlist_is_private() {
        let mut node = Node {
            play: Mode::Token,
            ..Node::default()
        };
        let (status, head, body, _) = send(&node, "GET", "/live/x.m3u8?token=abc", "");
        assert_eq!(status, 200);
        assert_eq!(header(&head, "Cache-Control"), Some("private, max-age=1"));
        let text = String::from_utf8(body).unwrap();
        let uris: Vec<&str> = text
            .lines()
            .filter(|l| l.ends_with(".ts?token=abc"))
            .collect();
        assert_eq!(uris.len(), node.hls.uri_ends.len(), "{text}");
        // Without a token mode the query stays off the URIs.
        node.play = Mode::None;
        let (_, _, body, _) = send(&node, "GET", "/live/x.m3u8?token=abc", "");
        assert!(!String::from_utf8(body).unwrap().contains("?token"));
    }

    #[test]
    fn a_missing_stream_or_segment_is_a_404() {
        let node = Node::default();
        let (status, head, _, _) = send(&node, "GET", "/live/nope.m3u8", "");
        assert_eq!(
            (status, header(&head, "Cache-Control")),
            (404, Some("no-cache"))
        );
        assert_eq!(send(&node, "GET", "/live/x-999999.ts", "").0, 404);
        assert_eq!(send(&node, "GET", "/nowhere", "").0, 404);
    }

    #[test]
    fn a_segment_is_immutable_and_served_from_its_shared_pieces() {
        let node = Node::default();
        let seg = node.hls.segments[0].clone();
        let path = format!("/live/x-{}.ts", seg.seq.0);
        let (status, head, body, r) = send(&node, "GET", &path, "");
        assert_eq!(status, 200);
        assert_eq!(header(&head, "Content-Type"), Some("video/mp2t"));
        assert_eq!(
            header(&head, "Cache-Control"),
            Some("public, max-age=86400, immutable")
        );
        assert_eq!(body.len(), seg.len);
        assert_eq!(r.pieces.len(), 1 + seg.pieces.len());
    }

    #[test]
    fn head_gets_the_head_a_get_would_get_and_no_body() {
        let node = Node::default();
        let seg = node.hls.segments[0].clone();
        let path = format!("/live/x-{}.ts", seg.seq.0);
        let (status, head, body, r) = send(&node, "HEAD", &path, "");
        assert_eq!(status, 200);
        assert_eq!(
            header(&head, "Content-Length"),
            Some(seg.len.to_string().as_str())
        );
        assert!(body.is_empty());
        assert_eq!(r.pieces.len(), 1);
        let (_, head, body, _) = send(&node, "HEAD", "/live/x.m3u8", "");
        assert_eq!(
            header(&head, "Content-Length"),
            Some(node.hls.playlist.len().to_string().as_str())
        );
        assert!(body.is_empty());
    }

    #[test]
    fn flv_needs_http_1_1_and_head_gets_the_stream_head_then_the_end() {
        let node = Node::default();
        let raw = "GET /live/x.flv HTTP/1.0\r\nHost: t\r\n\r\n";
        let req = edge_core::http::parse_request(raw.as_bytes())
            .unwrap()
            .unwrap()
            .0;
        let all: Vec<u8> = respond(&req, &node).pieces.concat();
        assert!(all.starts_with(b"HTTP/1.1 505 "));
        let (status, _, _, r) = send(&node, "HEAD", "/live/x.flv", "");
        assert_eq!(status, 200);
        assert!(!r.keep_alive, "a HEAD of a live stream ends its connection");
    }

    #[test]
    fn readiness_follows_the_drain() {
        let mut node = Node::default();
        assert_eq!(send(&node, "GET", "/readyz", "").0, 200);
        node.draining = true;
        let (status, _, body, _) = send(&node, "GET", "/readyz", "");
        assert_eq!((status, body.as_slice()), (503, &b"draining\n"[..]));
    }

    #[test]
    fn a_drain_needs_the_admin_token() {
        let mut node = Node::default();
        let (status, _, _, r) = send(&node, "POST", "/api/v1/drain", "");
        assert_eq!((status, r.drain), (403, false), "no token configured");
        node.admin = Some("0123456789abcdef".into());
        let (status, _, _, r) = send(&node, "POST", "/api/v1/drain", "");
        assert_eq!((status, r.drain), (401, false), "none presented");
        let wrong = "Authorization: Bearer 0123456789abcdeX\r\n";
        assert_eq!(send(&node, "POST", "/api/v1/drain", wrong).0, 401);
        let right = "Authorization: Bearer 0123456789abcdef\r\n";
        let (status, _, _, r) = send(&node, "POST", "/api/v1/drain", right);
        assert_eq!((status, r.drain), (202, true));
        assert_eq!(
            send(&node, "GET", "/api/v1/drain", right).0,
            404,
            "GET is no drain"
        );
    }

    #[test]
    fn the_pages_are_html_and_the_libraries_need_player_assets() {
        let mut node = Node::default();
        for path in ["/", "/player?stream=live/x"] {
            let (status, head, _, _) = send(&node, "GET", path, "");
            assert_eq!(status, 200, "{path}");
            assert_eq!(header(&head, "Content-Type"), Some(HTML));
            assert_eq!(header(&head, "Cache-Control"), Some("max-age=60"));
        }
        let (status, _, body, _) = send(&node, "GET", "/player/hls.min.js", "");
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("--player-assets"));
        node.libs = true;
        let (status, head, _, _) = send(&node, "GET", "/player/hls.min.js", "");
        assert_eq!(status, 200);
        assert_eq!(header(&head, "Cache-Control"), Some("public, max-age=3600"));
    }

    #[test]
    fn other_methods_are_405() {
        let node = Node::default();
        assert_eq!(send(&node, "POST", "/live/x.m3u8", "").0, 405);
        assert_eq!(send(&node, "DELETE", "/healthz", "").0, 405);
    }

    #[test]
    fn connection_close_is_kept_and_said() {
        let node = Node::default();
        let (_, head, _, r) = send(&node, "GET", "/healthz", "Connection: close\r\n");
        assert!(!r.keep_alive);
        assert_eq!(header(&head, "Connection"), Some("close"));
        let (_, head, _, r) = send(&node, "GET", "/healthz", "");
        assert!(r.keep_alive);
        assert_eq!(header(&head, "Connection"), Some("keep-alive"));
    }

    #[test]
    fn a_denial_says_why_never_caches_and_head_gets_no_body() {
        let req = request("GET", "/live/x.m3u8?token=secret", "");
        let all = denial(403, "token: bad signature", &req).concat();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("Cache-Control: no-store\r\n"));
        assert!(text.ends_with("token: bad signature\n"));
        assert!(!text.contains("secret"));
        let head = request("HEAD", "/live/x.m3u8", "");
        assert_eq!(denial(410, "expired", &head).len(), 1);
    }
}
