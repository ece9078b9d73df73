//! Publishers and viewers, as monoio tasks on a worker thread, by role: [`publisher`] (the
//! looped source, SEI probes in every frame), [`stream`] (RTMP and HTTP-FLV viewers, which
//! measure every frame's probe), [`hls`] (viewers that reload playlists and fetch
//! segments through the thread's pool) and [`llhls`] (blocking reloads and parts, through the
//! same pool) and [`webrtc`] (WHEP, a str0m client each). Each records into its thread's
//! [`Stats`](crate::stats::Stats); nothing is shared between threads while running except
//! the live counters ([`crate::live`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_core::rtmp::client::{ClientEvent, RtmpClient};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::live::Ctx;

pub mod hls;
pub mod llhls;
pub mod publisher;
pub mod stream;
pub mod webrtc;

pub use hls::hls_viewer;
pub use llhls::llhls_viewer;
pub use publisher::{publish, Source};
pub use stream::{flv_viewer, rtmp_viewer};
pub use webrtc::webrtc_viewer;

pub(crate) async fn connect(ctx: &Ctx, addr: SocketAddr) -> Option<TcpStream> {
    match monoio::time::timeout(Duration::from_secs(10), crate::net::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            ctx.live.sockets.fetch_add(1, Ordering::Relaxed);
            Some(s)
        }
        Ok(Err(_)) => {
            ctx.error("connect");
            None
        }
        Err(_) => {
            ctx.error("timeout");
            None
        }
    }
}

/// A player's playback clock over downloaded media: playback starts once `need` is buffered
/// (or the stream ended); media that arrives after what was buffered ran out is a stall.
#[derive(Default)]
pub(crate) struct Playback {
    buffered_until: Option<Instant>,
    startup: Duration,
}

/// What an arrival did to playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    Buffering,
    /// Playback starts with this arrival.
    Started,
    Playing,
    /// It came after the buffer ran out.
    Stall,
}

impl Playback {
    /// `dur` of media received at `done`.
    pub(crate) fn arrived(
        &mut self,
        done: Instant,
        dur: Duration,
        need: Duration,
        ended: bool,
    ) -> Arrival {
        match self.buffered_until {
            Some(end) if done > end => {
                self.buffered_until = Some(done + dur);
                Arrival::Stall
            }
            Some(end) => {
                self.buffered_until = Some(end + dur);
                Arrival::Playing
            }
            None => {
                self.startup += dur;
                if self.startup >= need || ended {
                    self.buffered_until = Some(done + self.startup);
                    Arrival::Started
                } else {
                    Arrival::Buffering
                }
            }
        }
    }

    pub(crate) fn started(&self) -> bool {
        self.buffered_until.is_some()
    }
}

/// Why an RTMP exchange stopped.
pub(crate) enum RtmpStop {
    /// The run's deadline passed (not an error).
    Deadline,
    /// An error of this kind.
    Error(&'static str),
}

/// One round of an RTMP client: write what it has to send, read once, feed it in.
pub(crate) async fn rtmp_round(
    s: &mut TcpStream,
    client: &mut RtmpClient,
    buf: &mut Vec<u8>,
    ctx: &Ctx,
) -> Result<Vec<ClientEvent>, RtmpStop> {
    if let Some(out) = client.poll_transmit() {
        if s.write_all(out).await.0.is_err() {
            return Err(RtmpStop::Error("closed"));
        }
    }
    buf.clear();
    if read_append(s, buf, ctx.until()).await.is_err() {
        return Err(if ctx.running() {
            RtmpStop::Error("closed")
        } else {
            RtmpStop::Deadline
        });
    }
    ctx.live
        .bytes
        .fetch_add(buf.len() as u64, Ordering::Relaxed);
    let mut events = Vec::new();
    client
        .handle_input(buf, &mut events)
        .map(|()| events)
        .map_err(|_| RtmpStop::Error("parse"))
}

/// Appends one read to `buf` (into its spare capacity); the error kind when the connection
/// ends, the buffer is full or time is up.
pub(crate) async fn read_append(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    until: Instant,
) -> Result<(), &'static str> {
    read_append_at_most(s, buf, until, usize::MAX).await
}

/// [`read_append`], reading at most `max` bytes.
pub(crate) async fn read_append_at_most(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    until: Instant,
    max: usize,
) -> Result<(), &'static str> {
    let (len, cap) = (buf.len(), buf.capacity());
    if len == cap {
        return Err("parse");
    }
    let end = cap.min(len.saturating_add(max));
    let slice = monoio::buf::SliceMut::new(std::mem::take(buf), len, end);
    let left = until.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, s.read(slice)).await {
        Ok((Ok(n), b)) => {
            *buf = b.into_inner();
            if n == 0 {
                return Err("closed");
            }
            Ok(())
        }
        Ok((Err(_), b)) => {
            *buf = b.into_inner();
            Err("closed")
        }
        Err(_) => {
            *buf = Vec::with_capacity(cap);
            Err("timeout")
        }
    }
}
