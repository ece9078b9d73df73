//! Playlist render: the owner renders a stream's m3u8 once per new segment (window of 6).
//!
//! Run: `cargo bench -p bench --bench playlist`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 719 ns per render
//! (snapshot: playlist text plus the segment handles).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::hls::{HlsConfig, Segmenter, VecStore};
use edge_core::media::{Frame, FrameFlags, MediaKind};

fn render(c: &mut Criterion) {
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "camera");
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
        let key = n % 50 == 0;
        let body = Bytes::from(vec![
            if key { 0x17 } else { 0x27 },
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
    c.bench_function("playlist_render_window_6", |b| b.iter(|| s.snapshot()));
}

criterion_group!(benches, render);
criterion_main!(benches);
