//! RTMP and HTTP-FLV viewers: they play until the deadline and measure every video frame's
//! probe (latency, gaps).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use edge_core::flv::FlvReader;
use edge_core::http::{self, Dechunker};
use edge_core::media::{self, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::sei::{self, Probe};
use monoio::io::AsyncWriteRentExt;

use super::{connect, read_append, rtmp_round, RtmpStop};
use crate::httpc;
use crate::live::{now_us, Ctx};

/// Tracks probes of one viewer: latency per frame and gaps in the sequence. Frames published
/// before the viewer joined (the server's GOP cache, sent at once) are counted but kept out
/// of the latency histogram: their age says how long ago the keyframe was, not how fast the
/// server is.
pub(crate) struct ProbeTrack {
    last_seq: Option<u64>,
    joined_us: u64,
}

impl ProbeTrack {
    pub(crate) fn new() -> Self {
        Self {
            last_seq: None,
            joined_us: now_us(),
        }
    }

    pub(crate) fn handle(&mut self, ctx: &Ctx, probe: Probe) {
        if probe.send_time_us >= self.joined_us + ctx.warmup_us {
            ctx.latency("frame_latency", now_us().saturating_sub(probe.send_time_us));
        } else if probe.send_time_us < self.joined_us {
            ctx.stats.borrow_mut().count("join_frames", 1);
        } else {
            ctx.stats.borrow_mut().count("warmup_frames", 1);
        }
        let mut st = ctx.stats.borrow_mut();
        st.count("video_frames", 1);
        if let Some(last) = self.last_seq {
            if probe.seq > last + 1 {
                st.count("gaps", 1);
                st.count("missing_frames", probe.seq - last - 1);
            }
        }
        self.last_seq = Some(probe.seq);
        ctx.live.frames.fetch_add(1, Ordering::Relaxed);
    }
}

fn video_probe(body: &Bytes) -> Option<Probe> {
    let tag = media::parse_video_tag(body).ok()?;
    if tag.sequence_header {
        return None;
    }
    sei::find_in_avcc(body.get(5..)?, 4)
}

/// An RTMP viewer: plays until the deadline, measuring every video frame's probe.
pub async fn rtmp_viewer(ctx: Ctx, addr: SocketAddr, app: String, stream: String) {
    let Some(mut s) = connect(&ctx, addr).await else {
        return;
    };
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        &stream,
        ClientMode::Play,
    ))
    .expect("handshake bytes");
    let mut track = ProbeTrack::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut got_media = false;
    loop {
        match rtmp_round(&mut s, &mut client, &mut buf, &ctx).await {
            Ok(events) => {
                for e in events {
                    if let ClientEvent::Media { kind, body, .. } = e {
                        got_media |= kind != MediaKind::Data;
                        if kind == MediaKind::Video {
                            if let Some(p) = video_probe(&body) {
                                track.handle(&ctx, p);
                            }
                        }
                    }
                }
            }
            Err(RtmpStop::Deadline) => break,
            Err(RtmpStop::Error(kind)) => break ctx.error(kind),
        }
    }
    ctx.viewer_done(got_media);
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}

/// An HTTP-FLV viewer.
pub async fn flv_viewer(ctx: Ctx, addr: SocketAddr, app: String, stream: String) {
    let Some(mut s) = connect(&ctx, addr).await else {
        return;
    };
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let req = httpc::get(&format!("/{app}/{stream}.flv"), &addr.to_string());
    ctx.live.requests.fetch_add(1, Ordering::Relaxed);
    if s.write_all(req).await.0.is_err() {
        ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
        return ctx.error("closed");
    }
    let mut pending = BytesMut::new();
    let mut head_done = false;
    let mut dechunk = Dechunker::default();
    let mut body = Vec::new();
    let mut flv = FlvReader::new();
    let mut track = ProbeTrack::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut got_media = false;
    'read: loop {
        buf.clear();
        if read_append(&mut s, &mut buf, ctx.until()).await.is_err() {
            break ctx.error_while_running("closed");
        }
        ctx.live
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        pending.extend_from_slice(&buf);
        if !head_done {
            match http::parse_response_head(&pending) {
                Ok(None) => continue,
                Ok(Some(h)) if h.status == 200 && h.chunked => {
                    let _ = pending.split_to(h.len);
                    head_done = true;
                }
                Ok(Some(_)) => break ctx.error("status"),
                Err(_) => break ctx.error("parse"),
            }
        }
        match dechunk.decode(&pending, &mut body) {
            Ok(used) => {
                let _ = pending.split_to(used);
            }
            Err(_) => break ctx.error("parse"),
        }
        flv.handle_input(&body);
        body.clear();
        loop {
            match flv.poll_tag() {
                Ok(Some(tag)) if tag.type_id == 9 => {
                    got_media = true;
                    if let Some(p) = video_probe(&tag.body) {
                        track.handle(&ctx, p);
                    }
                }
                Ok(Some(tag)) => got_media |= tag.type_id == 8,
                Ok(None) => break,
                Err(_) => {
                    ctx.error("parse");
                    break 'read;
                }
            }
        }
        if dechunk.done {
            break;
        }
    }
    ctx.viewer_done(got_media);
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}
