//! The registry client: edge-core's [`RegistrySession`] driven on threads of its own, never on
//! a shard. One thread runs the session and writes commands; a reader thread per command
//! connection and one subscriber thread (`SUBSCRIBE edge:events`) hand it what Redis sends.
//! Shards talk to it over a bounded channel ([`ShardRegistry::register`], never blocking) and
//! hear from it through their [`Inbox`] (every [`ClusterUpdate`], woken like a socket).
//!
//! Must not: be called from a shard in a way that blocks, decide anything the session
//! decides, or hold a lock a shard waits on for more than a queue push.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_core::cluster::{ClusterUpdate, ClusterView, Load, NodeRecord};
use edge_core::registry::{
    channel_message, RegistryEffect, RegistryNote, RegistrySession, CHANNEL,
};
use edge_core::resp::{self, Decoder, Value};
use edge_core::StreamKey;
use tracing::{info, warn};

use crate::config::RegistryConfig;
use crate::machine::stats::Stats;

mod transport;

use crate::machine::registry::{Inbox, Input, Leaver, RegistryStatus, ShardRegistry, MAX_REQUESTS};
use transport::{Reader, Writer};

/// `/api/v1/cluster` is rendered again at most this often (ms): a burst of events costs one
/// rendering, not one per event.
const RENDER_EVERY_MS: u64 = 200;

/// Starts the registry threads; one handle per shard.
pub(crate) fn start(
    config: &RegistryConfig,
    me: NodeRecord,
    shards: usize,
    stats: Arc<Stats>,
) -> anyhow::Result<(Vec<ShardRegistry>, Arc<RegistryStatus>, Leaver)> {
    let (tx, rx) = mpsc::sync_channel(MAX_REQUESTS);
    let status = Arc::new(RegistryStatus::default());
    let inboxes: Vec<Arc<Inbox>> = (0..shards).map(|_| Arc::default()).collect();
    let id: Arc<str> = Arc::from(me.id.as_str());
    let handles = inboxes
        .iter()
        .map(|inbox| ShardRegistry {
            tx: tx.clone(),
            inbox: Arc::clone(inbox),
            status: Arc::clone(&status),
            me: Arc::clone(&id),
        })
        .collect();
    let sub_tx = tx.clone();
    let leaver = Leaver { tx: tx.clone() };
    let sub_config = config.clone();
    std::thread::Builder::new()
        .name("edge-registry-sub".into())
        .spawn(move || subscriber(&sub_config, sub_tx))?;
    let thread = Driver {
        host: config.host.clone(),
        port: config.port,
        tls: config.tls.clone(),
        session: RegistrySession::new(me.clone(), config.login.clone(), 0),
        tx,
        conn: None,
        generation: 0,
        inboxes,
        status: Arc::clone(&status),
        stats,
        view: ClusterView::new(&me.id),
        first_seen: HashMap::new(),
        cluster_dirty: false,
        rendered_at: 0,
        start: Instant::now(),
    };
    std::thread::Builder::new()
        .name("edge-registry".into())
        .spawn(move || thread.run(rx))?;
    Ok((handles, status, leaver))
}

/// The registry thread's state.
struct Driver {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    session: RegistrySession,
    /// For the reader threads it starts.
    tx: SyncSender<Input>,
    conn: Option<Writer>,
    /// Numbers command connections, so a reader's report on an old one is ignored.
    generation: u64,
    inboxes: Vec<Arc<Inbox>>,
    status: Arc<RegistryStatus>,
    stats: Arc<Stats>,
    /// The same picture the shards keep, for `/api/v1/cluster`.
    view: ClusterView,
    /// When this node first saw each stream registered (ms, this thread's clock).
    first_seen: HashMap<StreamKey, u64>,
    /// The view changed since `/api/v1/cluster` was last rendered (at `rendered_at`, ms).
    cluster_dirty: bool,
    rendered_at: u64,
    start: Instant,
}

impl Driver {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn run(mut self, rx: Receiver<Input>) {
        let mut fx = Vec::new();
        let mut leaving: Option<mpsc::Sender<()>> = None;
        loop {
            if leaving.is_some() && self.session.is_settled() {
                self.drop_conn();
                let _ = leaving.take().map(|ack| ack.send(()));
                return;
            }
            let now = self.now();
            let wait = self
                .session
                .poll_timeout()
                .map_or(1000, |t| t.saturating_sub(now))
                .min(1000)
                .min(self.render_due(now).unwrap_or(1000));
            match rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(Input::Register(k)) => self.session.register(k, &mut fx),
                Ok(Input::Unregister(k)) => self.session.unregister(&k, &mut fx),
                Ok(Input::Reply(g, v)) if g == self.generation => {
                    self.session.handle_reply(v, &mut fx)
                }
                Ok(Input::Lost(g, reason)) if g == self.generation => {
                    self.drop_conn();
                    let now = self.now();
                    self.session.handle_lost(&reason, now, &mut fx);
                }
                Ok(Input::Event(payload)) => self.session.handle_event(&payload, &mut fx),
                Ok(Input::Subscribed) => {
                    let now = self.now();
                    self.session.handle_subscribed(now, &mut fx);
                }
                Ok(Input::Leave(ack)) => {
                    self.session.leave(&mut fx);
                    leaving = Some(ack);
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = self.now();
            self.sample_load();
            self.session.handle_timeout(now, &mut fx);
            while !fx.is_empty() {
                for e in std::mem::take(&mut fx) {
                    self.effect(e, &mut fx);
                }
            }
            if self.render_due(now) == Some(0) {
                self.render_cluster(now);
            }
            let c = self.session.counters;
            let s = &self.status;
            s.commands.store(c.commands, Ordering::Relaxed);
            s.errors.store(c.errors, Ordering::Relaxed);
            s.conflicts.store(c.conflicts, Ordering::Relaxed);
            s.reconnects.store(c.reconnects, Ordering::Relaxed);
            s.events.store(c.events, Ordering::Relaxed);
        }
    }

    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            c.shutdown();
        }
        self.generation += 1;
    }

    fn effect(&mut self, e: RegistryEffect, fx: &mut Vec<RegistryEffect>) {
        match e {
            RegistryEffect::Connect => {
                match transport::connect(&self.host, self.port, self.tls.as_ref()) {
                    Ok((writer, reader)) => {
                        self.drop_conn();
                        let generation = self.generation;
                        let tx = self.tx.clone();
                        let spawned = std::thread::Builder::new()
                            .name("edge-registry-rd".into())
                            .spawn(move || read_replies(reader, generation, tx));
                        if let Err(e) = spawned {
                            let now = self.now();
                            self.session
                                .handle_lost(&format!("no reader thread: {e}"), now, fx);
                            return;
                        }
                        self.conn = Some(writer);
                        let now = self.now();
                        self.session.handle_connected(now, fx);
                    }
                    Err(e) => {
                        let now = self.now();
                        self.session.handle_lost(&e, now, fx);
                    }
                }
            }
            RegistryEffect::Send(bytes) => {
                let written = match &mut self.conn {
                    Some(c) => c.write_all(&bytes).map_err(|e| e.to_string()),
                    None => Err("not connected".into()),
                };
                if let Err(e) = written {
                    self.drop_conn();
                    let now = self.now();
                    self.session.handle_lost(&format!("write: {e}"), now, fx);
                }
            }
            RegistryEffect::Close => {
                self.drop_conn();
                let now = self.now();
                self.session.handle_lost("protocol error", now, fx);
            }
            RegistryEffect::Update(u) => {
                let now = self.now();
                if let ClusterUpdate::Reachable(r) = u {
                    self.status.reachable.store(r, Ordering::Relaxed);
                }
                self.view.apply(&u, now);
                self.cluster_dirty = true;
                for inbox in &self.inboxes {
                    inbox.push(u.clone());
                }
            }
            RegistryEffect::Note(n) => match n {
                RegistryNote::Connected => {
                    info!(host = %self.host, port = self.port, "registry connected")
                }
                RegistryNote::Lost { reason, retry_ms } => warn!(
                    host = %self.host, port = self.port,
                    "registry unreachable ({reason}); streams and viewers carry on, retrying in {retry_ms} ms"
                ),
                RegistryNote::Registered(k) => info!(stream = %k, "registered in the registry"),
                RegistryNote::Conflict { stream, holder } => warn!(
                    %stream, %holder,
                    "the registry places this stream on another live node: its publisher here is refused"
                ),
                RegistryNote::ServerError(e) => warn!("registry: Redis answered an error: {e}"),
            },
        }
    }

    /// The node's load from the shards' counters.
    /// The node's load: the same sums and egress rate the control loop keeps for the
    /// machine-level gauges.
    fn sample_load(&mut self) {
        let a = crate::machine::report::activity(&self.stats);
        let control = &self.stats.control;
        self.session.set_load(Load {
            streams: a.streams,
            rtmp_viewers: a.rtmp_viewers,
            flv_viewers: a.flv_viewers,
            hls_viewers: a.hls_viewers,
            webrtc_viewers: a.webrtc_viewers,
            egress_bps: control.egress_bps.load(Ordering::Relaxed),
            draining: control.is_draining(),
        });
    }

    /// In how long `/api/v1/cluster` is due to be rendered, when the view changed.
    fn render_due(&self, now: u64) -> Option<u64> {
        self.cluster_dirty
            .then(|| (self.rendered_at + RENDER_EVERY_MS).saturating_sub(now))
    }

    fn render_cluster(&mut self, now: u64) {
        self.cluster_dirty = false;
        self.rendered_at = now;
        let mut nodes: Vec<&NodeRecord> = self.view.nodes().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let age = now.saturating_sub(self.view.nodes_at_ms);
        let nodes: Vec<ClusterNode<'_>> = nodes
            .iter()
            .map(|n| ClusterNode {
                id: &n.id,
                role: n.role.as_str(),
                rtmp: &n.rtmp,
                http: &n.http,
                streams: n.load.streams,
                viewers: crate::machine::report::ViewerCounts {
                    rtmp: n.load.rtmp_viewers,
                    flv: n.load.flv_viewers,
                    hls: n.load.hls_viewers,
                    webrtc: n.load.webrtc_viewers,
                },
                egress_bps: n.load.egress_bps,
                draining: n.load.draining,
                seen_ms_ago: age,
            })
            .collect();
        let mut listed: Vec<(&StreamKey, &str, bool)> = self.view.streams().collect();
        listed.sort();
        let keys: std::collections::HashSet<&StreamKey> = listed.iter().map(|s| s.0).collect();
        self.first_seen.retain(|k, _| keys.contains(k));
        let mut streams = Vec::new();
        for (k, node, node_live) in listed {
            let since = *self.first_seen.entry(k.clone()).or_insert(now);
            streams.push(ClusterStream {
                stream: k.as_str(),
                node,
                node_live,
                age_ms: now - since,
            });
        }
        let json = crate::machine::report::json_line(&Cluster {
            node: self.session.me(),
            registry: RegistryReport {
                reachable: self.view.reachable(),
                host: &self.host,
                port: self.port,
            },
            nodes,
            streams,
        });
        *self
            .status
            .cluster_json
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = json;
    }
}

/// `GET /api/v1/cluster`.
#[derive(serde::Serialize)]
struct Cluster<'a> {
    node: &'a str,
    registry: RegistryReport<'a>,
    nodes: Vec<ClusterNode<'a>>,
    streams: Vec<ClusterStream<'a>>,
}

#[derive(serde::Serialize)]
struct RegistryReport<'a> {
    reachable: bool,
    host: &'a str,
    port: u16,
}

/// A live node, as its registry record says.
#[derive(serde::Serialize)]
struct ClusterNode<'a> {
    id: &'a str,
    role: &'static str,
    rtmp: &'a str,
    http: &'a str,
    streams: u64,
    viewers: crate::machine::report::ViewerCounts,
    egress_bps: u64,
    draining: bool,
    seen_ms_ago: u64,
}

/// A stream and the node that holds it.
#[derive(serde::Serialize)]
struct ClusterStream<'a> {
    stream: &'a str,
    node: &'a str,
    node_live: bool,
    age_ms: u64,
}

/// Reads replies from one command connection until it ends.
fn read_replies(mut stream: Reader, generation: u64, tx: SyncSender<Input>) {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let reason = loop {
        match stream.read(&mut buf) {
            Ok(0) => break "Redis closed the connection".to_string(),
            Ok(n) => decoder.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break e.to_string(),
        }
        loop {
            match decoder.next_reply() {
                Ok(Some(v)) => {
                    if tx.send(Input::Reply(generation, v)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Input::Lost(generation, format!("bad reply: {e}")));
                    stream.shutdown();
                    return;
                }
            }
        }
    };
    let _ = tx.send(Input::Lost(generation, reason));
}

/// The subscription: connects, subscribes to [`CHANNEL`], hands every message over; again
/// after a loss, with a bounded backoff. Ends when the registry thread is gone.
fn subscriber(config: &RegistryConfig, tx: SyncSender<Input>) {
    let mut backoff = Duration::from_millis(edge_core::registry::BACKOFF_MIN_MS);
    loop {
        let connected = transport::connect(&config.host, config.port, config.tls.as_ref());
        if let Ok((mut writer, mut stream)) = connected {
            let mut hello = Vec::new();
            config.login.auth(&mut hello);
            resp::command(&["SUBSCRIBE", CHANNEL], &mut hello);
            if writer.write_all(&hello).is_ok() {
                let mut decoder = Decoder::default();
                let mut buf = vec![0u8; 64 * 1024];
                'read: while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    decoder.feed(&buf[..n]);
                    while let Ok(Some(v)) = decoder.next_reply() {
                        let input = match channel_message(&v) {
                            Some(payload) => Input::Event(payload.to_vec()),
                            None if is_subscribed(&v) => {
                                backoff =
                                    Duration::from_millis(edge_core::registry::BACKOFF_MIN_MS);
                                Input::Subscribed
                            }
                            None => continue,
                        };
                        if tx.send(input).is_err() {
                            return;
                        }
                    }
                    if decoder.buffered() > (1 << 20) {
                        break 'read;
                    }
                }
            }
        }
        // Gone: is anyone still listening? (An empty event is ignored.)
        if tx
            .try_send(Input::Event(Vec::new()))
            .is_err_and(|e| matches!(e, TrySendError::Disconnected(_)))
        {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(edge_core::registry::BACKOFF_MAX_MS));
    }
}

fn is_subscribed(v: &Value) -> bool {
    v.as_array()
        .and_then(|a| a.first())
        .is_some_and(|k| k.as_bytes() == Some(b"subscribe"))
}
