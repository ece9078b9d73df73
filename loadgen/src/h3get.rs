//! HTTP/3 request load: `connections` QUIC connections (quinn-proto, as the engine uses) over
//! one UDP socket on one thread, each asking for a URL again and again, one request at a
//! time, as wrk does over TCP. It reads as fast as the engine sends, so the engine's sends
//! are not paced by a slow client's acknowledgements, and the engine's CPU per request can be
//! set beside HTTPS's under wrk (bench/peers/h3_cpu.sh).
//!
//! Owns: its socket, its connections and their streams, and the count of what came back
//! (requests by status, body bytes, latency from request to last byte).
//!
//! Must not: keep response bodies (DATA payloads are counted and skipped by edge-core's frame
//! reader), or wait on anything but its socket and its connections' own deadlines.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use edge_core::h3::frame::{self, Frame, FrameReader};
use edge_core::h3::{qpack, stream_type};
use hdrhistogram::Histogram;
use quinn_proto::crypto::rustls::QuicClientConfig;
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Dir, EndpointConfig, Event,
    StreamEvent, StreamId, TransportConfig, VarInt,
};

/// What to load and for how long.
#[derive(Debug, Clone)]
pub struct Load {
    pub target: SocketAddr,
    /// The TLS server name and `:authority`.
    pub host: String,
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    /// Take coalesced runs of datagrams from the kernel (UDP GRO), as a NIC's receive
    /// offload would hand them over.
    pub gro: bool,
}

/// What came back.
#[derive(Debug)]
pub struct Outcome {
    pub requests: u64,
    /// Responses whose status was not 200.
    pub not_ok: u64,
    pub body_bytes: u64,
    /// Connections that ended before the run did, and requests that failed on them.
    pub errors: u64,
    pub handshakes: u64,
    pub elapsed: Duration,
    /// Request to last byte, in microseconds.
    pub latency_us: Histogram<u64>,
    pub datagrams_in: u64,
    /// Receive calls that returned datagrams (fewer than `datagrams_in` when the kernel
    /// coalesced runs of them: UDP GRO).
    pub receives: u64,
    pub datagrams_out: u64,
    /// Why the first connection that ended early ended.
    pub first_error: Option<String>,
}

/// A request in flight on a connection.
struct Request {
    id: StreamId,
    start: Instant,
    reader: FrameReader,
    status: Option<u16>,
    body: u64,
}

struct Client {
    conn: Connection,
    connected: bool,
    /// The server's unidirectional streams (control, QPACK): read and discarded.
    uni: Vec<StreamId>,
    request: Option<Request>,
}

/// The client configuration: TLS 1.3 with `ca` trusted, ALPN h3, receive windows large
/// enough that flow control never holds a segment back.
fn client_config(ca: &Path) -> anyhow::Result<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.context("parsing the CA")?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = QuicClientConfig::try_from(tls).context("TLS for QUIC")?;
    let mut transport = TransportConfig::default();
    transport
        .stream_receive_window(VarInt::from_u32(16 << 20))
        .receive_window(VarInt::from_u32(64 << 20))
        .max_concurrent_uni_streams(VarInt::from_u32(8));
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The request's HEADERS frame.
fn request_frame(host: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    qpack::encode_field_section(
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", host.as_bytes()),
            (b":path", path.as_bytes()),
        ],
        &mut block,
    );
    let mut out = Vec::new();
    frame::write_headers(&block, &mut out);
    out
}

/// The client's control stream: its type, then SETTINGS (no dynamic table, as ours).
fn control_stream() -> Vec<u8> {
    let mut out = vec![stream_type::CONTROL as u8];
    frame::write_server_settings(&mut out);
    out
}

/// A UDP socket for the run: non-blocking, with a receive buffer large enough for a burst of
/// segments (it sends only acknowledgements and requests).
fn socket(target: SocketAddr, gro: bool) -> anyhow::Result<UdpSocket> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(bind)?;
    s.set_nonblocking(true)?;
    crate::net::grow_receive_buffer(s.as_raw_fd(), 16 << 20);
    if gro {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and an int option of the right size. Best effort: a kernel
        // without UDP GRO hands datagrams over one by one.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_UDP,
                UDP_GRO,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(s)
}

/// `UDP_GRO` (linux/udp.h): the kernel may hand over a run of datagrams of one size from one
/// sender as one buffer, with the size in a control message.
const UDP_GRO: libc::c_int = 104;

/// One receive: the bytes, the sender, and the segment size when the kernel coalesced a run
/// of datagrams (UDP GRO).
fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<usize>)> {
    // SAFETY: all-zero sockaddr_storage and msghdr are valid values.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` is valid for its length for the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut segment = None;
    // SAFETY: the kernel filled `control` up to msg_controllen; CMSG_* walk within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                segment = usize::try_from(size).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // SAFETY: the kernel wrote a sockaddr of msg_namelen bytes into `name`.
    let from = unsafe { socket2::SockAddr::new(name, msg.msg_namelen) }
        .as_socket()
        .ok_or_else(|| std::io::Error::other("a sender without an IP address"))?;
    Ok((n as usize, from, segment))
}

/// Runs `load` and returns what came back. An error is a setup failure (the CA, the
/// socket); failures of connections and requests are counted.
pub fn run(load: &Load, ca: &Path) -> anyhow::Result<Outcome> {
    let config = client_config(ca)?;
    let socket = socket(load.target, load.gro)?;
    let mut endpoint =
        quinn_proto::Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None);
    let request = request_frame(&load.host, &load.path);
    let control = control_stream();
    let mut out = Outcome {
        requests: 0,
        not_ok: 0,
        body_bytes: 0,
        errors: 0,
        handshakes: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new(3)?,
        datagrams_in: 0,
        receives: 0,
        datagrams_out: 0,
        first_error: None,
    };
    let mut clients: HashMap<ConnectionHandle, Client> = HashMap::new();
    let start = Instant::now();
    let end = start + load.duration;
    let mut recv = vec![0u8; 65536];
    let mut send = Vec::with_capacity(65536);
    loop {
        let now = Instant::now();
        let running = now < end;
        // Keep `connections` connections while running.
        while running && clients.len() < load.connections {
            let (ch, conn) = endpoint
                .connect(now, config.clone(), load.target, &load.host)
                .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
            clients.insert(
                ch,
                Client {
                    conn,
                    connected: false,
                    uni: Vec::new(),
                    request: None,
                },
            );
        }
        if !running && clients.values().all(|c| c.request.is_none()) {
            break;
        }
        // Every datagram the socket holds; a coalesced run (UDP GRO) is split at its
        // segment size.
        for _ in 0..1024 {
            let (n, from, segment) = match receive(&socket, &mut recv) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => bail!("receive: {e}"),
            };
            out.receives += 1;
            for datagram in recv[..n].chunks(segment.unwrap_or(n).max(1)) {
                out.datagrams_in += 1;
                send.clear();
                match endpoint.handle(now, from, None, None, BytesMut::from(datagram), &mut send) {
                    Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                        if let Some(c) = clients.get_mut(&ch) {
                            c.conn.handle_event(event);
                        }
                    }
                    Some(DatagramEvent::Response(t)) => {
                        let _ = socket.send_to(&send[..t.size], t.destination);
                        out.datagrams_out += 1;
                    }
                    Some(DatagramEvent::NewConnection(_)) | None => {}
                }
            }
        }
        // Each connection: its deadline, its events, its request, its datagrams.
        let mut ended = Vec::new();
        for (&ch, c) in clients.iter_mut() {
            if c.conn.poll_timeout().is_some_and(|t| t <= now) {
                c.conn.handle_timeout(now);
            }
            while let Some(event) = c.conn.poll() {
                match event {
                    Event::Connected => {
                        c.connected = true;
                        out.handshakes += 1;
                        if let Some(id) = c.conn.streams().open(Dir::Uni) {
                            let _ = c.conn.send_stream(id).write(&control);
                        }
                    }
                    Event::ConnectionLost { reason } => {
                        if running || c.request.is_some() {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| reason.to_string());
                        }
                        c.request = None;
                    }
                    Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                        while let Some(id) = c.conn.streams().accept(Dir::Uni) {
                            c.uni.push(id);
                        }
                    }
                    _ => {}
                }
            }
            for &id in &c.uni {
                if let Ok(mut chunks) = c.conn.recv_stream(id).read(true) {
                    while let Ok(Some(_)) = chunks.next(usize::MAX) {}
                    let _ = chunks.finalize();
                }
            }
            if let Some(r) = c.request.as_mut() {
                match read_response(&mut c.conn, r) {
                    Ok(false) => {}
                    Ok(true) => {
                        out.requests += 1;
                        out.body_bytes += r.body;
                        if r.status != Some(200) {
                            out.not_ok += 1;
                        }
                        let us = now.saturating_duration_since(r.start).as_micros() as u64;
                        let _ = out.latency_us.record(us.max(1));
                        c.request = None;
                    }
                    Err(()) => {
                        out.errors += 1;
                        c.request = None;
                    }
                }
            }
            if c.connected && c.request.is_none() && running && !c.conn.is_closed() {
                if let Some(id) = c.conn.streams().open(Dir::Bi) {
                    let mut s = c.conn.send_stream(id);
                    if s.write(&request).is_ok() && s.finish().is_ok() {
                        c.request = Some(Request {
                            id,
                            start: now,
                            reader: FrameReader::new(),
                            status: None,
                            body: 0,
                        });
                    }
                }
            }
            if !running && c.request.is_none() && !c.conn.is_closed() {
                c.conn
                    .close(now, VarInt::from_u32(0x100), bytes::Bytes::new());
            }
            while let Some(event) = c.conn.poll_endpoint_events() {
                if let Some(back) = endpoint.handle_event(ch, event) {
                    c.conn.handle_event(back);
                }
            }
            loop {
                send.clear();
                let Some(t) = c.conn.poll_transmit(now, 1, &mut send) else {
                    break;
                };
                let _ = socket.send_to(&send[..t.size], t.destination);
                out.datagrams_out += 1;
            }
            if c.conn.is_drained() || (c.conn.is_closed() && running) {
                ended.push(ch);
            }
        }
        for ch in ended {
            clients.remove(&ch);
        }
        // Wait for a datagram or the nearest deadline.
        let wake = clients
            .values_mut()
            .filter_map(|c| c.conn.poll_timeout())
            .min()
            .unwrap_or(now + Duration::from_millis(50))
            .min(if running {
                end
            } else {
                now + Duration::from_secs(1)
            });
        let ms = wake
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(100) as libc::c_int;
        if ms > 0 {
            let mut fd = libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut fd, 1, ms) };
        }
        if Instant::now() > end + Duration::from_secs(10) {
            // Requests still open 10 s after the run are failures.
            out.errors += clients.values().filter(|c| c.request.is_some()).count() as u64;
            break;
        }
    }
    out.elapsed = Instant::now().saturating_duration_since(start);
    Ok(out)
}

/// Reads what the response stream holds: `Ok(true)` once it has ended, `Err` if it was reset
/// or is malformed.
fn read_response(conn: &mut Connection, r: &mut Request) -> Result<bool, ()> {
    let mut recv = conn.recv_stream(r.id);
    let mut chunks = match recv.read(true) {
        Ok(chunks) => chunks,
        Err(_) => return Err(()),
    };
    let mut finished = false;
    loop {
        match chunks.next(usize::MAX) {
            Ok(Some(chunk)) => {
                // Frame by frame as the bytes come, so a DATA payload is skipped, not held.
                r.reader.push(&chunk.bytes);
                if frames(r).is_err() {
                    let _ = chunks.finalize();
                    return Err(());
                }
            }
            Ok(None) => {
                finished = true;
                break;
            }
            Err(quinn_proto::ReadError::Blocked) => break,
            Err(_) => {
                let _ = chunks.finalize();
                return Err(());
            }
        }
    }
    let _ = chunks.finalize();
    Ok(finished && r.status.is_some())
}

/// Takes the complete frames the reader holds: the status from the first HEADERS, the
/// length of every DATA.
fn frames(r: &mut Request) -> Result<(), ()> {
    loop {
        match r.reader.poll() {
            Ok(Some(Frame::Headers(block))) => {
                if r.status.is_none() {
                    let fields = qpack::decode_field_section(&block, 64 << 10).map_err(|_| ())?;
                    r.status = fields
                        .iter()
                        .find(|(name, _)| name == b":status")
                        .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse().ok());
                }
            }
            Ok(Some(Frame::Data { len })) => r.body += len,
            Ok(Some(Frame::DataPayload(b))) => r.body += b.len() as u64,
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(_) => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_headers_frame_the_engine_decodes() {
        let bytes = request_frame("localhost", "/live/x.m3u8");
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        let Ok(Some(Frame::Headers(block))) = reader.poll() else {
            panic!("no HEADERS frame");
        };
        let fields = qpack::decode_field_section(&block, 1 << 10).unwrap();
        let path = fields.iter().find(|(name, _)| name == b":path").unwrap();
        assert_eq!(path.1, b"/live/x.m3u8");
        assert_eq!(reader.poll(), Ok(None));
    }
}
