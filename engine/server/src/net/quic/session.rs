//! One QUIC connection's HTTP/3 session: which of the client's streams are requests and
//! which are its control and QPACK streams, our control stream with its SETTINGS, and the
//! state a request stream shares with the task answering it ([`Exchange`]).
//!
//! Owns: reading what the client sends on its streams into edge-core's `h3` state machines
//! (which parse it), closing the connection or resetting a stream with the code they name,
//! and telling a request's task when it may write again or when its client is gone.
//!
//! Must not: parse bytes itself (edge-core does), keep more of a request stream than its
//! HEADERS (the rest is refused with STOP_SENDING), or answer a request (the HTTP routes do).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use edge_core::h3::message::Request;
use edge_core::h3::stream::{ControlEvent, ControlStream, EncoderStream, RequestStream, UniStream};
use edge_core::h3::{code, frame};
use quinn_proto::{Connection, Dir, Event, ReadError, StreamEvent, StreamId, VarInt};

use super::QuicCounters;

/// What a request stream and the task answering it share.
#[derive(Default)]
pub(crate) struct Exchange {
    /// The client stopped the stream, reset it, or the connection is gone: writes fail and
    /// reads end.
    gone: Cell<bool>,
    /// The stream took more data since the writer found it full.
    writable: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Exchange {
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.get()
    }

    pub(crate) fn set_gone(&self) {
        self.gone.set(true);
        self.wake();
    }

    fn set_writable(&self) {
        self.writable.set(true);
        self.wake();
    }

    /// Takes the "writable again" note (the writer's loop calls this before it waits).
    pub(crate) fn take_writable(&self) -> bool {
        self.writable.replace(false)
    }

    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What the serving layer keeps for as long as a QUIC connection is open (the HLS viewer it
/// counts: each of its requests is a stream of its own).
pub(crate) type Kept = Rc<RefCell<Option<Box<dyn std::any::Any>>>>;

/// A request read off a stream, for the serving layer.
pub(crate) struct NewRequest {
    pub(crate) stream: StreamId,
    pub(crate) request: Request,
    pub(crate) exchange: Rc<Exchange>,
    pub(crate) kept: Kept,
}

/// A client's unidirectional stream.
enum Uni {
    /// Its type is not read yet (a varint: at most 8 bytes).
    Unclassified(Vec<u8>),
    Control(ControlStream),
    Encoder(EncoderStream),
    /// The QPACK decoder stream (nothing to do with no dynamic table) or an unknown type.
    Discard,
}

/// A request stream before and after its HEADERS.
enum Req {
    Reading(Box<RequestStream>),
    Answering(Rc<Exchange>),
}

pub(crate) struct Session {
    pub(crate) conn: Connection,
    /// Our control stream, once it is open and its SETTINGS written.
    control: Option<StreamId>,
    /// The next request stream ID after the highest the client opened (for GOAWAY).
    next_request: u64,
    /// The client's control stream, once it has named itself.
    peer_control: Option<StreamId>,
    uni: HashMap<StreamId, Uni>,
    requests: HashMap<StreamId, Req>,
    /// Queued for a send pass.
    pub(crate) dirty: bool,
    /// A GOAWAY went out: new requests are refused.
    goaway: bool,
    /// Held while the connection is open: its place under `--max-connections`.
    _permit: Option<Box<dyn std::any::Any>>,
    kept: Kept,
}

fn varint(v: u64) -> VarInt {
    VarInt::from_u64(v).unwrap_or(VarInt::MAX)
}

impl Session {
    pub(crate) fn new(conn: Connection, permit: Option<Box<dyn std::any::Any>>) -> Self {
        Session {
            conn,
            control: None,
            next_request: 0,
            peer_control: None,
            uni: HashMap::new(),
            requests: HashMap::new(),
            dirty: false,
            goaway: false,
            _permit: permit,
            kept: Kept::default(),
        }
    }

    /// After a GOAWAY, once its last request is answered (and acknowledged): closed.
    pub(crate) fn close_if_done(&mut self, now: Instant) {
        if self.goaway && self.requests.is_empty() && !self.conn.is_closed() {
            self.close(now, code::NO_ERROR, "");
        }
    }

    /// Reads every event the connection has: new streams, their bytes, writability, the end.
    pub(crate) fn poll_events(
        &mut self,
        now: Instant,
        counters: &QuicCounters,
        out: &mut Vec<NewRequest>,
    ) {
        while let Some(event) = self.conn.poll() {
            match event {
                Event::Connected => {
                    counters.handshakes.inc();
                    if self.conn.has_0rtt() {
                        counters.resumed_0rtt.inc();
                    }
                    self.open_control();
                }
                Event::ConnectionLost { .. } => self.lost(),
                Event::Stream(StreamEvent::Opened { dir }) => {
                    while let Some(id) = self.conn.streams().accept(dir) {
                        match dir {
                            Dir::Bi if self.goaway => {
                                // After GOAWAY nothing new is served (RFC 9114 §5.2).
                                let c = varint(code::REQUEST_REJECTED);
                                let _ = self.conn.send_stream(id).reset(c);
                                let _ = self.conn.recv_stream(id).stop(c);
                            }
                            Dir::Bi => {
                                counters.streams.inc();
                                // Client bidirectional stream IDs are 4n.
                                self.next_request = self.next_request.max(id.index() * 4 + 4);
                                self.requests.insert(id, Req::Reading(Box::default()));
                                self.read_request(id, now, counters, out);
                            }
                            Dir::Uni => {
                                self.uni.insert(id, Uni::Unclassified(Vec::new()));
                                self.read_uni(id, now);
                            }
                        }
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => {
                    if self.requests.contains_key(&id) {
                        self.read_request(id, now, counters, out);
                    } else if self.uni.contains_key(&id) {
                        self.read_uni(id, now);
                    }
                }
                Event::Stream(StreamEvent::Writable { id }) => {
                    if let Some(Req::Answering(x)) = self.requests.get(&id) {
                        x.set_writable();
                    }
                }
                Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    // The client cancelled the response.
                    if let Some(Req::Answering(x)) = self.requests.remove(&id) {
                        x.set_gone();
                    }
                }
                Event::Stream(StreamEvent::Finished { id }) => {
                    self.requests.remove(&id);
                }
                Event::Stream(StreamEvent::Available { dir: Dir::Uni }) => self.open_control(),
                _ => {}
            }
        }
    }

    /// The task answering `id` is done with it (its stream is finished or reset).
    pub(crate) fn forget(&mut self, id: StreamId) {
        self.requests.remove(&id);
    }

    /// The connection is over: every request's task learns it.
    pub(crate) fn lost(&mut self) {
        for (_, r) in self.requests.drain() {
            if let Req::Answering(x) = r {
                x.set_gone();
            }
        }
    }

    /// Our control stream and its SETTINGS, once a unidirectional stream may be opened.
    fn open_control(&mut self) {
        if self.control.is_some() || self.conn.is_handshaking() {
            return;
        }
        let Some(id) = self.conn.streams().open(Dir::Uni) else {
            return;
        };
        let mut out = vec![edge_core::h3::stream_type::CONTROL as u8];
        frame::write_server_settings(&mut out);
        if self.conn.send_stream(id).write(&out).is_ok() {
            self.control = Some(id);
        }
    }

    /// Sends GOAWAY: requests already opened are answered, new ones are refused.
    pub(crate) fn go_away(&mut self) {
        let Some(control) = self.control.filter(|_| !self.goaway) else {
            return;
        };
        self.goaway = true;
        let mut out = Vec::new();
        frame::write_goaway(self.next_request, &mut out);
        let _ = self
            .conn
            .send_stream(control)
            .write_chunks(&mut [Bytes::from(out)]);
    }

    /// Everything the client has sent on `id` so far, whether it finished or reset it.
    fn read_stream(&mut self, id: StreamId) -> (Vec<Bytes>, End) {
        let mut data = Vec::new();
        let mut end = End::Open;
        let mut recv = self.conn.recv_stream(id);
        let Ok(mut chunks) = recv.read(true) else {
            return (data, End::Finished);
        };
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(c)) => data.push(c.bytes),
                Ok(None) => {
                    end = End::Finished;
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(ReadError::Reset(_)) => {
                    end = End::Reset;
                    break;
                }
            }
        }
        // Any flow-control credit this freed goes out with the next send pass.
        let _ = chunks.finalize();
        (data, end)
    }

    fn read_request(
        &mut self,
        id: StreamId,
        now: Instant,
        counters: &QuicCounters,
        out: &mut Vec<NewRequest>,
    ) {
        let (data, end) = self.read_stream(id);
        let Some(Req::Reading(reader)) = self.requests.get_mut(&id) else {
            if end == End::Reset {
                if let Some(Req::Answering(x)) = self.requests.remove(&id) {
                    x.set_gone();
                }
            }
            return;
        };
        let mut request = None;
        for piece in &data {
            match reader.push(piece) {
                Ok(Some(r)) => {
                    request = Some(r);
                    break;
                }
                Ok(None) => {}
                Err(e) if e.is_connection_error() => {
                    self.close(now, e.code(), &e.to_string());
                    return;
                }
                Err(e) => {
                    self.refuse(id, e.code());
                    return;
                }
            }
        }
        if request.is_none() && end == End::Finished {
            // A request with a body is complete when its stream ends.
            match reader.finish() {
                Ok(Some(r)) => request = Some(r),
                Ok(None) => return self.refuse(id, code::REQUEST_INCOMPLETE),
                Err(code) => return self.refuse(id, code),
            }
        }
        match request {
            Some(mut request) => {
                // Complete before the handshake: it came in 0-RTT, which an attacker could
                // replay; the routes see it as a CDN in front would say so (RFC 8470
                // `Early-Data: 1`) and answer only safe methods. A client's own claim is
                // dropped, so a request after the handshake is never refused as early.
                request.headers.retain(|(name, _)| name != "early-data");
                if self.conn.is_handshaking() {
                    counters.early_requests.inc();
                    request.headers.push(("early-data".into(), "1".into()));
                }
                // Nothing after the HEADERS matters to a GET or HEAD (RFC 9114 §4.1); a
                // request with a body has ended its side already.
                let _ = self.conn.recv_stream(id).stop(varint(code::NO_ERROR));
                let exchange = Rc::new(Exchange::default());
                self.requests
                    .insert(id, Req::Answering(Rc::clone(&exchange)));
                out.push(NewRequest {
                    stream: id,
                    request,
                    exchange,
                    kept: Rc::clone(&self.kept),
                });
            }
            None if end == End::Reset => {
                self.requests.remove(&id);
            }
            None => {}
        }
    }

    /// Resets a request stream both ways with `code`.
    fn refuse(&mut self, id: StreamId, code: u64) {
        self.requests.remove(&id);
        let _ = self.conn.send_stream(id).reset(varint(code));
        let _ = self.conn.recv_stream(id).stop(varint(code));
    }

    fn read_uni(&mut self, id: StreamId, now: Instant) {
        let (data, end) = self.read_stream(id);
        let mut events = Vec::new();
        for piece in data {
            let mut piece: &[u8] = &piece;
            while !piece.is_empty() {
                let Some(state) = self.uni.get_mut(&id) else {
                    return;
                };
                let result = match state {
                    Uni::Unclassified(head) => {
                        let take = piece.len().min(8 - head.len());
                        head.extend_from_slice(&piece[..take]);
                        piece = &piece[take..];
                        match UniStream::classify(head) {
                            None => continue,
                            Some((kind, n)) => {
                                let rest = head.split_off(n);
                                match self.classified(id, kind, now) {
                                    Some(next) => {
                                        self.uni.insert(id, next);
                                        // The bytes read past the type go to its reader.
                                        self.push_uni(id, &rest, &mut events)
                                    }
                                    None => return,
                                }
                            }
                        }
                    }
                    _ => {
                        let r = self.push_uni(id, piece, &mut events);
                        piece = &[];
                        r
                    }
                };
                if let Err(e) = result {
                    self.close(now, e.code(), &e.to_string());
                    return;
                }
            }
        }
        // The client's SETTINGS need nothing of us (we send no dynamic references and
        // small heads), and its GOAWAY only says it opens nothing new: what it opened is
        // answered.
        drop(events);
        if end != End::Open {
            // RFC 9114 §6.2.1, RFC 9204 §4.2: critical streams never close.
            if let Some(Uni::Control(_) | Uni::Encoder(_)) = self.uni.remove(&id) {
                self.close(
                    now,
                    code::CLOSED_CRITICAL_STREAM,
                    "a critical stream closed",
                );
            }
        }
    }

    fn push_uni(
        &mut self,
        id: StreamId,
        data: &[u8],
        events: &mut Vec<ControlEvent>,
    ) -> Result<(), edge_core::h3::stream::StreamError> {
        match self.uni.get_mut(&id) {
            Some(Uni::Control(c)) => c.push(data, events),
            Some(Uni::Encoder(e)) => e.push(data),
            _ => Ok(()),
        }
    }

    /// What a unidirectional stream of `kind` becomes; `None` if it closed the connection.
    fn classified(&mut self, id: StreamId, kind: UniStream, now: Instant) -> Option<Uni> {
        match kind {
            UniStream::Control if self.peer_control.is_some() => {
                self.close(now, code::STREAM_CREATION_ERROR, "a second control stream");
                None
            }
            UniStream::Control => {
                self.peer_control = Some(id);
                Some(Uni::Control(ControlStream::new()))
            }
            UniStream::QpackEncoder => Some(Uni::Encoder(EncoderStream::new())),
            UniStream::Push => {
                self.close(
                    now,
                    code::STREAM_CREATION_ERROR,
                    "a client opened a push stream",
                );
                None
            }
            // With no dynamic table the decoder stream says nothing we act on.
            UniStream::QpackDecoder => Some(Uni::Discard),
            UniStream::Unknown(_) => {
                // An unknown type may be refused (RFC 9114 §6.2): it is never read.
                let _ = self
                    .conn
                    .recv_stream(id)
                    .stop(varint(code::STREAM_CREATION_ERROR));
                Some(Uni::Discard)
            }
        }
    }

    pub(crate) fn close(&mut self, now: Instant, code: u64, reason: &str) {
        self.conn
            .close(now, varint(code), Bytes::copy_from_slice(reason.as_bytes()));
        self.lost();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Finished,
    Reset,
}
