//! Segmenter scenarios on synthetic streams, checked by parsing the TS back with mpeg2ts.

use bytes::Bytes;
use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};

use super::m3u8::parse_media_playlist;
use super::segmenter::{HlsConfig, Segmenter, VecStore};
use super::ts::{PACKET, PID_AUDIO, PID_PMT, PID_VIDEO, TS_OFFSET_90K};
use crate::ids::SegmentSeq;
use crate::media::{Frame, FrameFlags, MediaKind};

pub(super) fn avc_seq() -> Frame {
    let mut body = vec![0x17, 0, 0, 0, 0];
    body.extend([
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3,
    ]);
    Frame::new(
        MediaKind::Video,
        0,
        FrameFlags {
            sync_point: false,
            header: true,
        },
        Bytes::from(body),
    )
}

pub(super) fn aac_seq() -> Frame {
    Frame::new(
        MediaKind::Audio,
        0,
        FrameFlags {
            sync_point: false,
            header: true,
        },
        Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
    )
}

pub(super) fn video(ts: u64, cts: i32, key: bool, size: usize) -> Frame {
    let c = cts.to_be_bytes();
    let mut body = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
    body.extend((size as u32).to_be_bytes());
    body.push(if key { 0x65 } else { 0x41 });
    body.extend(std::iter::repeat_n(0xab, size - 1));
    Frame::new(
        MediaKind::Video,
        ts,
        FrameFlags {
            sync_point: key,
            header: false,
        },
        Bytes::from(body),
    )
}

pub(super) fn audio(ts: u64) -> Frame {
    Frame::new(
        MediaKind::Audio,
        ts,
        FrameFlags::default(),
        Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x05]),
    )
}

/// A 25 fps stream with B-frames (decode order I P B B, composition offsets 80/120/0/40 ms
/// relative) and 43 audio frames per second, `seconds` long, keyframe every `gop` frames.
pub(super) fn stream(seconds: u64, gop: u64) -> Vec<(Frame, Option<(u64, u64)>)> {
    let mut frames = vec![(avc_seq(), None), (aac_seq(), None)];
    let mut audio_ms = 0;
    for n in 0..seconds * 25 {
        let dts = n * 40;
        let cts: i32 = match n % 4 {
            0 => 80,
            1 => 120,
            2 => 0,
            _ => 40,
        };
        while audio_ms < dts {
            frames.push((audio(audio_ms), None));
            audio_ms += 23;
        }
        let f = video(dts, cts, n % gop == 0, 300 + (n as usize % 7) * 100);
        let expect = (
            dts * 90 + TS_OFFSET_90K,
            (dts as i64 + i64::from(cts)) as u64 * 90 + TS_OFFSET_90K,
        );
        frames.push((f, Some(expect)));
    }
    frames
}

fn run(
    config: HlsConfig,
    frames: &[(Frame, Option<(u64, u64)>)],
) -> (Segmenter<VecStore>, Vec<super::HlsSnapshot>) {
    let mut s = Segmenter::new(config, VecStore, "x");
    let mut snaps = Vec::new();
    for (f, _) in frames {
        if let Some(snap) = s.handle_frame(f).unwrap() {
            snaps.push(snap);
        }
    }
    (s, snaps)
}

fn segment_bytes(seg: &super::Segment) -> Vec<u8> {
    seg.pieces.iter().flat_map(|p| p.iter().copied()).collect()
}

#[test]
fn packets_are_188_bytes_tables_first_and_cc_continuous() {
    let frames = stream(7, 25);
    let (mut s, _) = run(HlsConfig::default(), &frames);
    let end = s.handle_end();
    assert!(end.segments.len() >= 3, "{} segments", end.segments.len());
    let mut last_cc: std::collections::HashMap<u16, u8> = Default::default();
    for seg in &end.segments {
        let bytes = segment_bytes(seg);
        assert_eq!(bytes.len() % PACKET, 0);
        assert!(bytes.chunks(PACKET).all(|p| p[0] == 0x47), "sync bytes");
        let pid_of = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        assert_eq!(pid_of(&bytes[..PACKET]), 0, "PAT first");
        assert_eq!(pid_of(&bytes[PACKET..2 * PACKET]), PID_PMT, "PMT second");
        for p in bytes.chunks(PACKET) {
            let pid = pid_of(p);
            let cc = p[3] & 0x0f;
            if let Some(prev) = last_cc.insert(pid, cc) {
                assert_eq!(
                    cc,
                    (prev + 1) & 0x0f,
                    "pid {pid:#x} continuity across the whole stream"
                );
            }
        }
        // Every segment starts (after the tables) with a keyframe: random access set.
        let first_media = &bytes[2 * PACKET..3 * PACKET];
        assert_eq!(pid_of(first_media), PID_VIDEO);
        assert_eq!(first_media[5] & 0x40, 0x40, "random_access_indicator");
    }
}

#[test]
fn pcr_spacing_is_at_most_100ms() {
    let frames = stream(5, 50);
    let (mut s, _) = run(HlsConfig::default(), &frames);
    let end = s.handle_end();
    let mut last: Option<u64> = None;
    for seg in &end.segments {
        let bytes = segment_bytes(seg);
        let mut reader = TsPacketReader::new(&bytes[..]);
        while let Some(p) = reader.read_ts_packet().unwrap() {
            if let Some(pcr) = p.adaptation_field.as_ref().and_then(|a| a.pcr) {
                assert_eq!(p.header.pid.as_u16(), PID_VIDEO);
                let v = pcr.as_u64() / 300;
                if let Some(l) = last {
                    assert!(v > l && v - l <= 9000, "PCR step {} ticks", v - l);
                }
                last = Some(v);
            }
        }
    }
    assert!(last.is_some());
}

#[test]
fn pts_and_dts_of_b_frames_match_the_input_exactly() {
    let frames = stream(5, 25);
    let (mut s, _) = run(HlsConfig::default(), &frames);
    let end = s.handle_end();
    let all: Vec<u8> = end.segments.iter().flat_map(segment_bytes).collect();
    let mut reader = PesPacketReader::new(TsPacketReader::new(&all[..]));
    let mut got = Vec::new();
    let mut audio_frames = 0;
    while let Some(pes) = reader.read_pes_packet().unwrap() {
        if pes.header.stream_id.as_u8() == 0xe0 {
            let pts = pes.header.pts.unwrap().as_u64();
            let dts = pes.header.dts.map_or(pts, |d| d.as_u64());
            got.push((dts, pts));
        } else {
            // One ADTS header per raw frame.
            audio_frames += pes.data.windows(2).filter(|w| w == &[0xff, 0xf1]).count();
        }
    }
    let want: Vec<(u64, u64)> = frames.iter().filter_map(|(_, e)| *e).collect();
    assert_eq!(got, want);
    let want_audio = frames
        .iter()
        .filter(|(f, _)| f.kind == MediaKind::Audio && !f.flags.header)
        .count();
    assert_eq!(audio_frames, want_audio);
}

#[test]
fn segments_cut_at_the_first_keyframe_of_each_new_cell() {
    // 1.4 s GOPs against 2 s cells (boundaries at 1, 3, 5, 7 s): keyframes at 0, 1.4, 2.8,
    // 4.2, 5.6, 7.0 and 8.4 s fall in cells 0, 1, 1, 2, 3, 4, 4.
    let frames = stream(9, 35);
    let (mut s, _) = run(
        HlsConfig {
            segment_ms: 2000,
            window: 6,
            keep_extra: 2,
            part_ms: 0,
        },
        &frames,
    );
    let end = s.handle_end();
    let durations: Vec<u64> = end.segments.iter().map(|s| s.duration_ms).collect();
    assert_eq!(&durations[..4], &[1400, 2800, 1400, 1400]);
    let seqs: Vec<u64> = end.segments.iter().map(|s| s.seq.0).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    assert_eq!(end.target_duration_s, 3, "rounded-up maximum");
    assert_eq!(s.unaligned_cuts, 0);
}

#[test]
fn playlist_window_discontinuity_and_endlist() {
    let config = HlsConfig {
        segment_ms: 1000,
        window: 3,
        keep_extra: 1,
        part_ms: 0,
    };
    let frames = stream(6, 25);
    let mut s = Segmenter::new(config, VecStore, "cam");
    for (f, _) in &frames {
        s.handle_frame(f).unwrap();
    }
    // Republish: new timeline continues after a gap, new sequence headers.
    s.handle_republish();
    s.handle_frame(&avc_seq()).unwrap();
    s.handle_frame(&aac_seq()).unwrap();
    for n in 0..150u64 {
        s.handle_frame(&video(6500 + n * 40, 0, n % 25 == 0, 200))
            .unwrap();
    }
    let snap = s.handle_end();
    let text = String::from_utf8(snap.playlist.to_vec()).unwrap();
    // Segments 0-5 before the republish, 6-11 after; 6 carried the discontinuity and has
    // left the window, so the discontinuity sequence counts it.
    let expected = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:9\n\
#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXTINF:1.000,\ncam-9.ts\n#EXTINF:1.000,\ncam-10.ts\n\
#EXTINF:0.960,\ncam-11.ts\n#EXT-X-ENDLIST\n";
    assert_eq!(text, expected);
    assert_eq!(snap.segments.len(), 4, "window plus one kept extra");
    assert!(snap.segment(SegmentSeq(8)).is_some() && snap.segment(SegmentSeq(7)).is_none());

    // The same, looked at while the discontinuity is still in the window.
    let mut s = Segmenter::new(config, VecStore, "cam");
    for (f, _) in &frames {
        s.handle_frame(f).unwrap();
    }
    s.handle_republish();
    s.handle_frame(&avc_seq()).unwrap();
    let mut last = None;
    for n in 0..30u64 {
        if let Some(snap) = s
            .handle_frame(&video(6500 + n * 40, 0, n % 25 == 0, 200))
            .unwrap()
        {
            last = Some(snap);
        }
    }
    let text = String::from_utf8(last.unwrap().playlist.to_vec()).unwrap();
    assert!(
        text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\ncam-6.ts\n"),
        "{text}"
    );
    assert!(!text.contains("#EXT-X-ENDLIST"));
}

#[test]
fn audio_only_and_video_only_streams() {
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "a");
    s.handle_frame(&aac_seq()).unwrap();
    for n in 0..400u64 {
        s.handle_frame(&audio(n * 23)).unwrap();
    }
    let snap = s.handle_end();
    assert!(snap.segments.len() >= 4);
    let first = segment_bytes(&snap.segments[0]);
    let pid = (u16::from(first[2 * PACKET + 1] & 0x1f) << 8) | u16::from(first[2 * PACKET + 2]);
    assert_eq!(pid, PID_AUDIO);

    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "v");
    s.handle_frame(&avc_seq()).unwrap();
    for n in 0..150u64 {
        s.handle_frame(&video(n * 40, 0, n % 25 == 0, 100)).unwrap();
    }
    let snap = s.handle_end();
    // 1 s GOPs, 2 s cells with boundaries at 1, 3 and 5 s: 0-1, 1-3, 3-5, 5-6 s.
    assert_eq!(snap.segments.len(), 4);
    let bytes = segment_bytes(&snap.segments[0]);
    let mut reader = TsPacketReader::new(&bytes[..]);
    let mut pids = std::collections::HashSet::new();
    while let Some(p) = reader.read_ts_packet().unwrap() {
        if let Some(TsPayload::Pmt(pmt)) = &p.payload {
            assert_eq!(pmt.es_info.len(), 1, "only video in the PMT");
        }
        pids.insert(p.header.pid.as_u16());
    }
    assert!(!pids.contains(&PID_AUDIO));
}

#[test]
fn shedding_drops_extras_then_the_oldest_listed_segment() {
    let config = HlsConfig {
        segment_ms: 1000,
        window: 3,
        keep_extra: 2,
        part_ms: 0,
    };
    let frames = stream(7, 25);
    let (mut s, _) = run(config, &frames);
    assert_eq!(s.snapshot().segments.len(), 5);
    let snap = s.shed().unwrap();
    assert_eq!(
        snap.segments.iter().map(|s| s.seq.0).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let snap = s.shed().unwrap();
    assert_eq!(
        snap.segments.iter().map(|s| s.seq.0).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let text = String::from_utf8(snap.playlist.to_vec()).unwrap();
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{text}");
}

#[test]
fn rendered_playlists_parse_back() {
    let frames = stream(9, 25);
    let (mut s, _) = run(HlsConfig::default(), &frames);
    s.handle_republish();
    let snap = s.handle_end();
    let p =
        super::m3u8::parse_media_playlist(std::str::from_utf8(&snap.playlist).unwrap()).unwrap();
    let listed: Vec<u64> = snap
        .segments
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(|s| s.seq.0)
        .collect();
    assert_eq!(p.segments.iter().map(|s| s.seq).collect::<Vec<_>>(), listed);
    assert_eq!(p.target_duration_s, snap.target_duration_s);
    assert!(p.ended);
    for (parsed, seg) in p
        .segments
        .iter()
        .zip(snap.segments.iter().rev().take(6).rev())
    {
        assert_eq!(parsed.duration_ms, seg.duration_ms);
        assert_eq!(parsed.uri, format!("x-{}.ts", seg.seq));
    }
}

/// A viewer's query goes after every segment URI and nowhere else; the pieces are slices of
/// the one shared playlist.
#[test]
fn playlists_carry_a_viewers_query_between_shared_pieces() {
    let frames = stream(9, 25);
    let (s, _) = run(HlsConfig::default(), &frames);
    let snap = s.snapshot();
    let suffix = bytes::Bytes::from_static(b"?token=exp=9~hmac=ab");
    let pieces = snap.playlist_with(&suffix);
    let joined: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(joined.len(), snap.playlist_len_with(suffix.len()));
    let text = String::from_utf8(joined).unwrap();
    let p = super::m3u8::parse_media_playlist(&text).unwrap();
    assert!(!p.segments.is_empty());
    for seg in &p.segments {
        assert_eq!(seg.uri, format!("x-{}.ts?token=exp=9~hmac=ab", seg.seq));
    }
    assert_eq!(text.matches("?token=").count(), p.segments.len());
    let base =
        snap.playlist.as_ptr() as usize..snap.playlist.as_ptr() as usize + snap.playlist.len();
    for piece in pieces.iter().filter(|b| b.as_ptr() != suffix.as_ptr()) {
        assert!(base.contains(&(piece.as_ptr() as usize)) || piece.is_empty());
    }
    // Without a query, the playlist is the shared one.
    let plain = snap.playlist_with(&bytes::Bytes::new());
    assert_eq!(plain.concat(), snap.playlist.to_vec());
}

/// Regression (issue 11): a publisher timestamp jump of 100 000 s closed the open segment at
/// the new frame's time, so its EXTINF and TARGETDURATION covered the whole gap, and our own
/// parser then refused the playlist.
#[test]
fn regression_timestamp_jump_does_not_stretch_a_segment() {
    let mut frames = vec![(avc_seq(), None)];
    for n in 0..10u64 {
        frames.push((video(n * 40, 0, n == 0, 200), None));
    }
    for n in 0..60u64 {
        frames.push((video(100_000_000 + n * 40, 0, n % 25 == 0, 200), None));
    }
    let (mut s, snaps) = run(HlsConfig::default(), &frames);
    let end = s.handle_end();
    let first = &snaps[0].segments[0];
    assert_eq!(first.duration_ms, 400, "ten 40 ms frames");
    let text = std::str::from_utf8(&end.playlist).unwrap();
    let p = super::m3u8::parse_media_playlist(text).expect("the playlist parses back");
    assert!(p.target_duration_s <= 2, "{text}");
    assert!(p.segments.iter().all(|s| s.duration_ms <= 2000), "{text}");
    assert!(p.segments[1].discontinuity, "{text}");
    // A backwards jump is cut the same way.
    let mut back = vec![(avc_seq(), None)];
    for n in 0..5u64 {
        back.push((video(50_000 + n * 40, 0, n == 0, 200), None));
    }
    back.push((video(0, 0, true, 200), None));
    let (_, snaps) = run(HlsConfig::default(), &back);
    assert_eq!(snaps[0].segments[0].duration_ms, 200);
}

/// What a node's playlist promises for each segment number: its duration and length.
fn numbered(snap: &super::HlsSnapshot) -> Vec<(u64, u64, usize)> {
    snap.segments
        .iter()
        .map(|s| (s.seq.0, s.duration_ms, s.len))
        .collect()
}

/// Feeds `frames` from the first keyframe at or after `from_ms`, after the sequence headers:
/// a node that started segmenting the stream then (an edge whose pull began there).
fn joined_at(
    config: HlsConfig,
    frames: &[(Frame, Option<(u64, u64)>)],
    from_ms: u64,
) -> super::HlsSnapshot {
    let mut s = Segmenter::new(config, VecStore, "x");
    s.handle_frame(&avc_seq()).unwrap();
    s.handle_frame(&aac_seq()).unwrap();
    let start = frames
        .iter()
        .position(|(f, _)| f.flags.sync_point && f.timestamp_ms >= from_ms)
        .expect("a keyframe");
    for (f, _) in &frames[start..] {
        s.handle_frame(f).unwrap();
    }
    s.handle_end()
}

#[test]
fn nodes_that_start_at_different_keyframes_number_the_same_segments_alike() {
    let config = HlsConfig {
        segment_ms: 2000,
        window: 30,
        keep_extra: 0,
        part_ms: 0,
    };
    for gop in [25u64, 50, 35, 10] {
        let frames = stream(40, gop);
        let whole = joined_at(config, &frames, 0);
        for from in [1_000u64, 7_400, 12_000, 23_000] {
            let late = joined_at(config, &frames, from);
            // The late node's first segment may start mid-cell (shorter); every later one is
            // the same segment, by number, duration and length, as on the node that saw it all.
            let late_n = numbered(&late);
            let whole_n = numbered(&whole);
            assert!(late_n.len() > 4, "gop {gop} from {from}: {late_n:?}");
            for seg in &late_n[1..late_n.len() - 1] {
                assert!(
                    whole_n.contains(seg),
                    "gop {gop} from {from}: {seg:?} not in {whole_n:?}"
                );
            }
            assert_eq!(late_n[1].0, late_n[0].0 + 1);
        }
    }
}

#[test]
fn keyframes_near_a_cell_boundary_or_jittered_stay_aligned() {
    // A 2 s GOP whose keyframes arrive a few ms early or late: each stays in its own cell.
    let config = HlsConfig::default();
    let mut s = Segmenter::new(config, VecStore, "x");
    s.handle_frame(&avc_seq()).unwrap();
    for n in 0..300u64 {
        let jitter: i64 = [0, -3, 4, -1, 2][(n / 50 % 5) as usize];
        let dts = (n as i64 * 40 + if n % 50 == 0 { jitter } else { 0 }).max(0) as u64;
        s.handle_frame(&video(dts, 0, n % 50 == 0, 100)).unwrap();
    }
    let snap = s.handle_end();
    let seqs: Vec<u64> = snap.segments.iter().map(|s| s.seq.0).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    assert_eq!(s.unaligned_cuts, 0);
}

#[test]
fn a_gop_longer_than_the_cell_keeps_numbers_contiguous_and_is_counted() {
    // 3 s GOPs against 2 s cells: keyframes in cells 0, 2, 3, 5, 6, 8 -- 1, 4, 7 are empty.
    let frames = stream(16, 75);
    let (mut s, _) = run(HlsConfig::default(), &frames);
    let snap = s.handle_end();
    let seqs: Vec<u64> = snap.segments.iter().map(|s| s.seq.0).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    assert_eq!(s.unaligned_cuts, 3, "the cuts into cells 2, 5 and 8");
    assert_eq!(s.last_unaligned_gap_ms, 3000);
    let p = parse_media_playlist(std::str::from_utf8(&snap.playlist).unwrap()).unwrap();
    assert_eq!(p.segments.first().map(|s| s.seq), Some(0));
}

#[test]
fn a_stream_whose_timestamps_start_late_numbers_from_its_cell() {
    // An encoder whose clock starts at 1,000,000 ms: the first segment is number 500.
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "x");
    s.handle_frame(&avc_seq()).unwrap();
    for n in 0..150u64 {
        s.handle_frame(&video(1_000_000 + n * 40, 0, n % 50 == 0, 100))
            .unwrap();
    }
    let snap = s.handle_end();
    assert_eq!(snap.segments[0].seq.0, 500);
    assert!(std::str::from_utf8(&snap.playlist)
        .unwrap()
        .contains("#EXT-X-MEDIA-SEQUENCE:500\n"));
}

/// An FLV MP3 tag: the sound-format byte, then one MPEG-1 Layer III frame (44.1 kHz) whose
/// bytes say which frame it is.
fn mp3(ts: u64, n: u8) -> Frame {
    let mut body = vec![0x2f, 0xff, 0xfb, 0x90, 0x64];
    body.extend(std::iter::repeat_n(n, 40));
    Frame::new(
        MediaKind::Audio,
        ts,
        FrameFlags::default(),
        Bytes::from(body),
    )
}

/// `onMetaData` announcing H.264 and MP3 at `rate` Hz, as ffmpeg and OBS send it first.
fn mp3_metadata(rate: f64) -> Frame {
    let mut w = crate::rtmp::amf::Writer::new();
    w.string("onMetaData").begin_object();
    w.key("videocodecid").number(7.0);
    w.key("audiocodecid").number(2.0);
    w.key("audiosamplerate").number(rate);
    w.end_object();
    Frame::new(
        MediaKind::Data,
        0,
        FrameFlags {
            sync_point: false,
            header: true,
        },
        w.finish(),
    )
}

/// Six seconds of H.264 (1 s GOPs) with an MP3 frame beside every picture, after
/// `metadata` if any: the segments, and the MP3 bytes sent (what the FLV tags carried after
/// their sound-format byte).
fn h264_with_mp3(metadata: Option<Frame>) -> (super::HlsSnapshot, Vec<u8>) {
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "m");
    if let Some(m) = metadata {
        s.handle_frame(&m).unwrap();
    }
    s.handle_frame(&avc_seq()).unwrap();
    let mut sent = Vec::new();
    for n in 0..150u64 {
        s.handle_frame(&video(n * 40, 0, n % 25 == 0, 100)).unwrap();
        let a = mp3(n * 40, n as u8);
        sent.extend_from_slice(&a.payload[1..]);
        s.handle_frame(&a).unwrap();
    }
    assert_eq!(s.take_dropped(), None, "no track left out");
    (s.handle_end(), sent)
}

/// The stream types a segment's PMT lists, in order.
fn pmt_stream_types(seg: &super::Segment) -> Vec<u8> {
    let bytes = segment_bytes(seg);
    let mut reader = TsPacketReader::new(&bytes[..]);
    let mut types = Vec::new();
    while let Some(p) = reader.read_ts_packet().unwrap() {
        if let Some(TsPayload::Pmt(pmt)) = &p.payload {
            types = pmt.es_info.iter().map(|e| e.stream_type as u8).collect();
        }
    }
    types
}

/// The payload of every audio PES (stream id 0xc0) in `segments`, in order.
fn audio_pes_bytes(segments: &[super::Segment]) -> Vec<u8> {
    let mut audio = Vec::new();
    for seg in segments {
        let bytes = segment_bytes(seg);
        let mut pes = PesPacketReader::new(TsPacketReader::new(&bytes[..]));
        while let Some(p) = pes.read_pes_packet().unwrap() {
            if p.header.stream_id.as_u8() == 0xc0 {
                audio.extend_from_slice(&p.data);
            }
        }
    }
    audio
}

/// Regression: MP3 audio (FLV sound format 2) stopped HLS for the whole stream ("unsupported
/// codec for HLS: audio format 2"). It is carried as MPEG audio, stream type 0x03, every
/// frame's bytes as they came, in order, from the first segment: the metadata announced it
/// before the first keyframe (MP3 has no sequence header).
#[test]
fn mp3_audio_is_carried_beside_the_video_from_the_first_segment() {
    let (snap, sent) = h264_with_mp3(Some(mp3_metadata(44_100.0)));
    assert_eq!(
        pmt_stream_types(&snap.segments[0]),
        vec![0x1b, 0x03],
        "H.264 and MPEG-1 audio listed from the start"
    );
    assert_eq!(
        audio_pes_bytes(&snap.segments),
        sent,
        "every MP3 frame, byte for byte, in order"
    );
}

/// Without metadata, the first MP3 frame configures the audio, from the next segment on.
#[test]
fn mp3_audio_without_metadata_starts_with_the_next_segment() {
    let (snap, sent) = h264_with_mp3(None);
    assert!(snap.segments.len() >= 3);
    assert_eq!(pmt_stream_types(&snap.segments[0]), vec![0x1b]);
    assert_eq!(
        pmt_stream_types(&snap.segments[1]),
        vec![0x1b, 0x03],
        "H.264 and MPEG-1 audio"
    );
    // MP3 configures itself with its first frame, after the first segment's PMT was
    // written: its audio starts in the second segment (a PID the PMT does not list would be
    // dropped by every demuxer), and from there every frame is kept.
    let audio = audio_pes_bytes(&snap.segments);
    assert!(sent.ends_with(&audio), "MP3 frames byte for byte, in order");
    assert!(audio_pes_bytes(&snap.segments[..1]).is_empty());
    assert!(
        !audio_pes_bytes(&snap.segments[1..2]).is_empty(),
        "audio in the second segment"
    );
    assert!(
        audio.len() >= sent.len() * 2 / 3,
        "{} of {}",
        audio.len(),
        sent.len()
    );
}

/// A codec TS cannot carry leaves that track out (said once) and keeps the others: Speex
/// audio beside H.264 gives video-only HLS; an enhanced-RTMP AV1 video beside AAC gives
/// audio-only HLS. Before, either one stopped the stream's HLS.
#[test]
fn a_track_ts_cannot_carry_is_left_out_and_the_other_goes_on() {
    let speex = |ts| {
        Frame::new(
            MediaKind::Audio,
            ts,
            FrameFlags::default(),
            Bytes::from_static(&[0xb6, 1, 2, 3]),
        )
    };
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "v");
    s.handle_frame(&avc_seq()).unwrap();
    for n in 0..100u64 {
        s.handle_frame(&video(n * 40, 0, n % 25 == 0, 100)).unwrap();
        s.handle_frame(&speex(n * 40)).unwrap();
    }
    let why = s.take_dropped().expect("the audio track is left out");
    assert!(why.contains("audio format 11 (Speex)"), "{why}");
    assert_eq!(s.take_dropped(), None, "said once");
    assert!(s.handle_end().segments.len() >= 2);

    let av1 = |ts, header: bool| {
        let b0 = if header { 0x90 } else { 0x91 };
        Frame::new(
            MediaKind::Video,
            ts,
            FrameFlags {
                sync_point: !header,
                header,
            },
            Bytes::from([&[b0][..], b"av01", &[0x81, 0, 0x0c, 0]].concat()),
        )
    };
    let mut s = Segmenter::new(HlsConfig::default(), VecStore, "a");
    s.handle_frame(&av1(0, true)).unwrap();
    s.handle_frame(&aac_seq()).unwrap();
    for n in 0..300u64 {
        s.handle_frame(&av1(n * 23, false)).unwrap();
        s.handle_frame(&audio(n * 23)).unwrap();
    }
    let why = s.take_dropped().expect("the video track is left out");
    assert!(why.contains("video codec 'av01'"), "{why}");
    let snap = s.handle_end();
    assert!(snap.segments.len() >= 2, "audio-only HLS");
}
