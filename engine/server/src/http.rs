//! The HTTP/1.1 connection driver: keep-alive and pipelined requests parsed by edge-core,
//! answered in order; `/{app}/{stream}.flv` turns the connection into an HTTP-FLV viewer.

use std::rc::Rc;

use bytes::Bytes;
use edge_core::http::{self, HttpError, Method, Request, Route};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use tracing::debug;

use crate::outlet::{reset_on_close, Close, Outlet, Wire};
use crate::shard::{Counter, Shard};

const READ_BUF: usize = 4 * 1024;

/// Serves one HTTP connection until it closes.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(READ_BUF);
    loop {
        // Answer every complete request already buffered (pipelining), in order.
        loop {
            let parsed = http::parse_request(&pending);
            match parsed {
                Ok(Some((req, used))) => {
                    pending.drain(..used);
                    shard.stats().http_requests.inc();
                    if let Route::Flv(key) = Route::parse(&req.path) {
                        if req.method == Method::Get && req.version_minor >= 1 {
                            return serve_flv(shard, stream, key).await;
                        }
                    }
                    let (response, keep_alive) = respond(&shard, &req);
                    let (res, _) = stream.write_all(response).await;
                    if res.is_err() || !keep_alive {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shard.stats().connection_errors.inc();
                    debug!(shard = shard.id, "bad http request: {e}");
                    let _ = stream.write_all(error_response(&e)).await;
                    return;
                }
            }
        }
        let idle = std::time::Duration::from_millis(shard.config.idle_timeout_ms);
        let Ok((res, b)) = monoio::time::timeout(idle, stream.read(buf)).await else {
            debug!(shard = shard.id, "closing idle http connection");
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

/// Builds the response to a non-streaming request, and whether to keep the connection.
fn respond(shard: &Shard, req: &Request) -> (Bytes, bool) {
    let keep_alive = req.keep_alive;
    let (status, ctype, body): (u16, &str, String) = match (req.method, Route::parse(&req.path)) {
        (Method::Options, _) => (204, "", String::new()),
        (Method::Get | Method::Head, Route::Health) => {
            (200, "application/json", shard.stats.render_health())
        }
        (Method::Get | Method::Head, Route::Metrics) => (
            200,
            "text/plain; version=0.0.4",
            shard.stats.render_prometheus(),
        ),
        // HEAD of a live FLV stream: headers only, no body length (it is endless).
        // HTTP-FLV is sent chunked, which HTTP/1.0 does not have.
        (Method::Get, Route::Flv(_)) => {
            (505, "text/plain", "HTTP-FLV needs HTTP/1.1\n".to_string())
        }
        // HEAD of a live FLV stream: the head a GET would get, no body.
        (Method::Head, Route::Flv(_)) => return (http::flv_response_head(), false),
        (Method::Get | Method::Head, _) => (404, "text/plain", "not found\n".to_string()),
        (Method::Other, _) => (405, "text/plain", "method not allowed\n".to_string()),
    };
    let mut out =
        http::response_head(status, ctype, Some(body.len()), "no-cache", keep_alive).to_vec();
    if req.method != Method::Head {
        out.extend_from_slice(body.as_bytes());
    }
    (Bytes::from(out), keep_alive)
}

/// Streams `key` as HTTP-FLV until the stream ends or the viewer leaves. The response head
/// goes out when the stream is live (or a 404 after the play-wait).
async fn serve_flv(shard: Rc<Shard>, stream: TcpStream, key: edge_core::StreamKey) {
    let id = shard.next_conn_id();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (mut reader, writer) = stream.into_split();
    let outlet = Outlet::new(id, Wire::Flv, shard.config.queue);
    let writer_task = monoio::spawn(Rc::clone(&outlet).run_writer(writer));
    shard.add_viewer(&key, &outlet);
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
    shard.remove_viewer(&key, &outlet);
    outlet.close(Close::Flush);
    if outlet.close_mode() == Some(Close::Abort) {
        reset_on_close(fd);
    }
    let written = writer_task.await;
    shard
        .stats()
        .bytes_out
        .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
    debug!(shard = shard.id, %key, conn = id, "flv viewer left");
}
