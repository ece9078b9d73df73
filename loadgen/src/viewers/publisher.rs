//! The publisher: loops a clip in real time over RTMP, with an SEI probe (send time and
//! frame number) in every video frame.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use edge_core::flv::{FlvReader, FlvTag};
use edge_core::media::{self, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::sei::{self, Probe};
use monoio::io::AsyncWriteRentExt;

use super::{connect, rtmp_round, RtmpStop};
use crate::live::{now_us, Ctx};

/// The clip a publisher loops.
pub struct Source {
    pub headers: Vec<FlvTag>,
    pub media: Vec<FlvTag>,
    /// Duration of one pass, so the next pass continues the timeline.
    pub loop_ms: u32,
}

impl Source {
    pub fn load(spec: &crate::cli::SourceSpec) -> anyhow::Result<Source> {
        let mut r = FlvReader::new();
        r.handle_input(&spec.read()?);
        let (mut headers, mut media) = (Vec::new(), Vec::new());
        while let Some(tag) = r.poll_tag().map_err(|e| anyhow::anyhow!("{spec}: {e}"))? {
            let header = match MediaKind::from_type_id(tag.type_id) {
                Some(MediaKind::Video) => media::parse_video_tag(&tag.body)?.sequence_header,
                Some(MediaKind::Audio) => media::parse_audio_tag(&tag.body)?.sequence_header,
                _ => continue,
            };
            if header {
                headers.push(tag);
            } else {
                media.push(tag);
            }
        }
        let last = media.last().map_or(0, |t| t.timestamp);
        anyhow::ensure!(!media.is_empty(), "{spec} holds no media");
        // One frame interval after the last tag (assume 25 fps if unknown).
        Ok(Source {
            headers,
            media,
            loop_ms: last + 40,
        })
    }

    /// The rate one pass is sent at: media tag bodies over the pass's duration, in kbit/s.
    pub fn kbps(&self) -> u64 {
        let bytes: usize = self.media.iter().map(|t| t.body.len()).sum();
        bytes as u64 * 8 / u64::from(self.loop_ms.max(1))
    }
}

/// Publishes the looped source with SEI probes in every video frame, in real time.
pub async fn publish(ctx: Ctx, addr: SocketAddr, app: String, stream: String, source: Rc<Source>) {
    let Some(mut s) = connect(&ctx, addr).await else {
        return;
    };
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        &stream,
        ClientMode::Publish,
    ))
    .expect("handshake bytes");
    let mut buf = Vec::with_capacity(16 * 1024);
    // Handshake and publish request.
    loop {
        match rtmp_round(&mut s, &mut client, &mut buf, &ctx).await {
            Ok(events) if events.contains(&ClientEvent::Started) => break,
            Ok(events)
                if events
                    .iter()
                    .any(|e| matches!(e, ClientEvent::Status { .. })) =>
            {
                return ctx.error("status");
            }
            Ok(_) => {}
            Err(RtmpStop::Deadline) => return,
            Err(RtmpStop::Error(kind)) => return ctx.error(kind),
        }
    }
    for h in &source.headers {
        let kind = MediaKind::from_type_id(h.type_id).unwrap_or(MediaKind::Video);
        let _ = client.publish(kind, 0, h.body.clone());
    }
    let start = Instant::now();
    let mut seq = 0u64;
    for pass in 0u32.. {
        for tag in &source.media {
            let ts = tag
                .timestamp
                .wrapping_add(pass.wrapping_mul(source.loop_ms));
            let due = start + Duration::from_millis(u64::from(ts));
            if due >= ctx.until() {
                return;
            }
            monoio::time::sleep(due.saturating_duration_since(Instant::now())).await;
            let kind = MediaKind::from_type_id(tag.type_id).unwrap_or(MediaKind::Video);
            // Probes go into pictures only: a message without one (the source's end of
            // sequence where it loops) is no frame a viewer could miss; HLS drops it.
            let picture = kind == MediaKind::Video
                && media::parse_video_tag(&tag.body)
                    .is_ok_and(|t| !t.sequence_header && !t.end_of_sequence && !t.info_only);
            let body = if picture {
                let probe = Probe {
                    send_time_us: now_us(),
                    seq,
                };
                seq += 1;
                sei::embed_avcc(&tag.body, 4, probe)
            } else {
                tag.body.clone()
            };
            if client.publish(kind, ts, body).is_err() {
                return ctx.error("parse");
            }
            if let Some(out) = client.poll_transmit() {
                if s.write_all(out).await.0.is_err() {
                    return ctx.error("closed");
                }
            }
        }
    }
}
