//! Edge-mode connections to origins: a pull (an RTMP play) or a forward session (an RTMP
//! publish), one task per connection. These tasks only move bytes through edge-core's
//! [`RtmpClient`] and report what happened through a [`LinkSink`]; which origin, when to give
//! up, and what viewers see is decided by the stream's owner state machine
//! ([`edge_core::owner::Owner`]).
//!
//! Must not: hold the shard, decide a failover, or read a clock other than the shard's.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use edge_core::media::{Frame, MediaKind};
use edge_core::queue::FrameQueue;
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::upstream::{LinkError, LinkEvent, OriginUrl};
use edge_core::{LinkId, ShardId, StreamKey};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};

use crate::machine::stats::{Counter, Stats, StreamView};
use crate::net::conn::{Conn, ConnRead};
use crate::net::contain;
use crate::net::dial;
use crate::net::tls;

const PULL_READ_BUF: usize = 64 * 1024;
/// How long a forward waits for `NetStream.Publish.Start` at least.
const PUBLISH_START_MIN: Duration = Duration::from_secs(5);

/// Where a connection task reports. The shard implements it by handing the report to the
/// stream's owner state machine; a `false` means the connection is no longer wanted.
pub(crate) trait LinkSink {
    fn link_event(self: Rc<Self>, key: &StreamKey, link: LinkId, ev: LinkEvent) -> bool;
}

/// What a connection task is told.
pub(crate) struct LinkParams {
    pub key: StreamKey,
    pub link: LinkId,
    pub url: OriginUrl,
    /// `{stream}[?query]` to play or publish.
    pub stream_name: String,
    /// Connect, and no-answer, timeout.
    pub timeout: Duration,
    /// Connecting (name, TCP, TLS) may take this long (an `[[origins]]` table's
    /// `connect_timeout_ms`, else `timeout`).
    pub connect_timeout: Duration,
    /// The way out to this origin.
    pub egress: dial::Egress,
    /// For `rtmps://` origins.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub view: Arc<StreamView>,
    pub stats: Arc<Stats>,
    pub shard: ShardId,
}

/// A one-way stop signal for a connection task (single-threaded; one waiting task at a
/// time — the forward writer is woken through its queue instead).
#[derive(Default)]
pub(crate) struct Cancel {
    done: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Cancel {
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    pub(crate) fn cancel(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.done.get()
    }

    /// Resolves once cancelled (one waiting task at a time).
    pub(crate) async fn cancelled(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Frames waiting for a forward session: edge-core's [`FrameQueue`] (its overflow policy)
/// and the waker of the session's writer.
pub(crate) struct ForwardQueue {
    frames: RefCell<FrameQueue>,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

impl ForwardQueue {
    pub(crate) fn new(limit_bytes: usize) -> Rc<Self> {
        Rc::new(Self {
            frames: RefCell::new(FrameQueue::new(limit_bytes)),
            waker: Cell::new(None),
            closed: Cell::new(false),
        })
    }

    pub(crate) fn push(&self, f: &Frame) {
        if self.frames.borrow_mut().push(f) {
            self.wake();
        }
    }

    /// The session starts over from `join`.
    pub(crate) fn reset(&self, join: Vec<Frame>) {
        self.frames.borrow_mut().reset(join);
        self.wake();
    }

    /// The forward's connection is no longer wanted.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.frames.borrow_mut().reset(Vec::new());
        self.wake();
    }

    fn pop(&self) -> Option<Frame> {
        self.frames.borrow_mut().pop()
    }

    fn is_empty(&self) -> bool {
        self.frames.borrow().is_empty()
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Connects to an origin within `timeout` (name resolution and, for `rtmps://`, the TLS
/// handshake included).
async fn connect(p: &LinkParams) -> Result<Conn, LinkError> {
    let url = &p.url;
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let tcp = dial::connect_via(host, url.port, p.connect_timeout, &p.egress)
        .await
        .map_err(LinkError::Connect)?;
    if !url.tls {
        return Ok(Conn::Tcp(tcp));
    }
    let Some(config) = &p.tls else {
        return Err(LinkError::Connect(format!(
            "{url}: no TLS client configuration"
        )));
    };
    match monoio::time::timeout(
        p.connect_timeout,
        tls::connect(tcp.into_split(), Arc::clone(config), host),
    )
    .await
    {
        Ok(Ok(s)) => Ok(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => Err(LinkError::Connect(format!("TLS with {host}: {e}"))),
        Err(_) => Err(LinkError::Connect(format!(
            "TLS with {host}: no handshake in {} ms",
            p.connect_timeout.as_millis()
        ))),
    }
}

/// A status code that means "not here": move on to the next origin.
fn refusal(code: &str) -> bool {
    code.ends_with("StreamNotFound")
        || code.ends_with("UnpublishNotify")
        || code.ends_with("BadName")
        || code.ends_with(".Failed")
        || code.ends_with("Rejected")
}

/// Runs one pull connection until it fails or is cancelled, reporting to the stream's owner.
pub(crate) async fn run_pull(sink: Rc<dyn LinkSink>, p: LinkParams, cancel: Rc<Cancel>) {
    let end = pull_session(&sink, &p, &cancel).await;
    if let Some(ev) = end {
        if !cancel.is_cancelled() {
            Rc::clone(&sink).link_event(&p.key, p.link, ev);
        }
    }
}

/// The pull's session; `Some(report)` says how it ended, `None` that it was not wanted.
async fn pull_session(
    sink: &Rc<dyn LinkSink>,
    p: &LinkParams,
    cancel: &Cancel,
) -> Option<LinkEvent> {
    let failed = |e: LinkError| Some(LinkEvent::Failed(e));
    let mut stream = monoio::select! {
        r = connect(p) => match r {
            Ok(s) => s,
            Err(e) => return failed(e),
        },
        _ = cancel.cancelled() => return None,
    };
    let config = ClientConfig::new(&p.url.to_string(), &p.stream_name, ClientMode::Play);
    let mut client = match RtmpClient::new(config) {
        Ok(c) => c,
        Err(e) => return failed(LinkError::Protocol(e.to_string())),
    };
    let mut buf = Vec::with_capacity(PULL_READ_BUF);
    let mut events = Vec::new();
    loop {
        while let Some(out) = client.poll_transmit() {
            if let (Err(e), _) = stream.write_all(out).await {
                return failed(LinkError::Write(e.to_string()));
            }
        }
        let (res, b) = monoio::select! {
            r = stream.read(buf) => r,
            _ = cancel.cancelled() => return None,
        };
        buf = b;
        let n = match res {
            Ok(0) => return failed(LinkError::Closed),
            Ok(n) => n,
            Err(e) => return failed(LinkError::Read(e.to_string())),
        };
        p.view.upstream_bytes.fetch_add(n as u64, Relaxed);
        p.stats.shards[p.shard.0]
            .bytes_in
            .fetch_add(n as u64, Relaxed);
        let protocol_error =
            match contain::peer_input(|| client.handle_input(&buf[..n], &mut events)) {
                Ok(r) => r.err().map(|e| e.to_string()),
                Err(panic) => {
                    p.stats.shards[p.shard.0].peer_panics.inc();
                    return failed(LinkError::Protocol(panic));
                }
            };
        buf.clear();
        // Media before a protocol error still reaches the viewers; then the link fails.
        for ev in events.drain(..) {
            let ev = match ev {
                ClientEvent::Started => LinkEvent::Started,
                ClientEvent::Metadata { body } => LinkEvent::Metadata(body),
                ClientEvent::Media {
                    kind,
                    timestamp,
                    body,
                } => LinkEvent::Media {
                    kind,
                    timestamp,
                    body,
                },
                ClientEvent::Redirect { url } => {
                    return Some(match OriginUrl::parse(&url) {
                        Ok(u) => LinkEvent::Redirect(u),
                        Err(e) => LinkEvent::Failed(LinkError::Refused(format!(
                            "a redirect to an unusable URL ({e})"
                        ))),
                    })
                }
                ClientEvent::Status { code } if refusal(&code) => {
                    return failed(LinkError::Refused(code))
                }
                // Our links do not offer capsEx, so an origin has no reason to ask; one that
                // does anyway is ignored (the link's own failover covers a node that leaves).
                ClientEvent::Status { .. } | ClientEvent::ReconnectRequest { .. } => continue,
                ClientEvent::CommandError => return failed(LinkError::CommandRefused),
            };
            if !Rc::clone(sink).link_event(&p.key, p.link, ev) {
                return None;
            }
        }
        if let Some(e) = protocol_error {
            return failed(LinkError::Protocol(e));
        }
    }
}

/// Runs one forward session (a publish to one origin) until it fails or is cancelled; the
/// owner decides whether another follows.
pub(crate) async fn run_forward(
    sink: Rc<dyn LinkSink>,
    p: LinkParams,
    queue: Rc<ForwardQueue>,
    cancel: Rc<Cancel>,
) {
    let result = forward_session(&sink, &p, &queue, &cancel).await;
    if let Err(e) = result {
        if !cancel.is_cancelled() && !queue.closed.get() {
            Rc::clone(&sink).link_event(&p.key, p.link, LinkEvent::Failed(e));
        }
    }
}

/// Shared between a forward session's writer (this task) and its reader task.
#[derive(Default)]
struct SessionState {
    started: Cell<bool>,
    failed: RefCell<Option<LinkError>>,
    done: Cell<bool>,
}

/// One publish connection. `Ok` when it ended because it is no longer wanted.
async fn forward_session(
    sink: &Rc<dyn LinkSink>,
    p: &LinkParams,
    queue: &Rc<ForwardQueue>,
    cancel: &Rc<Cancel>,
) -> Result<(), LinkError> {
    let stream = monoio::select! {
        r = connect(p) => r?,
        _ = cancel.cancelled() => return Ok(()),
    };
    let config = ClientConfig::new(&p.url.to_string(), &p.stream_name, ClientMode::Publish);
    let client = RtmpClient::new(config).map_err(|e| LinkError::Protocol(e.to_string()))?;
    let client = Rc::new(RefCell::new(client));
    let state = Rc::new(SessionState::default());
    let (reader, mut writer) = stream.split();
    let session_end = Cancel::new();
    monoio::spawn(forward_reader(
        reader,
        Rc::clone(&client),
        Rc::clone(&state),
        Rc::clone(queue),
        Rc::clone(&session_end),
        Arc::clone(&p.stats),
        p.shard,
    ));
    let start_wait = p.timeout.max(PUBLISH_START_MIN);
    let mut start_timeout = std::pin::pin!(monoio::time::sleep(start_wait));
    let mut joined = false;
    let stats = &p.stats.shards[p.shard.0];
    let result = loop {
        // Wait for something to do: bytes the session wants out, frames, a start, an end.
        let ready = poll_fn(|cx| {
            let has_output = client.borrow().has_output();
            if cancel.is_cancelled()
                || queue.closed.get()
                || state.failed.borrow().is_some()
                || has_output
                || (state.started.get() && (!joined || !queue.is_empty()))
            {
                Poll::Ready(())
            } else {
                queue.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        });
        if state.started.get() {
            ready.await;
        } else {
            monoio::select! {
                _ = ready => {}
                _ = &mut start_timeout => {
                    if !state.started.get() {
                        break Err(LinkError::NoPublishStart(start_wait.as_millis() as u64));
                    }
                }
            }
        }
        if cancel.is_cancelled() || queue.closed.get() {
            break Ok(());
        }
        if let Some(e) = state.failed.borrow_mut().take() {
            break Err(e);
        }
        if state.started.get() {
            if !joined {
                joined = true;
                stats.forward_sessions.inc();
                // The owner answers with the join frames, queued before this returns.
                if !Rc::clone(sink).link_event(&p.key, p.link, LinkEvent::Started) {
                    break Ok(());
                }
            }
            let mut c = client.borrow_mut();
            let mut publish = |f: &Frame| match f.kind {
                MediaKind::Data => c.publish_metadata(&f.payload),
                kind => c.publish(kind, f.timestamp_ms as u32, f.payload.clone()),
            };
            if let Some(e) = std::iter::from_fn(|| queue.pop()).find_map(|f| publish(&f).err()) {
                *state.failed.borrow_mut() = Some(LinkError::Protocol(format!("publish: {e}")));
            }
        }
        let out = client.borrow_mut().poll_transmit();
        if let Some(out) = out {
            let len = out.len() as u64;
            if let (Err(e), _) = writer.write_all(out).await {
                break Err(LinkError::Write(e.to_string()));
            }
            p.view.forward_bytes.fetch_add(len, Relaxed);
        }
    };
    state.done.set(true);
    session_end.cancel();
    if joined {
        stats.forward_sessions.dec();
    }
    result
}

/// Reads the origin's side of a forward session: start, refusals, acknowledgements.
async fn forward_reader(
    mut reader: ConnRead,
    client: Rc<RefCell<RtmpClient>>,
    state: Rc<SessionState>,
    queue: Rc<ForwardQueue>,
    session_end: Rc<Cancel>,
    stats: Arc<Stats>,
    shard: ShardId,
) {
    let mut buf = Vec::with_capacity(4096);
    let failure = loop {
        let (res, b) = monoio::select! {
            r = reader.read(buf) => r,
            _ = session_end.cancelled() => return,
        };
        buf = b;
        let n = match res {
            Ok(0) => break LinkError::Closed,
            Ok(n) => n,
            Err(e) => break LinkError::Read(e.to_string()),
        };
        let mut events = Vec::new();
        let parsed =
            contain::peer_input(|| client.borrow_mut().handle_input(&buf[..n], &mut events));
        buf.clear();
        let protocol_error = match parsed {
            Ok(r) => r.err(),
            // The forward's session is dropped with this connection; a new one starts over.
            Err(panic) => {
                stats.shards[shard.0].peer_panics.inc();
                break LinkError::Protocol(panic);
            }
        };
        let mut refused = None;
        for ev in events {
            match ev {
                ClientEvent::Started => state.started.set(true),
                ClientEvent::Status { code } if refusal(&code) => {
                    refused = Some(LinkError::Refused(code))
                }
                ClientEvent::Redirect { url } => refused = Some(LinkError::PublishRedirected(url)),
                ClientEvent::CommandError => refused = Some(LinkError::CommandRefused),
                _ => {}
            }
        }
        // A refusal just before the broken bytes is the better reason to report.
        if let Some(e) = refused {
            break e;
        }
        if let Some(e) = protocol_error {
            break LinkError::Protocol(e.to_string());
        }
        queue.wake();
    };
    if !state.done.get() {
        *state.failed.borrow_mut() = Some(failure);
        queue.wake();
    }
}
