//! Segment cache lookup on a shard: route parse, the stream's HLS snapshot out of a map of
//! 1000 streams, the segment by sequence number, and the reference counts a response takes.
//!
//! Run: `cargo bench -p bench --bench segment_lookup`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 199 ns per lookup.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::hls::HlsSnapshot;
use edge_core::http::Route;
use edge_core::StreamKey;

fn lookup(c: &mut Criterion) {
    let snap = Arc::new(bench::sample_segmenter("s").snapshot());
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
