//! RTMP chunk serialisation of one 10 KB video message for N players: once, shared (edge-core's
//! type-0 serialiser, then a reference count per player) against once per session (rml_rtmp's
//! `ChunkSerializer`, one per player).
//!
//! Run: `cargo bench -p bench --bench rtmp_chunks`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 1 player: once_shared
//! 196 ns, per_session 362 ns; 100 players: once_shared 2.36 µs (24 ns/player), per_session
//! 28.9 µs (289 ns/player).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edge_core::rtmp::chunk;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::time::RtmpTimestamp;

fn serialise(c: &mut Criterion) {
    let body = Bytes::from(vec![0x27u8; 10 * 1024]);
    let mut g = c.benchmark_group("rtmp_chunks_10KB");
    for players in [1usize, 100] {
        g.throughput(Throughput::Elements(players as u64));
        g.bench_with_input(
            BenchmarkId::new("once_shared", players),
            &players,
            |b, &n| {
                let mut handles = Vec::with_capacity(n);
                b.iter(|| {
                    let wire = chunk::serialize_message(
                        chunk::CSID_VIDEO,
                        40,
                        9,
                        1,
                        &body,
                        chunk::OUT_CHUNK_SIZE,
                    );
                    handles.extend((0..n).map(|_| wire.clone()));
                    black_box(&handles);
                    handles.clear();
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("per_session", players),
            &players,
            |b, &n| {
                let mut sessions: Vec<ChunkSerializer> = (0..n)
                    .map(|_| {
                        let mut s = ChunkSerializer::new();
                        s.set_max_chunk_size(4096, RtmpTimestamp::new(0)).unwrap();
                        s
                    })
                    .collect();
                let mut ts = 0;
                b.iter(|| {
                    ts += 40;
                    for s in sessions.iter_mut() {
                        let payload = RtmpMessage::VideoData { data: body.clone() }
                            .into_message_payload(RtmpTimestamp::new(ts), 1)
                            .unwrap();
                        black_box(s.serialize(&payload, false, false).unwrap());
                    }
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, serialise);
criterion_main!(benches);
