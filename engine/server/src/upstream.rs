//! Edge-mode connections to origins: the pull (an RTMP play) and the forward (an RTMP
//! publish). These tasks only move bytes through edge-core's [`RtmpClient`]; which origin to
//! use, when to give up and what viewers see is decided on the owner shard (`shard::edge`)
//! with edge-core's [`UpstreamPlanner`](edge_core::upstream::UpstreamPlanner).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use edge_core::media::{Frame, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::upstream::{Failure, OriginUrl, UpstreamAction, UpstreamPlanner, UpstreamTiming};
use edge_core::StreamKey;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use tracing::{info, warn};

use crate::contain;
use crate::shard::{Counter, Shard};
use crate::stats::{LinkView, StreamView};

const PULL_READ_BUF: usize = 64 * 1024;
/// How long a forward waits for `NetStream.Publish.Start` at least.
const PUBLISH_START_MIN: Duration = Duration::from_secs(5);

/// A one-way stop signal for a connection task (single-threaded; one waiting task at a
/// time — the forward writer is woken through its queue instead).
#[derive(Default)]
pub struct Cancel {
    done: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Cancel {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    pub fn cancel(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.done.get()
    }

    /// Resolves once cancelled (one waiting task at a time).
    pub async fn cancelled(&self) {
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

/// What a pull connection reports to its owner shard.
#[derive(Debug)]
pub enum LinkEvent {
    /// `NetStream.Play.Start`.
    Started,
    Media {
        kind: MediaKind,
        timestamp: u32,
        body: Bytes,
    },
    Metadata(Bytes),
    /// The connection is over (it reports nothing after this).
    Failed(Failure, String),
    /// The origin sends us to another one (the connection is over).
    Redirect(OriginUrl),
}

/// Connects to an origin within `timeout` (name resolution included).
async fn connect(url: &OriginUrl, timeout: Duration) -> Result<TcpStream, String> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match monoio::time::timeout(timeout, resolve(host, url.port)).await {
        Ok(resolved) => resolved?,
        Err(_) => {
            return Err(format!(
                "resolving {}: no answer in {} ms",
                url.host,
                timeout.as_millis()
            ))
        }
    };
    // Every address the name has, in the resolver's order (an unreachable IPv6 address
    // before a working IPv4 one must not fail the origin).
    let mut failures = Vec::new();
    for addr in addrs {
        match monoio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => failures.push(format!("connect {addr}: {e}")),
            Err(_) => failures.push(format!(
                "connect {addr}: no answer in {} ms",
                timeout.as_millis()
            )),
        }
    }
    Err(failures.join("; "))
}

/// Resolves `host` with the system resolver on a thread of its own: `getaddrinfo` blocks, and
/// a shard that blocks stalls every viewer it serves. IP literals need no thread. The answer
/// comes back through a slot and a waker; a caller that gave up leaves the thread to finish
/// and drop it. Control path only (once per upstream connect), so the slot's mutex is fine.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    type Answer = Result<Vec<SocketAddr>, String>;
    let slot: Arc<(std::sync::Mutex<Option<Answer>>, atomic_waker::AtomicWaker)> = Arc::default();
    let (theirs, name) = (Arc::clone(&slot), host.to_string());
    std::thread::Builder::new()
        .name("edge-resolve".into())
        .spawn(move || {
            let answer = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("resolving {name}: {e}"))
                .map(|addrs| addrs.collect::<Vec<_>>())
                .and_then(|addrs| {
                    (!addrs.is_empty())
                        .then_some(addrs)
                        .ok_or(format!("{name} has no address"))
                });
            *theirs.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            theirs.1.wake();
        })
        .map_err(|e| format!("resolving {host}: no thread: {e}"))?;
    poll_fn(|cx| {
        slot.1.register(cx.waker());
        match slot.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    })
    .await
}

/// A status code that means "not here": move on to the next origin.
fn refusal(code: &str) -> bool {
    code.ends_with("StreamNotFound")
        || code.ends_with("UnpublishNotify")
        || code.ends_with("BadName")
        || code.ends_with(".Failed")
        || code.ends_with("Rejected")
}

/// Runs one pull connection (generation `gen`) until it fails or is cancelled, reporting to
/// the owner shard. A `false` from the shard means the connection is no longer wanted.
pub async fn run_pull(
    shard: Rc<Shard>,
    key: StreamKey,
    gen: u64,
    url: OriginUrl,
    stream_name: String,
    cancel: Rc<Cancel>,
    view: Arc<StreamView>,
) {
    let end = pull_session(&shard, &key, gen, &url, &stream_name, &cancel, &view).await;
    if let Some(ev) = end {
        if !cancel.is_cancelled() {
            shard.pull_event(&key, gen, ev);
        }
    }
}

async fn pull_session(
    shard: &Rc<Shard>,
    key: &StreamKey,
    gen: u64,
    url: &OriginUrl,
    stream_name: &str,
    cancel: &Cancel,
    view: &StreamView,
) -> Option<LinkEvent> {
    let timeout = Duration::from_millis(shard.config.upstream_timeout_ms);
    let mut stream = monoio::select! {
        r = connect(url, timeout) => match r {
            Ok(s) => s,
            Err(e) => return Some(LinkEvent::Failed(Failure::ConnectFailed, e)),
        },
        _ = cancel.cancelled() => return None,
    };
    let lost = |why: String| Some(LinkEvent::Failed(Failure::ConnectionLost, why));
    let mut client = match RtmpClient::new(ClientConfig::new(
        &url.to_string(),
        stream_name,
        ClientMode::Play,
    )) {
        Ok(c) => c,
        Err(e) => return Some(LinkEvent::Failed(Failure::ConnectFailed, e.to_string())),
    };
    let mut buf = Vec::with_capacity(PULL_READ_BUF);
    loop {
        while let Some(out) = client.poll_transmit() {
            if let (Err(e), _) = stream.write_all(out).await {
                return lost(format!("write: {e}"));
            }
        }
        let (res, b) = monoio::select! {
            r = stream.read(buf) => r,
            _ = cancel.cancelled() => return None,
        };
        buf = b;
        let n = match res {
            Ok(0) => return lost("the origin closed the connection".into()),
            Ok(n) => n,
            Err(e) => return lost(format!("read: {e}")),
        };
        view.upstream_bytes.fetch_add(n as u64, Relaxed);
        let mut events = Vec::new();
        let protocol_error =
            match contain::peer_input(|| client.handle_input(&buf[..n], &mut events)) {
                Ok(r) => r.err(),
                Err(panic) => {
                    shard.stats().peer_panics.inc();
                    return lost(panic);
                }
            };
        buf.clear();
        // Media before a protocol error still reaches the viewers; then the link fails.
        let events = events
            .into_iter()
            .map(Ok)
            .chain(protocol_error.map(|e| Err(format!("protocol error: {e}"))));
        for ev in events {
            let ev = match ev {
                Ok(ev) => ev,
                Err(why) => return lost(why),
            };
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
                        Err(e) => LinkEvent::Failed(Failure::NotFound, format!("redirect: {e}")),
                    })
                }
                ClientEvent::Status { code } if refusal(&code) => {
                    return Some(LinkEvent::Failed(
                        Failure::NotFound,
                        format!("the origin answered {code}"),
                    ))
                }
                ClientEvent::Status { .. } => continue,
                ClientEvent::CommandError => {
                    return Some(LinkEvent::Failed(
                        Failure::NotFound,
                        "the origin refused a command".into(),
                    ))
                }
            };
            if !shard.pull_event(key, gen, ev) {
                return None;
            }
        }
    }
}

/// Frames waiting to be forwarded: bounded in bytes; over the bound everything queued is
/// dropped and forwarding resumes at the next keyframe (the origin's viewers see a skip,
/// the edge's viewers nothing).
pub struct ForwardQueue {
    frames: RefCell<VecDeque<Frame>>,
    bytes: Cell<usize>,
    limit: usize,
    skip_to_sync_point: Cell<bool>,
    waker: Cell<Option<Waker>>,
    pub dropped: Cell<u64>,
}

impl ForwardQueue {
    pub fn new(limit: usize) -> Rc<Self> {
        Rc::new(Self {
            frames: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            limit,
            skip_to_sync_point: Cell::new(false),
            waker: Cell::new(None),
            dropped: Cell::new(0),
        })
    }

    pub fn push(&self, f: &Frame) {
        if self.skip_to_sync_point.get() {
            if !f.flags.sync_point && !f.flags.header {
                self.dropped.set(self.dropped.get() + 1);
                return;
            }
            if f.flags.sync_point {
                self.skip_to_sync_point.set(false);
            }
        }
        let len = f.payload.len();
        if self.bytes.get() + len > self.limit {
            let mut q = self.frames.borrow_mut();
            self.dropped.set(self.dropped.get() + q.len() as u64);
            q.clear();
            self.bytes.set(0);
            if !f.flags.sync_point {
                self.skip_to_sync_point.set(true);
                self.dropped.set(self.dropped.get() + 1);
                return;
            }
        }
        self.bytes.set(self.bytes.get() + len);
        self.frames.borrow_mut().push_back(f.clone());
        self.wake();
    }

    fn pop(&self) -> Option<Frame> {
        let f = self.frames.borrow_mut().pop_front()?;
        self.bytes.set(self.bytes.get() - f.payload.len());
        Some(f)
    }

    /// Empties the queue (a new session starts from the join frames instead).
    pub fn clear(&self) {
        self.frames.borrow_mut().clear();
        self.bytes.set(0);
        self.skip_to_sync_point.set(false);
    }

    fn is_empty(&self) -> bool {
        self.frames.borrow().is_empty()
    }

    pub fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Forwards a stream published at this edge to the first origin that takes it, with the
/// same failover as pulls (next origin at once, then bounded backoff), until cancelled.
pub async fn run_forward(
    shard: Rc<Shard>,
    key: StreamKey,
    stream_name: String,
    queue: Rc<ForwardQueue>,
    cancel: Rc<Cancel>,
    view: Arc<StreamView>,
) {
    let timing = UpstreamTiming {
        // A publish has no media to wait for, and stays where it is once accepted.
        media_timeout_ms: u64::MAX / 4,
        probe_ms: u64::MAX / 4,
        ..UpstreamTiming::default()
    };
    let (mut planner, mut action) =
        UpstreamPlanner::new(shard.config.origins.clone(), timing, shard.now_ms());
    shard.stats().forwards_started.inc();
    while let UpstreamAction::Connect { url, .. } = action {
        view.update(|s| s.forward = Some(LinkView::new(url.to_string(), "connecting")));
        let result =
            forward_session(&shard, &key, &url, &stream_name, &queue, &cancel, &view).await;
        if cancel.is_cancelled() {
            break;
        }
        let (why, msg) = match result {
            Ok(()) => break,
            Err(e) => e,
        };
        warn!(shard = shard.id, %key, origin = %url, "forwarding failed: {msg}");
        let now = shard.now_ms();
        action = match planner.handle_failure(why, now) {
            Some(a) => a,
            None => {
                view.update(|s| s.forward = Some(LinkView::new(url.to_string(), "backoff")));
                let wait = planner.poll_timeout().unwrap_or(now).saturating_sub(now);
                monoio::select! {
                    _ = monoio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = cancel.cancelled() => break,
                }
                match planner
                    .handle_timeout(shard.now_ms())
                    .into_iter()
                    .find(|a| matches!(a, UpstreamAction::Connect { .. }))
                {
                    Some(a) => a,
                    None => break,
                }
            }
        };
    }
    view.update(|s| s.forward = None);
}

/// Shared between a forward session's writer (this task) and its reader task.
#[derive(Default)]
struct SessionState {
    started: Cell<bool>,
    failed: RefCell<Option<(Failure, String)>>,
    done: Cell<bool>,
}

/// One publish connection. `Ok` when cancelled; `Err` says why it ended otherwise.
async fn forward_session(
    shard: &Rc<Shard>,
    key: &StreamKey,
    url: &OriginUrl,
    stream_name: &str,
    queue: &Rc<ForwardQueue>,
    cancel: &Rc<Cancel>,
    view: &Arc<StreamView>,
) -> Result<(), (Failure, String)> {
    let timeout = Duration::from_millis(shard.config.upstream_timeout_ms);
    let stream = monoio::select! {
        r = connect(url, timeout) => r.map_err(|e| (Failure::ConnectFailed, e))?,
        _ = cancel.cancelled() => return Ok(()),
    };
    let client = RtmpClient::new(ClientConfig::new(
        &url.to_string(),
        stream_name,
        ClientMode::Publish,
    ))
    .map_err(|e| (Failure::ConnectFailed, e.to_string()))?;
    let client = Rc::new(RefCell::new(client));
    let state = Rc::new(SessionState::default());
    let (reader, mut writer) = stream.into_split();
    let session_end = Cancel::new();
    monoio::spawn(forward_reader(
        reader,
        Rc::clone(&client),
        Rc::clone(&state),
        Rc::clone(queue),
        Rc::clone(&session_end),
    ));
    let start_deadline = std::time::Instant::now() + timeout.max(PUBLISH_START_MIN);
    let mut joined = false;
    let result = loop {
        // Wait for something to do: bytes the session wants out, frames, a start, an end.
        let ready = poll_fn(|cx| {
            let has_output = client.borrow().has_output();
            if cancel.is_cancelled()
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
        if !state.started.get() {
            let left = start_deadline.saturating_duration_since(std::time::Instant::now());
            monoio::select! {
                _ = ready => {}
                _ = monoio::time::sleep(left) => {}
            }
        } else {
            ready.await;
        }
        if cancel.is_cancelled() {
            break Ok(());
        }
        if let Some(e) = state.failed.borrow_mut().take() {
            break Err(e);
        }
        if !state.started.get() && std::time::Instant::now() >= start_deadline {
            break Err((Failure::ConnectFailed, "no NetStream.Publish.Start".into()));
        }
        if state.started.get() {
            let mut c = client.borrow_mut();
            let frames = if joined {
                Vec::new()
            } else {
                joined = true;
                shard.stats().forward_sessions.inc();
                view.update(|s| s.forward = Some(LinkView::new(url.to_string(), "publishing")));
                info!(shard = shard.id, %key, origin = %url, "forwarding the publish");
                shard.forward_join(key)
            };
            let mut publish = |f: &Frame| match f.kind {
                MediaKind::Data => c.publish_metadata(&f.payload),
                kind => c.publish(kind, f.timestamp_ms as u32, f.payload.clone()),
            };
            let mut pending = frames.into_iter().chain(std::iter::from_fn(|| queue.pop()));
            if let Some(e) = pending.find_map(|f| publish(&f).err()) {
                *state.failed.borrow_mut() =
                    Some((Failure::ConnectionLost, format!("publish: {e}")));
            }
        }
        let out = client.borrow_mut().poll_transmit();
        if let Some(out) = out {
            let len = out.len() as u64;
            if let (Err(e), _) = writer.write_all(out).await {
                break Err((Failure::ConnectionLost, format!("write: {e}")));
            }
            view.forward_bytes.fetch_add(len, Relaxed);
        }
    };
    state.done.set(true);
    session_end.cancel();
    if joined {
        shard.stats().forward_sessions.dec();
    }
    result
}

/// Reads the origin's side of a forward session: start, refusals, acknowledgements.
async fn forward_reader(
    mut reader: monoio::net::tcp::TcpOwnedReadHalf,
    client: Rc<RefCell<RtmpClient>>,
    state: Rc<SessionState>,
    queue: Rc<ForwardQueue>,
    session_end: Rc<Cancel>,
) {
    let mut buf = Vec::with_capacity(4096);
    let failure = loop {
        let (res, b) = monoio::select! {
            r = reader.read(buf) => r,
            _ = session_end.cancelled() => return,
        };
        buf = b;
        let n = match res {
            Ok(0) => {
                break (
                    Failure::ConnectionLost,
                    "the origin closed the connection".into(),
                )
            }
            Ok(n) => n,
            Err(e) => break (Failure::ConnectionLost, format!("read: {e}")),
        };
        let mut events = Vec::new();
        let parsed =
            contain::peer_input(|| client.borrow_mut().handle_input(&buf[..n], &mut events));
        buf.clear();
        let protocol_error = match parsed {
            Ok(r) => r.err(),
            // The forward's session is dropped with this connection; a new one starts over.
            Err(panic) => break (Failure::ConnectionLost, panic),
        };
        let mut refused = None;
        for ev in events {
            match ev {
                ClientEvent::Started => state.started.set(true),
                ClientEvent::Status { code } if refusal(&code) => {
                    refused = Some(format!("the origin answered {code}"))
                }
                ClientEvent::Redirect { url } => {
                    refused = Some(format!("the origin redirects publishes to {url}"))
                }
                ClientEvent::CommandError => refused = Some("the origin refused a command".into()),
                _ => {}
            }
        }
        // A refusal just before the broken bytes is the better reason to report.
        if let Some(why) = refused {
            break (Failure::NotFound, why);
        }
        if let Some(e) = protocol_error {
            break (Failure::ConnectionLost, format!("protocol error: {e}"));
        }
        queue.wake();
    };
    if !state.done.get() {
        *state.failed.borrow_mut() = Some(failure);
        queue.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn names_resolve_off_the_shard_and_literals_directly() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let literal = resolve("127.0.0.9", 1935).await.unwrap();
            assert_eq!(literal, ["127.0.0.9:1935".parse().unwrap()]);
            let v6 = resolve("::1", 80).await.unwrap();
            assert_eq!(v6, ["[::1]:80".parse().unwrap()]);
            // Through the resolver thread (/etc/hosts), woken back onto this runtime.
            let named = resolve("localhost", 1935).await.unwrap();
            assert!(
                named
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 1935),
                "{named:?}"
            );
            let bad = resolve("bad host name", 1935).await;
            assert!(bad.is_err(), "{bad:?}");
        });
    }
}
