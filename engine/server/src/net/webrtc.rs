//! WebRTC playback on one shard: a UDP socket of the shard's own (`--webrtc-udp` port plus
//! the shard's index), the sessions WHEP offers made here, each a str0m `Rtc` (sans-IO:
//! datagrams and `now` in, datagrams and a deadline out), and the H.264 RTP payloads of the
//! streams they play, made once per stream on this shard and shared by its sessions.
//!
//! Owns: answering an offer (ICE-lite, DTLS and the RTCP viewers send are str0m's), telling
//! which session a datagram is for (by its source address once ICE has checked it), the
//! sessions' deadlines on the shard's one timer through `arm`, writing an access unit's
//! payloads to a session (its RTP header and SRTP are ours, in `srtp`, per session; the
//! payloads are the stream's, shared, and so is what each session keeps to answer NACKs),
//! its sender reports, sending what the sessions produce in batches (`sendmmsg`), and the
//! `edge_webrtc_*` counters.
//!
//! Must not: block the shard (a full socket waits in the send task), decide who may play
//! (the HTTP layer authorises an offer before it gets here), know the viewer's queue (the
//! serving layer feeds a session what its outlet lets through), or hold a `RefCell` borrow
//! across an await.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub mod opus;
pub mod srtp;

use bytes::Bytes;
use edge_core::webrtc::audio::Transcoder;
use edge_core::webrtc::h264::{AccessUnit, Packetizer};
use edge_core::webrtc::rewind::Rewind;
use edge_core::webrtc::{media_mids, SessionId};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::{NackEntry, ReportList, Rtcp};
use str0m::rtp::{RawPacket, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tracing::debug;

use crate::net::clock::Clock;
use crate::net::contain;
use crate::net::mesh::ShardId;
use crate::net::timer::Timers;
use crate::net::udp::{self, send_batch, Count};

/// A session that has not completed ICE and DTLS by then is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Access units of a stream kept packetized for the sessions that have not written them yet
/// (a joining viewer's GOP burst, a viewer a few frames behind).
const RECENT_UNITS: usize = 512;
/// Datagrams taken from the queue per `sendmmsg` (a session's run of them goes as one
/// message with segmentation offload).
const SEND_BATCH: usize = 256;
/// Source addresses a session is known by at most (ICE checks from further addresses still
/// reach it by their username fragment; media from them is dropped).
const MAX_ADDRS: usize = 8;
/// Video packets a session keeps to answer NACKs with (a power of two that divides 2^16,
/// so a packet's place is its 16-bit sequence number): about 4 s of a 1 Mbit/s stream. Each
/// entry holds the stream's shared payload, not a copy.
const HISTORY: usize = 512;
/// Retransmissions a session may send in a burst (it earns one per video packet it sends).
const RESEND_BURST: u32 = 128;
/// How often a session's tracks send a sender report (the receiver's audio-video sync).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// str0m's own report interval: never (its streams send nothing; the reports are ours).
const NO_REPORTS: Duration = Duration::from_secs(86_400);
/// Due deadlines handled in one drain at most (a bound on a session that keeps coming due).
const MAX_CATCH_UP: usize = 1024;

/// One shard's WebRTC counters, rendered in `/metrics` as `edge_webrtc_NAME`.
#[derive(Debug, Default)]
pub(crate) struct RtcCounters {
    pub(crate) sessions_open: Count,
    pub(crate) sessions: Count,
    pub(crate) connected: Count,
    pub(crate) refused: Count,
    pub(crate) rtp_packets: Count,
    pub(crate) units_packetized: Count,
    pub(crate) b_frames_dropped: Count,
    pub(crate) opus_packets: Count,
    pub(crate) audio_errors: Count,
    pub(crate) keyframe_requests: Count,
    pub(crate) keyframe_answers: Count,
    pub(crate) nacks: Count,
    pub(crate) retransmits: Count,
    pub(crate) datagrams_in: Count,
    pub(crate) recv_calls: Count,
    pub(crate) datagrams_out: Count,
    pub(crate) send_calls: Count,
    /// The sessions open on the shard, for a `DELETE` another shard answers.
    pub(crate) open: std::sync::Mutex<std::collections::HashSet<SessionId>>,
}

impl RtcCounters {
    /// Whether session `id` is open on this counters' shard.
    pub(crate) fn is_open(&self, id: SessionId) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    fn set_open(&self, id: SessionId, open: bool) {
        let mut set = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }
}

impl RtcCounters {
    pub(crate) const METRICS: &'static [udp::Series<RtcCounters>] = &[
        ("sessions_open", "gauge", "WebRTC (WHEP) sessions open on this shard", |c| &c.sessions_open),
        ("sessions", "counter", "WebRTC sessions created by WHEP offers", |c| &c.sessions),
        ("connected", "counter", "WebRTC sessions whose ICE and DTLS completed", |c| &c.connected),
        ("refused", "counter", "WHEP offers refused: at --webrtc-max-sessions, or an offer the engine cannot answer", |c| &c.refused),
        ("rtp_packets", "counter", "RTP packets written to WebRTC sessions (each protected once per session)", |c| &c.rtp_packets),
        ("units_packetized", "counter", "H.264 access units cut into RTP payloads: once per stream on a shard, however many sessions play it", |c| &c.units_packetized),
        ("b_frames_dropped", "counter", "B-frames not sent to WebRTC sessions (--webrtc-bframes drop; browsers' WebRTC decoders take none): once per stream on a shard", |c| &c.b_frames_dropped),
        ("opus_packets", "counter", "Opus packets encoded from streams' AAC: once per stream on a shard, however many sessions play it", |c| &c.opus_packets),
        ("audio_errors", "counter", "AAC frames that did not decode or encode for WebRTC (skipped), and streams whose audio cannot be (HE-AAC, no libopus)", |c| &c.audio_errors),
        ("keyframe_requests", "counter", "PLI and FIR from WebRTC viewers (never forwarded to a publisher)", |c| &c.keyframe_requests),
        ("keyframe_answers", "counter", "Keyframe requests answered by sending the session its stream's GOP again from the cache (once per keyframe; the others wait for the stream's next keyframe)", |c| &c.keyframe_answers),
        ("nacks", "counter", "NACKs from WebRTC viewers (each names one or more lost video packets)", |c| &c.nacks),
        ("retransmits", "counter", "Video packets sent again for a NACK, from the session's history of the stream's shared payloads", |c| &c.retransmits),
        ("datagrams_in", "counter", "UDP datagrams received on the WebRTC socket", |c| &c.datagrams_in),
        ("recv_calls", "counter", "recvmmsg calls that returned datagrams on the WebRTC socket", |c| &c.recv_calls),
        ("datagrams_out", "counter", "UDP datagrams sent from the WebRTC socket", |c| &c.datagrams_out),
        ("send_calls", "counter", "sendmmsg calls on the WebRTC socket (datagrams_out / send_calls: datagrams per call)", |c| &c.send_calls),
    ];
}

/// Why an offer got no session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OfferError {
    #[error("this node is at its WebRTC session limit")]
    Full,
    #[error("the offer is not SDP this node can answer: {0}")]
    BadOffer(String),
    #[error("the offer has no H.264 video (packetization-mode 1) this node can send")]
    NoH264,
}

/// An offer str0m could not take, with its reason as a client may read it.
fn bad_offer(e: impl std::fmt::Display) -> OfferError {
    OfferError::BadOffer(edge_core::webrtc::offer_error_reason(&e.to_string()))
}

/// What a shard's endpoint is set up with.
pub(crate) struct RtcSettings {
    /// Sessions on this shard at most.
    pub(crate) max_sessions: usize,
    /// Addresses to name in answers (`--webrtc-candidate`); empty: the address each offer
    /// was posted to.
    pub(crate) candidates: Vec<(IpAddr, Option<u16>)>,
    /// Pictures of B slices are not sent (`--webrtc-bframes drop`).
    pub(crate) drop_b_frames: bool,
    /// Audio per Opus packet (`--webrtc-audio-frame-ms`).
    pub(crate) audio_frame: edge_core::webrtc::audio::FrameMs,
}

/// A frame of a stream as RTP payloads, shared by every session of the stream here: a video
/// access unit's (one timestamp, the marker on the last), or the Opus packets an audio frame
/// completed (each its own timestamp).
pub(crate) struct RtpUnit {
    pub(crate) audio: bool,
    /// A video unit holding an IDR picture (with SPS and PPS before it).
    pub(crate) keyframe: bool,
    pub(crate) packets: Vec<RtpPacket>,
}

pub(crate) struct RtpPacket {
    pub(crate) rtp_time: u64,
    pub(crate) payload: Arc<[u8]>,
    pub(crate) marker: bool,
}

impl From<AccessUnit> for RtpUnit {
    fn from(au: AccessUnit) -> Self {
        let last = au.payloads.len().saturating_sub(1);
        RtpUnit {
            audio: false,
            keyframe: au.keyframe,
            packets: au
                .payloads
                .iter()
                .enumerate()
                .map(|(i, p)| RtpPacket {
                    rtp_time: au.rtp_time,
                    payload: Arc::from(&p[..]),
                    marker: i == last,
                })
                .collect(),
        }
    }
}

/// A stream's audio on this shard: its transcoder, or why it has none.
type Audio = Result<Transcoder<opus::OpusEncoder>, ()>;

/// A frame's HTTP-FLV chunk by its address and length: the entry holding it keeps the bytes
/// alive, so no other chunk has the same key while the entry lives.
type ChunkKey = (usize, usize);

fn chunk_key(chunk: &Bytes) -> ChunkKey {
    (chunk.as_ptr() as usize, chunk.len())
}

/// A stream's packetizer on this shard and its recent units by the frame they were made from.
struct StreamRtp {
    packetizer: Packetizer,
    /// Made at the stream's first audio frame here.
    audio: Option<Audio>,
    /// The recent frames' keys, oldest first ([`RECENT_UNITS`] at most).
    order: VecDeque<ChunkKey>,
    /// Each recent frame's chunk (held, see [`ChunkKey`]) and what it made.
    units: HashMap<ChunkKey, (Bytes, Option<Rc<RtpUnit>>)>,
    /// Sessions of this stream on the shard: the entry goes with the last one.
    sessions: usize,
    /// The units since the stream's last keyframe, that first (empty before one, and once a
    /// GOP outgrows [`RECENT_UNITS`]): what a keyframe request is answered with.
    gop: Vec<Rc<RtpUnit>>,
}

/// One outgoing RTP stream of a session.
struct Track {
    ssrc: Ssrc,
    pt: Pt,
    /// The extended sequence number of the next packet (its roll-over count above 16 bits).
    next_seq: u64,
    ts_offset: u32,
    /// RTP clock rate: 90 kHz video, 48 kHz Opus.
    clock_rate: u32,
    /// Packets and payload bytes sent, for the sender report.
    packets: u32,
    octets: u32,
    /// The RTP time of the last packet sent and when, for the sender report.
    last: Option<(u32, Instant)>,
}

impl Track {
    fn new(ssrc: Ssrc, pt: Pt, clock_rate: u32) -> Self {
        let random = random_u64();
        Track {
            ssrc,
            pt,
            // RTP sequence numbers start at a random point below 2^15 (ROC 0).
            next_seq: random & 0x7fff,
            ts_offset: (random >> 32) as u32,
            clock_rate,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    /// The sender report for this track at `now` (`None` before its first packet): its RTP
    /// clock carried on from the last packet to `now`.
    fn report(&self, now: Instant, wall: std::time::SystemTime) -> Option<[u8; 28]> {
        let (time, at) = self.last?;
        let since = now.saturating_duration_since(at);
        let ticks = (since.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
        Some(srtp::sender_report(
            *self.ssrc,
            srtp::ntp_time(wall),
            time.wrapping_add(ticks),
            self.packets,
            self.octets,
        ))
    }
}

/// A video packet a session sent, kept to send again when its viewer NACKs it.
struct Sent {
    seq: u64,
    time: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

struct Session {
    rtc: Rtc,
    /// Where its DTLS leaves the SRTP keys; taken into `protector` at the first packet.
    keys: srtp::KeySlot,
    protector: Option<srtp::Protector>,
    /// Where media goes: the address str0m last sent DTLS to (the pair ICE nominated), then
    /// the address the viewer's RTCP last came from.
    remote: Option<SocketAddr>,
    /// Its last [`HISTORY`] video packets, by sequence number modulo its length.
    history: Vec<Option<Sent>>,
    /// When its tracks send their next sender reports.
    next_report: Instant,
    /// Retransmissions it may send now (see [`RESEND_BURST`]).
    resend_budget: u32,
    key: String,
    /// The address we named in the answer: what the client sends to.
    local: SocketAddr,
    ufrag: String,
    /// The source addresses ICE checked for this session ([`MAX_ADDRS`] at most).
    addrs: Vec<SocketAddr>,
    video: Track,
    /// Opus, when the offer has an audio section that takes it.
    audio: Option<Track>,
    /// The source time of the last picture written to the session.
    last_video: Option<u64>,
    /// Its keyframe requests, and how far they moved its timestamps.
    rewind: Rewind,
    created: Instant,
    connected: bool,
    ended: bool,
    /// The serving task waiting for this session to connect or end.
    waiter: Option<Waker>,
}

struct State {
    sessions: HashMap<SessionId, Session>,
    /// Sessions by the source address ICE checked.
    by_addr: HashMap<SocketAddr, SessionId>,
    /// Sessions by their local ICE username fragment (a STUN request names it).
    by_ufrag: HashMap<String, SessionId>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    media: HashMap<String, StreamRtp>,
}

pub(crate) struct RtcEndpoint {
    socket: monoio::net::udp::UdpSocket,
    fd: RawFd,
    port: u16,
    me: ShardId,
    clock: Clock,
    counters: Arc<RtcCounters>,
    settings: RtcSettings,
    state: RefCell<State>,
    deadlines: Timers<u64>,
    arm: Box<dyn Fn(Option<u64>)>,
    sender: Cell<Option<Waker>>,
}

/// 64 random bits from the system's source (the ring provider's; it does not fail on Linux,
/// and if it did the id would only be guessable, still unique by its counter bits below).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b);
    u64::from_le_bytes(b)
}

impl RtcEndpoint {
    pub(crate) fn start(
        socket: std::net::UdpSocket,
        settings: RtcSettings,
        me: ShardId,
        clock: Clock,
        counters: Arc<RtcCounters>,
        arm: Box<dyn Fn(Option<u64>)>,
    ) -> anyhow::Result<Rc<RtcEndpoint>> {
        let port = socket.local_addr()?.port();
        let fd = socket.as_raw_fd();
        let socket = monoio::net::udp::UdpSocket::from_std(socket)?;
        let this = Rc::new(RtcEndpoint {
            socket,
            fd,
            port,
            me,
            clock,
            counters,
            settings,
            state: RefCell::new(State {
                sessions: HashMap::new(),
                by_addr: HashMap::new(),
                by_ufrag: HashMap::new(),
                out: VecDeque::new(),
                media: HashMap::new(),
            }),
            deadlines: Timers::default(),
            arm,
            sender: Cell::new(None),
        });
        monoio::spawn(Rc::clone(&this).receive_loop());
        monoio::spawn(Rc::clone(&this).send_loop());
        Ok(this)
    }

    /// The port this shard's socket is bound to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Answers a WHEP offer for stream `key`, posted to `posted_to` (the address named in the
    /// answer when no `--webrtc-candidate` is set): the new session's id and the SDP answer.
    pub(crate) fn offer(
        &self,
        key: &str,
        sdp: &str,
        posted_to: IpAddr,
    ) -> Result<(SessionId, String), OfferError> {
        let result = self.open(key, sdp, posted_to);
        if result.is_err() {
            self.counters.refused.inc();
        }
        result
    }

    fn open(
        &self,
        key: &str,
        sdp: &str,
        posted_to: IpAddr,
    ) -> Result<(SessionId, String), OfferError> {
        if self.state.borrow().sessions.len() >= self.settings.max_sessions {
            return Err(OfferError::Full);
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(bad_offer)?;
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            // No RTP header extensions: transport-wide congestion control's feedback drove
            // no decision here (the stream's one bitrate goes to everyone) and its
            // bookkeeping was 8 % of a shard's time at 250 sessions (perf).
            .clear_extension_map()
            // Our DTLS provider records the SRTP keys: the media goes out from `srtp`, not
            // through str0m's streams, so str0m sends no reports of them (ours do), and
            // hands over the RTCP a viewer sends (its NACKs) as raw packets.
            .set_crypto_provider(srtp::provider())
            .set_rtcp_report_interval_audio(NO_REPORTS)
            .set_rtcp_report_interval_video(NO_REPORTS)
            .enable_raw_packets(true)
            .build(now);
        let keys = srtp::take_slot()
            .ok_or_else(|| OfferError::BadOffer("no DTLS instance was made".to_string()))?;
        let candidates: Vec<SocketAddr> = if self.settings.candidates.is_empty() {
            vec![SocketAddr::new(posted_to, self.port)]
        } else {
            self.settings
                .candidates
                .iter()
                .map(|&(ip, port)| {
                    let port = port.map_or(self.port, |p| p.wrapping_add(self.me.0 as u16));
                    SocketAddr::new(ip, port)
                })
                .collect()
        };
        for &c in &candidates {
            let candidate = Candidate::host(c, "udp")
                .map_err(|e| OfferError::BadOffer(format!("candidate {c}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(bad_offer)?;
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break Some(t),
                Ok(_) => {}
                Err(e) => return Err(bad_offer(e)),
            }
        };
        let video = track(&mut rtc, sdp, "video", 90_000, |codec, mode| {
            codec == Codec::H264 && mode == Some(1)
        })
        .ok_or(OfferError::NoH264)?;
        let audio = track(&mut rtc, sdp, "audio", 48_000, |codec, _| {
            codec == Codec::Opus
        });
        let id = SessionId::new(self.me.0, random_u64());
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let session = Session {
            rtc,
            keys,
            protector: None,
            remote: None,
            history: Vec::new(),
            next_report: now,
            resend_budget: 0,
            key: key.to_string(),
            local: candidates[0],
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            video,
            audio,
            last_video: None,
            rewind: Rewind::default(),
            created: now,
            connected: false,
            ended: false,
            waiter: None,
        };
        let mut st = self.state.borrow_mut();
        st.sessions.insert(id, session);
        st.by_ufrag.insert(ufrag, id);
        let drop_b_frames = self.settings.drop_b_frames;
        st.media
            .entry(key.to_string())
            .or_insert_with(|| StreamRtp {
                packetizer: Packetizer::new(drop_b_frames),
                audio: None,
                order: VecDeque::new(),
                units: HashMap::new(),
                sessions: 0,
                gop: Vec::new(),
            })
            .sessions += 1;
        drop(st);
        self.counters.sessions.inc();
        self.counters.sessions_open.inc();
        self.counters.set_open(id, true);
        self.arm_session(id, deadline);
        debug!(shard = %self.me, session = %id, "WHEP session answered");
        Ok((id, answer.to_sdp_string()))
    }

    /// Resolves with `true` once session `id` has connected (ICE and DTLS done), `false` if
    /// it ended first or does not exist.
    pub(crate) async fn connected(&self, id: SessionId) -> bool {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            match st.sessions.get_mut(&id) {
                None => Poll::Ready(false),
                Some(s) if s.ended => Poll::Ready(false),
                Some(s) if s.connected => Poll::Ready(true),
                Some(s) => {
                    s.waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Resolves once session `id` has ended (or does not exist).
    pub(crate) async fn ended(&self, id: SessionId) {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            match st.sessions.get_mut(&id) {
                None => Poll::Ready(()),
                Some(s) if s.ended => Poll::Ready(()),
                Some(s) => {
                    s.waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Ends session `id` (a WHEP `DELETE`, or its viewer gone); `false` if there was none.
    pub(crate) fn end(&self, id: SessionId) -> bool {
        let mut st = self.state.borrow_mut();
        let Some(mut s) = st.sessions.remove(&id) else {
            return false;
        };
        s.rtc.disconnect();
        self.forget(&mut st, id, s);
        drop(st);
        self.rearm();
        true
    }

    /// Removes what finds ended session `id` (its addresses, fragment, deadline, its
    /// stream's share); the caller rearms the shard's timer.
    fn forget(&self, st: &mut State, id: SessionId, mut s: Session) {
        for addr in &s.addrs {
            st.by_addr.remove(addr);
        }
        st.by_ufrag.remove(&s.ufrag);
        if let Some(media) = st.media.get_mut(&s.key) {
            media.sessions -= 1;
            if media.sessions == 0 {
                st.media.remove(&s.key);
            }
        }
        self.counters.sessions_open.dec();
        self.counters.set_open(id, false);
        self.deadlines.arm(id.0, None);
        if let Some(w) = s.waiter.take() {
            w.wake();
        }
        debug!(shard = %self.me, session = %id, "WHEP session ended");
    }

    /// The RTP payloads of the frame whose HTTP-FLV chunk is `chunk`, made once for stream
    /// `key` on this shard; `None` for a frame that gives none (a sequence header, a frame
    /// of a codec we do not send, audio that has not filled an Opus frame yet).
    pub(crate) fn unit(&self, key: &str, chunk: &Bytes) -> Option<Rc<RtpUnit>> {
        let mut st = self.state.borrow_mut();
        let media = st.media.get_mut(key)?;
        if let Some((_, unit)) = media.units.get(&chunk_key(chunk)) {
            return unit.clone();
        }
        let tag = edge_core::flv::tag_of_chunk(chunk)?;
        let ts = u64::from(tag.timestamp);
        let unit = if tag.type_id == edge_core::MediaKind::Video.type_id() {
            let dropped = media.packetizer.b_frames_dropped();
            let result = media.packetizer.push(ts, &tag.body);
            if media.packetizer.b_frames_dropped() > dropped {
                self.counters.b_frames_dropped.inc();
            }
            match result {
                Ok(Some(au)) => {
                    self.counters.units_packetized.inc();
                    Some(Rc::new(RtpUnit::from(au)))
                }
                Ok(None) => None,
                Err(e) => {
                    debug!(shard = %self.me, %key, "frame not sent over WebRTC: {e}");
                    None
                }
            }
        } else if tag.type_id == edge_core::MediaKind::Audio.type_id() {
            self.opus(key, media, ts, &tag.body)
        } else {
            None
        };
        if media.order.len() == RECENT_UNITS {
            if let Some(oldest) = media.order.pop_front() {
                media.units.remove(&oldest);
            }
        }
        if let Some(u) = &unit {
            if u.keyframe {
                media.gop.clear();
                media.gop.push(Rc::clone(u));
            } else if media.gop.len() == RECENT_UNITS {
                media.gop.clear();
            } else if !media.gop.is_empty() {
                media.gop.push(Rc::clone(u));
            }
        }
        media.order.push_back(chunk_key(chunk));
        media
            .units
            .insert(chunk_key(chunk), (chunk.clone(), unit.clone()));
        unit
    }

    /// An audio frame through the stream's transcoder (made at its first frame here): the
    /// Opus packets it completed.
    fn opus(&self, key: &str, media: &mut StreamRtp, ts: u64, body: &[u8]) -> Option<Rc<RtpUnit>> {
        let audio = media
            .audio
            .get_or_insert_with(|| match opus::OpusEncoder::new() {
                Ok(encoder) => Ok(Transcoder::new(encoder, self.settings.audio_frame)),
                Err(why) => {
                    warn_once(&why);
                    self.counters.audio_errors.inc();
                    Err(())
                }
            });
        let Ok(transcoder) = audio else {
            return None;
        };
        let mut packets = Vec::new();
        // The decoder reads a publisher's bytes: a panic in it ends this stream's audio here,
        // nothing else.
        match contain::peer_input(|| transcoder.push(ts, body, &mut packets)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.counters.audio_errors.inc();
                debug!(shard = %self.me, %key, "audio not sent over WebRTC: {e}");
            }
            Err(panic) => {
                self.counters.audio_errors.inc();
                tracing::warn!(shard = %self.me, %key, "WebRTC audio stopped: the AAC decoder panicked: {panic}");
                media.audio = Some(Err(()));
                return None;
            }
        }
        if packets.is_empty() {
            return None;
        }
        self.counters.opus_packets.add(packets.len() as u64);
        Some(Rc::new(RtpUnit {
            audio: true,
            keyframe: false,
            packets: packets
                .into_iter()
                .map(|p| RtpPacket {
                    rtp_time: p.rtp_time,
                    payload: Arc::from(p.payload),
                    marker: false,
                })
                .collect(),
        }))
    }

    /// Writes one unit to session `id` (audio only if it takes audio), after its stream's GOP
    /// up to this unit when the session asked for a keyframe and gets one from the cache
    /// ([`Rewind`]); `false` once the session is gone.
    pub(crate) fn write(&self, id: SessionId, unit: &Rc<RtpUnit>) -> bool {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        let State {
            sessions,
            out,
            media,
            ..
        } = &mut *st;
        let Some(s) = sessions.get_mut(&id) else {
            return false;
        };
        let replay = if s.rewind.wanted() {
            let gop = media.get(&s.key).map_or(&[][..], |m| &m.gop[..]);
            replay(s, gop, unit)
        } else {
            Vec::new()
        };
        if !replay.is_empty() {
            self.counters.keyframe_answers.inc();
        }
        let mut wrote = false;
        for u in replay.iter().chain(std::iter::once(unit)) {
            wrote |= send_unit(s, u, now, out, &self.counters);
        }
        if wrote && now >= s.next_report {
            s.next_report = now + REPORT_EVERY;
            send_reports(s, now, out);
        }
        let alive = !s.ended;
        drop(st);
        if !alive {
            self.settle(id, None);
        }
        if wrote {
            self.wake_sender();
        }
        alive
    }

    /// After session `id` was driven: its next deadline set, or the session removed if it
    /// ended; then the shard's timer rearmed.
    fn settle(&self, id: SessionId, deadline: Option<Instant>) {
        self.settle_quietly(id, deadline);
        self.rearm();
    }

    /// [`settle`](Self::settle) without the rearm, for a batch of sessions that rearms once.
    fn settle_quietly(&self, id: SessionId, deadline: Option<Instant>) {
        let mut st = self.state.borrow_mut();
        let ended = st.sessions.get(&id).is_some_and(|s| s.ended);
        if ended {
            if let Some(s) = st.sessions.remove(&id) {
                self.forget(&mut st, id, s);
            }
            return;
        }
        drop(st);
        self.set_deadline(id, deadline);
    }

    /// The shard's timer armed for this endpoint's earliest deadline.
    fn rearm(&self) {
        (self.arm)(self.deadlines.next());
    }

    /// Arms session `id`'s deadline: str0m's, or sooner the end of its time to connect.
    fn arm_session(&self, id: SessionId, deadline: Option<Instant>) {
        self.set_deadline(id, deadline);
        self.rearm();
    }

    /// Session `id`'s deadline: str0m's, or sooner the end of its time to connect.
    fn set_deadline(&self, id: SessionId, deadline: Option<Instant>) {
        let connect_by = self
            .state
            .borrow()
            .sessions
            .get(&id)
            .filter(|s| !s.connected)
            .map(|s| s.created + CONNECT_TIMEOUT + Duration::from_millis(1));
        let deadline = match (deadline, connect_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.deadlines
            .arm(id.0, deadline.map(|t| self.clock.ms_after(t)));
    }

    /// The shard's timer fired for this endpoint: every session whose deadline passed.
    pub(crate) fn handle_timeout(&self) {
        let due = self.deadlines.pop_due(self.clock.now_ms());
        let now = Instant::now();
        for id in due {
            let id = SessionId(id);
            let deadline = {
                let mut st = self.state.borrow_mut();
                let State { sessions, out, .. } = &mut *st;
                let Some(s) = sessions.get_mut(&id) else {
                    continue;
                };
                if !s.connected && now.duration_since(s.created) > CONNECT_TIMEOUT {
                    s.ended = true;
                    None
                } else {
                    feed_timeout(s, now);
                    if s.ended {
                        None
                    } else {
                        drain(s, out, &self.counters, now)
                    }
                }
            };
            self.settle_quietly(id, deadline);
        }
        self.rearm();
        self.wake_sender();
    }

    async fn receive_loop(self: Rc<Self>) {
        let counters = (&self.counters.recv_calls, &self.counters.datagrams_in);
        let each = |from, data: bytes::BytesMut| self.received(from, &data);
        udp::receive_loop(&self.socket, self.fd, counters, each, || self.wake_sender()).await;
    }

    /// A datagram from `from`: to the session ICE checked it for, or to the session whose
    /// username fragment a STUN request names (str0m then checks its integrity). Anything
    /// else is dropped, as a network would: one map lookup per datagram, however many
    /// sessions there are.
    fn received(&self, from: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        let State {
            sessions,
            by_addr,
            by_ufrag,
            out,
            ..
        } = &mut *st;
        let known = by_addr.get(&from).copied();
        let target = known.or_else(|| {
            let id = *by_ufrag.get(edge_core::webrtc::stun_local_ufrag(data)?)?;
            let s = sessions.get(&id)?;
            let input = Receive::new(Protocol::Udp, from, s.local, data).ok()?;
            s.rtc.accepts(&Input::Receive(now, input)).then_some(id)
        });
        let Some(id) = target else {
            return;
        };
        let Some(s) = sessions.get_mut(&id) else {
            by_addr.remove(&from);
            return;
        };
        if known.is_none() && s.addrs.len() < MAX_ADDRS {
            by_addr.insert(from, id);
            s.addrs.push(from);
        }
        let Ok(input) = Receive::new(Protocol::Udp, from, s.local, data) else {
            return;
        };
        // str0m parses the peer's STUN, DTLS and RTP: a panic in it ends this session only.
        match contain::peer_input(|| s.rtc.handle_input(Input::Receive(now, input))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(session = %id, peer = %from, "WebRTC input: {e}"),
            Err(panic) => {
                tracing::warn!(session = %id, peer = %from, "WebRTC session ended: its input panicked: {panic}");
                s.ended = true;
            }
        }
        // The viewer's RTCP (its receiver reports, NACKs: first byte 128–191) comes over the
        // pair it selected; media follows it there (a path that changed, a NAT rebinding).
        // Only an address ICE checked for this session gets here with anything but STUN.
        if s.connected && !s.ended && data.first().is_some_and(|b| (128..192).contains(b)) {
            s.remote = Some(from);
        }
        let was_connected = s.connected;
        let deadline = if s.ended {
            None
        } else {
            drain(s, out, &self.counters, now)
        };
        if !was_connected && s.connected {
            self.counters.connected.inc();
        }
        drop(st);
        self.settle(id, deadline);
    }

    async fn send_loop(self: Rc<Self>) {
        let mut batch: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(SEND_BATCH);
        let mut gso = true;
        loop {
            poll_fn(|cx| {
                if batch.is_empty() && self.state.borrow().out.is_empty() {
                    self.sender.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            loop {
                if batch.is_empty() {
                    let mut st = self.state.borrow_mut();
                    let n = st.out.len().min(SEND_BATCH);
                    batch.extend(st.out.drain(..n));
                }
                if batch.is_empty() {
                    break;
                }
                match send_batch(self.fd, &batch, gso) {
                    Ok(sent) => {
                        self.counters.send_calls.inc();
                        self.counters.datagrams_out.add(sent as u64);
                        batch.drain(..sent.max(1).min(batch.len()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let _ = self.socket.writable(true).await;
                    }
                    Err(e) if gso && udp::offload_refused(&e) => {
                        // A device or kernel without UDP segmentation offload: one datagram
                        // per message from here on, nothing lost.
                        tracing::info!(shard = %self.me, "WebRTC sends without segmentation offload: {e}");
                        gso = false;
                    }
                    Err(e) => {
                        // Unreachable and the like: the first datagram is lost, as on a
                        // network; the rest go on.
                        debug!(shard = %self.me, "webrtc udp send: {e}");
                        batch.remove(0);
                    }
                }
            }
        }
    }

    fn wake_sender(&self) {
        if let Some(w) = self.sender.take() {
            w.wake();
        }
    }
}

/// The outgoing track of the first `kind` section of the offer we send on, with the first
/// payload type whose codec `fits`.
fn track(
    rtc: &mut Rtc,
    sdp: &str,
    kind: &str,
    clock_rate: u32,
    fits: impl Fn(Codec, Option<u8>) -> bool,
) -> Option<Track> {
    let mid = media_mids(sdp, kind)
        .into_iter()
        .map(Mid::from)
        .find(|&m| rtc.media(m).is_some_and(|m| m.direction().is_sending()))?;
    let pt = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| {
            let spec = p.spec();
            fits(spec.codec, spec.format.packetization_mode)
        })?
        .pt();
    let ssrc = rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
    Some(Track::new(ssrc, pt, clock_rate))
}

/// What session `s`, which asked for a keyframe, is sent again before `unit`: its stream's
/// GOP up to `unit` when it has had the GOP's keyframe (edge-core's [`Rewind`] decides, and
/// moves the session's timestamps on); nothing when `unit` is itself a keyframe, or is not
/// in the GOP at hand (the session is behind it, or the GOP outgrew the cache): the stream's
/// next keyframe answers then.
fn replay(s: &mut Session, gop: &[Rc<RtpUnit>], unit: &Rc<RtpUnit>) -> Vec<Rc<RtpUnit>> {
    if unit.keyframe {
        s.rewind.settle();
        return Vec::new();
    }
    let position = gop.iter().position(|u| Rc::ptr_eq(u, unit));
    let keyframe = gop
        .first()
        .and_then(|k| k.packets.first())
        .map(|p| p.rtp_time);
    match (position, keyframe, s.last_video) {
        (Some(at), Some(keyframe), Some(last)) if at > 0 && s.rewind.answer(keyframe, last) => {
            gop[..at].to_vec()
        }
        _ => {
            s.rewind.settle();
            Vec::new()
        }
    }
}

/// Says once per process why WebRTC sessions have no audio.
fn warn_once(why: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| tracing::warn!("WebRTC sessions play video only: {why}"));
}

/// Session `s`'s SRTP protector, made from its keys at its first packet: `None` before its
/// DTLS exported them, or (the session then ends) for keys it cannot use.
fn protector(s: &mut Session) -> Option<&mut srtp::Protector> {
    if s.protector.is_none() {
        let keys = s.keys.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        match srtp::Protector::new(&keys) {
            Some(p) => s.protector = Some(p),
            None => {
                tracing::warn!(
                    "WebRTC session ended: its DTLS agreed on keys we cannot use: {keys:?}"
                );
                s.ended = true;
            }
        }
    }
    s.protector.as_mut()
}

/// Writes `unit`'s packets to session `s` with its timestamps, each one header and one
/// encryption of the stream's shared payload; its video packets kept for NACKs. `false` if it
/// took none (not connected yet, an audio unit and no audio track, or the session ended).
fn send_unit(
    s: &mut Session,
    unit: &RtpUnit,
    now: Instant,
    out: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    counters: &RtcCounters,
) -> bool {
    if s.ended || !s.connected || (unit.audio && s.audio.is_none()) {
        return false;
    }
    let Some(remote) = s.remote else {
        return false;
    };
    if protector(s).is_none() {
        return false;
    }
    let Session {
        protector: Some(protector),
        video,
        audio,
        rewind,
        last_video,
        history,
        resend_budget,
        ..
    } = s
    else {
        return false;
    };
    for p in &unit.packets {
        let (track, source) = match audio.as_mut() {
            Some(t) if unit.audio => (t, rewind.audio_time(p.rtp_time)),
            _ => {
                *last_video = Some(p.rtp_time);
                (&mut *video, rewind.video_time(p.rtp_time))
            }
        };
        let seq = track.next_seq;
        track.next_seq += 1;
        let time = (source as u32).wrapping_add(track.ts_offset);
        let packet = protector.rtp_packet(p.marker, *track.pt, seq, time, *track.ssrc, &p.payload);
        out.push_back((remote, packet));
        track.packets = track.packets.wrapping_add(1);
        track.octets = track.octets.wrapping_add(p.payload.len() as u32);
        track.last = Some((time, now));
        counters.rtp_packets.inc();
        if !unit.audio {
            if history.is_empty() {
                history.resize_with(HISTORY, || None);
            }
            history[seq as usize % HISTORY] = Some(Sent {
                seq,
                time,
                marker: p.marker,
                payload: Arc::clone(&p.payload),
            });
            *resend_budget = (*resend_budget + 1).min(RESEND_BURST);
        }
    }
    true
}

/// Each of session `s`'s tracks that has sent a packet sends its sender report.
fn send_reports(s: &mut Session, now: Instant, out: &mut VecDeque<(SocketAddr, Vec<u8>)>) {
    let (Some(remote), Some(protector)) = (s.remote, s.protector.as_mut()) else {
        return;
    };
    let wall = std::time::SystemTime::now();
    for track in std::iter::once(&s.video).chain(s.audio.as_ref()) {
        if let Some(report) = track.report(now, wall) {
            out.push_back((remote, protector.rtcp(&report)));
        }
    }
}

/// The video packets a NACK names that session `s` still has, sent again as they were (the
/// same sequence number, so the same SRTP bytes): at most one per video packet it has sent,
/// in bursts of at most [`RESEND_BURST`], so a viewer's NACKs cannot make it send more than
/// twice the stream.
fn resend(
    s: &mut Session,
    entries: &ReportList<NackEntry>,
    out: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    counters: &RtcCounters,
) {
    let (Some(remote), Some(protector)) = (s.remote, s.protector.as_mut()) else {
        return;
    };
    let named = entries.iter().flat_map(|e| {
        let (pid, blp) = (e.pid, e.blp);
        std::iter::once(pid).chain(
            (0..16u16)
                .filter(move |i| blp >> i & 1 == 1)
                .map(move |i| pid.wrapping_add(i + 1)),
        )
    });
    for seq in named {
        if s.resend_budget == 0 {
            break;
        }
        let Some(Some(sent)) = s.history.get(usize::from(seq) % HISTORY) else {
            continue;
        };
        if sent.seq as u16 != seq {
            continue;
        }
        let (pt, ssrc) = (*s.video.pt, *s.video.ssrc);
        let packet =
            protector.rtp_packet(sent.marker, pt, sent.seq, sent.time, ssrc, &sent.payload);
        out.push_back((remote, packet));
        s.resend_budget -= 1;
        counters.retransmits.inc();
    }
}

/// Gives session `s` its timeout at `now`: `false` if str0m refused it (logged) or
/// panicked (which ends the session, not the shard).
fn feed_timeout(s: &mut Session, now: Instant) -> bool {
    match contain::peer_input(|| s.rtc.handle_input(Input::Timeout(now))) {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!("WebRTC timeout: {e}");
            false
        }
        Err(panic) => {
            tracing::warn!("WebRTC session ended: its timeout panicked: {panic}");
            s.ended = true;
            false
        }
    }
}

/// Drains a session's output (str0m's contract after every mutation): datagrams to `out`,
/// events into the session's state. Its next deadline, `None` once it has ended (a panic in
/// the library ends the session, not the shard).
///
/// A deadline that is already due is handled here and the draining goes on, rather than after
/// a round trip through the shard's timer (at most [`MAX_CATCH_UP`] in a row). It mattered
/// when str0m sent the media (its pacer handed out one packet per timeout); its own timers
/// (DTLS flights, ICE) still come due this way.
fn drain(
    s: &mut Session,
    out: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    counters: &RtcCounters,
    now: Instant,
) -> Option<Instant> {
    let mut caught_up = 0;
    loop {
        let Ok(output) = contain::peer_input(|| s.rtc.poll_output()) else {
            tracing::warn!("WebRTC session ended: its output panicked");
            s.ended = true;
            return None;
        };
        match output {
            Ok(Output::Timeout(_)) if s.ended => return None,
            Ok(Output::Timeout(t)) if t <= now && caught_up < MAX_CATCH_UP => {
                caught_up += 1;
                if feed_timeout(s, now) {
                    continue;
                }
                return (!s.ended).then_some(t);
            }
            Ok(Output::Timeout(t)) => return Some(t),
            Ok(Output::Transmit(t)) => {
                // str0m sends DTLS (and RTCP) to the pair ICE nominated, STUN answers to
                // wherever a check came from: only the first say where media goes.
                if t.contents.first().is_some_and(|&b| b >= 20) {
                    s.remote = Some(t.destination);
                }
                out.push_back((t.destination, t.contents.into()));
            }
            Ok(Output::Event(Event::Connected)) => {
                s.connected = true;
                if let Some(w) = s.waiter.take() {
                    w.wake();
                }
            }
            Ok(Output::Event(Event::IceConnectionStateChange(
                IceConnectionState::Disconnected,
            ))) => {
                s.ended = true;
            }
            // Never forwarded (an RTMP publisher cannot honour one): the stream's next
            // keyframe answers it, within a GOP.
            Ok(Output::Event(Event::KeyframeRequest(_))) => {
                counters.keyframe_requests.inc();
                s.rewind.request();
            }
            Ok(Output::Event(Event::RawPacket(raw))) => {
                if let RawPacket::RtcpRx(Rtcp::Nack(nack)) = *raw {
                    counters.nacks.inc();
                    if nack.ssrc == s.video.ssrc {
                        resend(s, &nack.reports, out, counters);
                    }
                }
            }
            Ok(Output::Event(_)) => {}
            Err(e) => {
                debug!("WebRTC session failed: {e}");
                s.ended = true;
                return None;
            }
        }
        if !s.rtc.is_alive() {
            s.ended = true;
        }
    }
}
