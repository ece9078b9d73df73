//! A connection's way out: its [`SendQueue`] and the writer task that drains it.
//!
//! Everything a connection sends goes through here, in order: the session's control bytes and
//! the stream's shared frames (`Bytes` handles, never copies). The writer gathers up to
//! [`MAX_BATCH`] buffers into one `writev`, then awaits the socket, so one viewer's work per
//! wake-up is bounded and a stalled socket stalls only its own writer. Before each write it
//! asks the shard's [`WritePacer`] whether to wait for the write window's release.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use edge_core::batching::{self, BACKLOG_BYTES};
use edge_core::http;
use edge_core::media::{Frame, MediaKind};
use edge_core::queue::{PushOutcome, QueueLimits, SendQueue};
use edge_core::replica::FinishReason;
use edge_core::rtmp::chunk;
use edge_core::rtmp::server::status_message;
use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;

use crate::machine::stats::{BytesOut, ShardStats};
use crate::net::clock::Clock;
use crate::net::conn::Pieces;
use crate::shard::pacer::WritePacer;

/// Buffers per `writev`.
pub(crate) const MAX_BATCH: usize = 64;

/// Which wire form of a frame this connection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Rtmp,
    Flv,
    /// A WebRTC session: it takes the frames' FLV tags (HTTP-FLV's bytes, shared) and its
    /// writer turns them into RTP ([`crate::net::webrtc`]); nothing of HTTP is written.
    Rtc,
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// Send what is queued, then close (end of stream, not-found replies).
    Flush,
    /// Close now (slow viewer, protocol error, peer gone).
    Abort,
}

/// The outgoing half of one connection.
pub(crate) struct Outlet {
    pub id: u64,
    pub wire: Wire,
    clock: Clock,
    /// The writer closed it for staying over its queue limit too long.
    slow: Cell<bool>,
    queue: RefCell<SendQueue>,
    writer: Cell<Option<Waker>>,
    reader: Cell<Option<Waker>>,
    close: Cell<Option<Close>>,
    /// The join sequence has been delivered; live frames flow.
    joined: Cell<bool>,
    /// The writer waits for the write window's release: a frame does not wake it (unless
    /// the backlog means it must not wait).
    holding: Cell<bool>,
    /// Latest timestamp queued per kind (audio, video), to skip what a resync repeats.
    last_ts: Cell<[Option<u64>; 2]>,
    /// Why the stream finished this viewer (WebRTC: its offer's answer says so).
    finished: Cell<Option<FinishReason>>,
}

impl Outlet {
    pub(crate) fn new(id: u64, wire: Wire, limits: QueueLimits, clock: Clock) -> Rc<Self> {
        Rc::new(Self {
            id,
            wire,
            clock,
            slow: Cell::new(false),
            queue: RefCell::new(SendQueue::new(limits)),
            writer: Cell::new(None),
            reader: Cell::new(None),
            close: Cell::new(None),
            joined: Cell::new(false),
            holding: Cell::new(false),
            last_ts: Cell::new([None, None]),
            finished: Cell::new(None),
        })
    }

    /// Queues bytes that must arrive. A peer whose unread replies pass the queue's hard limit
    /// is disconnected.
    pub(crate) fn push_control(&self, bytes: Bytes) {
        if self.close.get().is_some() {
            return;
        }
        if !self.queue.borrow_mut().push_control(bytes) {
            tracing::warn!(
                conn = self.id,
                "closing: unread replies over the send queue's hard limit"
            );
            self.close(Close::Abort);
            return;
        }
        self.wake_writer();
    }

    /// Queues a frame's wire form under the queue's overflow policy.
    pub(crate) fn push_frame(&self, frame: &Frame, now_ms: u64) -> PushOutcome {
        if self.close.get().is_some() {
            return PushOutcome::Dropped;
        }
        let bytes = match self.wire {
            Wire::Rtmp => frame.rtmp.clone(),
            Wire::Flv | Wire::Rtc => frame.flv.clone(),
        };
        let (outcome, queued) = {
            let mut q = self.queue.borrow_mut();
            let outcome = q.push_frame(bytes, frame.flags, now_ms);
            (outcome, q.queued_bytes())
        };
        if outcome == PushOutcome::Queued {
            if let Some(i) = kind_index(frame.kind) {
                let mut ts = self.last_ts.get();
                ts[i] = Some(frame.timestamp_ms);
                self.last_ts.set(ts);
            }
            if !self.holding.get() || queued >= BACKLOG_BYTES {
                self.wake_writer();
            }
        }
        outcome
    }

    /// Whether a resync should skip `frame` because this outlet already queued it.
    pub(crate) fn already_has(&self, frame: &Frame) -> bool {
        if frame.flags.header {
            return false;
        }
        match kind_index(frame.kind) {
            Some(i) => self.last_ts.get()[i].is_some_and(|t| frame.timestamp_ms <= t),
            None => false,
        }
    }

    pub(crate) fn require_sync_point(&self) {
        self.queue.borrow_mut().require_sync_point();
    }

    pub(crate) fn joined(&self) -> bool {
        self.joined.get()
    }

    /// Delivers the head of a stream's join (HTTP-FLV: the response head and the FLV file
    /// header) and lets live frames through from now on.
    pub(crate) fn start_join(&self) {
        if self.wire == Wire::Flv {
            self.push_control(http::flv_response_head());
            self.push_control(Bytes::from_static(edge_core::flv::FILE_HEADER_CHUNKED));
        }
        self.joined.set(true);
    }

    /// Ends the viewer with `reason` in its wire's words, then closes after the flush.
    /// RTMP: an `onStatus` (error-level unless the stream ended in order). HTTP-FLV: the
    /// last chunk at an orderly end, nothing more after a failure (the client sees the
    /// chunked body cut short, not an end), or a 404/502 if the response never started.
    pub(crate) fn finish(&self, reason: FinishReason) {
        match self.wire {
            Wire::Rtmp => {
                self.push_control(status_message(
                    chunk::PLAY_STREAM_ID,
                    reason.rtmp_level(),
                    reason.rtmp_code(),
                    reason.description(),
                ));
            }
            Wire::Flv if !self.joined() => {
                let body = format!("{}\n", reason.description());
                self.push_control(http::response_head(
                    reason.http_status(),
                    "text/plain",
                    Some(body.len()),
                    "no-cache",
                    false,
                ));
                self.push_control(Bytes::from(body));
            }
            Wire::Flv if reason.is_failure() => {}
            Wire::Flv => self.push_control(Bytes::from_static(edge_core::flv::LAST_CHUNK)),
            Wire::Rtc => self.finished.set(Some(reason)),
        }
        self.close(Close::Flush);
    }

    /// Why the stream finished this viewer, if it did.
    pub(crate) fn finished(&self) -> Option<FinishReason> {
        self.finished.get()
    }

    /// Whether the writer closed it for being slow (the connection's end counts it).
    pub(crate) fn was_slow(&self) -> bool {
        self.slow.get()
    }

    /// Resolves when the queue has been over its limit for `slow_viewer_ms` (never while
    /// it keeps up); checked again whenever the writer wakes.
    async fn overdue(&self) {
        let Some(at) = self.queue.borrow().overdue_at_ms() else {
            return std::future::pending().await;
        };
        monoio::time::sleep_until(self.clock.instant_at(at).into()).await;
    }

    /// Starts closing. The first reason wins.
    pub(crate) fn close(&self, how: Close) {
        if self.close.get().is_none() {
            self.close.set(Some(how));
        }
        self.wake_writer();
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// How the outlet is closing, if it is.
    pub(crate) fn close_mode(&self) -> Option<Close> {
        self.close.get()
    }

    /// Resolves once [`Outlet::close`] was called (the reader selects on this).
    pub(crate) async fn closed(&self) {
        poll_fn(|cx| {
            if self.close.get().is_some() {
                Poll::Ready(())
            } else {
                self.reader.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    async fn aborted(&self) {
        poll_fn(|cx| {
            if self.close.get() == Some(Close::Abort) {
                Poll::Ready(())
            } else {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Resolves once something is queued or the outlet is closing.
    pub(crate) async fn queued(&self) {
        poll_fn(|cx| {
            if !self.queue.borrow().is_empty() || self.close.get().is_some() {
                Poll::Ready(())
            } else {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for the release of the write window the pacer held this writer for, or less:
    /// a close, or a backlog of [`BACKLOG_BYTES`], ends the wait at once.
    async fn held(&self, pacer: &WritePacer, at: u64) {
        self.holding.set(true);
        let mut parked = false;
        poll_fn(|cx| {
            if pacer.released(at)
                || self.close.get().is_some()
                || self.queue.borrow().queued_bytes() >= BACKLOG_BYTES
            {
                return Poll::Ready(());
            }
            if !parked {
                pacer.park(at, cx.waker().clone());
                parked = true;
            }
            self.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        self.holding.set(false);
    }

    /// Drains the queue into `sink` until the outlet closes or the socket fails, counting
    /// every write in `bytes_out` as it completes.
    ///
    /// Before each write of a joined viewer the shard's `pacer` may hold it for the shard's
    /// write window (adaptive batching, `--write-coalesce-ms`), so the frames that arrive
    /// meanwhile leave in one `writev`. The join sequence, a backlog and closes are never held.
    pub(crate) async fn run_writer<W: AsyncWriteRent + Pieces>(
        self: Rc<Self>,
        mut sink: W,
        pacer: Rc<WritePacer>,
        bytes_out: BytesOut,
    ) {
        let mut batch = WriteBatch::default();
        let mut last_write_ms = None;
        // The join (an FLV response head, the GOP burst) has all been written: from now on
        // live frames may be held. The burst is queued at once with the join, so this is the
        // first time the queue runs dry after it.
        let mut join_written = false;
        loop {
            self.queued().await;
            let writer = batching::Writer {
                joined: join_written,
                closing: self.close.get().is_some(),
                queued_bytes: self.queue.borrow().queued_bytes(),
                last_write_ms,
            };
            // A WebRTC session is not held: its packets leave as they come (the UDP sends
            // are batched across sessions anyway), or the viewer's jitter buffer grows by
            // the hold.
            let hold = if self.wire == Wire::Rtc {
                None
            } else {
                pacer.hold(writer)
            };
            if let Some(at) = hold {
                self.held(&pacer, at).await;
            }
            let more = poll_fn(|cx| {
                let mut q = self.queue.borrow_mut();
                match self.close.get() {
                    Some(Close::Abort) => return Poll::Ready(false),
                    Some(Close::Flush) if q.is_empty() => return Poll::Ready(false),
                    _ => {}
                }
                if q.poll_batch(MAX_BATCH, &mut batch.bufs) > 0 {
                    Poll::Ready(true)
                } else {
                    self.writer.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            if !more {
                break;
            }
            last_write_ms = Some(self.clock.now_ms());
            // A peer that stopped reading leaves this write pending forever: an abort
            // (slow viewer, shutdown) cancels it, and the in-flight batch goes with it; so
            // does staying over the queue limit for `slow_viewer_ms` with no frame arriving
            // to notice it.
            let outcome = monoio::select! {
                r = write_batch(&mut sink, batch) => Some(r),
                _ = self.aborted() => None,
                _ = self.overdue() => {
                    self.slow.set(true);
                    self.close(Close::Abort);
                    None
                }
            };
            let Some((res, b)) = outcome else { break };
            pacer.wrote();
            join_written = join_written || (self.joined.get() && self.queue.borrow().is_empty());
            batch = b;
            batch.clear();
            match res {
                Ok(n) => bytes_out.add(n),
                Err(_) => {
                    self.close(Close::Abort);
                    break;
                }
            }
        }
        // Best effort: let the peer see an orderly end for flushed closes.
        let _ = sink.shutdown().await;
    }
}

/// Ends a connection: closes the outlet (`how`, unless a reason was already set), makes the
/// close abortive when it aborts, waits for the writer (which counted its bytes as it wrote
/// them), and counts the viewer if the writer closed it for being slow.
pub(crate) async fn finish(
    outlet: &Outlet,
    how: Close,
    fd: std::os::fd::RawFd,
    writer: monoio::task::JoinHandle<()>,
    stats: &ShardStats,
) {
    outlet.close(how);
    if outlet.close_mode() == Some(Close::Abort) {
        reset_on_close(fd);
    }
    writer.await;
    if outlet.was_slow() {
        tracing::warn!(
            viewer = outlet.id,
            "closed a slow viewer: over its queue limit with no progress"
        );
        stats
            .slow_viewer_disconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Makes the coming close of `fd` abortive (RST): an aborted viewer's unsent bytes are
/// discarded at once instead of lingering in kernel buffers behind a zero window.
pub(crate) fn reset_on_close(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket fd the caller still owns, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn kind_index(kind: MediaKind) -> Option<usize> {
    match kind {
        MediaKind::Audio => Some(0),
        MediaKind::Video => Some(1),
        MediaKind::Data => None,
    }
}

/// Buffers for one `writev`, with their iovecs. Owned by the kernel while the write is in
/// flight and handed back after, as monoio's rent model requires.
#[derive(Default)]
pub(crate) struct WriteBatch {
    bufs: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    /// First iovec not fully written.
    start: usize,
}

impl WriteBatch {
    fn prepare(&mut self) -> usize {
        self.iov.clear();
        self.start = 0;
        let mut total = 0;
        for b in &self.bufs {
            self.iov.push(libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            });
            total += b.len();
        }
        total
    }

    /// Marks `n` more bytes written. (monoio 0.2.4's own `write_vectored_all` does not
    /// advance a partially written iovec, so we keep our own cursor.)
    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.start < self.iov.len() {
            let v = &mut self.iov[self.start];
            if n >= v.iov_len {
                n -= v.iov_len;
                self.start += 1;
            } else {
                // SAFETY: n < iov_len, so the new base stays inside the same live buffer,
                // which `self.bufs` keeps alive for as long as the iovec exists.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                v.iov_len -= n;
                n = 0;
            }
        }
    }

    fn clear(&mut self) {
        self.bufs.clear();
        self.iov.clear();
        self.start = 0;
    }
}

// SAFETY: the iovecs point into `bufs`, which the batch owns and does not touch while the
// runtime holds it; moving the batch moves only the Vec headers, not the heap data the
// pointers refer to.
unsafe impl IoVecBuf for WriteBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        // SAFETY: start <= iov.len(), so this is in bounds or one past the end.
        unsafe { self.iov.as_ptr().add(self.start) }
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len() - self.start
    }
}

/// Writes `bufs` in order with as few syscalls as the socket allows (one `writev` when it
/// takes everything), without copying them.
pub(crate) async fn write_bufs<W: AsyncWriteRent + Pieces>(
    sink: &mut W,
    bufs: Vec<Bytes>,
) -> std::io::Result<usize> {
    let batch = WriteBatch {
        bufs,
        ..WriteBatch::default()
    };
    write_batch(sink, batch).await.0
}

async fn write_batch<W: AsyncWriteRent + Pieces>(
    sink: &mut W,
    mut batch: WriteBatch,
) -> (std::io::Result<usize>, WriteBatch) {
    if let Some(h3) = sink.as_h3() {
        let bufs = std::mem::take(&mut batch.bufs);
        return (h3.send(bufs).await, batch);
    }
    if let Some(media) = sink.as_media() {
        let bufs = std::mem::take(&mut batch.bufs);
        return (media.feed(bufs), batch);
    }
    let total = batch.prepare();
    let mut done = 0;
    while done < total {
        if batch.bufs.len() == 1 {
            // One buffer: a plain write avoids the iovec indirection.
            let buf = batch.bufs[0].slice(done..);
            let (res, _) = sink.write(buf).await;
            match res {
                Ok(0) => return (Err(std::io::ErrorKind::WriteZero.into()), batch),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), batch),
            }
            continue;
        }
        let (res, b) = sink.writev(batch).await;
        batch = b;
        match res {
            Ok(0) => return (Err(std::io::ErrorKind::WriteZero.into()), batch),
            Ok(n) => {
                done += n;
                batch.advance(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), batch),
        }
    }
    (Ok(done), batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_cursor_advances_through_partial_writes() {
        let mut b = WriteBatch {
            bufs: vec![
                Bytes::from_static(b"abc"),
                Bytes::from_static(b"defgh"),
                Bytes::from_static(b"ij"),
            ],
            ..WriteBatch::default()
        };
        assert_eq!(b.prepare(), 10);
        b.advance(4);
        assert_eq!(b.read_iovec_len(), 2);
        let first = b.iov[b.start];
        // SAFETY: the iovec points into a live static buffer of at least iov_len bytes.
        let s = unsafe { std::slice::from_raw_parts(first.iov_base as *const u8, first.iov_len) };
        assert_eq!(s, b"efgh");
        b.advance(4);
        assert_eq!(b.read_iovec_len(), 1);
        b.advance(2);
        assert_eq!(b.read_iovec_len(), 0);
    }
}
