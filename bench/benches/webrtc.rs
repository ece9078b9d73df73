//! WebRTC's per-stream work, once per stream on a shard however many sessions play it: the
//! committed fixture's H.264 cut into RTP payloads (`h264_packetize`), and its AAC decoded,
//! resampled to 48 kHz and encoded as Opus by libopus (`aac_to_opus`: divide by the
//! fixture's 4.08 s for the share of a core one stream's audio takes).
//!
//! Run: `cargo bench -p bench --bench webrtc`. Last results (ci-vm, 2026-12-07, commit
//! cf1516b, docs/BENCHMARKS.md): 17.2 µs to packetize the fixture's 102 pictures, 38.9 ms to
//! transcode its 4.08 s of AAC (0.95 % of a core per stream).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::flv::FlvReader;
use edge_core::webrtc::audio::{FrameMs, Transcoder};
use edge_core::webrtc::h264::Packetizer;
use edge_engine::net::webrtc::opus::OpusEncoder;

fn fixture_tags(type_id: u8) -> Vec<(u64, Bytes)> {
    let mut r = FlvReader::new();
    r.handle_input(&std::fs::read(tests::fixture("bframes.flv")).unwrap());
    let mut out = Vec::new();
    while let Some(tag) = r.poll_tag().unwrap() {
        if tag.type_id == type_id {
            out.push((u64::from(tag.timestamp), tag.body));
        }
    }
    out
}

fn webrtc(c: &mut Criterion) {
    let video = fixture_tags(9);
    let audio = fixture_tags(8);
    let mut g = c.benchmark_group("webrtc");
    g.bench_function("h264_packetize/fixture_4s", |b| {
        b.iter(|| {
            let mut p = Packetizer::new(false);
            let mut n = 0;
            for (ts, body) in &video {
                if let Ok(Some(au)) = p.push(*ts, body) {
                    n += au.payloads.len();
                }
            }
            n
        })
    });
    g.bench_function("aac_to_opus/fixture_4s", |b| {
        b.iter(|| {
            let encoder = OpusEncoder::new().expect("libopus.so.0 (Debian's libopus0)");
            let mut t = Transcoder::new(encoder, FrameMs::Ms20);
            let mut out = Vec::new();
            for (ts, body) in &audio {
                let _ = t.push(*ts, body, &mut out);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, webrtc);
criterion_main!(benches);
