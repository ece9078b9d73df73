//! The HLS viewer: playlists reloaded as RFC 8216 says, every new segment fetched once
//! through the thread's connection pool and scanned as it streams in. A playlist answered
//! with a redirect (a draining edge sends its viewers to a peer) is fetched from where it
//! points, at once, and the viewer stays there, carrying on from the segment number it had
//! reached, as a player does.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_core::hls::m3u8::parse_media_playlist;
use edge_core::http;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::{read_append_at_most, Arrival, Playback};
use crate::httpc;
use crate::live::{now_us, Ctx};
use crate::pool::{Acquired, Pool, Pools};
use edge_core::hls::tsscan::TsScan;

/// Where a response body goes as it arrives.
enum Sink<'a> {
    /// Kept (playlists: a few hundred bytes).
    Keep(&'a mut Vec<u8>),
    /// Streamed through the TS scan and not kept (segments).
    Scan(&'a mut TsScan),
    /// Scanned until the first frame's probe is settled; the rest is discarded in the kernel
    /// and only counted (`--verify light`).
    Light(&'a mut TsScan),
    /// Kept, with when each piece came: (body length so far, when) (LL-HLS parts, whose
    /// first picture may come long before the rest).
    Timed(&'a mut Vec<u8>, &'a mut Vec<(usize, Instant)>),
}

impl Sink<'_> {
    fn take(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        match self {
            Sink::Keep(out) => {
                out.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Scan(scan) | Sink::Light(scan) => scan.feed(bytes).map_err(|_| "parse"),
            Sink::Timed(out, times) => {
                out.extend_from_slice(bytes);
                times.push((out.len(), Instant::now()));
                Ok(())
            }
        }
    }

    /// Whether the rest of the body may go unread.
    fn satisfied(&self) -> bool {
        matches!(self, Sink::Light(scan) if scan.settled())
    }
}

/// Bytes per read while a light check looks for the probe: the response head, the PAT, the
/// PMT and the first frame's AUD, SPS, PPS and SEI fit in the first read.
const LIGHT_READ: usize = 4096;

/// Discards the next `n` bytes of the socket in the kernel (TCP `recv` with `MSG_TRUNC`: no
/// copy to user space), waiting for them as they come.
async fn discard(s: &TcpStream, mut n: usize, until: Instant) -> Result<(), &'static str> {
    let fd = s.as_raw_fd();
    while n > 0 {
        // SAFETY: a null buffer is allowed with MSG_TRUNC on TCP: the kernel drops up to `n`
        // bytes without writing anywhere. MSG_DONTWAIT: never blocks the thread.
        let r = unsafe {
            libc::recv(
                fd,
                std::ptr::null_mut(),
                n,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            n = n.saturating_sub(r as usize);
            continue;
        }
        if r == 0 {
            return Err("closed");
        }
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock => {
                let left = until.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, s.readable(false)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err("closed"),
                    Err(_) => return Err("timeout"),
                }
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return Err("closed"),
        }
    }
    // Bytes already waiting beyond the response: the length was wrong.
    let mut byte = 0u8;
    // SAFETY: peeks at most one byte into a live local.
    let extra = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if extra > 0 {
        return Err("parse");
    }
    Ok(())
}

/// A response: status, body length, and when its first byte came.
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) len: usize,
    first_byte: Instant,
    /// The server closes the connection after it (`Connection: close`, as a draining engine
    /// sends): it does not go back to the pool.
    close: bool,
    /// Body bytes discarded unread (`--verify light`).
    unread: usize,
    location: Option<String>,
}

/// One HTTP exchange on a keep-alive connection. The body of a 200 goes to `sink` piece by
/// piece as it is read into `buf` (the thread's reused read buffer); other bodies are read and
/// dropped. Bytes beyond the response are a protocol error (nothing is pipelined).
async fn exchange(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: Vec<u8>,
    until: Instant,
    mut sink: Sink<'_>,
) -> Result<Response, &'static str> {
    if s.write_all(request).await.0.is_err() {
        return Err("closed");
    }
    // A light check reads only what it checks: small reads until the probe is settled.
    let read_max = if matches!(sink, Sink::Light(_)) {
        LIGHT_READ
    } else {
        usize::MAX
    };
    buf.clear();
    read_append_at_most(s, buf, until, read_max).await?;
    let first_byte = Instant::now();
    let head = loop {
        match http::parse_response_head(buf) {
            Ok(Some(h)) => break h,
            Ok(None) => read_append_at_most(s, buf, until, read_max).await?,
            Err(_) => return Err("parse"),
        }
    };
    if head.chunked {
        return chunked_body(s, buf, head, first_byte, until, sink).await;
    }
    let len = head.content_length.ok_or("parse")?;
    let mut got = 0;
    let mut from = head.len;
    let mut unread = 0;
    loop {
        let piece = &buf[from..];
        if got + piece.len() > len {
            return Err("parse");
        }
        if head.status == 200 {
            sink.take(piece)?;
        }
        got += piece.len();
        if got == len {
            break;
        }
        if head.status == 200 && sink.satisfied() {
            unread = len - got;
            discard(s, unread, until).await?;
            break;
        }
        buf.clear();
        from = 0;
        read_append_at_most(s, buf, until, read_max).await?;
    }
    Ok(Response {
        status: head.status,
        len,
        first_byte,
        close: head.close,
        location: head.location,
        unread,
    })
}

/// Biggest chunked body read (an LL-HLS part streamed as it is written is a few hundred KB).
const MAX_CHUNKED_BODY: usize = 64 << 20;

/// The rest of a chunked response whose head is at the front of `buf`: de-chunked into
/// `sink` piece by piece as it comes, to the last chunk.
async fn chunked_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: http::ResponseHead,
    first_byte: Instant,
    until: Instant,
    mut sink: Sink<'_>,
) -> Result<Response, &'static str> {
    let mut d = http::Dechunker::default();
    let mut pending: Vec<u8> = buf[head.len..].to_vec();
    let mut piece = Vec::new();
    let mut len = 0;
    loop {
        piece.clear();
        let used = d.decode(&pending, &mut piece).map_err(|_| "parse")?;
        pending.drain(..used);
        len += piece.len();
        if len > MAX_CHUNKED_BODY {
            return Err("parse");
        }
        if head.status == 200 && !piece.is_empty() {
            sink.take(&piece)?;
        }
        if d.done {
            // The trailer's empty line follows the last chunk.
            while pending.len() < 2 {
                buf.clear();
                read_append_at_most(s, buf, until, usize::MAX).await?;
                pending.extend_from_slice(buf);
            }
            if &pending[..2] != b"\r\n" || pending.len() > 2 {
                return Err("parse");
            }
            break;
        }
        buf.clear();
        read_append_at_most(s, buf, until, usize::MAX).await?;
        pending.extend_from_slice(buf);
    }
    Ok(Response {
        status: head.status,
        len,
        first_byte,
        close: head.close,
        location: head.location,
        unread: 0,
    })
}

/// One request through the pool. Broken connections are dropped from the pool.
async fn pooled(
    ctx: &Ctx,
    pool: &Pool,
    path: &str,
    sink: Sink<'_>,
) -> Result<Response, &'static str> {
    let mut conn = match pool.acquire().await {
        Acquired::Conn(c) => c,
        Acquired::ConnectFailed => return Err("connect"),
    };
    ctx.live.requests.fetch_add(1, Ordering::Relaxed);
    let mut buf = pool.take_buffer();
    let result = exchange(
        &mut conn,
        &mut buf,
        httpc::get(path, pool.host()),
        ctx.until(),
        sink,
    )
    .await;
    pool.give_buffer(buf);
    let reusable = result.as_ref().is_ok_and(|r| !r.close);
    pool.release(reusable.then_some(conn));
    result
}

/// A request whose body is kept in `body` (cleared first), through the pool; a failure is
/// counted (unless the run is over) and gives `None`: the viewer stops.
pub(super) async fn fetch_kept(
    ctx: &Ctx,
    pool: &Pool,
    path: &str,
    body: &mut Vec<u8>,
) -> Option<Response> {
    body.clear();
    counted(ctx, pooled(ctx, pool, path, Sink::Keep(body)).await)
}

/// [`fetch_kept`], also noting when each piece of the body came (`times`, cleared first).
pub(super) async fn fetch_timed(
    ctx: &Ctx,
    pool: &Pool,
    path: &str,
    body: &mut Vec<u8>,
    times: &mut Vec<(usize, Instant)>,
) -> Option<Response> {
    body.clear();
    times.clear();
    counted(ctx, pooled(ctx, pool, path, Sink::Timed(body, times)).await)
}

/// A request's outcome, its failure counted (unless the run is over) as `None`.
fn counted(ctx: &Ctx, result: Result<Response, &'static str>) -> Option<Response> {
    result.map_err(|kind| ctx.error_while_running(kind)).ok()
}

/// Redirects in a row before a playlist arrives, at most.
const MAX_REDIRECTS: u32 = 5;

/// An HLS viewer: starts three segments from the live edge as hls.js does (from the start of
/// an ended playlist), reloads the playlist as RFC 8216 §6.3.4 says (the target duration after
/// a change, half of it otherwise), fetches every new segment once, and counts stalls against
/// a playback clock. Requests go through the thread's connection pool.
pub async fn hls_viewer(
    ctx: Ctx,
    pools: Rc<Pools>,
    server: std::net::SocketAddr,
    app: String,
    stream: String,
) {
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let mut pool = pools.get(server);
    let mut playlist_path = format!("/{app}/{stream}.m3u8");
    // Redirects followed since the last playlist: a loop of them is an error.
    let mut redirects = 0;
    let mut body = Vec::new();
    let started = Instant::now();
    let mut next_seq: Option<u64> = None;
    let mut next_reload = Instant::now();
    // Playback model: like hls.js, start once three target durations are buffered (or the
    // playlist ended); after that, a segment that arrives after the buffered media ran out is
    // a stall.
    let mut playback = Playback::default();
    let mut got_segment = false;
    'run: while next_reload < ctx.until() {
        if next_reload > Instant::now() {
            monoio::time::sleep(next_reload - Instant::now()).await;
            // How late the timer fired says whether this thread has CPU to spare.
            pool.note_lag(Instant::now().saturating_duration_since(next_reload));
        }
        let intended = next_reload;
        let Some(response) = fetch_kept(&ctx, &pool, &playlist_path, &mut body).await else {
            break;
        };
        let got_at = Instant::now();
        ctx.span("ttfb", intended, response.first_byte);
        ctx.span("playlist_reload_delay", intended, got_at);
        let status = response.status;
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            redirects += 1;
            let target = response
                .location
                .as_deref()
                .and_then(|l| httpc::split_location(l, pool.addr()));
            match target {
                Some((addr, path)) if redirects <= MAX_REDIRECTS => {
                    ctx.stats.borrow_mut().count("redirects", 1);
                    pool = pools.get(addr);
                    playlist_path = path;
                    next_reload = Instant::now();
                    continue;
                }
                _ => {
                    ctx.error("redirect");
                    break;
                }
            }
        }
        redirects = 0;
        if status == 404 && started.elapsed() < Duration::from_secs(10) {
            // The stream is not there yet (publisher starting): retry without counting.
            next_reload = got_at + Duration::from_millis(500);
            continue;
        }
        if status != 200 {
            ctx.error("status");
            break;
        }
        let Ok(playlist) = parse_media_playlist(&String::from_utf8_lossy(&body)) else {
            ctx.error("parse");
            break;
        };
        let target = Duration::from_secs(playlist.target_duration_s.max(1));
        // A live playlist is joined three segments from its end; an ended one from its start.
        let first_new = *next_seq.get_or_insert_with(|| {
            let n = playlist.segments.len();
            let skip = if playlist.ended {
                0
            } else {
                n.saturating_sub(3)
            };
            playlist.segments.get(skip).map_or(0, |s| s.seq)
        });
        let new: Vec<_> = playlist
            .segments
            .iter()
            .filter(|s| s.seq >= first_new)
            .cloned()
            .collect();
        for seg in &new {
            let seg_intended = got_at;
            let path = if seg.uri.starts_with('/') {
                seg.uri.clone()
            } else {
                format!("{}{}", httpc::base_of(&playlist_path), seg.uri)
            };
            let mut scan = TsScan::default();
            let sink = if ctx.light {
                Sink::Light(&mut scan)
            } else {
                Sink::Scan(&mut scan)
            };
            let scanned = pooled(&ctx, &pool, &path, sink).await.and_then(|r| {
                let outcome = if r.unread > 0 {
                    scan.finish_prefix()
                } else {
                    scan.finish().map_err(|_| "parse")?
                };
                Ok((r, outcome))
            });
            let (response, (packets, probe)) = match scanned {
                Ok(r) => r,
                Err(kind) => {
                    ctx.error_while_running(kind);
                    break 'run;
                }
            };
            let done = Instant::now();
            if response.status != 200 {
                ctx.error("status");
                continue;
            }
            ctx.live
                .bytes
                .fetch_add(response.len as u64, Ordering::Relaxed);
            ctx.span("ttfb", seg_intended, response.first_byte);
            ctx.span("segment_download", seg_intended, done);
            match probe {
                Some(p) => ctx.latency("segment_latency", now_us().saturating_sub(p.send_time_us)),
                // A light check trusts the rest of the segment because its start carried the
                // probe: without one it has checked too little.
                None if ctx.light => ctx.error("probe"),
                None => ctx.stats.borrow_mut().count("segments_without_probe", 1),
            }
            let dur = Duration::from_millis(seg.duration_ms);
            match playback.arrived(done, dur, 3 * target, playlist.ended) {
                Arrival::Stall => ctx.stats.borrow_mut().count("stalls", 1),
                Arrival::Started => ctx.span("hls_startup", started, done),
                Arrival::Buffering | Arrival::Playing => {}
            }
            got_segment = true;
            let mut st = ctx.stats.borrow_mut();
            st.count("segments", 1);
            st.count("segment_bytes", response.len as u64);
            st.count("segment_packets", packets);
            st.count("segment_bytes_unread", response.unread as u64);
            if next_seq.is_some_and(|n| seg.seq > n) {
                st.count("segment_gaps", 1);
            }
            next_seq = Some(seg.seq + 1);
        }
        if playlist.ended {
            break;
        }
        next_reload = intended + if new.is_empty() { target / 2 } else { target };
    }
    if !playback.started() {
        // Never had enough buffered to start playing: a viewer that saw nothing.
        ctx.stats.borrow_mut().count("startup_pending", 1);
    }
    ctx.viewer_done(got_segment);
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}
