//! The HTTP/1.1 connection driver: keep-alive and pipelined requests parsed by edge-core,
//! answered in order; `/{app}/{stream}.flv` turns the connection into an HTTP-FLV viewer.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edge_core::access::{Action, HookEvent, Mode};
use edge_core::http::{self, HttpError, Method, Request, Route};
use edge_core::StreamKey;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use tracing::{debug, info};

use crate::access::{self, Ask, Denial};
use crate::conn::Conn;
use crate::contain;
use crate::outlet::{finish, write_bufs, Close, Outlet, Wire};
use crate::pulled::{self, Served};
use crate::shard::Shard;
use crate::stats::{Counter, Protocol};

const READ_BUF: usize = 4 * 1024;
const HTML: &str = "text/html; charset=utf-8";

/// Counts a connection in `edge_hls_viewers`, and as a viewer of the stream whose playlist
/// it fetched first, until it closes.
struct HlsViewer(Rc<Shard>, StreamKey);

impl HlsViewer {
    fn new(shard: &Rc<Shard>, key: &StreamKey) -> Self {
        shard.stats().hls_viewers.inc();
        shard.stats.count_viewer(shard.id, key, Protocol::Hls, true);
        HlsViewer(Rc::clone(shard), key.clone())
    }
}

impl Drop for HlsViewer {
    fn drop(&mut self) {
        self.0.stats().hls_viewers.dec();
        self.0
            .stats
            .count_viewer(self.0.id, &self.1, Protocol::Hls, false);
    }
}

/// Serves one HTTP (or HTTPS) connection until it closes; `fd` is its socket's.
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: Conn,
    peer: Option<SocketAddr>,
    fd: std::os::fd::RawFd,
) {
    let client_id = shard.next_conn_id();
    // Set at this connection's first playlist request: it counts as an HLS viewer until it
    // closes.
    let mut hls_viewer: Option<HlsViewer> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(READ_BUF);
    loop {
        // Answer every complete request already buffered (pipelining), in order.
        loop {
            let parsed = match contain::peer_input(|| http::parse_request(&pending)) {
                Ok(p) => p,
                Err(panic) => {
                    shard.stats().connection_errors.inc();
                    shard.stats().peer_panics.inc();
                    tracing::warn!(shard = %shard.id, "http connection closed: {panic}");
                    return;
                }
            };
            match parsed {
                Ok(Some((mut req, used))) => {
                    pending.drain(..used);
                    shard.stats().http_requests.inc();
                    let route = Route::parse(&req.path);
                    // Every play request is checked before anything is done for it: no
                    // viewer joins and no edge pull starts for a refused one.
                    if let Some((key, hls)) = play_target(&req, &route) {
                        let ask = Ask {
                            action: Action::Play,
                            key,
                            query: req.query.as_deref(),
                            peer,
                            tc_url: &req.path,
                            client_id,
                            hls,
                        };
                        if let Err(denial) = access::authorize(&shard, &ask).await {
                            let refusal = denial_response(&denial, &req);
                            if write_counted(&shard, &mut stream, refusal).await.is_err()
                                || !req.keep_alive
                            {
                                return;
                            }
                            continue;
                        }
                    }
                    // Draining: responses end their connections, and an HLS viewer's next
                    // playlist is fetched from a peer. HLS responses served here keep theirs:
                    // a viewer that is not moved yet (or has no peer) reloads over it after
                    // the listeners have closed. After an upgrade handover the listeners
                    // are the successor's, and everyone reconnects there.
                    let control = &shard.stats.control;
                    let draining = control.is_draining();
                    let hls = matches!(route, Route::Playlist(_) | Route::Segment(..));
                    let handed_over = draining && control.handed_over();
                    let close = match &route {
                        // After a handover, a viewer leaves with a playlist once the
                        // successor can continue where it is.
                        Route::Playlist(key) if handed_over => {
                            shard.successor_ready(key, &req.path, req.query.as_deref())
                        }
                        _ => draining && !hls,
                    };
                    if close {
                        req.keep_alive = false;
                    }
                    let migrate = match &route {
                        Route::Playlist(key) if draining => {
                            shard.drain_redirect(key, &req.path, req.query.as_deref())
                        }
                        _ => None,
                    };
                    if let Some(location) = migrate {
                        // Kept alive: a player that reloads the URL it was given (ffmpeg)
                        // is sent on over this connection after the listeners have closed.
                        shard.stats().drain_redirects.inc();
                        let head = http::redirect_head(&location, req.keep_alive);
                        if write_counted(&shard, &mut stream, vec![head])
                            .await
                            .is_err()
                            || !req.keep_alive
                        {
                            return;
                        }
                        continue;
                    }
                    // Origin role: a stream another node holds is fetched there.
                    let elsewhere = match &route {
                        Route::Flv(key) | Route::Playlist(key)
                            if matches!(req.method, Method::Get | Method::Head) =>
                        {
                            shard.http_redirect(key, &req.path, req.query.as_deref())
                        }
                        _ => None,
                    };
                    if let Some(location) = elsewhere {
                        shard.stats().cluster_redirects.inc();
                        let head = http::redirect_head(&location, req.keep_alive);
                        if write_counted(&shard, &mut stream, vec![head])
                            .await
                            .is_err()
                            || !req.keep_alive
                        {
                            return;
                        }
                        continue;
                    }
                    if let (Route::Playlist(key), None) = (&route, &hls_viewer) {
                        hls_viewer = Some(HlsViewer::new(&shard, key));
                    }
                    match route {
                        Route::Flv(key) if req.method == Method::Get && req.version_minor >= 1 => {
                            let query = req.query.as_deref().map(Into::into);
                            let viewer = FlvViewer {
                                key,
                                query,
                                peer,
                                id: client_id,
                                path: req.path.clone(),
                            };
                            return serve_flv(shard, stream, fd, viewer).await;
                        }
                        // Edge mode: a playlist request starts or keeps the pull, and the
                        // first one waits (bounded) for the first segment.
                        Route::Playlist(key) if shard.pulls_stream(&key) || shard.pulls_hls() => {
                            shard.hls_demand(&key, req.query.as_deref());
                            if shard.hls(&key).is_none() {
                                shard.wait_for_hls(&key).await;
                            }
                            // An HLS origin that fails: its status, at once, for a while.
                            if let (None, Some(status)) =
                                (shard.hls(&key), shard.hls_unavailable(&key))
                            {
                                let head_only = req.method == Method::Head;
                                let refusal =
                                    pulled::error_response(status, req.keep_alive, head_only);
                                if write_counted(&shard, &mut stream, refusal).await.is_err()
                                    || !req.keep_alive
                                {
                                    return;
                                }
                                continue;
                            }
                        }
                        // HLS origin: a segment that is not here is served as it arrives.
                        Route::Segment(key, seq)
                            if matches!(req.method, Method::Get | Method::Head)
                                && shard.hls(&key).is_none_or(|h| h.segment(seq).is_none()) =>
                        {
                            if let Some(seg) = shard.pulled_segment(&key, seq.0) {
                                let wait = Duration::from_millis(
                                    2 * shard.config.upstream_timeout_ms + 1_000,
                                );
                                let head_only = req.method == Method::Head;
                                let (served, n) = pulled::serve(
                                    &mut stream,
                                    &seg,
                                    req.keep_alive,
                                    head_only,
                                    wait,
                                )
                                .await;
                                add_bytes_out(&shard, n);
                                match served {
                                    Served::Complete | Served::Refused if req.keep_alive => {
                                        continue
                                    }
                                    _ => return,
                                }
                            }
                        }
                        _ => {}
                    }
                    let (response, keep_alive) = respond(&shard, &req);
                    let written = send_response(&shard, &mut stream, response).await;
                    if written.is_err() || !keep_alive {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shard.stats().connection_errors.inc();
                    info!(shard = %shard.id, peer = %crate::conn::PeerAddr(peer), "http connection closed: bad request: {e}");
                    let _ = stream.write_all(error_response(&e)).await;
                    return;
                }
            }
        }
        let idle = std::time::Duration::from_millis(shard.config.idle_timeout_ms);
        let Ok((res, b)) = monoio::time::timeout(idle, stream.read(buf)).await else {
            debug!(shard = %shard.id, "closing idle http connection");
            return;
        };
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        buf.clear();
    }
}

/// The stream a GET or HEAD plays (FLV, a playlist, a segment), and whether it is HLS.
fn play_target<'a>(req: &Request, route: &'a Route) -> Option<(&'a StreamKey, bool)> {
    if !matches!(req.method, Method::Get | Method::Head) {
        return None;
    }
    match route {
        Route::Flv(key) => Some((key, false)),
        Route::Playlist(key) | Route::Segment(key, _) => Some((key, true)),
        _ => None,
    }
}

/// 403, 410 or 503 with the reason in the body (never the token).
fn denial_response(denial: &Denial, req: &Request) -> Vec<Bytes> {
    let body = format!("{denial}\n");
    let head = http::response_head(
        denial.status(),
        "text/plain",
        Some(body.len()),
        "no-store",
        req.keep_alive,
    );
    if req.method == Method::Head {
        vec![head]
    } else {
        vec![head, Bytes::from(body)]
    }
}

/// Writes `bufs` in one go and counts them in `bytes_out`.
async fn write_counted(shard: &Shard, stream: &mut Conn, bufs: Vec<Bytes>) -> std::io::Result<()> {
    let n = write_bufs(stream, bufs).await?;
    add_bytes_out(shard, n);
    Ok(())
}

fn add_bytes_out(shard: &Shard, n: usize) {
    shard
        .stats()
        .bytes_out
        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Writes a response: by reference when its body lies in a segment arena and this shard's
/// send path is `splice` (plain TCP only), else as `--http-writes` says. What it wrote counts
/// in `bytes_out` once the response is out.
async fn send_response(shard: &Shard, stream: &mut Conn, bufs: Vec<Bytes>) -> std::io::Result<()> {
    if let (Some(zc), Conn::Tcp(tcp)) = (&shard.zero_copy, &*stream) {
        if zc.applies(&bufs) {
            match zc.send(tcp, &bufs).await {
                Some(Ok(sent)) => {
                    shard
                        .stats()
                        .zero_copy_bytes
                        .fetch_add(sent.lent as u64, std::sync::atomic::Ordering::Relaxed);
                    add_bytes_out(shard, sent.bytes);
                    return Ok(());
                }
                Some(Err(e)) => return Err(e),
                None => shard.stats().zero_copy_fallbacks.inc(),
            }
        }
    }
    if shard.config.http_vectored {
        write_counted(shard, stream, bufs).await
    } else {
        let total = bufs.iter().map(Bytes::len).sum();
        write_each(stream, bufs).await?;
        add_bytes_out(shard, total);
        Ok(())
    }
}

/// The `--http-writes separate` mode: the head and the first body piece in one `writev`,
/// then one write per piece. A head written alone leaves as its own small packet and wakes
/// the client once for it (measured with loadgen: 10 % more CPU per request on both sides at
/// 64 KB segments); large bodies still go piece by piece (measured with wrk: one `writev` of
/// every piece lost 20 % at 700 KB × 1000 connections).
async fn write_each(stream: &mut Conn, mut bufs: Vec<Bytes>) -> std::io::Result<()> {
    let rest = bufs.split_off(bufs.len().min(2));
    write_bufs(stream, bufs).await?;
    for b in rest {
        stream.write_all(b).await.0?;
    }
    Ok(())
}

fn error_response(e: &HttpError) -> Bytes {
    let body = format!("{e}\n");
    let mut out = http::response_head(
        e.status(),
        "text/plain",
        Some(body.len()),
        "no-store",
        false,
    )
    .to_vec();
    out.extend_from_slice(body.as_bytes());
    Bytes::from(out)
}

/// Builds the response to a non-streaming request (head, then body pieces that are shared,
/// not copied), and whether to keep the connection.
fn respond(shard: &Shard, req: &Request) -> (Vec<Bytes>, bool) {
    let keep_alive = req.keep_alive;
    let head_only = req.method == Method::Head;
    let reply = |status: u16, ctype: &str, cache: &str, body: Bytes| {
        let head = http::response_head(status, ctype, Some(body.len()), cache, keep_alive);
        if head_only || body.is_empty() {
            vec![head]
        } else {
            vec![head, body]
        }
    };
    let simple = |status: u16, ctype: &str, cache: &str, body: String| {
        reply(status, ctype, cache, Bytes::from(body))
    };
    // A 200 with a body that is shared, not copied (a page, a player library).
    let shared = |ctype: &str, body: &Bytes, cache: &str| reply(200, ctype, cache, body.clone());
    let route = Route::parse(&req.path);
    let response = match (req.method, route) {
        (Method::Options, _) => simple(204, "", "no-cache", String::new()),
        (Method::Get | Method::Head, Route::Health) => simple(
            200,
            "application/json",
            "no-cache",
            shard.stats.render_health(),
        ),
        (Method::Get | Method::Head, Route::Streams) => simple(
            200,
            "application/json",
            "no-cache",
            shard.stats.render_streams(),
        ),
        (Method::Get | Method::Head, Route::Cluster) => match shard.stats.registry.get() {
            Some(r) => simple(
                200,
                "application/json",
                "no-cache",
                r.cluster_json
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            ),
            None => simple(
                404,
                "text/plain",
                "no-cache",
                "no cluster: start with --registry\n".into(),
            ),
        },
        (Method::Get | Method::Head, Route::Metrics) => simple(
            200,
            "text/plain; version=0.0.4",
            "no-cache",
            shard.stats.render_prometheus(),
        ),
        (Method::Get | Method::Head, Route::Playlist(key)) => match shard.hls(&key) {
            Some(hls) => {
                // Under token or hook play, segment URIs carry the viewer's query (players
                // drop the playlist's query when they resolve relative URIs); the pieces are
                // the shared playlist's, with the one query between them.
                let suffix = match &req.query {
                    Some(q)
                        if !q.is_empty()
                            && shard.config.access.policy.play.mode(key.app()) != Mode::None =>
                    {
                        Some(Bytes::from(format!("?{q}")))
                    }
                    _ => None,
                };
                let len = suffix
                    .as_ref()
                    .map_or(hls.playlist.len(), |s| hls.playlist_len_with(s.len()));
                // Short enough that a player never sees a playlist older than half a target;
                // private when it carries a viewer's token.
                let cache = match suffix {
                    Some(_) => format!("private, max-age={}", hls.target_duration_s / 2),
                    None => format!("max-age={}", hls.target_duration_s / 2),
                };
                let head = http::response_head(
                    200,
                    "application/vnd.apple.mpegurl",
                    Some(len),
                    &cache,
                    keep_alive,
                );
                let mut out = vec![head];
                if !head_only {
                    match &suffix {
                        Some(s) => out.extend(hls.playlist_with(s)),
                        None => out.push(hls.playlist.clone()),
                    }
                }
                out
            }
            None => simple(404, "text/plain", "no-cache", "no such stream\n".into()),
        },
        (Method::Get | Method::Head, Route::Segment(key, seq)) => {
            match shard
                .hls(&key)
                .as_ref()
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
                    let mut out = Vec::with_capacity(1 + seg.pieces.len());
                    out.push(head);
                    if !head_only {
                        out.extend(seg.pieces.iter().cloned());
                    }
                    out
                }
                None => simple(404, "text/plain", "no-cache", "no such segment\n".into()),
            }
        }
        // HTTP-FLV is sent chunked, which HTTP/1.0 does not have.
        (Method::Get, Route::Flv(_)) => simple(
            505,
            "text/plain",
            "no-cache",
            "HTTP-FLV needs HTTP/1.1\n".into(),
        ),
        // HEAD of a live FLV stream: the head a GET would get, no body.
        (Method::Head, Route::Flv(_)) => return (vec![http::flv_response_head()], false),
        (Method::Get | Method::Head, Route::Ready) if shard.stats.control.is_draining() => {
            simple(503, "text/plain", "no-cache", "draining\n".into())
        }
        (Method::Get | Method::Head, Route::Ready) => {
            simple(200, "text/plain", "no-cache", "ready\n".into())
        }
        (Method::Get | Method::Head, Route::Summary) => simple(
            200,
            "application/json",
            "no-cache",
            crate::drain::render_summary(&shard.stats.control, &shard.stats),
        ),
        (Method::Post, Route::Drain) => match &shard.config.admin_token {
            None => simple(
                403,
                "text/plain",
                "no-cache",
                "no --admin-token is set: drain with SIGTERM\n".into(),
            ),
            Some(token) if bearer_matches(req.bearer.as_deref(), token) => {
                shard.stats.control.request_drain();
                info!(shard = %shard.id, "drain requested");
                simple(202, "text/plain", "no-cache", "draining\n".into())
            }
            Some(_) => simple(
                401,
                "text/plain",
                "no-cache",
                "Authorization: Bearer <--admin-token> required\n".into(),
            ),
        },
        (Method::Get | Method::Head, Route::Console) => {
            shared(HTML, &shard.config.player.console, "max-age=60")
        }
        (Method::Get | Method::Head, Route::Player) => {
            shared(HTML, &shard.config.player.player, "max-age=60")
        }
        (Method::Get | Method::Head, Route::PlayerAsset(lib)) => {
            match shard.config.player.lib(lib) {
                Some(body) => shared(
                    "text/javascript; charset=utf-8",
                    body,
                    "public, max-age=3600",
                ),
                None => simple(
                    404,
                    "text/plain",
                    "no-cache",
                    "no local player libraries: start with --player-assets DIR\n".into(),
                ),
            }
        }
        (Method::Get | Method::Head, _) => {
            simple(404, "text/plain", "no-cache", "not found\n".into())
        }
        (Method::Other | Method::Post, _) => {
            simple(405, "text/plain", "no-cache", "method not allowed\n".into())
        }
    };
    (response, keep_alive)
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

/// An HTTP-FLV viewer, as its hooks are told about it.
struct FlvViewer {
    key: StreamKey,
    query: Option<std::sync::Arc<str>>,
    peer: Option<SocketAddr>,
    id: u64,
    path: String,
}

/// Streams `key` as HTTP-FLV until the stream ends or the viewer leaves. The response head
/// goes out when the stream is live (or a 404 after the play-wait).
async fn serve_flv(shard: Rc<Shard>, stream: Conn, fd: std::os::fd::RawFd, viewer: FlvViewer) {
    let (key, id) = (&viewer.key, viewer.id);
    let (mut reader, writer) = stream.split();
    let outlet = Outlet::new(id, Wire::Flv, shard.config.queue, shard.clock);
    let writer_task = monoio::spawn(Rc::clone(&outlet).run_writer(
        writer,
        shard.config.write_coalesce_ms,
        shard.bytes_out(),
    ));
    shard.add_viewer(key, &outlet, viewer.query.clone());
    // Nothing more is expected from the client; reading only tells us when it leaves.
    let mut buf = Vec::with_capacity(512);
    loop {
        let read = monoio::select! {
            r = reader.read(buf) => r,
            _ = outlet.closed() => break,
        };
        let (res, b) = read;
        buf = b;
        buf.clear();
        if !matches!(res, Ok(n) if n > 0) {
            break;
        }
    }
    shard.remove_viewer(key, &outlet);
    finish(&outlet, Close::Flush, fd, writer_task, shard.stats()).await;
    let ask = Ask {
        action: Action::Play,
        key,
        query: viewer.query.as_deref(),
        peer: viewer.peer,
        tc_url: &viewer.path,
        client_id: id,
        hls: false,
    };
    access::notify(&shard, HookEvent::OnStop, &ask);
    debug!(shard = %shard.id, %key, conn = id, "flv viewer left");
}
