//! The server side of one RTMP connection, sans-IO: the handshake (rml_rtmp's, which the
//! fuzz targets show sound), then our own chunk reader, message decoding and command
//! handling (connect, createStream, publish, play, deleteStream and the FMLE extras), turned
//! into [`ServerEvent`]s.
//!
//! Inputs are `handle_input(bytes, &mut events)`, `accept`, `reject`, `send_status`; the bytes to write come
//! out of `poll_transmit`, in order. Media for players is never serialised here: the engine
//! writes the stream's shared chunks (see [`super::chunk`]) between our control bytes, which
//! is safe because every message we write carries a full header.
//!
//! Must not: panic on peer input (every problem is an [`RtmpError`] that closes this peer),
//! read a clock, or hold more than [`MAX_NET_STREAMS`] streams per connection.

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

use super::aggregate::{self, AggregateError};
use super::amf::{self, Amf0Value};
use super::chunk;
use super::message::{self, event, Command, Message, MessageError, CSID_COMMAND};
use super::reader::{ChunkError, ChunkReader, RawMessage};
use crate::media::MediaKind;

/// Message streams (`createStream`) one connection may hold at once.
pub const MAX_NET_STREAMS: usize = 8;
/// The acknowledgement window the engine asks peers for, and its peer bandwidth.
pub const WINDOW_ACK_SIZE: u32 = 5_000_000;

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The peer's handshake bytes were invalid (often: not RTMP at all).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A chunk violated the protocol or a limit.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// A message body did not decode.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A malformed aggregate message.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// A command out of order or with arguments that cannot be used.
    #[error("bad {command}: {why}")]
    BadCommand { command: String, why: &'static str },
    /// The origin refused our connect (client side).
    #[error("connect rejected: {0}")]
    ConnectRejected(String),
    /// The peer asked for something we do not do.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// What a server connection reports to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The peer wants to publish `app/stream` (stream may carry `?query`). Answer with
    /// [`ServerConnection::accept`] or [`ServerConnection::reject`].
    PublishRequested {
        request_id: u32,
        app: String,
        stream: String,
    },
    /// The peer wants to play. `stream_id` is the message stream its media must use.
    PlayRequested {
        request_id: u32,
        app: String,
        stream: String,
        stream_id: u32,
    },
    /// A media message from a publisher.
    Media {
        kind: MediaKind,
        timestamp: u32,
        body: Bytes,
    },
    /// `@setDataFrame onMetaData`, already re-encoded as an `onMetaData` body.
    Metadata { body: Bytes },
    /// The publisher stopped (deleteStream / FCUnpublish / closeStream).
    PublishFinished,
    /// The player stopped.
    PlayFinished,
}

/// What the peer declared in `connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Without a trailing `/`; may carry `?query`.
    pub app: String,
    /// As sent; empty when the peer sent none (ffmpeg and OBS always do).
    pub tc_url: String,
    /// Enhanced RTMP v2 `capsEx` (0 when absent or not a number in 0..=255).
    pub caps_ex: u8,
}

impl ConnectInfo {
    /// The peer honours Enhanced RTMP's reconnect request ([`reconnect_request_message`]).
    pub fn reconnects(&self) -> bool {
        self.caps_ex & amf::CAPS_EX_RECONNECT != 0
    }
}

/// Enhanced RTMP v2's reconnect request on the NetConnection (message stream 0), as one
/// chunk sequence with a full header: `tc_url` says where to reconnect (`None`: where it is).
pub fn reconnect_request_message(tc_url: Option<&str>, description: &str) -> Bytes {
    let body = amf::reconnect_request_body(tc_url, description);
    chunk::serialize_message(
        chunk::CSID_DATA,
        0,
        message::type_id::AMF0_COMMAND,
        0,
        &body,
        chunk::OUT_CHUNK_SIZE,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NetStreamState {
    Idle,
    PublishRequested,
    Publishing,
    PlayRequested,
    Playing,
}

#[derive(Debug)]
struct NetStream {
    id: u32,
    state: NetStreamState,
}

/// An `onStatus(level, code, description)` command on message stream `stream_id`, as one
/// chunk sequence with a full header: it may be written between shared media chunks, and by
/// the engine after the session itself is gone (a stream's end, a not-found).
pub fn status_message(stream_id: u32, level: &str, code: &str, description: &str) -> Bytes {
    let body = amf::status_body(level, code, description);
    chunk::serialize_message(
        chunk::CSID_DATA,
        0,
        message::type_id::AMF0_COMMAND,
        stream_id,
        &body,
        chunk::OUT_CHUNK_SIZE,
    )
}

/// One RTMP server connection.
pub struct ServerConnection {
    handshake: Option<Box<Handshake>>,
    reader: ChunkReader,
    outbound: BytesMut,
    connect: Option<ConnectInfo>,
    streams: Vec<NetStream>,
    next_stream_id: u32,
    /// The peer's acknowledgement window, once it sent one.
    peer_window: Option<u32>,
    /// `reader.bytes_read()` when we last acknowledged.
    acked_at: u64,
}

impl Default for ServerConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerConnection {
    pub fn new() -> Self {
        Self {
            handshake: Some(Box::new(Handshake::new(PeerType::Server))),
            reader: ChunkReader::new(),
            outbound: BytesMut::new(),
            connect: None,
            streams: Vec::new(),
            next_stream_id: 1,
            peer_window: None,
            acked_at: 0,
        }
    }

    /// What the peer sent in `connect`, once it has.
    pub fn connect_info(&self) -> Option<&ConnectInfo> {
        self.connect.as_ref()
    }

    /// Feeds bytes read from the peer; what they mean is appended to `events`. On an error
    /// the events before it are still there (a publisher's last frames before a broken
    /// message are not lost) and the session must not be fed again.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), RtmpError> {
        let Some(hs) = &mut self.handshake else {
            return self.read_messages(data, events);
        };
        match hs
            .process_bytes(data)
            .map_err(|e| RtmpError::Handshake(e.to_string()))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                self.outbound.extend_from_slice(&response_bytes);
                Ok(())
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                self.outbound.extend_from_slice(&response_bytes);
                self.handshake = None;
                // Everything we send is cut at our chunk size: announce it first.
                self.outbound
                    .extend_from_slice(&message::set_chunk_size(chunk::OUT_CHUNK_SIZE as u32));
                self.read_messages(&remaining_bytes, events)
            }
        }
    }

    fn read_messages(
        &mut self,
        mut input: &[u8],
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), RtmpError> {
        while let Some(m) = self.reader.read_message(&mut input)? {
            self.handle_message(m, events)?;
        }
        if let Some(window) = self.peer_window {
            let read = self.reader.bytes_read();
            if read - self.acked_at >= u64::from(window) {
                self.acked_at = read;
                self.outbound.extend_from_slice(&message::ack(read as u32));
            }
        }
        Ok(())
    }

    /// Accepts a publish or play request.
    pub fn accept(&mut self, request_id: u32) -> Result<(), RtmpError> {
        let s = self.pending(request_id, "accept")?;
        let sid = s.id;
        s.state = match s.state {
            NetStreamState::PublishRequested => NetStreamState::Publishing,
            _ => NetStreamState::Playing,
        };
        let publishing = s.state == NetStreamState::Publishing;
        if publishing {
            self.outbound
                .extend_from_slice(&message::user_control(event::STREAM_BEGIN, sid));
            self.send_status(sid, "status", "NetStream.Publish.Start", "publishing");
        } else {
            self.send_status(sid, "status", "NetStream.Play.Reset", "reset");
            self.outbound
                .extend_from_slice(&message::user_control(event::STREAM_BEGIN, sid));
            self.send_status(sid, "status", "NetStream.Play.Start", "playing");
            // No `onStatus(NetStream.Data.Start)` data message: ffmpeg makes a data stream of
            // it, and its timestamp (0 here) then moves the player's start time off the
            // media's (seen as a 57 ms shift of every packet in the checksum test).
            let mut w = amf::Writer::new();
            w.string("|RtmpSampleAccess").boolean(true).boolean(true);
            self.data_message(sid, &w.finish());
        }
        Ok(())
    }

    /// Rejects a publish or play request with an `onStatus` error `code` (e.g.
    /// `NetStream.Publish.BadName`).
    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        let s = self.pending(request_id, "reject")?;
        s.state = NetStreamState::Idle;
        let sid = s.id;
        self.send_status(sid, "error", code, description);
        Ok(())
    }

    /// Queues an `onStatus` command on `stream_id` (e.g. `NetStream.Play.UnpublishNotify`).
    /// Answers a pending play with SRS's RTMP "302" to `url` (`rtmp://HOST:PORT/APP/STREAM`),
    /// on message stream 0 as SRS sends it; the caller closes the connection after the flush.
    pub fn redirect(&mut self, request_id: u32, url: &str) -> Result<(), RtmpError> {
        let s = self.pending(request_id, "redirect")?;
        s.state = NetStreamState::Idle;
        let tc_url = url.rsplit_once('/').map_or(url, |(t, _)| t);
        let body = amf::redirect_body(tc_url, url);
        self.outbound.extend_from_slice(&chunk::serialize_message(
            chunk::CSID_DATA,
            0,
            message::type_id::AMF0_COMMAND,
            0,
            &body,
            chunk::OUT_CHUNK_SIZE,
        ));
        Ok(())
    }

    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.outbound
            .extend_from_slice(&status_message(stream_id, level, code, description));
    }

    /// Bytes to write to the peer, in order, or `None` when there is nothing to send.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.outbound.is_empty() {
            None
        } else {
            Some(self.outbound.split().freeze())
        }
    }

    fn pending(&mut self, request_id: u32, what: &str) -> Result<&mut NetStream, RtmpError> {
        self.streams
            .iter_mut()
            .find(|s| {
                s.id == request_id
                    && matches!(
                        s.state,
                        NetStreamState::PublishRequested | NetStreamState::PlayRequested
                    )
            })
            .ok_or_else(|| RtmpError::BadCommand {
                command: what.to_string(),
                why: "no such request",
            })
    }

    fn data_message(&mut self, stream_id: u32, body: &[u8]) {
        self.outbound.extend_from_slice(&chunk::serialize_message(
            chunk::CSID_DATA,
            0,
            message::type_id::AMF0_DATA,
            stream_id,
            body,
            chunk::OUT_CHUNK_SIZE,
        ));
    }

    /// `_result(txn, object, args…)` on message stream 0.
    fn result(&mut self, txn: f64, object: impl FnOnce(&mut amf::Writer), args: &[&[u8]]) {
        let mut w = amf::Writer::new();
        w.string("_result").number(txn);
        object(&mut w);
        for a in args {
            w.raw(a);
        }
        self.outbound
            .extend_from_slice(&message::command_message(CSID_COMMAND, 0, &w.finish()));
    }

    fn publishing(&self, stream_id: u32) -> bool {
        self.streams
            .iter()
            .any(|s| s.id == stream_id && s.state == NetStreamState::Publishing)
    }

    fn handle_message(
        &mut self,
        m: RawMessage,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), RtmpError> {
        let sid = m.stream_id;
        match Message::decode(&m)? {
            Message::Command(c) => self.handle_command(sid, c, events)?,
            Message::Audio(body) if self.publishing(sid) => events.push(ServerEvent::Media {
                kind: MediaKind::Audio,
                timestamp: m.timestamp,
                body,
            }),
            Message::Video(body) if self.publishing(sid) => events.push(ServerEvent::Media {
                kind: MediaKind::Video,
                timestamp: m.timestamp,
                body,
            }),
            Message::Aggregate(body) if self.publishing(sid) => {
                for sub in aggregate::split(m.timestamp, &body)? {
                    if let Some(kind @ (MediaKind::Audio | MediaKind::Video)) = sub.kind {
                        events.push(ServerEvent::Media {
                            kind,
                            timestamp: sub.timestamp,
                            body: sub.body,
                        });
                    }
                }
            }
            Message::Data(values) if self.publishing(sid) => {
                if let Some(props) = amf::metadata_object(&values) {
                    events.push(ServerEvent::Metadata {
                        body: amf::metadata_body(props),
                    });
                }
            }
            Message::UserControl {
                event: event::PING_REQUEST,
                value,
            } => self
                .outbound
                .extend_from_slice(&message::user_control(event::PING_RESPONSE, value)),
            Message::WindowAckSize(size) if size > 0 => self.peer_window = Some(size),
            // Media and data on a stream that is not publishing, acknowledgements, peer
            // bandwidth, shared objects: nothing to do (as nginx-rtmp and SRS).
            _ => {}
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        sid: u32,
        c: Command,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), RtmpError> {
        let bad = |why: &'static str| RtmpError::BadCommand {
            command: c.name.clone(),
            why,
        };
        if c.name != "connect" && self.connect.is_none() {
            // Results and status replies of a confused peer are ignored; requests are not.
            return match c.name.as_str() {
                "createStream" | "publish" | "play" => Err(bad("before connect")),
                _ => Ok(()),
            };
        }
        match c.name.as_str() {
            "connect" => {
                if self.connect.is_some() {
                    return Err(bad("sent twice"));
                }
                let mut app = amf::prop_str(&c.object, "app")
                    .ok_or_else(|| bad("no app"))?
                    .to_string();
                if app.ends_with('/') {
                    app.pop();
                }
                let tc_url = amf::prop_str(&c.object, "tcUrl").unwrap_or("").to_string();
                let number = |key: &str| match &c.object {
                    Amf0Value::Object(p) => match p.get(key) {
                        Some(Amf0Value::Number(n)) => Some(*n),
                        _ => None,
                    },
                    _ => None,
                };
                let object_encoding = number("objectEncoding").unwrap_or(0.0);
                let caps_ex = match number("capsEx") {
                    Some(n) if (0.0..=255.0).contains(&n) => n as u8,
                    _ => 0,
                };
                self.connect = Some(ConnectInfo {
                    app,
                    tc_url,
                    caps_ex,
                });
                self.outbound
                    .extend_from_slice(&message::window_ack_size(WINDOW_ACK_SIZE));
                self.outbound
                    .extend_from_slice(&message::set_peer_bandwidth(WINDOW_ACK_SIZE));
                self.outbound
                    .extend_from_slice(&message::user_control(event::STREAM_BEGIN, 0));
                let mut info = amf::Writer::new();
                info.begin_object();
                info.key("level").string("status");
                info.key("code").string("NetConnection.Connect.Success");
                info.key("description").string("Connection succeeded.");
                info.key("objectEncoding").number(object_encoding);
                info.end_object();
                let info = info.finish();
                self.result(
                    c.transaction_id,
                    |w| {
                        w.begin_object();
                        w.key("fmsVer").string("FMS/3,0,1,123");
                        w.key("capabilities").number(31.0);
                        if caps_ex & amf::CAPS_EX_RECONNECT != 0 {
                            // Enhanced RTMP v2: what the server does of what the client
                            // offered.
                            w.key("capsEx").number(f64::from(amf::CAPS_EX_RECONNECT));
                        }
                        w.end_object();
                    },
                    &[&info],
                );
            }
            "createStream" => {
                if self.streams.len() >= MAX_NET_STREAMS {
                    return Err(bad("too many streams"));
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.push(NetStream {
                    id,
                    state: NetStreamState::Idle,
                });
                let mut w = amf::Writer::new();
                w.number(f64::from(id));
                let id_value = w.finish();
                self.result(
                    c.transaction_id,
                    |w| {
                        w.null();
                    },
                    &[&id_value],
                );
            }
            // FMLE, OBS and ffmpeg announce a publish with these; SRS answers both with a
            // bare `_result`, which is what every publisher accepts.
            "releaseStream" | "FCPublish" => {
                self.result(
                    c.transaction_id,
                    |w| {
                        w.null();
                    },
                    &[&[0x06]],
                );
            }
            "publish" | "play" => {
                let name = amf::str_at(&c.args, 0).ok_or_else(|| bad("no stream name"))?;
                let app = self
                    .connect
                    .as_ref()
                    .map(|c| c.app.clone())
                    .unwrap_or_default();
                let stream = name.to_string();
                let publish = c.name == "publish";
                let s = self
                    .streams
                    .iter_mut()
                    .find(|s| s.id == sid)
                    .ok_or_else(|| bad("on a stream never created"))?;
                if s.state != NetStreamState::Idle {
                    return Err(bad("on a stream already in use"));
                }
                if publish {
                    s.state = NetStreamState::PublishRequested;
                    events.push(ServerEvent::PublishRequested {
                        request_id: sid,
                        app,
                        stream,
                    });
                } else {
                    s.state = NetStreamState::PlayRequested;
                    events.push(ServerEvent::PlayRequested {
                        request_id: sid,
                        app,
                        stream,
                        stream_id: sid,
                    });
                }
            }
            "FCUnpublish" => {
                for s in &mut self.streams {
                    if s.state == NetStreamState::Publishing {
                        s.state = NetStreamState::Idle;
                        events.push(ServerEvent::PublishFinished);
                    }
                }
            }
            "deleteStream" | "closeStream" => {
                // deleteStream names the stream; closeStream is sent on it.
                let target = if c.name == "deleteStream" {
                    match amf::number_at(&c.args, 0) {
                        Some(n) if n >= 0.0 && n <= f64::from(u32::MAX) => n as u32,
                        _ => return Ok(()),
                    }
                } else {
                    sid
                };
                if let Some(i) = self.streams.iter().position(|s| s.id == target) {
                    match self.streams[i].state {
                        NetStreamState::Publishing => events.push(ServerEvent::PublishFinished),
                        NetStreamState::Playing => events.push(ServerEvent::PlayFinished),
                        _ => {}
                    }
                    if c.name == "deleteStream" {
                        self.streams.remove(i);
                    } else {
                        self.streams[i].state = NetStreamState::Idle;
                    }
                }
            }
            // getStreamLength, _checkbw, receiveAudio/Video, pause, results of our own
            // onBWDone-less session: nothing a live edge answers.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `handle_input` returning the events, for tests that look at one call at a time.
    pub(crate) fn input(
        s: &mut ServerConnection,
        bytes: &[u8],
    ) -> Result<Vec<ServerEvent>, RtmpError> {
        let mut events = Vec::new();
        s.handle_input(bytes, &mut events).map(|()| events)
    }

    /// A handshake as a peer does it: C0+C1, then C2 echoing S1.
    pub(crate) fn handshaken() -> ServerConnection {
        let mut s = ServerConnection::new();
        let mut c1 = vec![3u8];
        c1.extend_from_slice(&[0u8; 1536]);
        assert!(input(&mut s, &c1).unwrap().is_empty());
        let s0s1s2 = s.poll_transmit().unwrap();
        let c2 = s0s1s2[1..1537].to_vec();
        assert!(input(&mut s, &c2).unwrap().is_empty());
        s
    }

    fn cmd(csid: u32, sid: u32, f: impl FnOnce(&mut amf::Writer)) -> Vec<u8> {
        let mut w = amf::Writer::new();
        f(&mut w);
        chunk::serialize_message(csid, 0, 20, sid, &w.finish(), 128).to_vec()
    }

    fn connect(app: &str) -> Vec<u8> {
        cmd(3, 0, |w| {
            w.string("connect").number(1.0).begin_object();
            w.key("app").string(app);
            w.key("tcUrl").string("rtmp://h/live");
            w.end_object();
        })
    }

    fn create_stream() -> Vec<u8> {
        cmd(3, 0, |w| {
            w.string("createStream").number(2.0).null();
        })
    }

    fn request(name: &str, stream: &str, sid: u32) -> Vec<u8> {
        cmd(8, sid, |w| {
            w.string(name).number(0.0).null().string(stream);
        })
    }

    /// Every message the server wrote, decoded (after the handshake). Each call reads with a
    /// fresh reader told the server's chunk size, as a peer's reader would be by then.
    fn replies(s: &mut ServerConnection) -> Vec<Message> {
        let mut r = ChunkReader::new();
        if s.connect.is_some() {
            r.set_chunk_size(chunk::OUT_CHUNK_SIZE as u32).unwrap();
        }
        let mut out = Vec::new();
        while let Some(b) = s.poll_transmit() {
            let mut input = &b[..];
            while let Some(m) = r.read_message(&mut input).unwrap() {
                out.push(Message::decode(&m).unwrap());
            }
        }
        out
    }

    #[test]
    fn enhanced_rtmp_reconnect_capability_is_read_echoed_and_the_request_is_well_formed() {
        for (caps, reconnects) in [
            (Some(1.0), true),
            (Some(15.0), true),
            (Some(6.0), false),
            (Some(-1.0), false),
            (Some(1e9), false),
            (None, false),
        ] {
            let mut s = handshaken();
            let wire = cmd(3, 0, |w| {
                w.string("connect").number(1.0).begin_object();
                w.key("app").string("live");
                if let Some(c) = caps {
                    w.key("capsEx").number(c);
                }
                w.end_object();
            });
            input(&mut s, &wire).unwrap();
            assert_eq!(
                s.connect_info().unwrap().reconnects(),
                reconnects,
                "{caps:?}"
            );
            let out = replies(&mut s);
            let result = out
                .iter()
                .find_map(|m| match m {
                    Message::Command(c) if c.name == "_result" => Some(c),
                    _ => None,
                })
                .unwrap();
            let echoed = match &result.object {
                Amf0Value::Object(p) => p.get("capsEx").cloned(),
                _ => None,
            };
            let want = reconnects.then_some(Amf0Value::Number(1.0));
            assert_eq!(echoed, want, "{caps:?}");
        }
        let mut r = ChunkReader::new();
        r.set_chunk_size(chunk::OUT_CHUNK_SIZE as u32).unwrap();
        for tc_url in [Some("rtmp://10.0.0.2:1935/live"), None] {
            let b = reconnect_request_message(tc_url, "draining");
            let mut input = &b[..];
            let m = r.read_message(&mut input).unwrap().unwrap();
            assert_eq!(m.stream_id, 0, "on the NetConnection");
            let Message::Command(c) = Message::decode(&m).unwrap() else {
                panic!("not a command");
            };
            assert_eq!(c.name, "onStatus");
            assert_eq!(c.transaction_id, 0.0);
            assert_eq!(c.object, Amf0Value::Null);
            assert_eq!(amf::prop_str(&c.args[0], "level"), Some("status"));
            assert_eq!(
                amf::prop_str(&c.args[0], "code"),
                Some("NetConnection.Connect.ReconnectRequest")
            );
            assert_eq!(amf::prop_str(&c.args[0], "tcUrl"), tc_url);
        }
    }

    #[test]
    fn connect_create_publish_and_media() {
        let mut s = handshaken();
        let mut wire = connect("live/");
        wire.extend(create_stream());
        wire.extend(request("publish", "cam?k=1", 1));
        wire.extend(chunk::serialize_message(4, 40, 9, 1, b"\x17\x01", 128));
        for split in [1, 5, wire.len()] {
            let mut s2 = handshaken();
            let mut ev = Vec::new();
            for piece in wire.chunks(split) {
                ev.extend(input(&mut s2, piece).unwrap());
            }
            // Media before the accept is not delivered.
            assert_eq!(
                ev,
                vec![ServerEvent::PublishRequested {
                    request_id: 1,
                    app: "live".into(),
                    stream: "cam?k=1".into()
                }]
            );
        }
        let ev = input(&mut s, &wire).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            s.connect_info(),
            Some(&ConnectInfo {
                app: "live".into(),
                tc_url: "rtmp://h/live".into(),
                caps_ex: 0,
            })
        );
        let out = replies(&mut s);
        assert!(out.contains(&Message::SetChunkSize(4096)));
        let results: Vec<&Command> = out
            .iter()
            .filter_map(|m| match m {
                Message::Command(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(results[0].name, "_result");
        assert_eq!(
            amf::prop_str(&results[0].args[0], "code"),
            Some("NetConnection.Connect.Success")
        );
        assert_eq!(amf::number_at(&results[1].args, 0), Some(1.0));
        s.accept(1).unwrap();
        let out = replies(&mut s);
        assert!(out.iter().any(|m| matches!(m, Message::Command(c)
            if amf::prop_str(&c.args[0], "code") == Some("NetStream.Publish.Start"))));
        let ev = input(
            &mut s,
            &chunk::serialize_message(4, 80, 8, 1, b"\xaf\x01", 128),
        )
        .unwrap();
        assert_eq!(
            ev,
            vec![ServerEvent::Media {
                kind: MediaKind::Audio,
                timestamp: 80,
                body: Bytes::from_static(b"\xaf\x01")
            }]
        );
    }

    #[test]
    fn play_accept_sends_start_then_close_finishes() {
        let mut s = handshaken();
        let mut wire = connect("live");
        wire.extend(create_stream());
        wire.extend(request("play", "cam", 1));
        let ev = input(&mut s, &wire).unwrap();
        assert_eq!(
            ev,
            vec![ServerEvent::PlayRequested {
                request_id: 1,
                app: "live".into(),
                stream: "cam".into(),
                stream_id: 1
            }]
        );
        replies(&mut s);
        s.accept(1).unwrap();
        let codes: Vec<String> = replies(&mut s)
            .iter()
            .filter_map(|m| match m {
                Message::Command(c) => amf::prop_str(&c.args[0], "code").map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"]);
        let del = cmd(3, 0, |w| {
            w.string("deleteStream").number(0.0).null().number(1.0);
        });
        assert_eq!(
            input(&mut s, &del).unwrap(),
            vec![ServerEvent::PlayFinished]
        );
        // A second accept of the same request is refused.
        assert!(s.accept(1).is_err());
    }

    #[test]
    fn metadata_and_aggregates_while_publishing() {
        let mut s = handshaken();
        let mut wire = connect("live");
        wire.extend(create_stream());
        wire.extend(request("publish", "cam", 1));
        input(&mut s, &wire).unwrap();
        s.accept(1).unwrap();
        let mut w = amf::Writer::new();
        w.string("@setDataFrame")
            .string("onMetaData")
            .begin_object()
            .key("width")
            .number(640.0)
            .end_object();
        let meta = chunk::serialize_message(4, 0, 18, 1, &w.finish(), 128);
        let ev = input(&mut s, &meta).unwrap();
        let [ServerEvent::Metadata { body }] = &ev[..] else {
            panic!("{ev:?}")
        };
        let v = amf::decode(body).unwrap();
        assert_eq!(
            amf::metadata_object(&v).unwrap()["width"],
            Amf0Value::Number(640.0)
        );
        // An aggregate of one video tag.
        let mut agg = vec![9, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x17, 0x01];
        agg.extend_from_slice(&13u32.to_be_bytes());
        let ev = input(&mut s, &chunk::serialize_message(4, 500, 22, 1, &agg, 128)).unwrap();
        assert_eq!(
            ev,
            vec![ServerEvent::Media {
                kind: MediaKind::Video,
                timestamp: 500,
                body: Bytes::from_static(b"\x17\x01")
            }]
        );
    }

    #[test]
    fn ping_is_answered_and_acks_follow_the_window() {
        let mut s = handshaken();
        input(&mut s, &connect("live")).unwrap();
        replies(&mut s);
        let ping = message::user_control(event::PING_REQUEST, 77);
        input(&mut s, &ping).unwrap();
        assert_eq!(
            replies(&mut s),
            vec![Message::UserControl {
                event: event::PING_RESPONSE,
                value: 77
            }]
        );
        input(&mut s, &message::window_ack_size(1000)).unwrap();
        let filler = chunk::serialize_message(3, 0, 19, 0, &[0u8; 1200], 4096);
        input(&mut s, &filler).unwrap();
        let out = replies(&mut s);
        let [Message::Ack(n)] = out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(u64::from(n), s.reader.bytes_read());
    }

    #[test]
    fn out_of_order_and_malformed_commands_are_errors() {
        let mut s = handshaken();
        assert!(input(&mut s, &request("play", "x", 1)).is_err());
        let mut s = handshaken();
        let mut wire = connect("live");
        wire.extend(request("play", "x", 1));
        assert!(matches!(
            input(&mut s, &wire),
            Err(RtmpError::BadCommand {
                why: "on a stream never created",
                ..
            })
        ));
        let mut s = handshaken();
        assert!(input(
            &mut s,
            &cmd(3, 0, |w| {
                w.string("connect").number(1.0).null();
            })
        )
        .is_err());
        let mut s = handshaken();
        let mut wire = connect("live");
        for _ in 0..=MAX_NET_STREAMS {
            wire.extend(create_stream());
        }
        assert!(matches!(
            input(&mut s, &wire),
            Err(RtmpError::BadCommand {
                why: "too many streams",
                ..
            })
        ));
    }

    /// The reproducers of issue 11, after a valid handshake: each is an error.
    #[test]
    fn regression_issue_11_reproducers_close_the_peer() {
        let repro: [&[u8]; 4] = [
            &[0x03, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0],
            &[0x03, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0],
            &[
                0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x03, 0, 0, 0, 0, 0, 2, 8, 1, 0,
                0, 0, 0xaa, 0x43, 0, 0, 0, 0, 0, 0, 8,
            ],
            &[
                0x03, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xc3, 0, 0, 0, 0,
                0xbb,
            ],
        ];
        for (i, r) in repro.iter().enumerate() {
            let mut s = handshaken();
            let result = input(&mut s, r);
            // The last one is valid chunking (media on a stream that is not publishing,
            // ignored); the others are protocol errors.
            assert_eq!(result.is_err(), i < 3, "reproducer {i}: {result:?}");
        }
    }

    #[test]
    fn garbage_fails_the_handshake() {
        let mut s = ServerConnection::new();
        assert!(input(&mut s, b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
