//! Segment cache lookup on a shard: route parse, the stream's HLS snapshot out of a map of
//! 1000 streams, the segment by sequence number, and the reference counts a response takes.
//!
//! Run: `cargo bench -p bench --bench segment_lookup`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 199 ns per lookup.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::hls::{HlsConfig, HlsSnapshot, Segmenter, VecStore};
use edge_core::http::Route;
use edge_core::media::{Frame, FrameFlags, MediaKind};
use edge_core::StreamKey;

fn snapshot() -> HlsSnapshot {
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "s");
    let mut seq = vec![0x17, 0, 0, 0, 0];
    seq.extend([
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3,
    ]);
    s.handle_frame(&Frame::new(
        MediaKind::Video,
        0,
        FrameFlags::default(),
        Bytes::from(seq),
    ))
    .unwrap();
    for n in 0..500u64 {
        let body = Bytes::from(vec![
            if n % 50 == 0 { 0x17 } else { 0x27 },
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
            0x65,
        ]);
        s.handle_frame(&Frame::new(
            MediaKind::Video,
            n * 40,
            FrameFlags::default(),
            body,
        ))
        .unwrap();
    }
    s.snapshot()
}

fn lookup(c: &mut Criterion) {
    let snap = Arc::new(snapshot());
    let map: HashMap<StreamKey, Arc<HlsSnapshot>> = (0..1000)
        .map(|i| {
            (
                StreamKey::new("live", &format!("s{i}")).unwrap(),
                Arc::clone(&snap),
            )
        })
        .collect();
    let last = snap.segments.last().unwrap().seq;
    let path = format!("/live/s777-{last}.ts");
    c.bench_function("segment_lookup_1000_streams", |b| {
        b.iter(|| {
            let Route::Segment(key, seq) = Route::parse(black_box(&path)) else {
                panic!()
            };
            let hls = map.get(&key).cloned().unwrap();
            let seg = hls.segment(seq).cloned().unwrap();
            black_box(seg.pieces.to_vec())
        });
    });
}

criterion_group!(benches, lookup);
criterion_main!(benches);
