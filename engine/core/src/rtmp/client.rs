//! A small sans-IO RTMP client (play or publish): the edge's pulls and forwards, the load
//! generator and the end-to-end tests all use it.
//!
//! `new` queues C0+C1; feed every byte read to `handle_input`, write what `poll_transmit`
//! returns, in order. Media arrives as [`ClientEvent::Media`].
//!
//! The session, in steps:
//! 1. Handshake (rml_rtmp's), then `SetChunkSize(4096)` and a complete `connect`: `app`,
//!    `tcUrl`, `flashVer`, `type`, `fpad`, `capabilities`, the codec masks, `videoFunction`,
//!    `objectEncoding`, and `swfUrl`/`pageUrl` where given, as ffmpeg and OBS send them
//!    (SRS refuses a connect without `tcUrl`).
//! 2. On `_result(connect)`: publish sends `releaseStream` and `FCPublish` (which FMLE-style
//!    servers expect before a publish, and whose answers, or their absence, are ignored);
//!    both modes send `createStream`.
//! 3. On `_result(createStream)`: `publish(name, "live")` or `play(name)` plus a 3 s
//!    `SetBufferLength`, on the new stream.
//! 4. `onStatus` `NetStream.Publish.Start` / `NetStream.Play.Start` is [`ClientEvent::Started`];
//!    any other code is [`ClientEvent::Status`]. A rejected connect carrying `ex.redirect`
//!    (an SRS origin cluster's RTMP "302") is [`ClientEvent::Redirect`].
//! 5. `onBWDone` is answered with `_checkbw`, as ffmpeg does; pings are answered; the
//!    server's acknowledgement window is honoured.
//!
//! Must not: panic on server input, read a clock, or depend on rml_rtmp's chunk or command
//! decoding (see [`super::reader`]).

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

use super::aggregate;
use super::amf::{self, Amf0Value};
use super::chunk::{self, OUT_CHUNK_SIZE};
use super::message::{
    self, event, type_id, Command, Message, CSID_COMMAND, CSID_PUBLISH_AUDIO, CSID_PUBLISH_VIDEO,
    CSID_STREAM_COMMAND,
};
use super::reader::ChunkReader;
use super::server::RtmpError;
use crate::media::MediaKind;

/// Play or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    Play,
    Publish,
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Play or publish was accepted (`NetStream.Play.Start` / `NetStream.Publish.Start`).
    Started,
    /// `onMetaData` from the server, as the AMF0 body the engine serves (see
    /// [`amf::metadata_body`]).
    Metadata { body: Bytes },
    /// Audio or video.
    Media {
        kind: MediaKind,
        timestamp: u32,
        body: Bytes,
    },
    /// Any other `onStatus` code, e.g. `NetStream.Play.UnpublishNotify` or
    /// `NetStream.Publish.BadName`.
    Status { code: String },
    /// The server answered createStream, publish or play with `_error`.
    CommandError,
    /// The server sends us elsewhere (SRS-style RTMP "302"): `url` is the origin's
    /// `rtmp://host[:port]/app` (the tcUrl; the stream name stays the same).
    Redirect { url: String },
    /// Enhanced RTMP v2: the server asks us to reconnect, to `tc_url` when it names one
    /// (sent only to a client that offered [`amf::CAPS_EX_RECONNECT`]).
    ReconnectRequest { tc_url: Option<String> },
}

/// What the client says in `connect`, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `rtmp://host[:port]/app[?query]`, as the origin is known to the caller.
    pub tc_url: String,
    /// The application, as the server should see it (the tcUrl's path, query included).
    pub app: String,
    /// The stream to play or publish; may carry `?query` (tokens).
    pub stream: String,
    pub mode: ClientMode,
    /// `flashVer`: players and publishers announce themselves differently.
    pub flash_ver: String,
    pub swf_url: Option<String>,
    pub page_url: Option<String>,
    /// Enhanced RTMP v2 `capsEx` offered in `connect` (0: not sent).
    pub caps_ex: u8,
}

/// `flashVer` of a player (what ffmpeg and librtmp send).
pub const PLAYER_FLASH_VER: &str = "LNX 9,0,124,2";
/// `flashVer` of a publisher (what OBS and ffmpeg send, FMLE-compatible).
pub const PUBLISHER_FLASH_VER: &str = "FMLE/3.0 (compatible; edge-engine)";

impl ClientConfig {
    /// A client for `{tc_url}/{stream}`: `tc_url` is `rtmp://host[:port]/app[?query]`.
    pub fn new(tc_url: &str, stream: &str, mode: ClientMode) -> Self {
        let app = tc_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map_or("", |(_, app)| app)
            .trim_end_matches('/')
            .to_string();
        Self {
            tc_url: tc_url.to_string(),
            app,
            stream: stream.to_string(),
            mode,
            flash_ver: match mode {
                ClientMode::Play => PLAYER_FLASH_VER,
                ClientMode::Publish => PUBLISHER_FLASH_VER,
            }
            .to_string(),
            swf_url: None,
            page_url: None,
            caps_ex: 0,
        }
    }
}

// Transaction ids of our own requests.
const TXN_CONNECT: f64 = 1.0;
const TXN_RELEASE_STREAM: f64 = 2.0;
const TXN_FC_PUBLISH: f64 = 3.0;
const TXN_CREATE_STREAM: f64 = 4.0;
const TXN_REQUEST: f64 = 5.0;
const TXN_CHECKBW: f64 = 6.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Connecting,
    CreatingStream,
    Requested { stream_id: u32 },
    Started { stream_id: u32 },
}

/// One RTMP client connection.
pub struct RtmpClient {
    config: ClientConfig,
    handshake: Option<Box<Handshake>>,
    state: State,
    reader: ChunkReader,
    outbound: BytesMut,
    peer_window: Option<u32>,
    acked_at: u64,
}

impl RtmpClient {
    /// Starts a client; the handshake's first bytes are queued.
    pub fn new(config: ClientConfig) -> Result<Self, RtmpError> {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| RtmpError::Handshake(e.to_string()))?;
        let mut outbound = BytesMut::new();
        outbound.extend_from_slice(&c0c1);
        Ok(Self {
            config,
            handshake: Some(Box::new(hs)),
            state: State::Handshake,
            reader: ChunkReader::new(),
            outbound,
            peer_window: None,
            acked_at: 0,
        })
    }

    /// What this client sends in `connect`.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Feeds bytes read from the server; what they mean is appended to `events`. On an error
    /// the events before it are still there, and the client must not be fed again.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        events: &mut Vec<ClientEvent>,
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
                self.outbound
                    .extend_from_slice(&message::set_chunk_size(OUT_CHUNK_SIZE as u32));
                self.send_connect();
                self.state = State::Connecting;
                self.read_messages(&remaining_bytes, events)
            }
        }
    }

    fn read_messages(
        &mut self,
        mut input: &[u8],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), RtmpError> {
        while let Some(m) = self.reader.read_message(&mut input)? {
            let timestamp = m.timestamp;
            match Message::decode(&m)? {
                Message::Command(c) => self.handle_command(c, events)?,
                Message::Audio(body) => self.media(MediaKind::Audio, timestamp, body, events),
                Message::Video(body) => self.media(MediaKind::Video, timestamp, body, events),
                Message::Aggregate(body) => {
                    for sub in aggregate::split(timestamp, &body)? {
                        if let Some(kind @ (MediaKind::Audio | MediaKind::Video)) = sub.kind {
                            self.media(kind, sub.timestamp, sub.body, events);
                        }
                    }
                }
                Message::Data(values) => {
                    if let Some(props) = amf::metadata_object(&values) {
                        events.push(ClientEvent::Metadata {
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
                _ => {}
            }
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

    fn media(&self, kind: MediaKind, timestamp: u32, body: Bytes, events: &mut Vec<ClientEvent>) {
        // Media before the start (or on a publishing connection) is not ours to report.
        if matches!(self.state, State::Started { .. }) && self.config.mode == ClientMode::Play {
            events.push(ClientEvent::Media {
                kind,
                timestamp,
                body,
            });
        }
    }

    fn send_connect(&mut self) {
        let c = &self.config;
        let mut w = amf::Writer::new();
        w.string("connect").number(TXN_CONNECT).begin_object();
        w.key("app").string(&c.app);
        w.key("type").string("nonprivate");
        w.key("flashVer").string(&c.flash_ver);
        if let Some(swf) = &c.swf_url {
            w.key("swfUrl").string(swf);
        }
        w.key("tcUrl").string(&c.tc_url);
        if c.mode == ClientMode::Play {
            w.key("fpad").boolean(false);
            w.key("capabilities").number(15.0);
            w.key("audioCodecs").number(4071.0);
            w.key("videoCodecs").number(252.0);
            w.key("videoFunction").number(1.0);
            if let Some(page) = &c.page_url {
                w.key("pageUrl").string(page);
            }
        }
        w.key("objectEncoding").number(0.0);
        if c.caps_ex != 0 {
            w.key("capsEx").number(f64::from(c.caps_ex));
        }
        w.end_object();
        self.command(CSID_COMMAND, 0, &w.finish());
    }

    fn command(&mut self, csid: u32, stream_id: u32, body: &[u8]) {
        self.outbound
            .extend_from_slice(&message::command_message(csid, stream_id, body));
    }

    /// `name(txn, null, arg?)` on message stream 0.
    fn simple_command(&mut self, name: &str, txn: f64, arg: Option<&str>) {
        let mut w = amf::Writer::new();
        w.string(name).number(txn).null();
        if let Some(a) = arg {
            w.string(a);
        }
        self.command(CSID_COMMAND, 0, &w.finish());
    }

    fn handle_command(
        &mut self,
        c: Command,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), RtmpError> {
        if matches!(c.name.as_str(), "_error" | "onStatus") {
            if let Some(url) = c.args.iter().find_map(redirect_target) {
                events.push(ClientEvent::Redirect { url });
                return Ok(());
            }
        }
        let code = c
            .args
            .first()
            .and_then(|info| amf::prop_str(info, "code"))
            .unwrap_or("")
            .to_string();
        match (c.name.as_str(), self.state) {
            ("_result", State::Connecting) if c.transaction_id == TXN_CONNECT => {
                if !code.is_empty() && code != "NetConnection.Connect.Success" {
                    return Err(RtmpError::ConnectRejected(code));
                }
                let stream = self.config.stream.clone();
                if self.config.mode == ClientMode::Publish {
                    self.simple_command("releaseStream", TXN_RELEASE_STREAM, Some(&stream));
                    self.simple_command("FCPublish", TXN_FC_PUBLISH, Some(&stream));
                }
                self.simple_command("createStream", TXN_CREATE_STREAM, None);
                self.state = State::CreatingStream;
            }
            ("_error", State::Connecting) if c.transaction_id == TXN_CONNECT => {
                let description = c
                    .args
                    .first()
                    .and_then(|info| amf::prop_str(info, "description"))
                    .unwrap_or(&code)
                    .to_string();
                return Err(RtmpError::ConnectRejected(description));
            }
            ("_result", State::CreatingStream) if c.transaction_id == TXN_CREATE_STREAM => {
                let stream_id = match amf::number_at(&c.args, 0) {
                    Some(n) if n >= 1.0 && n <= f64::from(u32::MAX) => n as u32,
                    _ => {
                        return Err(RtmpError::BadCommand {
                            command: "createStream".into(),
                            why: "the server's result has no stream id",
                        })
                    }
                };
                self.send_request(stream_id);
                self.state = State::Requested { stream_id };
            }
            ("_error", _)
                if c.transaction_id == TXN_CREATE_STREAM || c.transaction_id == TXN_REQUEST =>
            {
                events.push(ClientEvent::CommandError);
            }
            ("onStatus", State::Requested { stream_id })
                if code == "NetStream.Play.Start" || code == "NetStream.Publish.Start" =>
            {
                self.state = State::Started { stream_id };
                events.push(ClientEvent::Started);
            }
            ("onStatus", _) if code == amf::RECONNECT_REQUEST => {
                let tc_url = c
                    .args
                    .first()
                    .and_then(|info| amf::prop_str(info, "tcUrl"))
                    .map(str::to_string);
                events.push(ClientEvent::ReconnectRequest { tc_url });
            }
            ("onStatus", _) if !code.is_empty() => events.push(ClientEvent::Status { code }),
            ("onBWDone", _) => self.simple_command("_checkbw", TXN_CHECKBW, None),
            // Answers to releaseStream, FCPublish and _checkbw (or their errors),
            // onFCPublish, and anything else a server volunteers.
            _ => {}
        }
        Ok(())
    }

    fn send_request(&mut self, stream_id: u32) {
        let mut w = amf::Writer::new();
        match self.config.mode {
            ClientMode::Publish => {
                w.string("publish")
                    .number(TXN_REQUEST)
                    .null()
                    .string(&self.config.stream)
                    .string("live");
                self.command(CSID_STREAM_COMMAND, stream_id, &w.finish());
            }
            ClientMode::Play => {
                // start -2: live or recorded, whichever the server has (ffmpeg's default).
                w.string("play")
                    .number(TXN_REQUEST)
                    .null()
                    .string(&self.config.stream)
                    .number(-2000.0);
                self.command(CSID_STREAM_COMMAND, stream_id, &w.finish());
                self.outbound
                    .extend_from_slice(&message::set_buffer_length(stream_id, 3000));
            }
        }
    }

    fn started_stream(&self) -> Result<u32, RtmpError> {
        match self.state {
            State::Started { stream_id } => Ok(stream_id),
            _ => Err(RtmpError::Unsupported(
                "publishing before NetStream.Publish.Start".into(),
            )),
        }
    }

    /// Queues `onMetaData` (publish mode); `body` is an `onMetaData` AMF0 body as produced by
    /// [`amf::metadata_body`], sent behind `@setDataFrame` as encoders do.
    pub fn publish_metadata(&mut self, body: &[u8]) -> Result<(), RtmpError> {
        let stream_id = self.started_stream()?;
        let mut w = amf::Writer::new();
        w.string("@setDataFrame").raw(body);
        self.outbound.extend_from_slice(&chunk::serialize_message(
            CSID_STREAM_COMMAND,
            0,
            type_id::AMF0_DATA,
            stream_id,
            &w.finish(),
            OUT_CHUNK_SIZE,
        ));
        Ok(())
    }

    /// Queues a media message (publish mode, after [`ClientEvent::Started`]).
    pub fn publish(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        body: Bytes,
    ) -> Result<(), RtmpError> {
        let stream_id = self.started_stream()?;
        let csid = match kind {
            MediaKind::Video => CSID_PUBLISH_VIDEO,
            MediaKind::Audio => CSID_PUBLISH_AUDIO,
            MediaKind::Data => return Err(RtmpError::Unsupported("raw data publish".into())),
        };
        self.outbound.extend_from_slice(&chunk::serialize_message(
            csid,
            timestamp,
            kind.type_id(),
            stream_id,
            &body,
            OUT_CHUNK_SIZE,
        ));
        Ok(())
    }

    /// Queues the polite end of a session: `FCUnpublish` (publish mode) and `deleteStream`.
    pub fn close(&mut self) {
        let stream_id = match self.state {
            State::Started { stream_id } | State::Requested { stream_id } => stream_id,
            _ => return,
        };
        if self.config.mode == ClientMode::Publish {
            let stream = self.config.stream.clone();
            self.simple_command("FCUnpublish", 0.0, Some(&stream));
        }
        let mut w = amf::Writer::new();
        w.string("deleteStream")
            .number(0.0)
            .null()
            .number(f64::from(stream_id));
        self.command(CSID_COMMAND, 0, &w.finish());
        self.state = State::CreatingStream;
    }

    /// Whether [`Self::poll_transmit`] has bytes.
    pub fn has_output(&self) -> bool {
        !self.outbound.is_empty()
    }

    /// Bytes to write to the server, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.outbound.is_empty() {
            None
        } else {
            Some(self.outbound.split().freeze())
        }
    }
}

/// The redirect URL in a status object: `ex.redirect` (the tcUrl), else `ex.redirect2` (the
/// full stream URL) without its last segment.
fn redirect_target(info: &Amf0Value) -> Option<String> {
    let Amf0Value::Object(props) = info else {
        return None;
    };
    let Some(Amf0Value::Object(ex)) = props.get("ex") else {
        return None;
    };
    if let Some(Amf0Value::Utf8String(url)) = ex.get("redirect") {
        return Some(url.clone());
    }
    match ex.get("redirect2") {
        Some(Amf0Value::Utf8String(url)) => url.rsplit_once('/').map(|(base, _)| base.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::server::{ServerConnection, ServerEvent};
    use super::*;

    fn cinput(c: &mut RtmpClient, bytes: &[u8]) -> Result<Vec<ClientEvent>, RtmpError> {
        let mut events = Vec::new();
        c.handle_input(bytes, &mut events).map(|()| events)
    }

    fn sinput(s: &mut ServerConnection, bytes: &[u8]) -> Result<Vec<ServerEvent>, RtmpError> {
        let mut events = Vec::new();
        s.handle_input(bytes, &mut events).map(|()| events)
    }

    /// Shuttles bytes between a client and a server until neither has anything to send.
    fn pump(
        c: &mut RtmpClient,
        s: &mut ServerConnection,
        split: usize,
    ) -> (Vec<ClientEvent>, Vec<ServerEvent>) {
        let (mut ce, mut se) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            if let Some(b) = c.poll_transmit() {
                moved = true;
                for piece in b.chunks(split.max(1)) {
                    se.extend(sinput(s, piece).unwrap());
                }
            }
            if let Some(b) = s.poll_transmit() {
                moved = true;
                for piece in b.chunks(split.max(1)) {
                    ce.extend(cinput(c, piece).unwrap());
                }
            }
            if !moved {
                return (ce, se);
            }
        }
    }

    fn client(stream: &str, mode: ClientMode) -> RtmpClient {
        RtmpClient::new(ClientConfig::new(
            "rtmp://127.0.0.1:1935/live",
            stream,
            mode,
        ))
        .unwrap()
    }

    #[test]
    fn config_takes_the_app_from_the_tc_url() {
        let c = ClientConfig::new("rtmp://h:1936/live?vhost=a/", "cam", ClientMode::Play);
        assert_eq!(c.app, "live?vhost=a");
        assert_eq!(c.tc_url, "rtmp://h:1936/live?vhost=a/");
        assert_eq!(ClientConfig::new("rtmp://h", "x", ClientMode::Play).app, "");
    }

    #[test]
    fn publish_session_delivers_media_at_any_split() {
        for split in [1, 7, 128, 4096, 1 << 20] {
            let mut c = client("cam?token=1", ClientMode::Publish);
            let mut s = ServerConnection::new();
            let (_, se) = pump(&mut c, &mut s, split);
            let Some(ServerEvent::PublishRequested {
                request_id,
                app,
                stream,
            }) = se.last().cloned()
            else {
                panic!("no publish request: {se:?}");
            };
            assert_eq!((app.as_str(), stream.as_str()), ("live", "cam?token=1"));
            assert_eq!(
                s.connect_info().unwrap().tc_url,
                "rtmp://127.0.0.1:1935/live"
            );
            s.accept(request_id).unwrap();
            let (ce, _) = pump(&mut c, &mut s, split);
            assert!(ce.contains(&ClientEvent::Started));
            let big = Bytes::from(vec![0x27u8; 9000]);
            c.publish(MediaKind::Video, 40, big.clone()).unwrap();
            c.publish(
                MediaKind::Audio,
                0x0100_0000,
                Bytes::from_static(b"\xaf\x01\x21"),
            )
            .unwrap();
            let (_, se) = pump(&mut c, &mut s, split);
            assert_eq!(
                se,
                vec![
                    ServerEvent::Media {
                        kind: MediaKind::Video,
                        timestamp: 40,
                        body: big
                    },
                    ServerEvent::Media {
                        kind: MediaKind::Audio,
                        timestamp: 0x0100_0000,
                        body: Bytes::from_static(b"\xaf\x01\x21")
                    },
                ],
                "split {split}"
            );
            c.close();
            let (_, se) = pump(&mut c, &mut s, split);
            assert_eq!(se, vec![ServerEvent::PublishFinished]);
        }
    }

    #[test]
    fn metadata_is_published_behind_set_data_frame() {
        let mut c = client("cam", ClientMode::Publish);
        let mut s = ServerConnection::new();
        let (_, se) = pump(&mut c, &mut s, 1 << 20);
        let Some(ServerEvent::PublishRequested { request_id, .. }) = se.last().cloned() else {
            panic!()
        };
        s.accept(request_id).unwrap();
        pump(&mut c, &mut s, 1 << 20);
        let mut props = std::collections::HashMap::new();
        props.insert("width".to_string(), Amf0Value::Number(320.0));
        let body = amf::metadata_body(&props);
        c.publish_metadata(&body).unwrap();
        let (_, se) = pump(&mut c, &mut s, 3);
        assert_eq!(se, vec![ServerEvent::Metadata { body }]);
    }

    #[test]
    fn player_receives_shared_chunks_and_status() {
        let mut c = client("cam", ClientMode::Play);
        let mut s = ServerConnection::new();
        let (_, se) = pump(&mut c, &mut s, 1 << 20);
        let Some(ServerEvent::PlayRequested {
            request_id,
            stream_id,
            ..
        }) = se.last().cloned()
        else {
            panic!("no play request: {se:?}");
        };
        assert_eq!(stream_id, chunk::PLAY_STREAM_ID);
        s.accept(request_id).unwrap();
        let (ce, _) = pump(&mut c, &mut s, 1 << 20);
        assert_eq!(
            ce,
            vec![
                ClientEvent::Status {
                    code: "NetStream.Play.Reset".into()
                },
                ClientEvent::Started
            ]
        );
        // Shared media goes to the socket between the session's own bytes.
        let frame = crate::media::Frame::new(
            MediaKind::Video,
            1000,
            Default::default(),
            Bytes::from(vec![0x17u8; 5000]),
        );
        let events = cinput(&mut c, &frame.rtmp).unwrap();
        assert_eq!(
            events,
            vec![ClientEvent::Media {
                kind: MediaKind::Video,
                timestamp: 1000,
                body: frame.payload.clone()
            }]
        );
        s.send_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "gone",
        );
        let (ce, _) = pump(&mut c, &mut s, 3);
        assert_eq!(
            ce,
            vec![ClientEvent::Status {
                code: "NetStream.Play.UnpublishNotify".into()
            }]
        );
    }

    /// The connect object carries what strict servers check (SRS: tcUrl; both: app).
    #[test]
    fn connect_is_complete() {
        let mut cfg = ClientConfig::new("rtmp://o:1935/live", "cam", ClientMode::Play);
        cfg.page_url = Some("http://p/".into());
        cfg.swf_url = Some("http://p/s.swf".into());
        let mut c = RtmpClient::new(cfg).unwrap();
        let mut s = ServerConnection::new();
        // Complete the handshake by hand, then read the client's messages.
        let c0c1 = c.poll_transmit().unwrap();
        sinput(&mut s, &c0c1).unwrap();
        let s012 = s.poll_transmit().unwrap();
        cinput(&mut c, &s012).unwrap();
        let out = c.poll_transmit().unwrap();
        let mut r = ChunkReader::new();
        let mut input = &out[1536..];
        let mut connect = None;
        while let Some(m) = r.read_message(&mut input).unwrap() {
            if let Message::Command(cmd) = Message::decode(&m).unwrap() {
                connect = Some(cmd);
            }
        }
        let connect = connect.expect("a connect command");
        assert_eq!(connect.name, "connect");
        let Amf0Value::Object(p) = &connect.object else {
            panic!()
        };
        for k in [
            "app",
            "type",
            "flashVer",
            "swfUrl",
            "tcUrl",
            "fpad",
            "capabilities",
            "audioCodecs",
            "videoCodecs",
            "videoFunction",
            "pageUrl",
            "objectEncoding",
        ] {
            assert!(p.contains_key(k), "connect lacks {k}: {p:?}");
        }
        assert_eq!(
            amf::prop_str(&connect.object, "tcUrl"),
            Some("rtmp://o:1935/live")
        );
        assert_eq!(amf::prop_str(&connect.object, "app"), Some("live"));
    }

    /// An SRS origin cluster answers a play for a stream held elsewhere with
    /// `onStatus(NetConnection.Connect.Rejected, ex: {code: 302, redirect, redirect2})`.
    #[test]
    fn srs_style_redirect_is_reported() {
        for (ex_key, url, expect) in [
            ("redirect", "rtmp://b:1936/live", "rtmp://b:1936/live"),
            ("redirect2", "rtmp://c/live/cam", "rtmp://c/live"),
        ] {
            let mut c = client("cam", ClientMode::Play);
            let mut s = ServerConnection::new();
            let (_, se) = pump(&mut c, &mut s, 1 << 20);
            assert!(matches!(se.last(), Some(ServerEvent::PlayRequested { .. })));
            let mut w = amf::Writer::new();
            w.string("onStatus").number(0.0).null().begin_object();
            w.key("level").string("error");
            w.key("code").string("NetConnection.Connect.Rejected");
            w.key("ex").begin_object();
            w.key("code").number(302.0);
            w.key(ex_key).string(url);
            w.end_object().end_object();
            let wire = chunk::serialize_message(chunk::CSID_DATA, 0, 20, 0, &w.finish(), 4096);
            let mut events = Vec::new();
            for piece in wire.chunks(5) {
                events.extend(cinput(&mut c, piece).unwrap());
            }
            assert!(
                events.contains(&ClientEvent::Redirect { url: expect.into() }),
                "{events:?}"
            );
        }
    }

    /// Our own server's redirect (an origin placing the stream on a coworker) is followed by
    /// our own client, to the tcUrl.
    #[test]
    fn the_servers_redirect_is_what_the_client_follows() {
        let mut c = client("cam", ClientMode::Play);
        let mut s = ServerConnection::new();
        let (_, se) = pump(&mut c, &mut s, 1 << 20);
        let Some(ServerEvent::PlayRequested { request_id, .. }) = se.last().cloned() else {
            panic!("{se:?}");
        };
        s.redirect(request_id, "rtmp://10.0.0.2:1936/live/cam")
            .unwrap();
        let wire = s.poll_transmit().unwrap();
        let events = cinput(&mut c, &wire).unwrap();
        assert_eq!(
            events,
            [ClientEvent::Redirect {
                url: "rtmp://10.0.0.2:1936/live".into()
            }]
        );
    }

    /// Regression (issue 11): the reproducers that panicked rml_rtmp's client session (a
    /// broken origin took the edge down) are errors here, before and after the start.
    #[test]
    fn regression_issue_11_reproducers_from_an_origin() {
        let repro: [&[u8]; 3] = [
            &[0x03, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0],
            &[0x03, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0],
            &[
                0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x03, 0, 0, 0, 0, 0, 2, 8, 1, 0,
                0, 0, 0xaa, 0x43, 0, 0, 0, 0, 0, 0, 8,
            ],
        ];
        for started in [false, true] {
            for r in repro {
                let mut c = client("cam", ClientMode::Play);
                let mut s = ServerConnection::new();
                let (_, se) = pump(&mut c, &mut s, 1 << 20);
                if started {
                    let Some(ServerEvent::PlayRequested { request_id, .. }) = se.last().cloned()
                    else {
                        panic!()
                    };
                    s.accept(request_id).unwrap();
                    let (ce, _) = pump(&mut c, &mut s, 1 << 20);
                    assert!(ce.contains(&ClientEvent::Started));
                }
                assert!(cinput(&mut c, r).is_err(), "started {started}: {r:02x?}");
            }
        }
    }

    /// Regression (fuzz, rtmp_client_session): events decoded before a broken message in
    /// the same read were dropped with the error, so a split read saw them and a whole one
    /// did not. They are kept now: the start and the media before the junk.
    #[test]
    fn regression_events_before_an_error_are_kept() {
        let mut c = client("cam", ClientMode::Play);
        let mut s = ServerConnection::new();
        let (_, se) = pump(&mut c, &mut s, 1 << 20);
        let Some(ServerEvent::PlayRequested { request_id, .. }) = se.last().cloned() else {
            panic!()
        };
        s.accept(request_id).unwrap();
        let mut wire = s.poll_transmit().unwrap().to_vec();
        let frame = crate::media::Frame::new(
            MediaKind::Audio,
            5,
            Default::default(),
            Bytes::from_static(b"\xaf\x01\x21"),
        );
        wire.extend_from_slice(&frame.rtmp);
        wire.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0]);
        let mut events = Vec::new();
        assert!(c.handle_input(&wire, &mut events).is_err());
        assert!(events.contains(&ClientEvent::Started), "{events:?}");
        assert!(events
            .iter()
            .any(|e| matches!(e, ClientEvent::Media { timestamp: 5, .. })));
    }

    /// A connect answered `_error` without a redirect is an error naming the reason.
    #[test]
    fn rejected_connect_is_an_error() {
        let mut c = client("cam", ClientMode::Play);
        let mut s = ServerConnection::new();
        let c0c1 = c.poll_transmit().unwrap();
        sinput(&mut s, &c0c1).unwrap();
        cinput(&mut c, &s.poll_transmit().unwrap()).unwrap();
        let mut w = amf::Writer::new();
        w.string("_error").number(TXN_CONNECT).null().begin_object();
        w.key("code").string("NetConnection.Connect.Rejected");
        w.key("description").string("tcUrl required");
        w.end_object();
        let wire = message::command_message(CSID_COMMAND, 0, &w.finish());
        match cinput(&mut c, &wire) {
            Err(RtmpError::ConnectRejected(why)) => assert_eq!(why, "tcUrl required"),
            other => panic!("{other:?}"),
        }
    }
}
