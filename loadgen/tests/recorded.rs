//! The TS and m3u8 parsers on recorded engine output (fixtures/README.md says how it was made).

use edge_core::hls::m3u8::parse_media_playlist;
use edge_core::hls::tsscan::{segment_probe, TsScan};

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

#[test]
fn streamed_scan_agrees_with_a_whole_segment_demuxer() {
    use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
    use mpeg2ts::ts::TsPacketReader;
    let ts = fixture("engine-segment.ts");
    // The reference: mpeg2ts reassembles the first video PES from the whole segment.
    let mut reader = PesPacketReader::new(TsPacketReader::new(&ts[..]));
    let reference = std::iter::from_fn(|| reader.read_pes_packet().ok().flatten())
        .find(|pes| pes.header.stream_id.as_u8() == 0xe0)
        .and_then(|pes| edge_core::sei::find_in_annexb(&pes.data))
        .expect("reference probe");
    // The viewer's scan, fed as reads of many sizes would give it the bytes.
    for piece in [100, 188, 1000, 1448, 65536] {
        let mut scan = TsScan::default();
        for chunk in ts.chunks(piece) {
            scan.feed(chunk).unwrap();
        }
        let (packets, probe) = scan.finish().unwrap();
        assert_eq!(packets as usize, ts.len() / 188, "pieces of {piece}");
        assert_eq!(probe, Some(reference), "pieces of {piece}");
    }
}
