//! WHEP (WebRTC-HTTP Egress Protocol) on the HTTP driver: `POST /{app}/{stream}/whep` with an
//! SDP offer makes a WebRTC session on this shard and a viewer of the stream; `DELETE` on the
//! session's URL ends it; `PATCH` (trickle ICE) is answered 405, as the engine is ICE-lite and
//! names all its candidates in the answer.
//!
//! Owns: the order of an offer's answer (the play was authorised by the driver; the stream
//! must go live within the play-wait, as for HTTP-FLV, or the answer is its 404; only then is
//! the SDP answer sent), the viewer's life (its frames start once ICE and DTLS are done, with
//! the join's GOP; it ends when the session or the stream does), and the statuses and reasons
//! of what is refused.
//!
//! Must not: packetize or protect media (the endpoint does, [`crate::net::webrtc`]), or keep a
//! session's state beyond the viewer task that plays it.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edge_core::access::{Action, HookEvent};
use edge_core::http::{self, Request};
use edge_core::webrtc::SessionId;
use edge_core::StreamKey;
use monoio::buf::{IoBuf, IoVecBuf};
use monoio::io::AsyncWriteRent;
use monoio::BufResult;
use tracing::debug;

use crate::net::conn::{MediaSink, Pieces};
use crate::net::contain;
use crate::net::webrtc::{OfferError, RtcEndpoint};
use crate::serve::access::{self, Ask};
use crate::serve::routes;
use crate::shard::outlet::{Close, Outlet, Wire};
use crate::shard::ShardHandle;

/// How long an offer waits for its stream to go live (beyond the play-wait the stream's
/// replica applies, which answers first).
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// A refusal with its reason, as every route's.
fn refusal(status: u16, reason: &str, req: &Request) -> Vec<Bytes> {
    routes::denial(status, reason, req)
}

/// A WHEP offer for `key` (authorised already), posted to local address `posted_to` (what
/// the answer names without `--webrtc-candidate`; `None` when unknown).
pub(crate) async fn offer(
    shard: &ShardHandle,
    req: &Request,
    key: &StreamKey,
    peer: Option<SocketAddr>,
    posted_to: Option<IpAddr>,
    client_id: u64,
) -> Vec<Bytes> {
    let Some(endpoint) = shard.webrtc() else {
        return refusal(
            404,
            "WebRTC playback is not enabled on this node (--webrtc-udp)",
            req,
        );
    };
    if shard.machine().control.is_draining() {
        return refusal(503, "this node is draining", req);
    }
    let Ok(sdp) = std::str::from_utf8(&req.body) else {
        return refusal(400, "the offer is not UTF-8 SDP", req);
    };
    if sdp.trim().is_empty() {
        return refusal(
            400,
            "the offer is empty: POST an SDP offer (application/sdp)",
            req,
        );
    }
    let Some(posted_to) = posted_to else {
        return refusal(
            503,
            "this connection's local address is unknown: set --webrtc-candidate",
            req,
        );
    };
    // str0m parses the offer: a panic in it refuses this offer only.
    let offered = contain::peer_input(|| endpoint.offer(key.as_str(), sdp, posted_to));
    let (id, answer) = match offered {
        Ok(Ok(a)) => a,
        Ok(Err(e @ OfferError::Full)) => return refusal(503, &e.to_string(), req),
        Ok(Err(e)) => return refusal(400, &e.to_string(), req),
        Err(panic) => {
            tracing::warn!(shard = %shard.id(), %key, "WHEP offer refused: it made the WebRTC library panic: {panic}");
            return refusal(400, "the offer could not be handled", req);
        }
    };
    let outlet = Outlet::new(client_id, Wire::Rtc, shard.config().queue, shard.clock());
    let query = req.query.as_deref().map(Into::into);
    shard.add_viewer(key, &outlet, query);
    // The stream's join (or its refusal) comes first: a stream that is not live gets its 404
    // instead of an answer, as an HTTP-FLV viewer does.
    let joined = monoio::time::timeout(JOIN_WAIT, outlet.queued())
        .await
        .is_ok();
    if let Some(reason) = outlet.finished().filter(|_| !outlet.joined()) {
        shard.remove_viewer(key, &outlet);
        endpoint.end(id);
        return refusal(reason.http_status(), reason.description(), req);
    }
    if !joined || outlet.close_mode().is_some() {
        shard.remove_viewer(key, &outlet);
        endpoint.end(id);
        return refusal(504, "the stream did not start in time", req);
    }
    let location = format!("/{}/whep/{id}", key.as_str());
    let viewer = Viewer {
        shard: shard.clone(),
        endpoint,
        id,
        key: key.clone(),
        outlet,
        query: req.query.clone(),
        peer,
        path: req.path.clone(),
        client_id,
    };
    monoio::spawn(viewer.play());
    let head = http::response_head(
        201,
        "application/sdp",
        Some(answer.len()),
        "no-store",
        req.keep_alive,
    );
    let head = http::add_header(&head, "Location", &location);
    let head = http::add_header(&head, "Access-Control-Expose-Headers", "Location");
    vec![head, Bytes::from(answer)]
}

/// `DELETE` on a session's URL: ends it on the shard that holds it.
pub(crate) fn delete(shard: &ShardHandle, id: SessionId, req: &Request) -> Vec<Bytes> {
    if id.shard() != shard.id().0 {
        // Its shard ends it; the answer cannot wait for that shard's word.
        if !shard.end_webrtc_elsewhere(id) {
            return refusal(404, "no such WebRTC session", req);
        }
    } else if !shard.webrtc().is_some_and(|e| e.end(id)) {
        return refusal(404, "no such WebRTC session", req);
    }
    vec![http::response_head(
        200,
        "",
        Some(0),
        "no-store",
        req.keep_alive,
    )]
}

/// `PATCH` (trickle ICE, ICE restart): not supported, said so.
pub(crate) fn patch(req: &Request) -> Vec<Bytes> {
    refusal(
        405,
        "trickle ICE is not supported: this node is ICE-lite and its answer names every candidate; \
         send the offer with its candidates gathered",
        req,
    )
}

/// Any other method on a WHEP URL.
pub(crate) fn method_not_allowed(req: &Request) -> Vec<Bytes> {
    refusal(
        405,
        "WHEP: POST an offer to /{app}/{stream}/whep; DELETE the session's URL to end it",
        req,
    )
}

/// The local address of the connection on `fd`.
pub(crate) fn local_ip(fd: std::os::fd::RawFd) -> Option<IpAddr> {
    if fd < 0 {
        return None;
    }
    // SAFETY: getsockname on a descriptor the connection owns, into storage of the size
    // we state.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel filled `len` bytes of the address.
    let addr = unsafe { socket2::SockAddr::new(storage, len) };
    addr.as_socket().map(|a| a.ip())
}

/// A WHEP viewer: its session, and its place among the stream's viewers.
struct Viewer {
    shard: ShardHandle,
    endpoint: Rc<RtcEndpoint>,
    id: SessionId,
    key: StreamKey,
    outlet: Rc<Outlet>,
    query: Option<String>,
    peer: Option<SocketAddr>,
    path: String,
    client_id: u64,
}

impl Viewer {
    /// Frames flow once the session connects, until it or the stream ends.
    async fn play(self) {
        let connected = monoio::select! {
            c = self.endpoint.connected(self.id) => c,
            _ = self.outlet.closed() => false,
        };
        if connected {
            let sink = RtcSink {
                endpoint: Rc::clone(&self.endpoint),
                id: self.id,
                key: self.key.as_str().to_string(),
            };
            let writer = monoio::spawn(Rc::clone(&self.outlet).run_writer(
                sink,
                self.shard.pacer(),
                self.shard.bytes_out(),
            ));
            monoio::select! {
                _ = self.endpoint.ended(self.id) => {},
                _ = self.outlet.closed() => {},
            }
            self.shard.remove_viewer(&self.key, &self.outlet);
            self.outlet.close(Close::Abort);
            writer.await;
        } else {
            self.shard.remove_viewer(&self.key, &self.outlet);
            self.outlet.close(Close::Abort);
        }
        self.endpoint.end(self.id);
        let ask = Ask {
            action: Action::Play,
            key: &self.key,
            query: self.query.as_deref(),
            peer: self.peer,
            tc_url: &self.path,
            client_id: self.client_id,
            hls: false,
        };
        access::notify(&self.shard, HookEvent::OnStop, &ask);
        debug!(shard = %self.shard.id(), key = %self.key, session = %self.id, "WebRTC viewer left");
    }
}

/// Where a WebRTC viewer's writer puts its frames: each becomes the stream's RTP payloads
/// (made once on this shard) written to the session.
struct RtcSink {
    endpoint: Rc<RtcEndpoint>,
    id: SessionId,
    key: String,
}

impl MediaSink for RtcSink {
    fn feed(&mut self, pieces: Vec<Bytes>) -> std::io::Result<usize> {
        let mut n = 0;
        for piece in &pieces {
            if let Some(unit) = self.endpoint.unit(&self.key, piece) {
                if !self.endpoint.write(self.id, &unit) {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                n += unit.packets.iter().map(|p| p.payload.len()).sum::<usize>();
            }
        }
        Ok(n)
    }
}

impl Pieces for RtcSink {
    fn as_media(&mut self) -> Option<&mut dyn MediaSink> {
        Some(self)
    }
}

/// Never called: the writer hands a media sink its pieces whole ([`Pieces::as_media`]).
impl AsyncWriteRent for RtcSink {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (Err(std::io::ErrorKind::Unsupported.into()), buf)
    }
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (Err(std::io::ErrorKind::Unsupported.into()), buf)
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
