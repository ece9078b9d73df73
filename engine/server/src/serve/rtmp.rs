//! The RTMP connection driver: moves bytes between a socket and an edge-core
//! [`ServerConnection`], and turns its events into shard calls (publish, play, media).
//!
//! Reading happens here; writing happens in the connection's [`Outlet`] writer task, so a
//! player's control replies and shared media leave in one ordered stream.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use edge_core::access::{Action, HookEvent};
use edge_core::media::{self, MediaError};
use edge_core::rtmp::server::{
    reconnect_request_message, RtmpError, ServerConnection, ServerEvent,
};
use edge_core::rtmp::{chunk, name};
use edge_core::stream::{Departure, PublishError, PublisherId};
use edge_core::StreamKey;
use monoio::io::AsyncReadRent;
use tracing::{debug, info, warn};

use crate::machine::stats::Counter;
use crate::net::conn::Conn;
use crate::net::contain;
use crate::net::mesh::MeshMsg;
use crate::serve::access::{self, Ask, Denial};
use crate::shard::outlet::{finish, Close, Outlet, Wire};
use crate::shard::ShardHandle;

const READ_BUF_IDLE: usize = 4 * 1024;
const READ_BUF_PUBLISH: usize = 64 * 1024;

enum Role {
    None,
    Publisher {
        key: StreamKey,
        id: PublisherId,
        query: Option<Arc<str>>,
    },
    Player {
        key: StreamKey,
        query: Option<Arc<str>>,
    },
}

/// Who the connection is, for access checks and hooks.
struct Peer {
    addr: Option<SocketAddr>,
    id: u64,
}

/// Serves one RTMP (or RTMPS) connection until it closes; `fd` is its socket's.
pub(crate) async fn serve(
    shard: ShardHandle,
    stream: Conn,
    peer: Option<SocketAddr>,
    fd: std::os::fd::RawFd,
) {
    let id = shard.next_conn_id();
    let (mut reader, writer) = stream.split();
    let outlet = Outlet::new(id, Wire::Rtmp, shard.config().queue, shard.clock());
    let writer_task =
        monoio::spawn(Rc::clone(&outlet).run_writer(writer, shard.pacer(), shard.bytes_out()));
    let mut conn = ServerConnection::new();
    let mut role = Role::None;
    let mut buf = Vec::with_capacity(READ_BUF_IDLE);
    let mut events = Vec::new();
    // Protocol errors and refusals flush their last words (e.g. BadName); a vanished peer
    // gets nothing more.
    let mut how = Close::Flush;
    let idle_timeout = std::time::Duration::from_millis(shard.config().idle_timeout_ms);
    let mut reconnect_asked = false;

    let reason = loop {
        // Players only send acknowledgements; everyone else must keep talking.
        let idle = !matches!(role, Role::Player { .. });
        let read = monoio::select! {
            r = reader.read(buf) => r,
            _ = outlet.closed() => break "closed by server".to_string(),
            _ = idle_timer(idle, idle_timeout) => {
                how = Close::Abort;
                break format!("idle for {} ms", idle_timeout.as_millis());
            }
        };
        let (res, b) = read;
        buf = b;
        let n = match res {
            Ok(0) => {
                how = Close::Abort;
                break "peer closed".to_string();
            }
            Ok(n) => n,
            Err(e) => {
                how = Close::Abort;
                break format!("read error: {e}");
            }
        };
        shard
            .stats()
            .bytes_in
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let parsed = contain::peer_input(|| conn.handle_input(&buf[..n], &mut events));
        buf.clear();
        let protocol_error = match parsed {
            Ok(r) => r.err(),
            Err(panic) => {
                // The session may be half-updated: nothing more is read from it or sent,
                // not even the events it produced before panicking.
                shard.stats().connection_errors.inc();
                shard.stats().peer_panics.inc();
                warn!(shard = %shard.id(), peer = %crate::net::conn::PeerAddr(peer), "rtmp connection closed: {panic}");
                how = Close::Abort;
                break panic;
            }
        };
        // Events before a protocol error still count (a publisher's last frames).
        let mut failure = None;
        for ev in events.drain(..) {
            if failure.is_none() {
                let who = Peer { addr: peer, id };
                if let Err(e) = handle_event(&shard, &mut conn, &outlet, &mut role, &who, ev).await
                {
                    failure = Some(e.to_string());
                }
            }
        }
        if let Some(b) = conn.poll_transmit() {
            outlet.push_control(b);
        }
        // Draining: a publisher that offered Enhanced RTMP reconnect is asked, once, to
        // reconnect elsewhere (a publisher sends all the time, so this is checked on input).
        if !reconnect_asked
            && matches!(role, Role::Publisher { .. })
            && shard.machine().control.is_draining()
        {
            if let Some(info) = conn.connect_info().filter(|i| i.reconnects()) {
                reconnect_asked = true;
                // After an upgrade handover its own URL reaches the successor.
                let to = if shard.machine().control.handed_over() {
                    None
                } else {
                    shard.drain_publish_peer(&info.app)
                };
                info!(shard = %shard.id(), peer = %crate::net::conn::PeerAddr(peer), to = to.as_deref().unwrap_or("(its own URL)"), "draining: asking the publisher to reconnect");
                shard.stats().drain_reconnect_requests.inc();
                outlet.push_control(reconnect_request_message(
                    to.as_deref(),
                    "This server is draining: please reconnect.",
                ));
            }
        }
        if let Some(e) = failure {
            break e;
        }
        if let Some(e) = protocol_error {
            shard.stats().connection_errors.inc();
            break format!("protocol error: {e}");
        }
        if matches!(role, Role::Publisher { .. }) && buf.capacity() < READ_BUF_PUBLISH {
            buf = Vec::with_capacity(READ_BUF_PUBLISH);
        }
    };

    let tc_url = conn
        .connect_info()
        .map(|c| c.tc_url.clone())
        .unwrap_or_default();
    match &role {
        Role::Publisher {
            key,
            id: pid,
            query,
        } => {
            info!(shard = %shard.id(), %key, "publisher disconnected without unpublishing: {reason}");
            shard.publisher_ended(key, &outlet);
            shard.unpublish(key, *pid, Departure::Lost);
            shard.stats().publishers.dec();
            let ask = ask(
                Action::Publish,
                key,
                query,
                &Peer { addr: peer, id },
                &tc_url,
            );
            access::notify(&shard, HookEvent::OnUnpublish, &ask);
        }
        Role::Player { key, query } => {
            debug!(shard = %shard.id(), %key, conn = id, "player disconnected: {reason}");
            shard.remove_viewer(key, &outlet);
            let ask = ask(Action::Play, key, query, &Peer { addr: peer, id }, &tc_url);
            access::notify(&shard, HookEvent::OnStop, &ask);
        }
        // A peer that broke the protocol is worth a line at info (scanners and broken
        // encoders show up here); an ordinary close is not.
        Role::None if how == Close::Flush => {
            info!(shard = %shard.id(), peer = %crate::net::conn::PeerAddr(peer), "rtmp connection closed: {reason}")
        }
        Role::None => {
            debug!(shard = %shard.id(), peer = %crate::net::conn::PeerAddr(peer), "rtmp connection closed: {reason}")
        }
    }
    finish(&outlet, how, fd, writer_task, shard.stats()).await;
}

/// Why a connection is closed after one of its session's events.
#[derive(Debug, thiserror::Error)]
enum CloseReason {
    #[error("{0} on a connection already in use")]
    InUse(&'static str),
    #[error(transparent)]
    BadName(name::NameError),
    #[error("{0} denied: {1}")]
    Denied(&'static str, Denial),
    #[error("publish refused: {0}")]
    Refused(PublishError),
    #[error("the stream is published on node {0}")]
    Elsewhere(String),
    #[error("redirected to {0}")]
    Redirected(String),
    #[error("media from a connection that is not publishing")]
    NotPublishing,
    #[error("bad media: {0}")]
    Media(#[from] MediaError),
    #[error("play on message stream {0}")]
    WrongStream(u32),
    #[error(transparent)]
    Session(#[from] RtmpError),
    /// A panic while parsing the peer's media (contained).
    #[error("{0}")]
    Panic(String),
}

/// Handles one session event. An `Err` closes the connection with that reason.
async fn handle_event(
    shard: &ShardHandle,
    conn: &mut ServerConnection,
    outlet: &Rc<Outlet>,
    role: &mut Role,
    who: &Peer,
    ev: ServerEvent,
) -> Result<(), CloseReason> {
    match ev {
        ServerEvent::PublishRequested {
            request_id,
            app,
            stream,
        } => {
            if !matches!(role, Role::None) {
                return Err(CloseReason::InUse("publish"));
            }
            let tc_url = tc_url_of(conn);
            let (key, query) = match name::resolve(&app, &tc_url, &stream) {
                Ok(t) => (t.key, t.query.map(Arc::from)),
                Err(e) => {
                    reject_publish(conn, outlet, &e.to_string());
                    return Err(CloseReason::BadName(e));
                }
            };
            // Checked before the owner hears of it: a refused publisher cannot take a
            // stream over, not even for a moment.
            if let Err(d) =
                access::authorize(shard, &ask(Action::Publish, &key, &query, who, &tc_url)).await
            {
                reject_publish(conn, outlet, &format!("publish denied: {d}"));
                shard.stats().publish_rejected.inc();
                return Err(CloseReason::Denied("publish", d));
            }
            // A stream another live node holds is not taken over here (a duplicate publish).
            if let Some(n) = shard.located_elsewhere(&key) {
                let why = format!("{key} is already published on node {}", n.id);
                warn!(shard = %shard.id(), %key, node = %n.id, "publish refused: {why}");
                reject_publish(conn, outlet, &why);
                shard.stats().publish_rejected.inc();
                return Err(CloseReason::Elsewhere(n.id));
            }
            let id = PublisherId(outlet.id);
            match shard.request_publish(&key, id, query.clone()).await {
                Ok(()) => {
                    conn.accept(request_id)?;
                    shard.publisher_started(&key, outlet);
                    shard.stats().publishers.inc();
                    info!(shard = %shard.id(), %key, owner = %shard.owner_of(&key), "publishing");
                    *role = Role::Publisher { key, id, query };
                }
                Err(e) => {
                    warn!(shard = %shard.id(), %key, "publish refused: {e}");
                    reject_publish(conn, outlet, &e.to_string());
                    return Err(CloseReason::Refused(e));
                }
            }
        }
        ServerEvent::Media {
            kind,
            timestamp,
            body,
        } => {
            let Role::Publisher { key, id, .. } = role else {
                return Err(CloseReason::NotPublishing);
            };
            // Parsed once, here: a malformed tag closes its publisher, not anything else,
            // and the owner reads the result instead of parsing again.
            let tag = contain::peer_input(|| media::parse_tag(kind, &body))
                .map_err(CloseReason::Panic)??;
            shard.stats().frames_in.inc();
            let owner = shard.owner_of(key);
            let msg = shard.media_message(key, *id, tag, timestamp, body);
            shard.send_media(owner, msg).await;
        }
        ServerEvent::Metadata { body } => {
            if let Role::Publisher { key, id, .. } = role {
                let owner = shard.owner_of(key);
                let msg = MeshMsg::Metadata {
                    key: key.clone(),
                    publisher: *id,
                    body,
                };
                shard.send_media(owner, msg).await;
            }
        }
        ServerEvent::PublishFinished => {
            if let Role::Publisher { key, id, query } = role {
                shard.publisher_ended(key, outlet);
                shard.unpublish(key, *id, Departure::Unpublished);
                shard.stats().publishers.dec();
                let tc_url = tc_url_of(conn);
                access::notify(
                    shard,
                    HookEvent::OnUnpublish,
                    &ask(Action::Publish, key, query, who, &tc_url),
                );
                *role = Role::None;
            }
        }
        ServerEvent::PlayRequested {
            request_id,
            app,
            stream,
            stream_id,
        } => {
            if !matches!(role, Role::None) {
                return Err(CloseReason::InUse("play"));
            }
            let tc_url = tc_url_of(conn);
            let (key, query) = match name::resolve(&app, &tc_url, &stream) {
                Ok(t) => (t.key, t.query.map(Arc::from)),
                Err(e) => {
                    conn.send_status(
                        stream_id,
                        "error",
                        "NetStream.Play.StreamNotFound",
                        &e.to_string(),
                    );
                    return Err(CloseReason::BadName(e));
                }
            };
            if stream_id != chunk::PLAY_STREAM_ID {
                // Shared media is serialised once for message stream 1, which every common
                // player uses for its first createStream.
                conn.send_status(
                    stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    "play on message stream 1 only",
                );
                return Err(CloseReason::WrongStream(stream_id));
            }
            if let Err(d) =
                access::authorize(shard, &ask(Action::Play, &key, &query, who, &tc_url)).await
            {
                conn.send_status(
                    stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    &format!("play denied: {d}"),
                );
                return Err(CloseReason::Denied("play", d));
            }
            // Origin role: a stream another node holds is played there (SRS's RTMP 302).
            if let Some(url) = shard.rtmp_redirect(&key) {
                conn.redirect(request_id, &url)?;
                if let Some(b) = conn.poll_transmit() {
                    outlet.push_control(b);
                }
                shard.stats().cluster_redirects.inc();
                return Err(CloseReason::Redirected(url));
            }
            conn.accept(request_id)?;
            // The accept replies must precede any media.
            if let Some(b) = conn.poll_transmit() {
                outlet.push_control(b);
            }
            shard.stats().rtmp_play_requests.inc();
            shard.add_viewer(&key, outlet, query.clone());
            *role = Role::Player { key, query };
        }
        ServerEvent::PlayFinished => {
            if let Role::Player { key, query } = role {
                shard.remove_viewer(key, outlet);
                let tc_url = tc_url_of(conn);
                access::notify(
                    shard,
                    HookEvent::OnStop,
                    &ask(Action::Play, key, query, who, &tc_url),
                );
                *role = Role::None;
            }
        }
    }
    Ok(())
}

/// The peer's tcUrl, as its connect declared it.
fn tc_url_of(conn: &ServerConnection) -> String {
    conn.connect_info()
        .map(|c| c.tc_url.clone())
        .unwrap_or_default()
}

fn ask<'a>(
    action: Action,
    key: &'a StreamKey,
    query: &'a Option<Arc<str>>,
    who: &Peer,
    tc_url: &'a str,
) -> Ask<'a> {
    Ask {
        action,
        key,
        query: query.as_deref(),
        peer: who.addr,
        tc_url,
        client_id: who.id,
        hls: false,
    }
}

/// Resolves after `after` when `armed`, never otherwise.
pub(crate) async fn idle_timer(armed: bool, after: std::time::Duration) {
    if armed {
        monoio::time::sleep(after).await;
    } else {
        std::future::pending::<()>().await;
    }
}

fn reject_publish(conn: &mut ServerConnection, outlet: &Outlet, description: &str) {
    conn.send_status(
        chunk::PLAY_STREAM_ID,
        "error",
        "NetStream.Publish.BadName",
        description,
    );
    if let Some(b) = conn.poll_transmit() {
        outlet.push_control(b);
    }
}
