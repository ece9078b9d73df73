//! Publishers: edge-core's RTMP client publishing frames a test makes, and raw RTMP
//! handshakes for hostile peers.

use bytes::Bytes;
use edge_core::media::MediaKind;
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The `connect` command object edge-core's client sends for `rtmp://127.0.0.1:1935/live`.
pub fn client_connect_object(mode: ClientMode) -> edge_core::rtmp::amf::Amf0Value {
    use edge_core::rtmp::message::Message;
    use edge_core::rtmp::server::ServerConnection;
    let cfg = ClientConfig::new("rtmp://127.0.0.1:1935/live", "cam", mode);
    let mut c = RtmpClient::new(cfg).unwrap();
    let mut s = ServerConnection::new();
    s.handle_input(&c.poll_transmit().unwrap(), &mut Vec::new())
        .unwrap();
    c.handle_input(&s.poll_transmit().unwrap(), &mut Vec::new())
        .unwrap();
    let out = c.poll_transmit().unwrap();
    let mut r = edge_core::rtmp::reader::ChunkReader::new();
    let mut input = &out[1536..];
    while let Some(m) = r.read_message(&mut input).unwrap() {
        if let Ok(Message::Command(cmd)) = Message::decode(&m) {
            return cmd.object;
        }
    }
    panic!("the client sent no command")
}

/// Connects to an RTMP server and completes a plain handshake the way a peer does (C0+C1,
/// then C2 echoing S1), leaving the socket right after it, with a 10 s read timeout.
pub fn rtmp_handshake(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    s.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s.read_exact(&mut s0s1s2)?;
    s.write_all(&s0s1s2[1..1537])?;
    Ok(s)
}

/// Reads (and drops) until the peer closes the socket: `true` for EOF or a reset, `false`
/// when the read timeout passed first.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Publishes with edge-core's client and returns the statuses the server sent back.
pub fn try_publish(addr: SocketAddr, app: &str, stream: &str) -> (Vec<ClientEvent>, bool) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        stream,
        ClientMode::Publish,
    ))
    .unwrap();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(out) = client.poll_transmit() {
            if sock.write_all(&out).is_err() {
                return (events, true);
            }
        }
        match sock.read(&mut buf) {
            Ok(0) => return (events, true),
            Ok(n) => {
                if client.handle_input(&buf[..n], &mut events).is_err() {
                    return (events, true);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (events, true),
        }
    }
    (events, false)
}

/// The FLV tags of fixture `name`, in order.
pub fn fixture_flv_tags(name: &str) -> Vec<edge_core::flv::FlvTag> {
    let mut r = edge_core::flv::FlvReader::new();
    r.handle_input(&std::fs::read(crate::fixture(name)).unwrap());
    let mut tags = Vec::new();
    while let Some(t) = r.poll_tag().unwrap() {
        tags.push(t);
    }
    tags
}

/// A publisher on edge-core's client, for synthetic streams (enhanced RTMP, odd timing).
pub struct Publisher {
    sock: TcpStream,
    client: RtmpClient,
    /// The timestamp of [`Publisher::pump`]'s last frame.
    pumped_ms: u32,
}

impl Publisher {
    /// Connects and publishes `rtmp://addr/app/stream`; returns once the server said
    /// `NetStream.Publish.Start`.
    pub fn start(addr: SocketAddr, app: &str, stream: &str) -> Publisher {
        Self::start_offering(addr, app, stream, 0)
    }

    /// [`Publisher::start`], offering Enhanced RTMP `capsEx` in `connect`.
    pub fn start_offering(addr: SocketAddr, app: &str, stream: &str, caps_ex: u8) -> Publisher {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut cfg =
            ClientConfig::new(&format!("rtmp://{addr}/{app}"), stream, ClientMode::Publish);
        cfg.caps_ex = caps_ex;
        let mut client = RtmpClient::new(cfg).unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no NetStream.Publish.Start");
            if let Some(out) = client.poll_transmit() {
                sock.write_all(&out).unwrap();
            }
            match sock.read(&mut buf) {
                Ok(0) => panic!("the server closed the publisher"),
                Ok(n) => {
                    let mut events = Vec::new();
                    client.handle_input(&buf[..n], &mut events).unwrap();
                    if events.contains(&ClientEvent::Started) {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        Publisher {
            sock,
            client,
            pumped_ms: 0,
        }
    }

    /// Sends one media message.
    pub fn send(&mut self, kind: MediaKind, ts: u32, body: &[u8]) {
        self.client
            .publish(kind, ts, Bytes::copy_from_slice(body))
            .unwrap();
        let out = self.client.poll_transmit().unwrap();
        self.sock.write_all(&out).unwrap();
    }

    /// Sends FLV tags as they are: media as media, script data as `onMetaData`.
    pub fn send_tags(&mut self, tags: &[edge_core::flv::FlvTag]) {
        for t in tags {
            match MediaKind::from_type_id(t.type_id) {
                Some(MediaKind::Data) => self.send_metadata(&t.body),
                Some(kind) => self.send(kind, t.timestamp, &t.body),
                None => {}
            }
        }
    }

    /// Sends `onMetaData` (an AMF0 `onMetaData` body), behind `@setDataFrame`.
    pub fn send_metadata(&mut self, body: &[u8]) {
        self.client.publish_metadata(body).unwrap();
        let out = self.client.poll_transmit().unwrap();
        self.sock.write_all(&out).unwrap();
    }

    /// Publishes an audio frame every 40 ms for `how_long`, and returns what the server sent
    /// meanwhile (stopping early once `until` matches one).
    pub fn pump(
        &mut self,
        how_long: Duration,
        until: impl Fn(&ClientEvent) -> bool,
    ) -> Vec<ClientEvent> {
        let end = Instant::now() + how_long;
        let mut buf = vec![0u8; 16 * 1024];
        let mut events = Vec::new();
        self.sock
            .set_read_timeout(Some(Duration::from_millis(40)))
            .unwrap();
        while Instant::now() < end && !events.iter().any(&until) {
            self.pumped_ms += 40;
            let ts = self.pumped_ms;
            self.send(MediaKind::Audio, ts, b"\xaf\x01\x21\x10\x04");
            match self.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.client.handle_input(&buf[..n], &mut events).unwrap(),
                Err(_) => {}
            }
        }
        events
    }

    /// FCUnpublish + deleteStream, then the socket is closed.
    pub fn finish(mut self) {
        self.client.close();
        if let Some(out) = self.client.poll_transmit() {
            let _ = self.sock.write_all(&out);
        }
    }
}
