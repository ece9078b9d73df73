//! HTTP/3's transport on one shard: a UDP socket bound with SO_REUSEPORT beside the other
//! shards', a quinn-proto endpoint (sans-IO: datagrams and `now` in, datagrams and deadlines
//! out) and the QUIC connections it accepted, each with its HTTP/3 [`session`].
//!
//! Owns: receiving this shard's datagrams and sending its connections' (with segmentation
//! offload where the kernel has it), passing a datagram whose connection ID names another
//! shard to that shard over the mesh (a migrated client's, or one behind a rebinding NAT),
//! the connections' deadlines, armed on the shard's one timer through `arm`, the limits on
//! connections, and the queue of requests read off the connections, which the serving layer
//! takes with [`QuicEndpoint::accept`] and answers through an [`H3Stream`].
//!
//! Must not: block the shard (a send that finds the socket full waits for room in its own
//! task), parse HTTP/3 (edge-core's `h3` does), answer requests (the HTTP routes do, as for a
//! TCP connection), or hold a `RefCell` borrow across an await.

pub(crate) mod congestion;
pub(crate) mod session;
pub(crate) mod stream;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use edge_core::h3::cid;
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    ConnectionHandle, ConnectionId, ConnectionIdGenerator, DatagramEvent, Endpoint, EndpointConfig,
    IdleTimeout, ServerConfig, StreamId, TransportConfig, VarInt,
};
use tracing::debug;

use crate::net::clock::Clock;
use crate::net::mesh::{Mesh, MeshMsg, ShardId};
use crate::net::timer::Timers;
use crate::net::udp::{self, send_to};
pub(crate) use crate::net::udp::{bind_udp, Count};
use session::{NewRequest, Session};
pub(crate) use stream::{H3Read, H3Stream, H3Write};

/// Datagrams per `sendmsg` with UDP_SEGMENT (the kernel takes up to 64).
const GSO_SEGMENTS: usize = 16;
/// Send passes a connection gets in a row before the next connection's turn.
const TRANSMITS_PER_TURN: usize = 8;

/// One shard's HTTP/3 counters, rendered in `/metrics` as `edge_http3_NAME` by
/// [`QuicCounters::METRICS`].
#[derive(Debug, Default)]
pub(crate) struct QuicCounters {
    pub(crate) connections_open: Count,
    pub(crate) connections: Count,
    pub(crate) handshakes: Count,
    pub(crate) resumed_0rtt: Count,
    pub(crate) early_requests: Count,
    pub(crate) refused: Count,
    pub(crate) retries: Count,
    pub(crate) streams: Count,
    pub(crate) datagrams_in: Count,
    pub(crate) recv_calls: Count,
    pub(crate) datagrams_out: Count,
    pub(crate) send_calls: Count,
    pub(crate) routed_out: Count,
    pub(crate) routed_in: Count,
    pub(crate) lost_packets: Count,
    pub(crate) lost_bytes: Count,
}

impl QuicCounters {
    pub(crate) const METRICS: &'static [udp::Series<QuicCounters>] = &[
        ("connections_open", "gauge", "HTTP/3 (QUIC) connections open on this shard", |c| &c.connections_open),
        ("connections", "counter", "HTTP/3 connections accepted", |c| &c.connections),
        ("handshakes", "counter", "HTTP/3 connections whose handshake completed", |c| &c.handshakes),
        ("resumed_0rtt", "counter", "HTTP/3 connections that resumed a session and had their 0-RTT data accepted", |c| &c.resumed_0rtt),
        ("early_requests", "counter", "HTTP/3 requests complete before the handshake was (sent in 0-RTT): GET, HEAD and OPTIONS are answered, other methods get 425 Too Early", |c| &c.early_requests),
        ("refused", "counter", "HTTP/3 connections refused: at --http3-max-connections, --max-connections(-per-ip), or while draining", |c| &c.refused),
        ("retries", "counter", "HTTP/3 clients asked to prove their address (Retry) before any state was kept, past --http3-retry-above connections", |c| &c.retries),
        ("streams", "counter", "HTTP/3 request streams opened by clients (one per request)", |c| &c.streams),
        ("datagrams_in", "counter", "UDP datagrams received on the HTTP/3 socket", |c| &c.datagrams_in),
        ("recv_calls", "counter", "recvmmsg calls that returned datagrams on the HTTP/3 socket (datagrams_in / recv_calls: datagrams per call)", |c| &c.recv_calls),
        ("datagrams_out", "counter", "UDP datagrams sent from the HTTP/3 socket", |c| &c.datagrams_out),
        ("send_calls", "counter", "sendmsg calls on the HTTP/3 socket: datagrams_out / send_calls is what segmentation offload (UDP_SEGMENT) saves", |c| &c.send_calls),
        ("routed_out", "counter", "QUIC datagrams passed to the shard their connection ID names (a client whose address or port changed)", |c| &c.routed_out),
        ("routed_in", "counter", "QUIC datagrams received from another shard for a connection of this one", |c| &c.routed_in),
        ("lost_packets", "counter", "QUIC packets declared lost, counted when their connection ends", |c| &c.lost_packets),
        ("lost_bytes", "counter", "Bytes of the QUIC packets declared lost, counted when their connection ends", |c| &c.lost_bytes),
    ];
}

/// Admits a new connection from an address: `Ok` with what to hold while it is open (a
/// permit of `--max-connections`), or `Err` to refuse it.
pub(crate) type Admit = Box<dyn Fn(SocketAddr) -> Result<Option<Box<dyn std::any::Any>>, ()>>;

/// What a shard's endpoint is set up with.
pub(crate) struct QuicSettings {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// Connections on this shard at most; more are refused.
    pub(crate) max_connections: usize,
    /// Past this many connections on the shard, a client must prove its address first.
    pub(crate) retry_above: usize,
    /// Requests one connection may have open at once.
    pub(crate) max_streams: u32,
    pub(crate) idle_timeout_ms: u64,
    pub(crate) congestion: Congestion,
    /// A new connection's first window, bytes (edge-core's controller and Cubic's).
    pub(crate) initial_window: u64,
}

/// QUIC's congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Congestion {
    /// edge-core's model of the path ([`congestion`]): the window follows the measured
    /// bottleneck rate and round trip; random loss does not shrink it.
    Bbr,
    /// Loss-based, as Linux TCP's default: each loss cuts the window by 30 %.
    Cubic,
    /// quinn-proto's BBR, for comparison: it stalls a connection in ProbeRTT early on.
    QuinnBbr,
}

/// Issues connection IDs that name this shard ([`cid::issue`]).
struct ShardCids(u8);

impl ConnectionIdGenerator for ShardCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut random = [0u8; cid::CID_LEN - 1];
        // The ring provider's system random source does not fail on Linux; if it ever did,
        // the ID would still name the shard, only be guessable.
        let _ = rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut random);
        ConnectionId::new(&cid::issue(self.0, random))
    }
    fn cid_len(&self) -> usize {
        cid::CID_LEN
    }
    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

struct State {
    endpoint: Endpoint,
    server_config: Arc<ServerConfig>,
    sessions: HashMap<ConnectionHandle, Session>,
    /// Connections with events read or data to send, in turn.
    dirty: VecDeque<ConnectionHandle>,
    /// The endpoint's own answers (version negotiation, Retry, refusals, stateless resets).
    responses: VecDeque<(SocketAddr, Vec<u8>)>,
    /// A send the socket had no room for, sent first when it has.
    stalled: Option<(SocketAddr, Vec<u8>, Option<usize>)>,
    /// Requests read, for [`QuicEndpoint::accept`].
    requests: VecDeque<(ConnectionHandle, SocketAddr, NewRequest)>,
    /// New connections are refused and open ones are sent GOAWAY (a drain).
    closing: bool,
}

impl State {
    /// Queues an answer of the endpoint's own, written into `buf`.
    fn respond(&mut self, t: quinn_proto::Transmit, mut buf: Vec<u8>) {
        buf.truncate(t.size);
        self.responses.push_back((t.destination, buf));
    }
}

pub(crate) struct QuicEndpoint {
    socket: monoio::net::udp::UdpSocket,
    fd: RawFd,
    me: ShardId,
    shards: usize,
    mesh: Arc<Mesh>,
    clock: Clock,
    counters: Arc<QuicCounters>,
    settings: QuicSettings,
    state: RefCell<State>,
    /// The connections' deadlines (shard-clock ms); the earliest is armed on the shard's
    /// timer through `arm`.
    deadlines: Timers<usize>,
    arm: Box<dyn Fn(Option<u64>)>,
    admit: RefCell<Option<Admit>>,
    sender: Cell<Option<Waker>>,
    acceptor: Cell<Option<Waker>>,
    /// Segmentation offload works on this socket (until a send says otherwise).
    gso: Cell<bool>,
}

impl QuicEndpoint {
    /// The IP the socket is bound to, unless it is a wildcard.
    pub(crate) fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.socket
            .local_addr()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        socket: std::net::UdpSocket,
        settings: QuicSettings,
        me: ShardId,
        shards: usize,
        mesh: Arc<Mesh>,
        clock: Clock,
        counters: Arc<QuicCounters>,
        arm: Box<dyn Fn(Option<u64>)>,
    ) -> anyhow::Result<Rc<QuicEndpoint>> {
        let shard_byte = u8::try_from(me.0)?;
        let mut endpoint_config = EndpointConfig::default();
        endpoint_config.cid_generator(move || Box::new(ShardCids(shard_byte)));
        let crypto = QuicServerConfig::try_from(Arc::clone(&settings.tls))
            .map_err(|e| anyhow::anyhow!("the TLS configuration cannot serve QUIC: {e}"))?;
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(settings.max_streams))
            // The client's control stream and its two QPACK streams, and a spare.
            .max_concurrent_uni_streams(VarInt::from_u32(4))
            // Requests are small: a client's stream sends one HEADERS.
            .stream_receive_window(VarInt::from_u32(64 << 10))
            .receive_window(VarInt::from_u32(256 << 10))
            .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
                u32::try_from(settings.idle_timeout_ms).unwrap_or(u32::MAX),
            ))))
            .enable_segmentation_offload(true);
        match settings.congestion {
            Congestion::Bbr => {
                transport.congestion_controller_factory(Arc::new(congestion::PacedConfig {
                    initial_window: settings.initial_window,
                }))
            }
            Congestion::Cubic => {
                let mut cubic = quinn_proto::congestion::CubicConfig::default();
                cubic.initial_window(settings.initial_window);
                transport.congestion_controller_factory(Arc::new(cubic))
            }
            Congestion::QuinnBbr => transport.congestion_controller_factory(Arc::new(
                quinn_proto::congestion::BbrConfig::default(),
            )),
        };
        let mut server_config = ServerConfig::with_crypto(Arc::new(crypto));
        server_config
            .transport_config(Arc::new(transport))
            .max_incoming(settings.max_connections.max(1));
        let server_config = Arc::new(server_config);
        // MTU discovery: the socket sets DF ([`bind_udp`]).
        let endpoint = Endpoint::new(
            Arc::new(endpoint_config),
            Some(Arc::clone(&server_config)),
            true,
            None,
        );
        let fd = socket.as_raw_fd();
        let socket = monoio::net::udp::UdpSocket::from_std(socket)?;
        let this = Rc::new(QuicEndpoint {
            socket,
            fd,
            me,
            shards,
            mesh,
            clock,
            counters,
            settings,
            state: RefCell::new(State {
                endpoint,
                server_config,
                sessions: HashMap::new(),
                dirty: VecDeque::new(),
                responses: VecDeque::new(),
                stalled: None,
                requests: VecDeque::new(),
                closing: false,
            }),
            deadlines: Timers::default(),
            arm,
            admit: RefCell::new(None),
            sender: Cell::new(None),
            acceptor: Cell::new(None),
            gso: Cell::new(true),
        });
        monoio::spawn(Rc::clone(&this).receive_loop());
        monoio::spawn(Rc::clone(&this).send_loop());
        Ok(this)
    }

    /// Connections are admitted by `admit` from now on (the serving layer's limits).
    pub(crate) fn set_admission(&self, admit: Admit) {
        *self.admit.borrow_mut() = Some(admit);
    }

    /// The next request read off any connection.
    pub(crate) async fn accept(self: &Rc<Self>) -> H3Stream {
        let (conn, peer, req) = poll_fn(|cx| match self.state.borrow_mut().requests.pop_front() {
            Some(r) => Poll::Ready(r),
            None => {
                self.acceptor.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        H3Stream::new(Rc::clone(self), conn, peer, req)
    }

    /// Waits until the socket has datagrams, then takes all it has, up to [`RECV_BATCH`] per
    /// `recvmmsg`, and hands them to the endpoint before the send pass runs: one wake-up and
    /// one send pass for a burst, however many datagrams it held.
    async fn receive_loop(self: Rc<Self>) {
        let counters = (&self.counters.recv_calls, &self.counters.datagrams_in);
        udp::receive_loop(
            &self.socket,
            self.fd,
            counters,
            |from, data| self.received(from, data),
            || {},
        )
        .await;
    }

    /// A datagram from `from`: to its shard if its connection ID names another, else into
    /// this shard's endpoint.
    fn received(&self, from: SocketAddr, data: BytesMut) {
        if let Some(owner) = cid::shard_of(&data, self.shards).filter(|&s| s != self.me.0) {
            self.counters.routed_out.inc();
            // A full mesh queue drops it, as a full network would: QUIC sends it again.
            let _ = self.mesh.try_send(
                self.me,
                ShardId(owner),
                MeshMsg::QuicDatagram {
                    from,
                    data: data.freeze(),
                },
            );
            return;
        }
        self.handle(from, data);
    }

    /// A datagram another shard received for one of this shard's connections.
    pub(crate) fn routed(&self, from: SocketAddr, data: Bytes) {
        self.counters.routed_in.inc();
        self.handle(from, BytesMut::from(&data[..]));
    }

    fn handle(&self, from: SocketAddr, data: BytesMut) {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        let mut buf = Vec::new();
        match st.endpoint.handle(now, from, None, None, data, &mut buf) {
            None => {}
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(s) = st.sessions.get_mut(&ch) {
                    s.conn.handle_event(event);
                    self.drive(&mut st, ch, now);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                let open = st.sessions.len();
                let permit = match &*self.admit.borrow() {
                    _ if st.closing || open >= self.settings.max_connections => Err(()),
                    Some(admit) => admit(from),
                    None => Ok(None),
                };
                if let Err(()) = permit {
                    self.counters.refused.inc();
                    let t = st.endpoint.refuse(incoming, &mut buf);
                    st.respond(t, buf);
                } else if open >= self.settings.retry_above && !incoming.remote_address_validated()
                {
                    // Under load a client proves its address before we keep any state.
                    self.counters.retries.inc();
                    match st.endpoint.retry(incoming, &mut buf) {
                        Ok(t) => st.respond(t, buf),
                        Err(e) => st.endpoint.ignore(e.into_incoming()),
                    }
                } else {
                    let config = Some(Arc::clone(&st.server_config));
                    match st.endpoint.accept(incoming, now, &mut buf, config) {
                        Ok((ch, conn)) => {
                            self.counters.connections.inc();
                            self.counters.connections_open.inc();
                            let permit = permit.ok().flatten();
                            st.sessions.insert(ch, Session::new(conn, permit));
                            self.drive(&mut st, ch, now);
                        }
                        Err(e) => {
                            debug!(shard = %self.me, peer = %from, "QUIC connection not accepted: {}", e.cause);
                            if let Some(t) = e.response {
                                st.respond(t, buf);
                            }
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => st.respond(t, buf),
        }
        drop(st);
        self.wake_sender();
    }

    /// After anything happened to connection `ch`: its endpoint events, its application
    /// events (requests, writability), its deadline, and a turn in the send pass.
    fn drive(&self, st: &mut State, ch: ConnectionHandle, now: Instant) {
        let State {
            endpoint,
            sessions,
            dirty,
            requests,
            ..
        } = st;
        let Some(s) = sessions.get_mut(&ch) else {
            return;
        };
        let mut new = Vec::new();
        s.poll_events(now, &self.counters, &mut new);
        s.close_if_done(now);
        while let Some(event) = s.conn.poll_endpoint_events() {
            if let Some(back) = endpoint.handle_event(ch, event) {
                s.conn.handle_event(back);
            }
        }
        if !new.is_empty() {
            let peer = s.conn.remote_address();
            requests.extend(new.into_iter().map(|r| (ch, peer, r)));
            if let Some(w) = self.acceptor.take() {
                w.wake();
            }
        }
        let deadline = s.conn.poll_timeout().map(|t| self.clock.ms_after(t));
        self.deadlines.arm(ch.0, deadline);
        (self.arm)(self.deadlines.next());
        if !s.dirty {
            s.dirty = true;
            dirty.push_back(ch);
        }
    }

    /// The shard's timer fired for this endpoint: every connection whose deadline passed.
    pub(crate) fn handle_timeout(&self) {
        let due = self.deadlines.pop_due(self.clock.now_ms());
        if !due.is_empty() {
            let now = Instant::now();
            let mut st = self.state.borrow_mut();
            for ch in due {
                let ch = ConnectionHandle(ch);
                if let Some(s) = st.sessions.get_mut(&ch) {
                    s.conn.handle_timeout(now);
                    self.drive(&mut st, ch, now);
                }
            }
        }
        (self.arm)(self.deadlines.next());
        self.wake_sender();
    }

    /// Hands response frames to stream `id` of `conn`; they are advanced past what QUIC
    /// took (all of them, unless flow control holds the rest).
    pub(crate) fn write(
        &self,
        conn: ConnectionHandle,
        id: StreamId,
        frames: &mut [Bytes],
    ) -> io::Result<()> {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        let Some(s) = st.sessions.get_mut(&conn) else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        let mut send = s.conn.send_stream(id);
        let mut at = 0;
        while at < frames.len() {
            match send.write_chunks(&mut frames[at..]) {
                Ok(w) if w.chunks == 0 && frames[at].is_empty() => at += 1,
                Ok(w) => at += w.chunks,
                Err(quinn_proto::WriteError::Blocked) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, e)),
            }
        }
        self.drive(&mut st, conn, now);
        drop(st);
        self.wake_sender();
        Ok(())
    }

    /// The task answering stream `id` is done: finish it (`None`) or reset it with a code.
    pub(crate) fn end_stream(&self, conn: ConnectionHandle, id: StreamId, reset: Option<u64>) {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        let Some(s) = st.sessions.get_mut(&conn) else {
            return;
        };
        let mut send = s.conn.send_stream(id);
        match reset {
            None => {
                let _ = send.finish();
            }
            Some(c) => {
                let _ = send.reset(VarInt::from_u64(c).unwrap_or(VarInt::MAX));
                s.forget(id);
            }
        }
        self.drive(&mut st, conn, now);
        drop(st);
        self.wake_sender();
    }

    /// A drain: GOAWAY to every connection (what they opened is answered), and no new ones.
    pub(crate) fn go_away(&self) {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        st.closing = true;
        let handles: Vec<_> = st.sessions.keys().copied().collect();
        for ch in handles {
            if let Some(s) = st.sessions.get_mut(&ch) {
                s.go_away();
            }
            self.drive(&mut st, ch, now);
        }
        drop(st);
        self.wake_sender();
    }

    fn wake_sender(&self) {
        if let Some(w) = self.sender.take() {
            w.wake();
        }
    }

    async fn send_loop(self: Rc<Self>) {
        loop {
            poll_fn(|cx| {
                let st = self.state.borrow();
                if st.stalled.is_some() || !st.responses.is_empty() || !st.dirty.is_empty() {
                    Poll::Ready(())
                } else {
                    self.sender.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            if self.send_pass().is_err() {
                // The socket's buffer is full: wait for room, then go on where it stopped.
                let _ = self.socket.writable(true).await;
            }
            // More is queued: let the sockets run first (yielding is not fair in monoio
            // 0.2.4; the timer wheel is).
            if !self.state.borrow().dirty.is_empty() {
                monoio::time::sleep(Duration::ZERO).await;
            }
        }
    }

    /// Sends what is queued, until the socket is full (`Err`) or nothing is left.
    fn send_pass(&self) -> Result<(), ()> {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        if let Some((to, buf, segment)) = st.stalled.take() {
            if self.send(to, &buf, segment).is_err() {
                st.stalled = Some((to, buf, segment));
                return Err(());
            }
        }
        while let Some((to, buf)) = st.responses.pop_front() {
            if self.send(to, &buf, None).is_err() {
                st.stalled = Some((to, buf, None));
                return Err(());
            }
        }
        let mut buf = Vec::new();
        let turns = st.dirty.len();
        for _ in 0..turns {
            let Some(ch) = st.dirty.pop_front() else {
                break;
            };
            let segments = if self.gso.get() { GSO_SEGMENTS } else { 1 };
            let mut more = false;
            let mut drained = false;
            if let Some(s) = st.sessions.get_mut(&ch) {
                s.dirty = false;
                let mut sent = 0;
                loop {
                    buf.clear();
                    let Some(t) = s.conn.poll_transmit(now, segments, &mut buf) else {
                        break;
                    };
                    if self
                        .send(t.destination, &buf[..t.size], t.segment_size)
                        .is_err()
                    {
                        let b = buf[..t.size].to_vec();
                        st.stalled = Some((t.destination, b, t.segment_size));
                        // Its turn continues after the stall.
                        if let Some(s) = st.sessions.get_mut(&ch) {
                            s.dirty = true;
                        }
                        st.dirty.push_front(ch);
                        return Err(());
                    }
                    sent += 1;
                    if sent == TRANSMITS_PER_TURN {
                        more = true;
                        break;
                    }
                }
                let deadline = s.conn.poll_timeout().map(|t| self.clock.ms_after(t));
                self.deadlines.arm(ch.0, deadline);
                drained = s.conn.is_drained();
            }
            if drained {
                self.remove(&mut st, ch);
            } else if more {
                if let Some(s) = st.sessions.get_mut(&ch) {
                    s.dirty = true;
                }
                st.dirty.push_back(ch);
            }
        }
        (self.arm)(self.deadlines.next());
        Ok(())
    }

    fn remove(&self, st: &mut State, ch: ConnectionHandle) {
        if let Some(mut s) = st.sessions.remove(&ch) {
            s.lost();
            let stats = s.conn.stats();
            self.counters.lost_packets.add(stats.path.lost_packets);
            self.counters.lost_bytes.add(stats.path.lost_bytes);
            self.counters.connections_open.dec();
            debug!(
                shard = %self.me,
                rtt_ms = stats.path.rtt.as_secs_f64() * 1e3,
                min_rtt_ms = stats.path.min_rtt.as_secs_f64() * 1e3,
                cwnd = stats.path.cwnd,
                sent_packets = stats.path.sent_packets,
                lost_packets = stats.path.lost_packets,
                congestion_events = stats.path.congestion_events,
                mtu = stats.path.current_mtu,
                "QUIC connection ended"
            );
            // The endpoint learns of the drain from the connection's last endpoint event.
            while let Some(event) = s.conn.poll_endpoint_events() {
                let _ = st.endpoint.handle_event(ch, event);
            }
        }
    }

    /// One `sendmsg`: a datagram, or `segment`-sized datagrams in one buffer (UDP_SEGMENT).
    /// `Err` when the socket has no room now.
    fn send(&self, to: SocketAddr, data: &[u8], segment: Option<usize>) -> Result<(), ()> {
        match send_to(self.fd, to, data, segment) {
            Ok(()) => {
                self.counters.send_calls.inc();
                let n = segment.map_or(1, |s| data.len().div_ceil(s.max(1)));
                self.counters.datagrams_out.add(n as u64);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(()),
            Err(e) if segment.is_some() && udp::offload_refused(&e) => {
                // No segmentation offload on this path: send them one by one from now on.
                debug!(shard = %self.me, "UDP_SEGMENT refused ({e}); sending datagrams singly");
                self.gso.set(false);
                let s = segment.unwrap_or(data.len()).max(1);
                for d in data.chunks(s) {
                    self.send(to, d, None)?;
                }
                Ok(())
            }
            Err(e) => {
                // Unreachable and the like: the datagram is lost, as on a network.
                debug!(shard = %self.me, %to, "udp send: {e}");
                Ok(())
            }
        }
    }
}
