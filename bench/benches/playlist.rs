//! Playlist render: the owner renders a stream's m3u8 once per new segment (window of 6).
//!
//! Run: `cargo bench -p bench --bench playlist`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 719 ns per render
//! (snapshot: playlist text plus the segment handles).

use criterion::{criterion_group, criterion_main, Criterion};

fn render(c: &mut Criterion) {
    let s = bench::sample_segmenter("camera");
    c.bench_function("playlist_render_window_6", |b| b.iter(|| s.snapshot()));
}

criterion_group!(benches, render);
criterion_main!(benches);
