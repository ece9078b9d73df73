//! The server side of one RTMP connection, sans-IO: handshake, then an rml_rtmp
//! `ServerSession` for control messages and commands, turned into [`ServerEvent`]s.
//!
//! Inputs are `handle_input(bytes)`, `accept`, `reject`, `send_status`; the bytes to write come
//! out of `poll_transmit`, in order. Media for players is never serialised here: the engine
//! writes the stream's shared chunks (see [`super::chunk`]) between our control bytes.
//! Peer input never panics: every problem becomes an [`RtmpError`] that closes this peer.

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

use super::aggregate::{self, AGGREGATE_TYPE_ID};
use super::{amf, chunk};
use crate::media::MediaKind;

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The peer's handshake bytes were invalid (often: not RTMP at all).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// rml_rtmp rejected a chunk or a command.
    #[error("session error: {0}")]
    Session(String),
    /// A malformed aggregate message.
    #[error(transparent)]
    Aggregate(#[from] aggregate::AggregateError),
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

enum Phase {
    Handshake(Box<Handshake>),
    Session(Box<ServerSession>),
}

/// One RTMP server connection.
pub struct ServerConnection {
    phase: Phase,
    outbound: BytesMut,
}

impl Default for ServerConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerConnection {
    pub fn new() -> Self {
        Self {
            phase: Phase::Handshake(Box::new(Handshake::new(PeerType::Server))),
            outbound: BytesMut::new(),
        }
    }

    /// Feeds bytes read from the peer.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Vec<ServerEvent>, RtmpError> {
        let mut events = Vec::new();
        match &mut self.phase {
            Phase::Handshake(hs) => {
                let result = hs
                    .process_bytes(data)
                    .map_err(|e| RtmpError::Handshake(format!("{e:?}")))?;
                match result {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.outbound.extend_from_slice(&response_bytes);
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.outbound.extend_from_slice(&response_bytes);
                        let mut config = ServerSessionConfig::new();
                        config.chunk_size = chunk::OUT_CHUNK_SIZE as u32;
                        let (session, results) = ServerSession::new(config)
                            .map_err(|e| RtmpError::Session(format!("{e:?}")))?;
                        self.phase = Phase::Session(Box::new(session));
                        self.absorb(results, &mut events)?;
                        if !remaining_bytes.is_empty() {
                            events.extend(self.handle_input(&remaining_bytes)?);
                        }
                    }
                }
            }
            Phase::Session(session) => {
                let results = session
                    .handle_input(data)
                    .map_err(|e| RtmpError::Session(format!("{e:?}")))?;
                self.absorb(results, &mut events)?;
            }
        }
        Ok(events)
    }

    /// Accepts a publish or play request.
    pub fn accept(&mut self, request_id: u32) -> Result<(), RtmpError> {
        let results = self
            .session()?
            .accept_request(request_id)
            .map_err(|e| RtmpError::Session(format!("{e:?}")))?;
        let mut events = Vec::new();
        self.absorb(results, &mut events)
    }

    /// Rejects a request with an `onStatus` error `code` (e.g. `NetStream.Publish.BadName`).
    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        let results = self
            .session()?
            .reject_request(request_id, code, description)
            .map_err(|e| RtmpError::Session(format!("{e:?}")))?;
        let mut events = Vec::new();
        self.absorb(results, &mut events)
    }

    /// Queues an `onStatus` command on `stream_id` (e.g. `NetStream.Play.UnpublishNotify`).
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let body = amf::status_body(level, code, description);
        self.outbound.extend_from_slice(&chunk::serialize_message(
            chunk::CSID_DATA,
            0,
            20,
            stream_id,
            &body,
            chunk::OUT_CHUNK_SIZE,
        ));
    }

    /// Bytes to write to the peer, in order, or `None` when there is nothing to send.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.outbound.is_empty() {
            None
        } else {
            Some(self.outbound.split().freeze())
        }
    }

    fn session(&mut self) -> Result<&mut ServerSession, RtmpError> {
        match &mut self.phase {
            Phase::Session(s) => Ok(s),
            Phase::Handshake(_) => Err(RtmpError::Session("handshake not complete".into())),
        }
    }

    fn absorb(
        &mut self,
        results: Vec<ServerSessionResult>,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), RtmpError> {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => {
                    self.outbound.extend_from_slice(&p.bytes)
                }
                ServerSessionResult::RaisedEvent(e) => self.raise(e, events)?,
                ServerSessionResult::UnhandleableMessageReceived(m) => {
                    if m.type_id == AGGREGATE_TYPE_ID {
                        for sub in aggregate::split(m.timestamp.value, &m.data)? {
                            if let Some(kind @ (MediaKind::Audio | MediaKind::Video)) = sub.kind {
                                events.push(ServerEvent::Media {
                                    kind,
                                    timestamp: sub.timestamp,
                                    body: sub.body,
                                });
                            }
                        }
                    }
                    // Anything else (AMF3 commands, shared objects) is ignored, as other
                    // servers do; it cannot affect media.
                }
            }
        }
        Ok(())
    }

    fn raise(
        &mut self,
        e: ServerSessionEvent,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), RtmpError> {
        match e {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                // Any app name is accepted; streams are keyed by app/stream at publish/play.
                self.accept(request_id)?;
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => events.push(ServerEvent::PublishRequested {
                request_id,
                app: app_name,
                stream: stream_key,
            }),
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                app_name,
                stream_key,
                stream_id,
                ..
            } => events.push(ServerEvent::PlayRequested {
                request_id,
                app: app_name,
                stream: stream_key,
                stream_id,
            }),
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => events.push(ServerEvent::Media {
                kind: MediaKind::Audio,
                timestamp: timestamp.value,
                body: data,
            }),
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => events.push(ServerEvent::Media {
                kind: MediaKind::Video,
                timestamp: timestamp.value,
                body: data,
            }),
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                events.push(ServerEvent::Metadata {
                    body: amf::metadata_body(&metadata),
                })
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                events.push(ServerEvent::PublishFinished)
            }
            ServerSessionEvent::PlayStreamFinished { .. } => events.push(ServerEvent::PlayFinished),
            // Chunk size, acknowledgements and pings are handled inside rml_rtmp.
            _ => {}
        }
        Ok(())
    }
}
