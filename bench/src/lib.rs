//! Benchmarks and measurement tools for edge-engine. `cargo bench` runs the criterion
//! benches in `benches/`; `cargo run --release -p bench --bin idle-rss` measures memory per
//! idle RTMP player against a running engine. Results live in `docs/BENCHMARKS.md`.

use bytes::Bytes;
use edge_core::hls::{HlsConfig, Segmenter, VecStore};
use edge_core::media::{Frame, FrameFlags, MediaKind};

/// A segmenter that has taken 20 s of a synthetic 25 fps H.264 stream with 2 s GOPs (a full
/// window of segments), for benches of what is done per segment or per request.
pub fn sample_segmenter(name: &str) -> Segmenter<VecStore> {
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, name);
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
    .expect("valid avcC");
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
        .expect("valid frame");
    }
    s
}
