//! LL-HLS scenarios on the synthetic streams of the TS tests: fragments parsed back and
//! compared with the frames, playlists read line by line, and blocking requests on a
//! simulated clock.

use std::sync::Arc;

use super::blocking::{self, Decision, DirectiveError, Directives, Parked, Skip};
use super::fmp4::{find_box, read_boxes, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use super::llhls::{LlFile, LlSnapshot, Rfc3339};
use super::segmenter::{HlsConfig, Segmenter, VecStore};
use super::tests::stream;
use crate::media::{Frame, TagInfo};

fn config(segment_ms: u64, window: usize) -> HlsConfig {
    HlsConfig {
        segment_ms,
        window,
        keep_extra: 2,
        part_ms: 200,
    }
}

/// Feeds `frames` and returns every LL-HLS snapshot, and the last TS snapshot.
fn run(config: HlsConfig, frames: &[Frame]) -> (Vec<Arc<LlSnapshot>>, super::HlsSnapshot) {
    let mut s = Segmenter::new(config, VecStore, "x");
    s.set_wall_clock(1_765_000_000_000);
    let mut ll = Vec::new();
    let mut last = None;
    for f in frames {
        if let Some(snap) = s.handle_frame(f).unwrap() {
            let l = snap.ll.clone().expect("LL-HLS is on");
            if ll.last().is_none_or(|p| !Arc::ptr_eq(p, &l)) {
                ll.push(l);
            }
            last = Some(snap);
        }
    }
    (ll, last.expect("segments"))
}

fn frames(seconds: u64, gop: u64) -> Vec<Frame> {
    stream(seconds, gop).into_iter().map(|(f, _)| f).collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// One track's samples of a part (its CMAF chunks, each a `moof` and its `mdat`): (DTS in the
/// timescale, composition offset, bytes).
fn samples_of(part: &[u8], track: u32) -> Vec<(u64, i32, Vec<u8>)> {
    let mut out = Vec::new();
    for moof in read_boxes(part)
        .unwrap()
        .into_iter()
        .filter(|b| &b.kind == b"moof")
    {
        // Data offsets count from the start of their moof.
        let start = moof.body.as_ptr() as usize - part.as_ptr() as usize - 8;
        for traf in read_boxes(moof.body)
            .unwrap()
            .into_iter()
            .filter(|b| &b.kind == b"traf")
        {
            let tfhd = find_box(traf.body, &[b"tfhd"]).unwrap();
            if u32_at(tfhd, 4) != track {
                continue;
            }
            let tfdt = find_box(traf.body, &[b"tfdt"]).unwrap();
            let mut dts = u64::from_be_bytes(tfdt[4..12].try_into().unwrap());
            let trun = find_box(traf.body, &[b"trun"]).unwrap();
            let count = u32_at(trun, 4) as usize;
            let mut at = start + u32_at(trun, 8) as usize;
            for i in 0..count {
                let e = 12 + 16 * i;
                let (duration, size) = (u32_at(trun, e), u32_at(trun, e + 4) as usize);
                let cto = u32_at(trun, e + 12) as i32;
                out.push((dts, cto, part[at..at + size].to_vec()));
                dts += u64::from(duration);
                at += size;
            }
        }
    }
    out
}

#[test]
fn segments_have_the_ts_numbers_and_durations_and_are_their_parts() {
    let (ll, ts) = run(config(1000, 6), &frames(12, 25));
    let last = ll.last().unwrap();
    let ts_segments: Vec<_> = ts
        .segments
        .iter()
        .map(|s| (s.seq.0, s.duration_ms))
        .collect();
    let ll_segments: Vec<_> = last
        .segments
        .iter()
        .map(|s| (s.seq, s.duration_ms))
        .collect();
    assert_eq!(ll_segments, ts_segments);
    for seg in &last.segments {
        let mut joined = Vec::new();
        for (i, part) in seg.parts.iter().enumerate() {
            assert!(
                part.duration_ms <= 200,
                "part {i} of {}: {}",
                seg.seq,
                part.duration_ms
            );
            if i + 1 < seg.parts.len() {
                assert!(
                    part.duration_ms >= 170,
                    "only a segment's last part may be short"
                );
            }
            // A keyframe opens the segment, and only the first part here (GOP = 1 s).
            assert_eq!(part.independent, i == 0);
            // A chunk per picture (40 ms apart) with the audio before it, and one for audio
            // after the last picture: moof, mdat, moof, ...
            let bytes = part.joined();
            let boxes = read_boxes(&bytes).unwrap();
            let kinds: Vec<_> = boxes.iter().map(|b| b.kind).collect();
            assert!(kinds.chunks(2).all(|c| c == [*b"moof", *b"mdat"]), "{i}");
            let pictures = samples_of(&bytes, VIDEO_TRACK_ID).len();
            let chunks = kinds.len() / 2;
            assert!(
                chunks == pictures || chunks == pictures + 1,
                "part {i} of {}: {chunks} chunks, {pictures} pictures",
                seg.seq
            );
            joined.extend_from_slice(&bytes);
        }
        let whole: Vec<u8> = seg.pieces().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(whole, joined);
        assert_eq!(
            seg.parts.iter().map(|p| p.duration_ms).sum::<u64>(),
            seg.duration_ms
        );
    }
}

#[test]
fn fragments_carry_every_frame_with_exact_dts_and_composition_offsets() {
    let input = frames(6, 25);
    let (ll, _) = run(config(1000, 20), &input);
    // Every part ever made, in order: the last snapshot lists every segment (window 20).
    let last = ll.last().unwrap();
    let parts: Vec<_> = last
        .segments
        .iter()
        .flat_map(|s| s.parts.iter())
        .chain(last.open_parts.iter())
        .collect();
    let video: Vec<_> = parts
        .iter()
        .flat_map(|p| samples_of(&p.joined(), VIDEO_TRACK_ID))
        .collect();
    let audio: Vec<_> = parts
        .iter()
        .flat_map(|p| samples_of(&p.joined(), AUDIO_TRACK_ID))
        .collect();
    let mut want_video = Vec::new();
    let mut want_audio = Vec::new();
    for f in &input {
        match f.tag {
            Some(TagInfo::Video(t)) if !t.sequence_header => want_video.push((
                f.timestamp_ms * 90,
                t.composition_ms * 90,
                f.payload[5..].to_vec(),
            )),
            Some(TagInfo::Audio(a)) if !a.sequence_header => {
                want_audio.push((f.timestamp_ms * 44_100 / 1000, 0, f.payload[2..].to_vec()))
            }
            _ => {}
        }
    }
    // The frames still in the open part are not in any fragment yet.
    assert!(video.len() + 10 > want_video.len() && video.len() <= want_video.len());
    assert_eq!(
        video,
        want_video[..video.len()],
        "video samples, DTS and offsets"
    );
    // Audio timestamps are placed by tfdt per part; within a part AAC frames are 1024 long.
    assert_eq!(
        audio.iter().map(|a| &a.2).collect::<Vec<_>>(),
        want_audio[..audio.len()]
            .iter()
            .map(|a| &a.2)
            .collect::<Vec<_>>()
    );
    let negative = video.iter().filter(|v| v.1 < 0).count();
    assert_eq!(negative, 0, "the fixture's offsets are positive");
}

#[test]
fn the_playlist_lists_parts_a_hint_and_the_server_control() {
    let (ll, _) = run(config(1000, 6), &frames(8, 25));
    let snap = ll.last().unwrap();
    let text = std::str::from_utf8(&snap.playlist.text).unwrap();
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n"));
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"));
    assert!(text.contains(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6.000\n"
    ));
    let (seq, part) = snap.next_part().unwrap();
    assert!(text.ends_with(&format!(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-{seq}.{part}.m4s\"\n"
    )));
    assert_eq!(text.matches("#EXT-X-MAP:URI=\"init-1.mp4\"").count(), 1);
    // PDTs advance with the timeline from the wall clock at the first segment.
    let first = &snap.segments[snap.segments.len() - 6];
    let pdt = format!("#EXT-X-PROGRAM-DATE-TIME:{}", Rfc3339(first.pdt_unix_ms));
    assert!(text.contains(&pdt), "{pdt}");
    assert_eq!(
        Rfc3339(1_765_000_000_123).to_string(),
        "2025-12-06T05:46:40.123Z"
    );
    // Parts of segments more than three target durations old are not listed.
    let old = &snap.segments[snap.segments.len() - 6];
    assert!(!text.contains(&format!("part-{}.0.m4s", old.seq)));
    let recent = snap.segments.last().unwrap();
    assert!(text.contains(&format!("part-{}.0.m4s\",INDEPENDENT=YES", recent.seq)));
    // Every URI the playlist names is one LlFile parses and the snapshot serves.
    for end in &snap.playlist.uri_ends {
        let line_start = text[..*end].rfind(['\n', '"']).unwrap() + 1;
        let name = &text[line_start..*end];
        let name = name.rsplit('"').next().unwrap();
        match LlFile::parse(name).unwrap_or_else(|| panic!("{name}")) {
            LlFile::Init(id) => assert!(snap.init(id).is_some()),
            LlFile::Segment(s) => assert!(snap.segment(s).is_some()),
            LlFile::Part(s, i) => assert!(snap.part(s, i).is_some() || (s, i) == (seq, part)),
            LlFile::Playlist => panic!("{name}"),
        }
    }
}

#[test]
fn delta_playlists_skip_only_segments_past_can_skip_until() {
    let (ll, _) = run(config(1000, 20), &frames(30, 25));
    let snap = ll.last().unwrap();
    let delta = std::str::from_utf8(&snap.delta.as_ref().unwrap().text).unwrap();
    let full = std::str::from_utf8(&snap.playlist.text).unwrap();
    let skipped: usize = delta
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .unwrap()
        .parse()
        .unwrap();
    // 20 listed 1 s segments, CAN-SKIP-UNTIL 6 s: the newest 6 s stay (with the open part).
    let listed = &snap.segments[snap.segments.len() - 20..];
    let kept = &listed[skipped..];
    let open_ms: u64 = snap.open_parts.iter().map(|p| p.duration_ms).sum();
    let kept_ms: u64 = kept.iter().map(|s| s.duration_ms).sum::<u64>() + open_ms;
    assert!(kept_ms >= 6000, "kept {kept_ms} ms");
    assert!(kept_ms - kept[0].duration_ms < 6000, "skipped too few");
    // The delta is the full playlist with the skipped segments' lines left out.
    let first_kept = format!("seg-{}.m4s", listed[skipped - 1].seq);
    let tail = &full[full.find(&first_kept).unwrap() + first_kept.len() + 1..];
    let tail = &tail[tail.find("#EXT-X-PROGRAM-DATE-TIME").unwrap()..];
    assert!(delta.ends_with(tail));
    assert!(delta.contains("#EXT-X-MAP:URI=\"init-1.mp4\""));
    // A short playlist has nothing to skip.
    let (short, _) = run(config(1000, 6), &frames(10, 25));
    assert!(short.last().unwrap().delta.is_none());
}

#[test]
fn directives_parse_and_refuse() {
    let d = Directives::parse(Some("token=a&_HLS_msn=7&_HLS_part=2&_HLS_skip=YES")).unwrap();
    assert_eq!((d.msn, d.part, d.skip), (Some(7), Some(2), Skip::Yes));
    assert_eq!(
        Directives::parse(Some("_HLS_skip=v2")).unwrap().skip,
        Skip::V2
    );
    assert_eq!(Directives::parse(None).unwrap(), Directives::default());
    assert_eq!(
        Directives::parse(Some("_HLS_part=1")),
        Err(DirectiveError::PartWithoutMsn)
    );
    assert!(Directives::parse(Some("_HLS_msn=x")).is_err());
    assert!(Directives::parse(Some("_HLS_msn=-1")).is_err());
    assert_eq!(
        Directives::parse(Some("_HLS_skip=no")),
        Err(DirectiveError::BadSkip)
    );
    assert_eq!(
        blocking::viewer_query("_HLS_msn=3&token=a&_HLS_part=1&b=2"),
        "token=a&b=2"
    );
}

/// A reload for the next part, fed frame by frame: released by the snapshot that lists the
/// part (the frame that closes it), not before and not later.
#[test]
fn a_blocking_reload_is_released_when_its_part_closes() {
    let input = frames(6, 25);
    let mut s = Segmenter::new(config(1000, 6), VecStore, "x");
    let mut parked: Parked<&str, u32> = Parked::new(16);
    let mut now = 0;
    let mut released_at = None;
    let mut waiting_for = None;
    for (i, f) in input.iter().enumerate() {
        now = f.timestamp_ms;
        let Some(snap) = s.handle_frame(f).unwrap() else {
            continue;
        };
        let ll = snap.ll.clone().unwrap();
        match waiting_for {
            None if ll.segments.len() >= 2 => {
                let (msn, part) = ll.next_part().unwrap();
                match blocking::decide(&ll, msn, Some(part), now).unwrap() {
                    Decision::Wait { deadline_ms } => {
                        assert_eq!(deadline_ms, now + 3000);
                        parked.park("x", msn, Some(part), deadline_ms, 1).unwrap();
                    }
                    Decision::Now => panic!("the hinted part is not there yet"),
                }
                waiting_for = Some((msn, part, i));
            }
            Some((msn, part, _)) => {
                let released = parked.handle_snapshot(&"x", Some(&ll));
                if !released.is_empty() {
                    assert!(
                        ll.part(msn, part).is_some(),
                        "released before the part exists"
                    );
                    released_at = Some(i);
                    break;
                }
                assert!(
                    ll.part(msn, part).is_none(),
                    "the part closed without a release"
                );
            }
            None => {}
        }
    }
    let (_, _, parked_at) = waiting_for.unwrap();
    let released_at = released_at.expect("released");
    // 200 ms parts of 40 ms frames: five frames (a few more for audio frames between).
    assert!(
        released_at > parked_at && released_at - parked_at <= 5 * 3,
        "{parked_at}..{released_at}"
    );
    assert!(parked.is_empty());
    assert_eq!(parked.poll_timeout(), None);
    let _ = now;
}

#[test]
fn far_ahead_requests_are_refused_and_stalls_time_out() {
    let (ll, _) = run(config(1000, 6), &frames(5, 25));
    let snap = ll.last().unwrap();
    let next = snap.next_msn();
    assert_eq!(
        blocking::decide(snap, next + 3, None, 0),
        Err(DirectiveError::TooFar)
    );
    assert!(matches!(
        blocking::decide(snap, next + 2, None, 0),
        Ok(Decision::Wait { .. })
    ));
    let parts = snap.open_parts.len() as u32;
    assert_eq!(
        blocking::decide(snap, next, Some(parts + 4), 0),
        Err(DirectiveError::TooFar)
    );
    assert_eq!(
        blocking::decide(snap, next - 1, Some(99), 0),
        Ok(Decision::Now)
    );
    // A stalled stream: the deadline passes with no new snapshot.
    let mut parked: Parked<&str, u32> = Parked::new(2);
    parked.park("x", next, Some(parts), 3000, 1).unwrap();
    parked.park("x", next + 1, None, 3500, 2).unwrap();
    assert_eq!(parked.park("x", next, None, 4000, 3), Err(3), "capped");
    assert_eq!(parked.poll_timeout(), Some(3000));
    assert!(parked.handle_timeout(2999).is_empty());
    assert_eq!(parked.handle_timeout(3000), [1]);
    assert_eq!(parked.poll_timeout(), Some(3500));
    // The stream goes away: whatever waits on it is answered.
    assert_eq!(parked.handle_snapshot(&"x", None), [2]);
    assert!(parked.is_empty());
}

#[test]
fn the_init_segment_changes_uri_when_the_codec_configuration_does() {
    let mut input = frames(4, 25);
    // A new sequence header (another SPS) at 2 s, before that second's keyframe.
    let mut body = super::tests::avc_seq().payload.to_vec();
    *body.last_mut().unwrap() ^= 0xff;
    let at = input.iter().position(|f| f.timestamp_ms >= 2000).unwrap();
    input.insert(
        at,
        Frame::new(
            crate::media::MediaKind::Video,
            2000,
            Default::default(),
            body.into(),
        ),
    );
    let (ll, _) = run(config(1000, 6), &input);
    let snap = ll.last().unwrap();
    let text = std::str::from_utf8(&snap.playlist.text).unwrap();
    assert!(text.contains("#EXT-X-MAP:URI=\"init-1.mp4\""));
    assert!(text.contains("#EXT-X-MAP:URI=\"init-2.mp4\""));
    assert_ne!(snap.init(1), snap.init(2));
    let at2 = snap.segments.iter().find(|s| s.init_id == 2).unwrap().seq;
    assert_eq!(at2, 2);
}

/// Regression: snapshots of LL-HLS parts before the first segment made an edge's first TS
/// playlist request return a playlist with no segment, which ffmpeg gave up on.
#[test]
fn regression_nothing_is_announced_before_the_first_segment() {
    let mut s = Segmenter::new(config(1000, 6), VecStore, "x");
    for f in frames(3, 25) {
        if let Some(snap) = s.handle_frame(&f).unwrap() {
            assert!(!snap.segments.is_empty(), "a snapshot without a TS segment");
            let ll = snap.ll.unwrap();
            assert_eq!(ll.segments.len(), snap.segments.len());
        }
    }
}

/// AV1 (Enhanced RTMP `av01`) goes to LL-HLS only, and its keyframes still cut the segments:
/// beside AAC, the TS segments carry the audio under the same numbers; alone, they carry no
/// track and the snapshot says so. Every picture reaches the fragments, bytes and DTS exact.
#[test]
fn av1_video_is_in_ll_hls_only_and_still_cuts_the_segments() {
    use crate::media::{FrameFlags, MediaKind};
    let record = [0x81u8, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00];
    let av1 = |ts: u64, b0: u8, data: &[u8]| {
        Frame::new(
            MediaKind::Video,
            ts,
            FrameFlags {
                sync_point: b0 == 0x91,
                header: b0 == 0x90,
            },
            bytes::Bytes::from([&[b0][..], b"av01", data].concat()),
        )
    };
    for with_audio in [true, false] {
        let mut s = Segmenter::new(config(1000, 6), VecStore, "x");
        s.set_wall_clock(1_765_000_000_000);
        s.handle_frame(&av1(0, 0x90, &record)).unwrap();
        if with_audio {
            s.handle_frame(&super::tests::aac_seq()).unwrap();
        }
        let mut pictures = Vec::new();
        for n in 0..150u64 {
            let picture = [0x32, 0x10, n as u8, (n >> 8) as u8];
            let b0 = if n % 25 == 0 { 0x91 } else { 0xa1 };
            s.handle_frame(&av1(n * 40, b0, &picture)).unwrap();
            pictures.push((n * 40 * 90, picture.to_vec()));
            if with_audio {
                s.handle_frame(&super::tests::audio(n * 40)).unwrap();
            }
        }
        let ts = s.handle_end();
        assert_eq!(ts.ts_carries, with_audio);
        let ll = ts.ll.clone().expect("LL-HLS is on");
        let init = ll.init(1).expect("an init segment");
        let av1c = [&b"av1C"[..], &record].concat();
        assert!(
            init.windows(av1c.len()).any(|w| w == av1c),
            "the av1C box carries the publisher's record"
        );
        assert!(
            init.windows(4).any(|w| w == b"av01"),
            "an av01 sample entry"
        );
        assert_eq!(
            ll.segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
            ts.segments.iter().map(|s| s.seq.0).collect::<Vec<_>>(),
            "one timeline: the TS segments have the LL-HLS numbers"
        );
        assert_eq!(ll.segments.len(), 6, "cut on every keyframe's cell");
        let got: Vec<_> = ll
            .segments
            .iter()
            .flat_map(|s| s.parts.iter())
            .flat_map(|p| samples_of(&p.joined(), VIDEO_TRACK_ID))
            .map(|(dts, cto, bytes)| {
                assert_eq!(cto, 0);
                (dts, bytes)
            })
            .collect();
        assert_eq!(got, pictures, "with_audio {with_audio}");
    }
}

/// The part being written is its chunks so far, one per picture as it arrives, and the
/// closed part is exactly those chunks joined: what a streaming request got is the part.
#[test]
fn the_open_part_grows_a_chunk_per_picture_and_closes_as_their_bytes() {
    use super::llhls::PartState;
    let mut s = Segmenter::new(config(1000, 6), VecStore, "x");
    s.set_wall_clock(1_765_000_000_000);
    let input = frames(6, 25);
    let mut followed: Option<((u64, u32), Vec<u8>, usize)> = None;
    let mut checked = 0;
    for f in &input {
        let snap = s.handle_frame(f).unwrap();
        let Some(ll) = snap.as_ref().and_then(|h| h.ll.clone()) else {
            if let Some((part, seen, chunks)) = &mut followed {
                if let PartState::Open(now) = s.ll_part_state(*part) {
                    // Chunks are only added, never changed.
                    assert!(now.len() >= *chunks);
                    assert_eq!(now[..*chunks].concat(), *seen);
                    *seen = now.concat();
                    *chunks = now.len();
                }
            }
            continue;
        };
        if let Some((part, seen, _)) = followed.take() {
            if let PartState::Closed(pieces) = s.ll_part_state(part) {
                assert!(
                    pieces.concat().starts_with(&seen),
                    "the part begins with its chunks"
                );
                checked += 1;
            }
        }
        let hint = ll.next_part().expect("a hinted part");
        match s.ll_part_state(hint) {
            PartState::Open(chunks) => followed = Some((hint, chunks.concat(), chunks.len())),
            other => panic!("the hinted part is open: {other:?}"),
        }
    }
    assert!(checked >= 10, "{checked} parts followed to their end");
}

/// An edge that starts a stream gets a burst of old frames (the origin's GOP cache), all at
/// once, then live ones. The dates follow publication, not arrival: the least late frame sets
/// them (the newest of the burst, then the live ones), and they stop moving once the first
/// segment is complete. Before, the first segment was dated at the burst's arrival: a GOP
/// late, and a player showed less latency than there was.
#[test]
fn dates_follow_publication_when_a_burst_of_old_frames_opens_the_stream() {
    // Published at 8 000 + DTS (Unix ms); the first GOP (DTS under 1 000, 1 s GOPs) arrives
    // at 9 000, when the next keyframe is published; then each frame 5 ms after it is.
    let mut s = Segmenter::new(config(1000, 6), VecStore, "x");
    let mut last = None;
    for (f, _) in super::tests::stream(6, 25) {
        let arrival = if f.timestamp_ms < 1_000 {
            9_000
        } else {
            8_000 + f.timestamp_ms + 5
        };
        s.set_wall_clock(1_765_000_000_000 + arrival);
        if let Some(snap) = s.handle_frame(&f).unwrap() {
            last = snap.ll.clone();
        }
    }
    let ll = last.expect("LL-HLS");
    assert!(ll.segments.len() >= 5);
    let first = ll.segments[0].pdt_unix_ms;
    for seg in &ll.segments {
        let published = 1_765_000_000_000 + 8_000 + seg.seq * 1000;
        // Within a frame (40 ms: the newest frame of the burst was that late).
        assert!(
            seg.pdt_unix_ms.abs_diff(published) <= 45,
            "segment {} dated {} ms off its publication",
            seg.seq,
            seg.pdt_unix_ms as i64 - published as i64
        );
        assert_eq!(
            seg.pdt_unix_ms - first,
            seg.seq * 1000,
            "dates follow the timeline"
        );
    }
}
