//! The byte streams the connection drivers run on: plain TCP, TLS over it ([`crate::net::tls`]),
//! or one HTTP/3 request stream ([`crate::net::quic`]), whole or split into a read half (the
//! driver's) and a write half (the outlet writer's).
//!
//! An enum rather than a generic parameter, so the RTMP and HTTP drivers, the outlet writer
//! and the upstream tasks exist once in the binary; the match per read or write is nothing
//! beside the system call behind it.
//!
//! Must not: buffer, copy or inspect what passes through.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::net::quic::{H3Read, H3Stream, H3Write};
use crate::net::tls::{TlsRead, TlsStream, TlsWrite};

/// A connection, whole.
pub(crate) enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpOwnedReadHalf, TcpOwnedWriteHalf>>),
    H3(Box<H3Stream>),
}

/// A connection's read half.
pub(crate) enum ConnRead {
    Tcp(TcpOwnedReadHalf),
    Tls(TlsRead<TcpOwnedReadHalf>),
    H3(H3Read),
}

/// A connection's write half.
pub(crate) enum ConnWrite {
    Tcp(TcpOwnedWriteHalf),
    Tls(TlsWrite<TcpOwnedWriteHalf>),
    H3(Box<H3Write>),
}

impl Conn {
    pub(crate) fn split(self) -> (ConnRead, ConnWrite) {
        match self {
            Conn::Tcp(s) => {
                let (r, w) = s.into_split();
                (ConnRead::Tcp(r), ConnWrite::Tcp(w))
            }
            Conn::Tls(s) => {
                let s = *s;
                (ConnRead::Tls(s.read), ConnWrite::Tls(s.write))
            }
            Conn::H3(s) => {
                let s = *s;
                (ConnRead::H3(s.read), ConnWrite::H3(Box::new(s.write)))
            }
        }
    }
}

/// A sink that may take response pieces as the `Bytes` they are: an HTTP/3 stream hands them
/// to QUIC without copying them (an arena segment stays where it is until it is encrypted
/// into packets). Byte streams write them through their iovecs instead.
pub(crate) trait Pieces {
    fn as_h3(&mut self) -> Option<&mut H3Write> {
        None
    }
    /// A sink that takes whole pieces and is no byte stream (a WebRTC session's).
    fn as_media(&mut self) -> Option<&mut dyn MediaSink> {
        None
    }
}

/// Takes a writer's pieces as they are, each whole (a frame's FLV tag): what it makes of
/// them is its own. `Err` ends the writer.
pub(crate) trait MediaSink {
    fn feed(&mut self, pieces: Vec<bytes::Bytes>) -> std::io::Result<usize>;
}

impl Pieces for Conn {
    fn as_h3(&mut self) -> Option<&mut H3Write> {
        match self {
            Conn::H3(s) => Some(&mut s.write),
            _ => None,
        }
    }
}

impl Pieces for ConnWrite {
    fn as_h3(&mut self) -> Option<&mut H3Write> {
        match self {
            ConnWrite::H3(w) => Some(w),
            _ => None,
        }
    }
}

/// The socket's descriptor, taken before the stream moves into its driver (to make a close
/// abortive, see [`crate::shard::outlet::reset_on_close`]).
pub(crate) fn raw_fd(s: &TcpStream) -> RawFd {
    s.as_raw_fd()
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Self::Tcp($s) => $e,
            Self::Tls($s) => $e,
            Self::H3($s) => $e,
        }
    };
}

impl AsyncReadRent for Conn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.read(buf).await)
    }
    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.readv(buf).await)
    }
}

impl AsyncWriteRent for Conn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.write(buf).await)
    }
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.writev(buf).await)
    }
    async fn flush(&mut self) -> io::Result<()> {
        dispatch!(self, s => s.flush().await)
    }
    async fn shutdown(&mut self) -> io::Result<()> {
        dispatch!(self, s => s.shutdown().await)
    }
}

impl AsyncReadRent for ConnRead {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.read(buf).await)
    }
    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.readv(buf).await)
    }
}

impl AsyncWriteRent for ConnWrite {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.write(buf).await)
    }
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        dispatch!(self, s => s.writev(buf).await)
    }
    async fn flush(&mut self) -> io::Result<()> {
        dispatch!(self, s => s.flush().await)
    }
    async fn shutdown(&mut self) -> io::Result<()> {
        dispatch!(self, s => s.shutdown().await)
    }
}

/// A peer's address for a log line: the address, or `-` when there is none to show (never
/// `Some(…)`).
pub(crate) struct PeerAddr(pub Option<std::net::SocketAddr>);

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}
