//! The HTTP/1.1 connection driver: keep-alive and pipelined requests parsed by edge-core,
//! answered in order; `/{app}/{stream}.flv` turns the connection into an HTTP-FLV viewer.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edge_core::access::{Action, HookEvent, Mode};
use edge_core::hls::blocking::{self, Directives};
use edge_core::hls::llhls::LlFile;
use edge_core::http::{self, HttpError, Method, Request, Route};
use edge_core::StreamKey;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use tracing::{debug, info};

use crate::machine::stats::{Counter, Protocol};
use crate::net::conn::Conn;
use crate::net::contain;
use crate::serve::access::{self, Ask};
use crate::serve::routes::{self, NodeView};
use crate::serve::whep;
use crate::shard::outlet::{finish, write_bufs, Close, Outlet, Wire};
use crate::shard::pulled::{self, Served};
use crate::shard::{LlWait, ShardHandle};

const READ_BUF: usize = 4 * 1024;

/// Counts a connection in `edge_hls_viewers`, and as a viewer (HLS, or LL-HLS) of the stream
/// whose playlist it fetched first, until it closes.
struct HlsViewer(ShardHandle, StreamKey, Protocol);

impl HlsViewer {
    fn new(shard: &ShardHandle, key: &StreamKey, protocol: Protocol) -> Self {
        shard.stats().hls_viewers.inc();
        shard
            .machine()
            .count_viewer(shard.id(), key, protocol, true);
        HlsViewer(shard.clone(), key.clone(), protocol)
    }
}

impl Drop for HlsViewer {
    fn drop(&mut self) {
        self.0.stats().hls_viewers.dec();
        self.0
            .machine()
            .count_viewer(self.0.id(), &self.1, self.2, false);
    }
}

/// Serves one HTTP (or HTTPS) connection until it closes; `fd` is its socket's.
pub(crate) async fn serve(
    shard: ShardHandle,
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
                    tracing::warn!(shard = %shard.id(), "http connection closed: {panic}");
                    return;
                }
            };
            match parsed {
                Ok(Some((mut req, used))) => {
                    pending.drain(..used);
                    shard.stats().http_requests.inc();
                    let route = Route::parse(&req.path);
                    // RFC 8470: a request sent in TLS early data (0-RTT) may be a replay, so
                    // only a safe method is answered from it; the client sends the others
                    // again once its handshake is complete.
                    if req.early_data
                        && !matches!(req.method, Method::Get | Method::Head | Method::Options)
                    {
                        let refusal = routes::denial(
                            425,
                            "too early: send it again once the TLS handshake is complete",
                            &req,
                        );
                        if !answered(&shard, &mut stream, refusal, req.keep_alive).await {
                            return;
                        }
                        continue;
                    }
                    // WHEP clients send a play token as a bearer credential.
                    if let (Route::Whep(_), None, Some(token)) = (&route, &req.query, &req.bearer) {
                        req.query = Some(format!("token={token}"));
                    }
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
                            let refusal =
                                routes::denial(denial.status(), &denial.to_string(), &req);
                            if !answered(&shard, &mut stream, refusal, req.keep_alive).await {
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
                    let control = &shard.machine().control;
                    let draining = control.is_draining();
                    let hls = matches!(
                        route,
                        Route::Playlist(_) | Route::Segment(..) | Route::Ll(..)
                    );
                    let handed_over = draining && control.handed_over();
                    let close = match &route {
                        // After a handover, a viewer leaves with a playlist once the
                        // successor can continue where it is.
                        Route::Playlist(key) | Route::Ll(key, LlFile::Playlist) if handed_over => {
                            shard.successor_ready(key, &req.path, req.query.as_deref())
                        }
                        _ => draining && !hls,
                    };
                    if close {
                        req.keep_alive = false;
                    }
                    let migrate = match &route {
                        Route::Playlist(key) | Route::Ll(key, LlFile::Playlist) if draining => {
                            shard.drain_redirect(key, &req.path, req.query.as_deref())
                        }
                        _ => None,
                    };
                    if let Some(location) = migrate {
                        // Kept alive: a player that reloads the URL it was given (ffmpeg)
                        // is sent on over this connection after the listeners have closed.
                        shard.stats().drain_redirects.inc();
                        let head = http::redirect_head(&location, req.keep_alive);
                        if !answered(&shard, &mut stream, vec![head], req.keep_alive).await {
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
                        if !answered(&shard, &mut stream, vec![head], req.keep_alive).await {
                            return;
                        }
                        continue;
                    }
                    // Over HTTP/3 a stream carries one request: the QUIC connection is the
                    // viewer, and keeps it until the connection closes.
                    let kept = match &stream {
                        Conn::H3(h3) => Some(h3.kept()),
                        _ => None,
                    };
                    let counted =
                        hls_viewer.is_some() || kept.is_some_and(|k| k.borrow().is_some());
                    let viewer = match &route {
                        Route::Playlist(key) if !counted => Some((key, Protocol::Hls)),
                        Route::Ll(key, LlFile::Playlist) if !counted => {
                            Some((key, Protocol::LlHls))
                        }
                        _ => None,
                    };
                    if let Some((key, protocol)) = viewer {
                        let v = HlsViewer::new(&shard, key, protocol);
                        match kept {
                            Some(k) => *k.borrow_mut() = Some(Box::new(v)),
                            None => hls_viewer = Some(v),
                        }
                    }
                    match route {
                        // WebRTC playback: an offer answered with a session of this shard.
                        Route::Whep(_) | Route::WhepSession(..) => {
                            let keep = req.keep_alive;
                            let pieces = match (&route, req.method) {
                                (Route::Whep(key), Method::Post) => {
                                    let id = shard.next_conn_id();
                                    let posted_to = match &stream {
                                        Conn::H3(h3) => h3.local_ip(),
                                        _ => whep::local_ip(fd),
                                    };
                                    whep::offer(&shard, &req, key, peer, posted_to, id).await
                                }
                                (Route::WhepSession(_, id), Method::Delete) => {
                                    whep::delete(&shard, *id, &req)
                                }
                                (Route::WhepSession(..), Method::Patch) => whep::patch(&req),
                                _ => whep::method_not_allowed(&req),
                            };
                            if !answered(&shard, &mut stream, pieces, keep).await {
                                return;
                            }
                            continue;
                        }
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
                        // LL-HLS: the part the playlist hints is streamed as it is written;
                        // a blocking reload, or another part asked for before it exists,
                        // waits (parked) until the stream's state holds it.
                        Route::Ll(key, file)
                            if matches!(req.method, Method::Get | Method::Head) =>
                        {
                            // An HLS-origin edge relays its origin's LL-HLS.
                            if shard.pulls_hls() {
                                match relay_ll(&shard, &mut stream, &key, file, &req).await {
                                    Relayed::Next => continue,
                                    Relayed::Close => return,
                                    Relayed::Playlist => {}
                                }
                            }
                            if let (LlFile::Part(seq, index), Method::Get) = (file, req.method) {
                                let part = (seq, index);
                                if let Some(served) =
                                    ll_stream(&shard, &mut stream, &key, part, &req).await
                                {
                                    match served {
                                        Served::Complete | Served::Refused if req.keep_alive => {
                                            continue
                                        }
                                        _ => return,
                                    }
                                }
                            }
                            if let Some(refusal) = ll_wait(&shard, &key, file, &req).await {
                                if !answered(&shard, &mut stream, refusal, req.keep_alive).await {
                                    return;
                                }
                                continue;
                            }
                            if shard.pulls_hls() {
                                // The relayed playlist, as its origin rendered it.
                                let snap = shard.ll_snapshot(&key);
                                let mode = shard.play_mode(key.app());
                                let pieces =
                                    crate::serve::ll::respond(&req, file, snap.as_deref(), mode);
                                if !answered(&shard, &mut stream, pieces, req.keep_alive).await {
                                    return;
                                }
                                continue;
                            }
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
                                if !answered(&shard, &mut stream, refusal, req.keep_alive).await {
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
                                    2 * shard.config().upstream_timeout_ms + 1_000,
                                );
                                let head_only = req.method == Method::Head;
                                let (served, n) = pulled::serve(
                                    &mut stream,
                                    &seg,
                                    "video/mp2t",
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
                    let reply = routes::respond(&req, &shard);
                    if reply.drain {
                        shard.machine().control.request_drain();
                        info!(shard = %shard.id(), "drain requested");
                    }
                    let written = send_response(&shard, &mut stream, reply.pieces).await;
                    if written.is_err() || !reply.keep_alive {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shard.stats().connection_errors.inc();
                    info!(shard = %shard.id(), peer = %crate::net::conn::PeerAddr(peer), "http connection closed: bad request: {e}");
                    let _ = stream.write_all(error_response(&e)).await;
                    return;
                }
            }
        }
        let idle = std::time::Duration::from_millis(shard.config().idle_timeout_ms);
        let Ok((res, b)) = monoio::time::timeout(idle, stream.read(buf)).await else {
            debug!(shard = %shard.id(), "closing idle http connection");
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
    if let (Route::Whep(key), Method::Post) = (route, req.method) {
        return Some((key, false));
    }
    if !matches!(req.method, Method::Get | Method::Head) {
        return None;
    }
    match route {
        Route::Flv(key) => Some((key, false)),
        Route::Playlist(key) | Route::Segment(key, _) | Route::Ll(key, _) => Some((key, true)),
        _ => None,
    }
}

/// Before an LL-HLS response: an edge's playlist request starts or keeps the pull (the first
/// waits for the first segment), and a blocking reload or an early part request waits until
/// the stream holds what it names. The refusal to send instead, if any (400 or 503).
async fn ll_wait(
    shard: &ShardHandle,
    key: &StreamKey,
    file: LlFile,
    req: &Request,
) -> Option<Vec<Bytes>> {
    let want = match file {
        LlFile::Playlist => {
            // (An HLS-origin edge's relay was asked for already.)
            if shard.pulls_stream(key) && !shard.pulls_hls() {
                // The viewer's own query (its token) goes upstream, not its directives.
                let query = req.query.as_deref().map(blocking::viewer_query);
                shard.hls_demand(key, query.as_deref().filter(|q| !q.is_empty()));
                if shard.hls(key).is_none() {
                    shard.wait_for_hls(key).await;
                }
            }
            // Bad directives are answered 400 by the response itself.
            Directives::parse(req.query.as_deref())
                .ok()
                .and_then(|d| d.msn.map(|msn| (msn, d.part)))
        }
        LlFile::Part(seq, index) => Some((seq, Some(index))),
        LlFile::Init(_) | LlFile::Segment(_) => None,
    };
    if let Some((msn, part)) = want {
        let status = match shard.ll_wait(key, msn, part).await {
            LlWait::Ready => None,
            LlWait::Refused(why) => Some((400, format!("{why}\n"))),
            LlWait::Unavailable => {
                Some((503, "the stream did not reach that part in time\n".into()))
            }
        };
        if let Some((status, body)) = status {
            return Some(crate::serve::pieces::text_response(
                status, body, "no-cache", req,
            ));
        }
    }
    if let LlFile::Part(seq, index) = file {
        let ll = shard.hls(key).and_then(|h| h.ll.clone());
        if ll.is_some_and(|ll| ll.part(seq, index).is_some()) {
            shard.ll_part_served();
        }
    }
    None
}

/// What an HLS-origin edge did with an LL-HLS request.
enum Relayed {
    /// Answered; the connection goes on.
    Next,
    /// Answered; the connection closes.
    Close,
    /// A playlist request with the relay's playlist here: answered as at an origin (it may
    /// wait for the part it names).
    Playlist,
}

/// An LL-HLS request at an HLS-origin edge: it starts or keeps the stream's relay; a file is
/// served from the relay's record (as its bytes arrive from the origin, or whole), a first
/// playlist request waits for the relay's first playlist, or gets the origin's failure.
async fn relay_ll(
    shard: &ShardHandle,
    stream: &mut Conn,
    key: &StreamKey,
    file: LlFile,
    req: &Request,
) -> Relayed {
    let head_only = req.method == Method::Head;
    // The viewer's own query (its token) goes upstream, not its directives.
    let query = req.query.as_deref().map(blocking::viewer_query);
    let query = query.as_deref().filter(|q| !q.is_empty());
    let playlist = file == LlFile::Playlist;
    let failed = shard.ll_relay_demand(key, query, playlist).await;
    let pieces = match (file, failed) {
        (LlFile::Playlist, None) => return Relayed::Playlist,
        // The player falls back to HLS-TS on this one (its body says "no LL-HLS").
        (LlFile::Playlist, Some(404)) => crate::serve::pieces::text_response(
            404,
            "no LL-HLS for this stream here (its origin serves none): play its .m3u8\n".into(),
            "no-cache",
            req,
        ),
        (LlFile::Playlist, Some(status)) => {
            pulled::error_response(status, req.keep_alive, head_only)
        }
        _ => match shard.ll_relay_file(key, file) {
            Some(f) => {
                let wait = Duration::from_millis(2 * shard.config().upstream_timeout_ms + 1_000);
                let (served, n) =
                    pulled::serve(stream, &f, "video/mp4", req.keep_alive, head_only, wait).await;
                add_bytes_out(shard, n);
                if matches!(file, LlFile::Part(..)) && matches!(served, Served::Complete) {
                    shard.ll_part_served();
                }
                return match served {
                    Served::Complete | Served::Refused if req.keep_alive => Relayed::Next,
                    _ => Relayed::Close,
                };
            }
            None => crate::serve::pieces::text_response(
                503,
                "too many LL-HLS files on their way here\n".into(),
                "no-cache",
                req,
            ),
        },
    };
    if answered(shard, stream, pieces, req.keep_alive).await {
        Relayed::Next
    } else {
        Relayed::Close
    }
}

/// A request for the part the playlist hints, before the part is complete: its chunks as
/// the owner writes them (chunked, the same bytes the complete part has). `None` when it is
/// not that part, or the owner will not stream it (nothing was sent): the request then goes
/// on as any part request.
async fn ll_stream(
    shard: &ShardHandle,
    stream: &mut Conn,
    key: &StreamKey,
    part: (u64, u32),
    req: &Request,
) -> Option<Served> {
    let ll = shard.ll_snapshot(key)?;
    // The part after the hinted one (an edge's relay asks ahead, as a player may): it waits,
    // parked, until the hinted part is complete, and then streams if it is the next.
    if let Some(hint) = ll.next_part() {
        if part == (hint.0, hint.1 + 1) || part == (hint.0 + 1, 0) {
            let _ = shard.ll_wait(key, hint.0, Some(hint.1)).await;
        }
    }
    let p = shard.ll_hinted(key, part)?;
    // As long as a blocking request may wait (three target durations).
    let wait = Duration::from_millis(3_000 * ll.target_duration_s.max(1));
    if monoio::time::timeout(wait, p.started()).await.is_err()
        || matches!(p.progress(), pulled::Progress::Failed { .. })
    {
        return None;
    }
    shard.ll_part_streamed();
    shard.ll_part_served();
    let (served, n) = pulled::serve(stream, &p, "video/mp4", req.keep_alive, false, wait).await;
    add_bytes_out(shard, n);
    Some(served)
}

/// Writes a response that ends a request's handling before the routes (a refusal, a
/// redirect, a failed wait): whether the connection goes on to its next request.
async fn answered(
    shard: &ShardHandle,
    stream: &mut Conn,
    pieces: Vec<Bytes>,
    keep_alive: bool,
) -> bool {
    write_counted(shard, stream, pieces).await.is_ok() && keep_alive
}

/// Writes `bufs` in one go and counts them in `bytes_out`.
async fn write_counted(
    shard: &ShardHandle,
    stream: &mut Conn,
    bufs: Vec<Bytes>,
) -> std::io::Result<()> {
    let n = write_bufs(stream, bufs).await?;
    add_bytes_out(shard, n);
    Ok(())
}

fn add_bytes_out(shard: &ShardHandle, n: usize) {
    shard
        .stats()
        .bytes_out
        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Writes a response: by reference when its body lies in a segment arena and this shard's
/// send path is `splice` (plain TCP only), else as `--http-writes` says. What it wrote counts
/// in `bytes_out` once the response is out.
async fn send_response(
    shard: &ShardHandle,
    stream: &mut Conn,
    bufs: Vec<Bytes>,
) -> std::io::Result<()> {
    if let (Some(zc), Conn::Tcp(tcp)) = (&shard.zero_copy(), &*stream) {
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
    if shard.config().http_vectored {
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
        // One piece per write; over HTTP/3 it goes to QUIC as it is, without a copy.
        write_bufs(stream, vec![b]).await?;
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
async fn serve_flv(shard: ShardHandle, stream: Conn, fd: std::os::fd::RawFd, viewer: FlvViewer) {
    let (key, id) = (&viewer.key, viewer.id);
    let (mut reader, writer) = stream.split();
    let outlet = Outlet::new(id, Wire::Flv, shard.config().queue, shard.clock());
    let writer_task =
        monoio::spawn(Rc::clone(&outlet).run_writer(writer, shard.pacer(), shard.bytes_out()));
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
    debug!(shard = %shard.id(), %key, conn = id, "flv viewer left");
}

/// The node as routes see it: read-only, from this shard.
impl NodeView for ShardHandle {
    fn hls(&self, key: &StreamKey) -> Option<std::sync::Arc<edge_core::hls::HlsSnapshot>> {
        ShardHandle::hls(self, key)
    }
    fn play_mode(&self, app: &str) -> Mode {
        self.config().access.policy.play.mode(app)
    }
    fn health_json(&self) -> String {
        crate::machine::report::health(self.machine())
    }
    fn streams_json(&self) -> String {
        crate::machine::report::streams(self.machine())
    }
    fn metrics_text(&self) -> String {
        crate::machine::report::prometheus(self.machine())
    }
    fn summary_json(&self) -> String {
        crate::machine::report::summary(self.machine())
    }
    fn cluster_json(&self) -> Option<String> {
        let r = self.machine().registry.get()?;
        Some(
            r.cluster_json
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
    fn draining(&self) -> bool {
        self.machine().control.is_draining()
    }
    fn admin_token(&self) -> Option<&str> {
        self.config().admin_token.as_deref()
    }
    fn console_page(&self) -> Bytes {
        self.config().player.console.clone()
    }
    fn player_page(&self) -> Bytes {
        self.config().player.player.clone()
    }
    fn player_lib(&self, lib: edge_core::http::PlayerLib) -> Option<Bytes> {
        self.config().player.lib(lib).cloned()
    }
}
