//! An HTTP/3 request stream as the byte stream the HTTP/1.1 driver runs on: reading it gives
//! the request as an HTTP/1.1 head (then nothing until the client goes), and what the driver
//! writes (an HTTP/1.1 response) goes out as HEADERS and DATA frames.
//!
//! Owns: converting the response as it is written (edge-core's `ResponseFrames`), handing
//! its pieces to the QUIC stream without copying them, waiting while flow control holds
//! them, and ending the stream: finished once the response is whole, reset if it was cut
//! short, so a client never takes a truncated body for a complete one.
//!
//! Must not: buffer more than the pieces of one write beyond what QUIC accepted.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use edge_core::h3::code;
use edge_core::h3::response::ResponseFrames;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::BufResult;
use quinn_proto::{ConnectionHandle, StreamId};

use super::session::{Exchange, Kept, NewRequest};
use super::QuicEndpoint;

/// A request stream, whole.
pub(crate) struct H3Stream {
    pub(crate) read: H3Read,
    pub(crate) write: H3Write,
    kept: Kept,
}

/// Its read half: the request head once, then end-of-stream when the client goes.
pub(crate) struct H3Read {
    head: Bytes,
    exchange: Rc<Exchange>,
}

/// Its write half: the response.
pub(crate) struct H3Write {
    endpoint: Rc<QuicEndpoint>,
    conn: ConnectionHandle,
    id: StreamId,
    exchange: Rc<Exchange>,
    frames: ResponseFrames,
    /// Frames QUIC has not taken yet.
    queued: VecDeque<Bytes>,
    peer: SocketAddr,
}

impl H3Stream {
    /// Request `req`, read off connection `conn` from `peer`, as the driver will read it.
    pub(super) fn new(
        endpoint: Rc<QuicEndpoint>,
        conn: ConnectionHandle,
        peer: SocketAddr,
        req: NewRequest,
    ) -> Self {
        let mut head = req.request.to_http1();
        // One request per stream: the driver ends after this response.
        head.truncate(head.len() - 2);
        head.extend_from_slice(b"connection: close\r\n\r\n");
        // The body (a WHEP offer's) after the head, as the driver reads it over HTTP/1.1.
        head.extend_from_slice(&req.request.body);
        let head_only = req.request.method == "HEAD";
        H3Stream {
            kept: req.kept,
            read: H3Read {
                head: Bytes::from(head),
                exchange: Rc::clone(&req.exchange),
            },
            write: H3Write {
                endpoint,
                conn,
                id: req.stream,
                exchange: req.exchange,
                frames: ResponseFrames::new(head_only),
                queued: VecDeque::new(),
                peer,
            },
        }
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.write.peer
    }

    /// The address the client sent to, when the endpoint's socket is bound to one (a
    /// wildcard bind does not say which of the host's addresses a datagram came in on).
    pub(crate) fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.write.endpoint.local_ip()
    }

    /// What the serving layer keeps until the QUIC connection closes.
    pub(crate) fn kept(&self) -> &Kept {
        &self.kept
    }

    pub(crate) async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read.read(buf).await
    }
    pub(crate) async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read.readv(buf).await
    }
    pub(crate) async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.write.write(buf).await
    }
    pub(crate) async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.write.writev(buf).await
    }
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.write.flush().await
    }
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        self.write.shutdown().await
    }
}

impl H3Read {
    /// The next bytes of the request head, or `None` once it was all read.
    fn take(&mut self, max: usize) -> Option<Bytes> {
        if self.head.is_empty() {
            return None;
        }
        Some(self.head.split_to(max.min(self.head.len())))
    }

    /// Copies what is left of the head into `dst` (at most its length); waits for the
    /// client to go once nothing is left, and then reads 0.
    async fn read_into(&mut self, dst: *mut u8, len: usize) -> usize {
        if let Some(piece) = self.take(len) {
            // SAFETY: the caller's buffer has room for `len` bytes at `dst`, and `piece` is
            // at most that long.
            unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), dst, piece.len()) };
            return piece.len();
        }
        let x = Rc::clone(&self.exchange);
        poll_fn(|cx| {
            if x.is_gone() {
                Poll::Ready(())
            } else {
                x.register(cx.waker());
                Poll::Pending
            }
        })
        .await;
        0
    }

    pub(crate) async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let len = buf.bytes_total();
        let n = self.read_into(buf.write_ptr(), len).await;
        // SAFETY: `n` bytes were written at the buffer's start.
        unsafe { buf.set_init(n) };
        (Ok(n), buf)
    }

    pub(crate) async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // The first buffer only: a reader loops for the rest.
        let (ptr, len) = if buf.write_iovec_len() == 0 {
            (std::ptr::null_mut(), 0)
        } else {
            // SAFETY: the iovec array has at least one entry.
            let v = unsafe { *buf.write_iovec_ptr() };
            (v.iov_base.cast::<u8>(), v.iov_len)
        };
        if len == 0 {
            return (Ok(0), buf);
        }
        let n = self.read_into(ptr, len).await;
        // SAFETY: `n` bytes were written at the first buffer's start.
        unsafe { buf.set_init(n) };
        (Ok(n), buf)
    }
}

impl H3Write {
    /// Writes response pieces as frames, without copying them; returns when QUIC has taken
    /// them all (its send buffer, bounded by flow control and its send window).
    pub(crate) async fn send(&mut self, pieces: Vec<Bytes>) -> io::Result<usize> {
        let mut total = 0;
        let mut frames = Vec::new();
        for piece in pieces {
            total += piece.len();
            self.frames
                .push(piece, &mut frames)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        self.queued.extend(frames);
        self.drain().await?;
        Ok(total)
    }

    async fn drain(&mut self) -> io::Result<()> {
        loop {
            if self.exchange.is_gone() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.exchange.take_writable();
            self.endpoint
                .write(self.conn, self.id, self.queued.make_contiguous())?;
            while self.queued.front().is_some_and(Bytes::is_empty) {
                self.queued.pop_front();
            }
            if self.queued.is_empty() {
                return Ok(());
            }
            let x = Rc::clone(&self.exchange);
            poll_fn(|cx| {
                if x.is_gone() || x.take_writable() {
                    Poll::Ready(())
                } else {
                    x.register(cx.waker());
                    Poll::Pending
                }
            })
            .await;
        }
    }

    pub(crate) async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` is valid for `bytes_init` bytes while `buf` lives.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let piece = Bytes::copy_from_slice(bytes);
        (self.send(vec![piece]).await, buf)
    }

    pub(crate) async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let mut pieces = Vec::new();
        // SAFETY: the iovecs are valid for their lengths while `buf` lives.
        unsafe {
            let vecs = std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len());
            for v in vecs {
                let s = std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len);
                pieces.push(Bytes::copy_from_slice(s));
            }
        }
        (self.send(pieces).await, buf)
    }
}

impl H3Write {
    /// Everything written is handed to QUIC already.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The stream ends when this half is dropped (finished or reset).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for H3Write {
    fn drop(&mut self) {
        let whole = self.queued.is_empty() && self.frames.finish().is_ok();
        let how = if whole {
            None
        } else {
            Some(code::INTERNAL_ERROR)
        };
        self.endpoint.end_stream(self.conn, self.id, how);
    }
}
