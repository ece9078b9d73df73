//! HTTP/1.1 request parsing (httparse) and response heads, sans-IO.
//!
//! `parse_request` takes the connection's buffered bytes and returns one request and how many
//! bytes it used, so pipelined requests are served in order. Headers are limited to
//! [`MAX_HEAD_BYTES`]; request bodies are not accepted (the engine serves GET and HEAD).

use std::fmt::Write as _;

use bytes::Bytes;

use crate::hls::llhls::LlFile;
use crate::ids::SegmentSeq;
use crate::media::StreamKey;

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header lines a request may carry (browsers send about 20).
pub const MAX_HEADERS: usize = 64;
/// Largest request body accepted (a WHEP offer; see [`crate::webrtc::MAX_OFFER_BYTES`]).
pub const MAX_BODY_BYTES: usize = crate::webrtc::MAX_OFFER_BYTES;

/// Why a request is refused; each closes the connection after a 4xx.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    /// httparse rejected the bytes.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head grew past [`MAX_HEAD_BYTES`] without ending.
    #[error("request head exceeds {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// The request's body is chunked or longer than [`MAX_BODY_BYTES`].
    #[error(
        "request bodies are accepted only with a Content-Length of at most {MAX_BODY_BYTES} bytes"
    )]
    BodyNotAccepted,
}

impl HttpError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::BodyNotAccepted => 413,
            HttpError::Malformed(_) => 400,
        }
    }
}

/// Request methods the engine distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// `POST /api/v1/drain` (without a body) and a WHEP offer.
    Post,
    /// Ends a WHEP session.
    Delete,
    /// WHEP's trickle ICE, answered 405.
    Patch,
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`.
    pub keep_alive: bool,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The token of `Authorization: Bearer TOKEN`.
    pub bearer: Option<String>,
    /// `Early-Data: 1` (RFC 8470 §5.1): it came in TLS early data (0-RTT), which an attacker
    /// may replay, so only a safe method is answered (the others get 425 Too Early).
    pub early_data: bool,
    /// The body (`Content-Length` bytes, at most [`MAX_BODY_BYTES`]); empty for most requests.
    pub body: Bytes,
}

/// Parses one request from the front of `buf`. `Ok(None)`: need more bytes.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(buf).map_err(|e| match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        e => HttpError::Malformed(e.to_string()),
    })?;
    let consumed = match status {
        httparse::Status::Partial if buf.len() > MAX_HEAD_BYTES => {
            return Err(HttpError::HeadTooLarge)
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > MAX_HEAD_BYTES => return Err(HttpError::HeadTooLarge),
        httparse::Status::Complete(n) => n,
    };
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        _ => Method::Other,
    };
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut bearer = None;
    let mut early_data = false;
    let mut body_len = 0;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("authorization") {
            bearer = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim().to_string());
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body_len = value
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= MAX_BODY_BYTES)
                .ok_or(HttpError::BodyNotAccepted)?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::BodyNotAccepted);
        } else if h.name.eq_ignore_ascii_case("early-data") {
            early_data = value == "1";
        }
    }
    // The request is complete once its body is here too.
    let Some(body) = buf.get(consumed..consumed + body_len) else {
        return Ok(None);
    };
    let body = Bytes::copy_from_slice(body);
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Ok(Some((
        Request {
            method,
            path,
            query,
            keep_alive,
            version_minor: version,
            bearer,
            early_data,
            body,
        },
        consumed + body_len,
    )))
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/{app}/{stream}.flv`
    Flv(StreamKey),
    /// `/{app}/{stream}.m3u8`
    Playlist(StreamKey),
    /// `/{app}/{stream}-{seq}.ts`, the URIs playlists list (relative to the playlist).
    Segment(StreamKey, SegmentSeq),
    /// `/{app}/{stream}/{file}`: LL-HLS (the playlist, init segments, segments, parts).
    Ll(StreamKey, LlFile),
    /// `/{app}/{stream}/whep`: a WHEP offer (POST) for WebRTC playback.
    Whep(StreamKey),
    /// `/{app}/{stream}/whep/{id}`: a WHEP session (DELETE ends it).
    WhepSession(StreamKey, crate::webrtc::SessionId),
    Health,
    Metrics,
    Streams,
    /// `/api/v1/cluster`
    Cluster,
    /// `/readyz`: 200 while serving, 503 once draining.
    Ready,
    /// `/api/v1/drain` (POST, behind the admin token).
    Drain,
    /// `/api/v1/summary`: the machine-level figures.
    Summary,
    /// `/`: the console page.
    Console,
    /// `/player`: the player page (its stream is in the query).
    Player,
    /// `/player/{file}`: a player library served from `--player-assets`.
    PlayerAsset(PlayerLib),
    NotFound,
}

/// The player libraries the engine can serve from a local copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerLib {
    /// `hls.min.js` (hls.js).
    Hls,
    /// `mpegts.js` (mpegts.js, for HTTP-FLV).
    Mpegts,
}

impl PlayerLib {
    pub const ALL: [PlayerLib; 2] = [PlayerLib::Hls, PlayerLib::Mpegts];

    /// The file name, in `/player/{name}` and in `--player-assets DIR`.
    pub fn file_name(self) -> &'static str {
        match self {
            PlayerLib::Hls => "hls.min.js",
            PlayerLib::Mpegts => "mpegts.js",
        }
    }
}

impl Route {
    pub fn parse(path: &str) -> Route {
        match path {
            "/healthz" => return Route::Health,
            "/metrics" => return Route::Metrics,
            "/api/v1/streams" => return Route::Streams,
            "/api/v1/cluster" => return Route::Cluster,
            "/readyz" => return Route::Ready,
            "/api/v1/drain" => return Route::Drain,
            "/api/v1/summary" => return Route::Summary,
            "/" => return Route::Console,
            "/player" => return Route::Player,
            "/player/hls.min.js" => return Route::PlayerAsset(PlayerLib::Hls),
            "/player/mpegts.js" => return Route::PlayerAsset(PlayerLib::Mpegts),
            _ => {}
        }
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (Some(app), Some(file)) = (parts.next(), parts.next()) else {
            return Route::NotFound;
        };
        let key = |name: &str| StreamKey::new(app, name);
        if let Some((name, ll)) = file.split_once('/') {
            if ll == "whep" {
                return key(name).map_or(Route::NotFound, Route::Whep);
            }
            if let Some(id) = ll.strip_prefix("whep/") {
                return match (key(name), crate::webrtc::SessionId::parse(id)) {
                    (Some(k), Some(id)) => Route::WhepSession(k, id),
                    _ => Route::NotFound,
                };
            }
            return match (key(name), LlFile::parse(ll)) {
                (Some(k), Some(f)) => Route::Ll(k, f),
                _ => Route::NotFound,
            };
        }
        if let Some(k) = file.strip_suffix(".flv").and_then(key) {
            return Route::Flv(k);
        }
        if let Some(k) = file.strip_suffix(".m3u8").and_then(key) {
            return Route::Playlist(k);
        }
        if let Some((name, seq)) = file.strip_suffix(".ts").and_then(|f| f.rsplit_once('-')) {
            if let (Some(k), Ok(seq)) = (key(name), seq.parse::<u64>()) {
                return Route::Segment(k, SegmentSeq(seq));
            }
        }
        Route::NotFound
    }
}

/// Reason phrase for the statuses the engine sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        413 => "Payload Too Large",
        425 => "Too Early",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A 302 to `location` (an origin placing the stream on a coworker): no body, not cached.
pub fn redirect_head(location: &str, keep_alive: bool) -> Bytes {
    let mut h = String::from_utf8_lossy(&response_head(302, "", Some(0), "no-cache", keep_alive))
        .into_owned();
    // Before the blank line; a location with a line break cannot be a header.
    let safe: String = location.chars().filter(|c| !c.is_control()).collect();
    h.insert_str(h.len() - 2, &format!("Location: {safe}\r\n"));
    Bytes::from(h)
}

/// The head of an HTTP-FLV response: chunked, not cacheable, closed when the stream ends.
pub fn flv_response_head() -> Bytes {
    Bytes::from_static(
        b"HTTP/1.1 200 OK\r\nServer: edge-engine\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nConnection: close\r\n\r\n",
    )
}

/// The `Alt-Svc` field every response head carries, set once at start-up by a node that
/// serves HTTP/3 (`h3=":PORT"; ma=…`), so browsers move to it by themselves. The one piece
/// of process-wide state here: a setting, never changed after it is set.
static ALT_SVC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Announces HTTP/3 on `port` in every response head from now on (once; later calls are
/// ignored).
pub fn announce_http3(port: u16, max_age_s: u64) {
    let _ = ALT_SVC.set(format!("h3=\":{port}\"; ma={max_age_s}"));
}

/// Builds a response head. `content_length: None` means the body runs until close.
pub fn response_head(
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
    cache_control: &str,
    keep_alive: bool,
) -> Bytes {
    let mut h = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = write!(
        h,
        "HTTP/1.1 {status} {}\r\nServer: edge-engine\r\n",
        reason(status)
    );
    if !content_type.is_empty() {
        let _ = write!(h, "Content-Type: {content_type}\r\n");
    }
    if let Some(len) = content_length {
        let _ = write!(h, "Content-Length: {len}\r\n");
    }
    if let Some(alt) = ALT_SVC.get() {
        let _ = write!(h, "Alt-Svc: {alt}\r\n");
    }
    let _ = write!(
        h,
        "Cache-Control: {cache_control}\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    Bytes::from(h)
}

/// `head` (a [`response_head`]) with one more header line, before its blank line.
pub fn add_header(head: &Bytes, name: &str, value: &str) -> Bytes {
    let end = head.len().saturating_sub(2);
    let mut out = Vec::with_capacity(head.len() + name.len() + value.len() + 4);
    out.extend_from_slice(&head[..end]);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

/// A response head, as clients (loadgen's viewers, the tests, an HLS-origin pull) read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
    /// `Connection: close`: the server ends the connection after this response.
    pub close: bool,
    /// `Location` (a redirect's target), as sent.
    pub location: Option<String>,
    /// Bytes of the head, to consume from the buffer.
    pub len: usize,
}

/// Longest response head a client accepts.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 16 * 1024;

/// Parses a response head from the front of `buf`; `Ok(None)` wants more bytes.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD_BYTES => {
            Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let mut content_length = None;
            let mut chunked = false;
            let mut close = false;
            let mut location = None;
            for h in resp.headers.iter() {
                let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                if h.name.eq_ignore_ascii_case("content-length") {
                    content_length =
                        Some(v.parse().map_err(|_| {
                            HttpError::Malformed(format!("bad Content-Length {v}"))
                        })?);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && v.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close |= v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
                } else if h.name.eq_ignore_ascii_case("location") {
                    location = Some(v.to_string());
                }
            }
            Ok(Some(ResponseHead {
                status: resp.code.unwrap_or(0),
                content_length,
                chunked,
                close,
                location,
                len,
            }))
        }
        Err(e) => Err(HttpError::Malformed(e.to_string())),
    }
}

/// Decodes a chunked body incrementally (split anywhere).
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Data bytes left in the current chunk.
    left: usize,
    /// The CRLF after a chunk's data is next.
    need_crlf: bool,
    pub done: bool,
}

impl Dechunker {
    /// Moves decoded body bytes from the front of `input` to `out`; returns how many input
    /// bytes it consumed (partial framing stays unconsumed, for the next call).
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let start = input.len();
        let bad = |why: String| HttpError::Malformed(why);
        while !self.done {
            if self.left > 0 {
                let take = self.left.min(input.len());
                out.extend_from_slice(&input[..take]);
                input = &input[take..];
                self.left -= take;
                if self.left > 0 {
                    break;
                }
                self.need_crlf = true;
            }
            if self.need_crlf {
                if input.len() < 2 {
                    break;
                }
                if &input[..2] != b"\r\n" {
                    return Err(bad("chunk not followed by CRLF".into()));
                }
                input = &input[2..];
                self.need_crlf = false;
            }
            let Some(eol) = input.windows(2).position(|w| w == b"\r\n") else {
                if input.len() > 1024 {
                    return Err(bad("chunk size line too long".into()));
                }
                break;
            };
            let line = std::str::from_utf8(&input[..eol])
                .map_err(|_| bad("chunk size line is not text".into()))?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            input = &input[eol + 2..];
            if size == 0 {
                self.done = true;
            }
            self.left = size;
        }
        Ok(start - input.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks_at_every_split() {
        let wire = b"5\r\nhello\r\n3;x=y\r\n, w\r\n6\r\norld!!\r\n0\r\n\r\n";
        for at in 0..=wire.len() {
            let mut d = Dechunker::default();
            let mut pending = Vec::new();
            let mut out = Vec::new();
            for piece in [&wire[..at], &wire[at..]] {
                pending.extend_from_slice(piece);
                let used = d.decode(&pending, &mut out).unwrap();
                pending.drain(..used);
            }
            assert_eq!(out, b"hello, world!!", "split {at}");
            assert!(d.done);
        }
        assert!(Dechunker::default()
            .decode(b"zz\r\n", &mut Vec::new())
            .is_err());
    }

    #[test]
    fn response_heads() {
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.chunked, h.len),
            (200, Some(12), false, 39)
        );
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked && !h.close);
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close && h.location.is_none());
        let h = parse_response_head(
            b"HTTP/1.1 302 Found\r\nlocation: http://10.0.0.2:8080/a/b.m3u8?t=1 \r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 302);
        assert_eq!(
            h.location.as_deref(),
            Some("http://10.0.0.2:8080/a/b.m3u8?t=1")
        );
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\nX").unwrap(), None);
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert_eq!(
            parse_response_head(&vec![b'a'; 20_000]),
            Err(HttpError::Malformed("invalid HTTP version".into()))
        );
    }

    use super::*;

    #[test]
    fn a_drain_request_carries_its_bearer_token_and_no_body() {
        let (r, _) =
            parse_request(b"POST /api/v1/drain HTTP/1.1\r\nAuthorization: Bearer  s3cret \r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (r.method, r.bearer.as_deref()),
            (Method::Post, Some("s3cret"))
        );
        assert_eq!(Route::parse(&r.path), Route::Drain);
        let (r, _) = parse_request(b"POST /x HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.bearer, None, "only the Bearer scheme");
        assert_eq!(Route::parse("/readyz"), Route::Ready);
        assert_eq!(Route::parse("/api/v1/summary"), Route::Summary);
    }

    #[test]
    fn early_data_is_read_from_its_header_only_when_it_says_1() {
        let early = |head: &[u8]| parse_request(head).unwrap().unwrap().0.early_data;
        assert!(early(b"GET /x.m3u8 HTTP/1.1\r\nEarly-Data: 1\r\n\r\n"));
        assert!(!early(b"GET /x.m3u8 HTTP/1.1\r\nearly-data: 0\r\n\r\n"));
        assert!(!early(b"GET /x.m3u8 HTTP/1.1\r\n\r\n"));
        assert_eq!(reason(425), "Too Early");
    }

    #[test]
    fn a_body_completes_its_request_only_once_all_of_it_is_here_and_is_then_consumed() {
        let wire = b"POST /live/x/whep HTTP/1.1\r\nContent-Length: 5\r\n\r\nv=0\r\nGET /healthz HTTP/1.1\r\n\r\n";
        let head = wire.len() - 5 - 26;
        for at in head..head + 5 {
            assert_eq!(parse_request(&wire[..at]), Ok(None), "split {at}");
        }
        let (r, used) = parse_request(wire).unwrap().unwrap();
        assert_eq!((r.method, &r.body[..]), (Method::Post, &b"v=0\r\n"[..]));
        assert_eq!(
            Route::parse(&r.path),
            Route::Whep(StreamKey::new("live", "x").unwrap())
        );
        let (next, _) = parse_request(&wire[used..]).unwrap().unwrap();
        assert_eq!((next.method, next.path.as_str()), (Method::Get, "/healthz"));
        assert!(next.body.is_empty());
        let (del, _) = parse_request(b"DELETE /live/x/whep/0100000000000abc HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(del.method, Method::Delete);
        assert_eq!(
            Route::parse(&del.path),
            Route::WhepSession(
                StreamKey::new("live", "x").unwrap(),
                crate::webrtc::SessionId(0x0100_0000_0000_0abc)
            )
        );
        assert_eq!(Route::parse("/live/x/whep/zz"), Route::NotFound);
        assert_eq!(Route::parse("/live/x/whep/"), Route::NotFound);
    }

    #[test]
    fn pipelined_requests_at_every_split() {
        let wire = b"GET /live/x.flv?t=1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /healthz HTTP/1.0\r\n\r\n";
        for at in 0..=wire.len() {
            let mut buf = wire[..at].to_vec();
            let mut got = Vec::new();
            let feed = |buf: &mut Vec<u8>, got: &mut Vec<Request>| {
                while let Some((req, n)) = parse_request(buf).unwrap() {
                    buf.drain(..n);
                    got.push(req);
                }
            };
            feed(&mut buf, &mut got);
            buf.extend_from_slice(&wire[at..]);
            feed(&mut buf, &mut got);
            assert_eq!(got.len(), 2, "split {at}");
            assert_eq!(got[0].method, Method::Get);
            assert_eq!(got[0].path, "/live/x.flv");
            assert_eq!(got[0].query.as_deref(), Some("t=1"));
            assert!(got[0].keep_alive);
            assert_eq!(got[1].method, Method::Head);
            assert!(!got[1].keep_alive, "HTTP/1.0 defaults to close");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn limits_and_garbage() {
        assert!(matches!(
            parse_request(b"\x00\x01garbage\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(parse_request(&big), Err(HttpError::HeadTooLarge));
        let mut many = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("X-{i}: y\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse_request(&many), Err(HttpError::TooManyHeaders));
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&big), Err(HttpError::HeadTooLarge));
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc"),
            Err(HttpError::BodyNotAccepted)
        );
        let too_long = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert_eq!(
            parse_request(too_long.as_bytes()),
            Err(HttpError::BodyNotAccepted)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::BodyNotAccepted)
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost:"), Ok(None));
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("/live/x.flv"),
            Route::Flv(StreamKey::new("live", "x").unwrap())
        );
        assert_eq!(Route::parse("/healthz"), Route::Health);
        assert_eq!(Route::parse("/"), Route::Console);
        assert_eq!(Route::parse("/player"), Route::Player);
        assert_eq!(
            Route::parse("/player/mpegts.js"),
            Route::PlayerAsset(PlayerLib::Mpegts)
        );
        // An app named `player` still plays.
        assert_eq!(
            Route::parse("/player/x.flv"),
            Route::Flv(StreamKey::new("player", "x").unwrap())
        );
        assert_eq!(Route::parse("/live/x.mp4"), Route::NotFound);
        assert_eq!(Route::parse("/live/a/b.flv"), Route::NotFound);
        assert_eq!(Route::parse("/x.flv"), Route::NotFound);
        let k = StreamKey::new("live", "my-cam").unwrap();
        assert_eq!(
            Route::parse("/live/my-cam.m3u8"),
            Route::Playlist(k.clone())
        );
        assert_eq!(
            Route::parse("/live/my-cam-42.ts"),
            Route::Segment(k, SegmentSeq(42))
        );
        assert_eq!(Route::parse("/live/cam-x.ts"), Route::NotFound);
    }

    #[test]
    fn heads() {
        let h = response_head(200, "video/x-flv", None, "no-cache", false);
        let s = std::str::from_utf8(&h).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Connection: close\r\n") && !s.contains("Content-Length"));
        let h = response_head(404, "text/plain", Some(10), "no-cache", true);
        assert!(std::str::from_utf8(&h)
            .unwrap()
            .contains("Content-Length: 10\r\n"));
    }
}
