//! The TS and m3u8 parsers on recorded engine output (fixtures/README.md says how it was made).

use edge_core::hls::m3u8::parse_media_playlist;
use loadgen::viewers::segment_probe;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[test]
fn playlist_parses() {
    let text = String::from_utf8(fixture("engine-playlist.m3u8")).unwrap();
    let p = parse_media_playlist(&text).unwrap();
    assert_eq!(p.target_duration_s, 2);
    assert_eq!(p.media_sequence, 0);
    assert!(!p.ended);
    let uris: Vec<&str> = p.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["load0-0.ts", "load0-1.ts", "load0-2.ts"]);
    assert!(p
        .segments
        .iter()
        .all(|s| s.duration_ms == 2000 && !s.discontinuity));
}

#[test]
fn segment_carries_the_probe_of_its_first_frame() {
    let ts = fixture("engine-segment.ts");
    assert_eq!(ts.len() % 188, 0);
    assert!(ts.chunks(188).all(|p| p[0] == 0x47));
    let probe = segment_probe(&ts).expect("the first video frame carries an SEI probe");
    // Segment 1 starts at the second keyframe: 2 s of 25 fps video after frame 0.
    assert_eq!(probe.seq, 50);
    // Published on 2026-11-21 (microseconds since the epoch).
    assert!(
        (1_795_219_200_000_000..1_795_305_600_000_000).contains(&probe.send_time_us),
        "{probe:?}"
    );
}
