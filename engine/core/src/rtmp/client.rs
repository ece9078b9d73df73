//! A small sans-IO RTMP client (play or publish) on rml_rtmp, used by the end-to-end tests and
//! by the load generator.
//!
//! `new` queues C0+C1; feed every byte read to `handle_input`, write what `poll_transmit`
//! returns, in order. Media arrives as [`ClientEvent::Media`].
//!
//! Until play or publish starts, commands are also read by a second, watching deserializer:
//! rml_rtmp reports a rejected connection by its description only, and an origin cluster's
//! redirect (SRS: `NetConnection.Connect.Rejected` with `ex.redirect`) would be lost.

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

use super::amf;
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
    /// The server answered a command with `_error`.
    CommandError,
    /// The server sends us elsewhere (SRS-style RTMP "302"): `url` is the origin's
    /// `rtmp://host[:port]/app` (the tcUrl; the stream name stays the same).
    Redirect { url: String },
}

enum Phase {
    Handshake(Box<Handshake>),
    Session(Box<ClientSession>),
}

/// One RTMP client connection.
pub struct RtmpClient {
    phase: Phase,
    app: String,
    stream: String,
    mode: ClientMode,
    outbound: BytesMut,
    /// Reads commands in parallel with the session until it starts (see the module doc).
    watch: Option<Box<ChunkDeserializer>>,
}

impl RtmpClient {
    /// Starts a client for `rtmp://host/{app}/{stream}`; `stream` may carry `?query`.
    pub fn new(app: &str, stream: &str, mode: ClientMode) -> Result<Self, RtmpError> {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| RtmpError::Handshake(format!("{e:?}")))?;
        let mut outbound = BytesMut::new();
        outbound.extend_from_slice(&c0c1);
        Ok(Self {
            phase: Phase::Handshake(Box::new(hs)),
            app: app.to_string(),
            stream: stream.to_string(),
            mode,
            outbound,
            watch: None,
        })
    }

    /// Feeds bytes read from the server.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Vec<ClientEvent>, RtmpError> {
        let mut events = Vec::new();
        match &mut self.phase {
            Phase::Handshake(hs) => {
                let r = hs
                    .process_bytes(data)
                    .map_err(|e| RtmpError::Handshake(format!("{e:?}")))?;
                match r {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.outbound.extend_from_slice(&response_bytes)
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.outbound.extend_from_slice(&response_bytes);
                        let (mut session, results) =
                            ClientSession::new(ClientSessionConfig::new()).map_err(session_err)?;
                        let connect = session
                            .request_connection(self.app.clone())
                            .map_err(session_err)?;
                        self.phase = Phase::Session(Box::new(session));
                        self.watch = Some(Box::new(ChunkDeserializer::new()));
                        self.absorb(results, &mut events)?;
                        self.absorb(vec![connect], &mut events)?;
                        if !remaining_bytes.is_empty() {
                            events.extend(self.handle_input(&remaining_bytes)?);
                        }
                    }
                }
            }
            Phase::Session(s) => {
                let results = s.handle_input(data).map_err(session_err)?;
                self.watch_commands(data, &mut events);
                self.absorb(results, &mut events)?;
                if events.contains(&ClientEvent::Started) {
                    self.watch = None;
                }
            }
        }
        Ok(events)
    }

    /// Looks for a redirect among the commands in `data` (before the session starts).
    fn watch_commands(&mut self, data: &[u8], events: &mut Vec<ClientEvent>) {
        let Some(watch) = &mut self.watch else { return };
        let mut input = data;
        loop {
            let message = match watch.get_next_message(input) {
                Ok(Some(m)) => m,
                Ok(None) => return,
                // The session itself reports broken input; the watcher just stops.
                Err(_) => {
                    self.watch = None;
                    return;
                }
            };
            input = &[];
            match message.to_rtmp_message() {
                Ok(RtmpMessage::SetChunkSize { size }) => {
                    let _ = watch.set_max_chunk_size(size as usize);
                }
                Ok(RtmpMessage::Amf0Command {
                    additional_arguments,
                    ..
                }) => {
                    if let Some(url) = additional_arguments.iter().find_map(redirect_target) {
                        events.push(ClientEvent::Redirect { url });
                    }
                }
                _ => {}
            }
        }
    }

    /// Queues `onMetaData` (publish mode); `body` is an `onMetaData` AMF0 body as produced by
    /// [`amf::metadata_body`]. Bodies that do not parse are skipped.
    pub fn publish_metadata(&mut self, body: &[u8]) -> Result<(), RtmpError> {
        let Phase::Session(s) = &mut self.phase else {
            return Err(RtmpError::Session("not connected".into()));
        };
        let Some(metadata) = amf::metadata_from_body(body) else {
            return Ok(());
        };
        let r = s.publish_metadata(&metadata).map_err(session_err)?;
        let mut events = Vec::new();
        self.absorb(vec![r], &mut events)
    }

    /// Queues a media message (publish mode, after [`ClientEvent::Started`]).
    pub fn publish(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        body: Bytes,
    ) -> Result<(), RtmpError> {
        let Phase::Session(s) = &mut self.phase else {
            return Err(RtmpError::Session("not connected".into()));
        };
        let ts = RtmpTimestamp::new(timestamp);
        let r = match kind {
            MediaKind::Video => s.publish_video_data(body, ts, false),
            MediaKind::Audio => s.publish_audio_data(body, ts, false),
            MediaKind::Data => return Err(RtmpError::Unsupported("raw data publish".into())),
        }
        .map_err(session_err)?;
        let mut events = Vec::new();
        self.absorb(vec![r], &mut events)
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

    fn absorb(
        &mut self,
        results: Vec<ClientSessionResult>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), RtmpError> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    self.outbound.extend_from_slice(&p.bytes)
                }
                ClientSessionResult::RaisedEvent(e) => self.raise(e, events)?,
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn raise(
        &mut self,
        e: ClientSessionEvent,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), RtmpError> {
        match e {
            ClientSessionEvent::ConnectionRequestAccepted => {
                let Phase::Session(s) = &mut self.phase else {
                    return Ok(());
                };
                let r = match self.mode {
                    ClientMode::Play => s.request_playback(self.stream.clone()),
                    ClientMode::Publish => {
                        s.request_publishing(self.stream.clone(), PublishRequestType::Live)
                    }
                }
                .map_err(session_err)?;
                self.absorb(vec![r], events)?;
            }
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                return Err(RtmpError::Session(format!(
                    "connect rejected: {description}"
                )));
            }
            ClientSessionEvent::PlaybackRequestAccepted
            | ClientSessionEvent::PublishRequestAccepted => events.push(ClientEvent::Started),
            ClientSessionEvent::StreamMetadataReceived { metadata, .. } => {
                events.push(ClientEvent::Metadata {
                    body: amf::metadata_body(&metadata),
                })
            }
            ClientSessionEvent::VideoDataReceived { timestamp, data } => {
                events.push(ClientEvent::Media {
                    kind: MediaKind::Video,
                    timestamp: timestamp.value,
                    body: data,
                })
            }
            ClientSessionEvent::AudioDataReceived { timestamp, data } => {
                events.push(ClientEvent::Media {
                    kind: MediaKind::Audio,
                    timestamp: timestamp.value,
                    body: data,
                })
            }
            ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                events.push(ClientEvent::Status { code })
            }
            ClientSessionEvent::UnknownTransactionResultReceived { .. } => {
                events.push(ClientEvent::CommandError)
            }
            _ => {}
        }
        Ok(())
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

fn session_err(e: impl std::fmt::Debug) -> RtmpError {
    RtmpError::Session(format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::super::server::{ServerConnection, ServerEvent};
    use super::*;
    use crate::rtmp::chunk;

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
                    se.extend(s.handle_input(piece).unwrap());
                }
            }
            if let Some(b) = s.poll_transmit() {
                moved = true;
                for piece in b.chunks(split.max(1)) {
                    ce.extend(c.handle_input(piece).unwrap());
                }
            }
            if !moved {
                return (ce, se);
            }
        }
    }

    #[test]
    fn publish_session_delivers_media_at_any_split() {
        for split in [1, 7, 128, 4096, 1 << 20] {
            let mut c = RtmpClient::new("live", "cam?token=1", ClientMode::Publish).unwrap();
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
        }
    }

    #[test]
    fn player_receives_shared_chunks_and_status() {
        let mut c = RtmpClient::new("live", "cam", ClientMode::Play).unwrap();
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
        assert!(ce.contains(&ClientEvent::Started));
        // Shared media goes to the socket between the session's own bytes.
        let frame = crate::media::Frame::new(
            MediaKind::Video,
            1000,
            Default::default(),
            Bytes::from(vec![0x17u8; 5000]),
        );
        let events = c.handle_input(&frame.rtmp).unwrap();
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

    /// An SRS origin cluster answers a play for a stream held elsewhere with
    /// `onStatus(NetConnection.Connect.Rejected, ex: {code: 302, redirect, redirect2})`.
    #[test]
    fn srs_style_redirect_is_reported() {
        use std::collections::HashMap;
        for (ex_key, url, expect) in [
            ("redirect", "rtmp://b:1936/live", "rtmp://b:1936/live"),
            ("redirect2", "rtmp://c/live/cam", "rtmp://c/live"),
        ] {
            let mut c = RtmpClient::new("live", "cam", ClientMode::Play).unwrap();
            let mut s = ServerConnection::new();
            let (_, se) = pump(&mut c, &mut s, 1 << 20);
            assert!(matches!(se.last(), Some(ServerEvent::PlayRequested { .. })));
            let mut ex = HashMap::new();
            ex.insert("code".to_string(), Amf0Value::Number(302.0));
            ex.insert(ex_key.to_string(), Amf0Value::Utf8String(url.into()));
            let mut info = HashMap::new();
            info.insert("level".to_string(), Amf0Value::Utf8String("error".into()));
            info.insert(
                "code".to_string(),
                Amf0Value::Utf8String("NetConnection.Connect.Rejected".into()),
            );
            info.insert("ex".to_string(), Amf0Value::Object(ex));
            let body = rml_amf0::serialize(&vec![
                Amf0Value::Utf8String("onStatus".into()),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::Object(info),
            ])
            .unwrap();
            let wire = chunk::serialize_message(chunk::CSID_DATA, 0, 20, 0, &body, 4096);
            let mut events = Vec::new();
            for piece in wire.chunks(5) {
                events.extend(c.handle_input(piece).unwrap());
            }
            assert!(
                events.contains(&ClientEvent::Redirect { url: expect.into() }),
                "{events:?}"
            );
        }
    }

    #[test]
    fn garbage_fails_the_handshake() {
        let mut s = ServerConnection::new();
        assert!(s.handle_input(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
