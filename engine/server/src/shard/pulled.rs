//! Segments of HLS-pulled streams that are still arriving, as every shard sees them: the
//! bytes so far (pieces of the owner shard's arena, shared, never copied), and the requests
//! waiting on them. A waiting request gets each piece as soon as its shard has it: with
//! `Content-Length` when the origin gave one, chunked when it did not.
//!
//! Must not: fetch anything (the owner shard does), or let a truncated segment pass for a
//! complete one: a failure after the head has gone out closes the connection, so a player
//! sees a short body (or a missing last chunk), never a shorter segment.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use edge_core::http;

use crate::net::conn::Conn;
use crate::shard::outlet::write_bufs;

/// Where a segment's download is, on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Asked for; nothing heard from the owner yet.
    Requested,
    /// Bytes are arriving.
    Arriving,
    Done,
    /// Requests get this status (until the time, shard clock).
    Failed {
        status: u16,
        until_ms: u64,
    },
}

/// One segment on its way.
pub(crate) struct Inflight {
    content_length: Cell<Option<u64>>,
    pieces: RefCell<Vec<Bytes>>,
    progress: Cell<Progress>,
    wakers: RefCell<Vec<Waker>>,
}

/// A download step for the record `id` in `records` (the TS pull's segments, the LL-HLS
/// relay's files): `Start` and `Failed` make the record while there are fewer than `max`;
/// `Data` goes to the record; `Done` ends it, and takes it out unless `keep_done` (the TS
/// pull's completed segments are in the snapshot; the relay's files are served from here).
pub(crate) fn apply<K: std::hash::Hash + Eq>(
    records: &mut std::collections::HashMap<K, std::rc::Rc<Inflight>>,
    id: K,
    event: crate::net::mesh::SegmentEvent,
    fail_until_ms: u64,
    max: usize,
    keep_done: bool,
) {
    use crate::net::mesh::SegmentEvent;
    let room = records.len() < max || records.contains_key(&id);
    let new = || std::rc::Rc::new(Inflight::new(Progress::Requested));
    match event {
        SegmentEvent::Start { content_length } if room => {
            records.entry(id).or_insert_with(new).start(content_length)
        }
        SegmentEvent::Data(piece) => {
            if let Some(r) = records.get(&id) {
                r.push(piece);
            }
        }
        SegmentEvent::Done if keep_done => {
            if let Some(r) = records.get(&id) {
                r.finish();
            }
        }
        SegmentEvent::Done => {
            if let Some(r) = records.remove(&id) {
                r.finish();
            }
        }
        SegmentEvent::Failed { status } if room => records
            .entry(id)
            .or_insert_with(new)
            .fail(status, fail_until_ms),
        SegmentEvent::Start { .. } | SegmentEvent::Failed { .. } => {}
    }
}

/// What a request finds of a record on its way (a pulled segment, a streamed LL-HLS part, a
/// relayed file).
pub(crate) enum Lookup {
    /// On its way (or failed recently).
    Known(std::rc::Rc<Inflight>),
    /// Newly recorded: the owner must be asked for it.
    Ask(std::rc::Rc<Inflight>),
    /// Too many recorded here.
    Full,
}

/// What a waiting request gets next.
enum Next {
    Pieces(Vec<Bytes>),
    Done,
    Failed,
}

impl Inflight {
    pub(crate) fn new(progress: Progress) -> Self {
        Self {
            content_length: Cell::new(None),
            pieces: RefCell::new(Vec::new()),
            progress: Cell::new(progress),
            wakers: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        self.progress.get()
    }

    /// The owner started the download (again, after a failure: from the beginning).
    pub(crate) fn start(&self, content_length: Option<u64>) {
        self.content_length.set(content_length);
        self.pieces.borrow_mut().clear();
        self.set(Progress::Arriving);
    }

    pub(crate) fn push(&self, piece: Bytes) {
        self.pieces.borrow_mut().push(piece);
        self.wake();
    }

    pub(crate) fn finish(&self) {
        self.set(Progress::Done);
    }

    pub(crate) fn fail(&self, status: u16, until_ms: u64) {
        self.pieces.borrow_mut().clear();
        self.set(Progress::Failed { status, until_ms });
    }

    fn set(&self, p: Progress) {
        self.progress.set(p);
        self.wake();
    }

    fn wake(&self) {
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until the download has started, failed or ended.
    pub(crate) async fn started(&self) {
        poll_fn(|cx| {
            if self.progress.get() != Progress::Requested {
                return Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The pieces after the first `from`, or how the download ended.
    async fn next(&self, from: usize) -> Next {
        poll_fn(|cx| {
            let pieces = self.pieces.borrow();
            match self.progress.get() {
                Progress::Failed { .. } => return Poll::Ready(Next::Failed),
                _ if pieces.len() > from => {
                    return Poll::Ready(Next::Pieces(pieces[from..].to_vec()));
                }
                Progress::Done => return Poll::Ready(Next::Done),
                Progress::Requested | Progress::Arriving => {}
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// How a request for a segment on its way was answered.
pub(crate) enum Served {
    /// Complete; the connection may carry the next request.
    Complete,
    /// An error status was sent (the connection may be kept).
    Refused,
    /// The connection must close (a failure after the head, or a write error).
    Close,
}

/// Answers one GET or HEAD from `seg` (of `content_type`), as its bytes arrive. `wait` bounds
/// the wait for the first byte and for every piece after it (the owner's own deadlines end a
/// stuck download before that).
pub(crate) async fn serve(
    stream: &mut Conn,
    seg: &Inflight,
    content_type: &str,
    keep_alive: bool,
    head_only: bool,
    wait: Duration,
) -> (Served, usize) {
    if monoio::time::timeout(wait, seg.started()).await.is_err() {
        return refuse(stream, 504, keep_alive, head_only).await;
    }
    if let Progress::Failed { status, .. } = seg.progress() {
        return refuse(stream, status, keep_alive, head_only).await;
    }
    let length = seg.content_length.get();
    let head = match length {
        Some(n) => http::response_head(
            200,
            content_type,
            Some(n as usize),
            "public, max-age=86400, immutable",
            keep_alive,
        ),
        None => chunked_head(content_type, keep_alive),
    };
    if head_only {
        return match write_bufs(stream, vec![head]).await {
            Ok(n) => (Served::Complete, n),
            Err(_) => (Served::Close, 0),
        };
    }
    let mut out = vec![head];
    let (mut from, mut written) = (0, 0);
    loop {
        let next = match monoio::time::timeout(wait, seg.next(from)).await {
            Ok(n) => n,
            Err(_) => return (Served::Close, written),
        };
        match next {
            Next::Pieces(pieces) => {
                from += pieces.len();
                if length.is_none() {
                    let len: usize = pieces.iter().map(Bytes::len).sum();
                    out.push(Bytes::from(format!("{len:x}\r\n")));
                    out.extend(pieces);
                    out.push(Bytes::from_static(b"\r\n"));
                } else {
                    out.extend(pieces);
                }
            }
            Next::Done => {
                if length.is_none() {
                    out.push(Bytes::from_static(b"0\r\n\r\n"));
                }
                return match write_bufs(stream, out).await {
                    Ok(n) => (Served::Complete, written + n),
                    Err(_) => (Served::Close, written),
                };
            }
            // Whatever was sent stays short of the length (or without its last chunk).
            Next::Failed => {
                let _ = write_bufs(stream, out).await;
                return (Served::Close, written);
            }
        }
        match write_bufs(stream, std::mem::take(&mut out)).await {
            Ok(n) => written += n,
            Err(_) => return (Served::Close, written),
        }
    }
}

fn chunked_head(content_type: &str, keep_alive: bool) -> Bytes {
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\nServer: edge-engine\r\nContent-Type: {content_type}\r\n\
Transfer-Encoding: chunked\r\nCache-Control: public, max-age=86400, immutable\r\n\
Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    ))
}

async fn refuse(
    stream: &mut Conn,
    status: u16,
    keep_alive: bool,
    head_only: bool,
) -> (Served, usize) {
    match write_bufs(stream, error_response(status, keep_alive, head_only)).await {
        Ok(n) => (Served::Refused, n),
        Err(_) => (Served::Close, 0),
    }
}

/// An HLS origin's failure as the edge answers it: 502, 504, or 404.
pub(crate) fn error_response(status: u16, keep_alive: bool, head_only: bool) -> Vec<Bytes> {
    let body: &'static str = match status {
        404 => "not found at the origin\n",
        504 => "origin timed out\n",
        _ => "origin error\n",
    };
    let head = http::response_head(
        status,
        "text/plain",
        Some(body.len()),
        "no-store",
        keep_alive,
    );
    if head_only {
        vec![head]
    } else {
        vec![head, Bytes::from_static(body.as_bytes())]
    }
}
