//! FLV → TS mux throughput: the committed fixture (H.264 High with B-frames + AAC) through
//! the HLS segmenter, reported in MB/s of FLV payload; and TS → FLV, its segments back through
//! the HLS feed's demuxer (what an HLS-only origin's RTMP and FLV viewers cost, once per
//! stream), in MB/s of TS.
//!
//! Run: `cargo bench -p bench --bench ts_mux`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 117 µs for the 4 s fixture,
//! 1.42 GiB/s of FLV payload. Demux (2026-12-06, see docs/BENCHMARKS.md): `ts_demux/fixture_4s`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_core::flv::FlvReader;
use edge_core::hls::demux::TsDemuxer;
use edge_core::hls::{HlsConfig, Segmenter, VecStore};
use edge_core::media::{Frame, FrameFlags, MediaKind};

fn fixture_frames() -> Vec<Frame> {
    let mut r = FlvReader::new();
    r.handle_input(&std::fs::read(tests::fixture("bframes.flv")).unwrap());
    let mut frames = Vec::new();
    while let Some(tag) = r.poll_tag().unwrap() {
        if let Some(kind @ (MediaKind::Audio | MediaKind::Video)) =
            MediaKind::from_type_id(tag.type_id)
        {
            frames.push(Frame::new(
                kind,
                u64::from(tag.timestamp),
                FrameFlags::default(),
                Bytes::clone(&tag.body),
            ));
        }
    }
    frames
}

fn mux(c: &mut Criterion) {
    let frames = fixture_frames();
    let bytes: usize = frames.iter().map(|f| f.payload.len()).sum();
    let mut g = c.benchmark_group("ts_mux");
    g.throughput(Throughput::Bytes(bytes as u64));
    // TS alone, and TS with the LL-HLS muxer beside it (200 ms parts, the engine's default):
    // what LL-HLS adds to a stream's ingest.
    for (name, part_ms) in [("fixture_4s", 0), ("fixture_4s_with_llhls", 200)] {
        let config = HlsConfig {
            part_ms,
            ..HlsConfig::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = Segmenter::new(config, VecStore, "x");
                for f in &frames {
                    s.handle_frame(f).unwrap();
                }
                s.handle_end()
            });
        });
    }
    g.finish();
}

fn demux(c: &mut Criterion) {
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "x");
    for f in &fixture_frames() {
        s.handle_frame(f).unwrap();
    }
    let segments: Vec<Vec<Bytes>> = s
        .handle_end()
        .segments
        .iter()
        .map(|seg| seg.pieces.to_vec())
        .collect();
    let bytes: usize = segments.iter().flatten().map(Bytes::len).sum();
    let mut g = c.benchmark_group("ts_demux");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("fixture_4s", |b| {
        b.iter(|| {
            let mut d = TsDemuxer::new();
            let mut out = Vec::new();
            for seg in &segments {
                for piece in seg {
                    d.handle_bytes(piece, &mut out).unwrap();
                }
                d.handle_end(&mut out).unwrap();
            }
            out
        });
    });
    g.finish();
}

criterion_group!(benches, mux, demux);
criterion_main!(benches);
