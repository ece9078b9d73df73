//! LL-HLS end to end: `/{app}/{stream}/llhls.m3u8` of a real engine, read by ffmpeg and
//! ffprobe (decoding, packets against the source), by the `m3u8` package from PyPI (the
//! playlist rules), and by raw requests (blocking reloads, early part requests, refusals,
//! stalls), with the `edge_ll_hls_*` counters. Nothing waits on a clock but bounded polls.

use std::process::Command;
use std::time::Duration;

use tests::*;

/// The Python with the `m3u8` package: `$M3U8_PYTHON`, the virtualenv `.ci/run` makes, or
/// PATH's.
fn python() -> String {
    if let Ok(p) = std::env::var("M3U8_PYTHON") {
        return p;
    }
    venv_python().map_or_else(|| "python3".into(), |v| v.to_string_lossy().into_owned())
}

fn get(engine: &Engine, path: &str) -> (u16, Vec<u8>) {
    let r = http_get(engine.http, path);
    (r.status(), r.body)
}

fn text(engine: &Engine, path: &str) -> String {
    let (status, body) = get(engine, path);
    assert_eq!(status, 200, "{path}");
    String::from_utf8(body).unwrap()
}

/// The part the playlist's preload hint names.
fn hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .unwrap_or_else(|| panic!("no preload hint in {playlist}"));
    let name = line
        .split("part-")
        .nth(1)
        .unwrap()
        .trim_end_matches(".m4s\"");
    let (msn, part) = name.split_once('.').unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

/// Polls until the stream's LL-HLS playlist lists `segments` finished segments.
fn wait_for_segments(engine: &Engine, path: &str, segments: usize) -> String {
    for _ in 0..600 {
        let (status, body) = get(engine, path);
        let body = String::from_utf8_lossy(&body).into_owned();
        if status == 200 && body.matches("#EXTINF").count() >= segments {
            return body;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{path} never listed {segments} segments");
}

#[test]
fn llhls_decodes_and_carries_every_source_packet_exactly() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--hls-segment-ms",
        "1000",
        "--hls-window",
        "100",
    ]);
    let mut publisher = ffmpeg_publish(&fixture("bframes.flv"), &engine.rtmp_url("live/ll"), &[]);
    assert!(publisher.wait().unwrap().success());
    let mut playlist = String::new();
    for _ in 0..400 {
        playlist = String::from_utf8_lossy(&get(&engine, "/live/ll/llhls.m3u8").1).into_owned();
        if playlist.contains("#EXT-X-ENDLIST") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");

    // ffprobe reads the init segment: H.264 and AAC.
    let init = engine.http_url("live/ll/init-1.mp4");
    let out = ffprobe(&init, &["-show_entries", "stream=codec_name"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["h264", "aac"]);

    let url = engine.http_url("live/ll/llhls.m3u8");
    if let Err(err) = ffmpeg_decode(&url, None) {
        panic!("ffmpeg decoding LL-HLS printed: {err}");
    }

    // Every packet of the source, in order, with exact video PTS and DTS (B-frames: the
    // composition offsets) and keyframe flags, on one constant shift; fMP4's audio
    // timescale is the sample rate, so audio is within a millisecond.
    let source = probe_packets(fixture("bframes.flv").to_str().unwrap());
    let ll = probe_packets(&url);
    for stream in [0, 1] {
        let src: Vec<_> = source.iter().filter(|p| p.0 == stream).collect();
        let out: Vec<_> = ll.iter().filter(|p| p.0 == stream).collect();
        assert_eq!(out.len(), src.len(), "stream {stream} packet count");
        if stream == 0 {
            let offset = out[0].2 - src[0].2 * 90;
            for (i, (o, s)) in out.iter().zip(&src).enumerate() {
                assert_eq!(
                    (o.1 - offset, o.2 - offset),
                    (s.1 * 90, s.2 * 90),
                    "video packet {i}"
                );
                assert_eq!(o.3, s.3, "keyframe flag of video packet {i}");
            }
        }
    }

    // A segment is its parts, byte for byte (the recent segments list their parts).
    let mut checked = 0;
    let mut parts = Vec::new();
    for line in playlist.lines() {
        if let Some(uri) = line.split("URI=\"part-").nth(1) {
            parts.push(format!("part-{}", uri.split('"').next().unwrap()));
        } else if line.starts_with("seg-") && !parts.is_empty() {
            let mut joined = Vec::new();
            for p in parts.drain(..) {
                let (status, body) = get(&engine, &format!("/live/ll/{p}"));
                assert_eq!(status, 200, "{p}");
                joined.extend(body);
            }
            assert_eq!(
                get(&engine, &format!("/live/ll/{line}")).1,
                joined,
                "{line}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "{playlist}");
}

const RULES: &str = r#"
import sys, m3u8
full = m3u8.loads(open(sys.argv[1]).read())
delta = m3u8.loads(open(sys.argv[2]).read())
target = full.part_inf.part_target
sc = full.server_control
assert sc.can_block_reload == "YES", sc.can_block_reload
assert sc.part_hold_back >= 3 * target - 1e-9, (sc.part_hold_back, target)
assert sc.can_skip_until >= 6 * full.target_duration, (sc.can_skip_until, full.target_duration)
parts = 0
for seg in full.segments:
    for i, p in enumerate(seg.parts):
        assert p.duration <= target, (seg.uri, p.uri, p.duration, target)
        parts += 1
assert parts > 10, parts
last = full.segments[-1]
hint = full.preload_hint
if last.uri is None:
    # The open segment: its parts are listed, the hint names the next one.
    seq = int(last.parts[-1].uri.split("-")[1].split(".")[0])
    idx = int(last.parts[-1].uri.split(".")[1])
    assert hint.uri == "part-%d.%d.m4s" % (seq, idx + 1), (hint.uri, last.parts[-1].uri)
assert hint.hint_type == "PART"
skipped = delta.skip.skipped_segments
assert skipped > 0
full_uris = [s.uri for s in full.segments if s.uri]
delta_uris = [s.uri for s in delta.segments if s.uri]
assert delta_uris == full_uris[skipped:skipped + len(delta_uris)], (skipped, delta_uris[:2])
assert delta.media_sequence == full.media_sequence
kept = sum(s.duration for s in full.segments[skipped:] if s.uri)
assert kept >= sc.can_skip_until - full.target_duration, (kept, sc.can_skip_until)
print("ok", parts, skipped)
"#;

#[test]
fn the_playlist_keeps_the_ll_hls_rules_by_an_independent_parser() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--hls-segment-ms",
        "1000",
        "--hls-window",
        "12",
    ]);
    // Video only: looping the fixture with its audio puts a 58 ms video interval at every
    // loop (the audio is 80 ms longer), and a part over that gap outgrows PART-TARGET
    // (a timestamp gap in the source lengthens the part that holds it; docs/guide/ll-hls.md).
    let _publisher = KillOnDrop(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(fixture("bframes.flv"))
            .args([
                "-an",
                "-c",
                "copy",
                "-f",
                "flv",
                &engine.rtmp_url("live/rules"),
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_segments(&engine, "/live/rules/llhls.m3u8", 11);
    let dir = std::env::temp_dir().join(format!("llhls-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (full_path, delta_path) = (dir.join("full.m3u8"), dir.join("delta.m3u8"));
    let full = text(&engine, "/live/rules/llhls.m3u8");
    let (msn, part) = hint(&full);
    // The delta playlist of the same moment: block for the part the full one hinted at.
    let delta = text(
        &engine,
        &format!("/live/rules/llhls.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES"),
    );
    let full = text(
        &engine,
        &format!("/live/rules/llhls.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
    );
    std::fs::write(&full_path, &full).unwrap();
    std::fs::write(&delta_path, &delta).unwrap();
    let out = Command::new(python())
        .args(["-c", RULES])
        .arg(&full_path)
        .arg(&delta_path)
        .output()
        .expect("python with the m3u8 package (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}\n{full}\n{delta}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn blocking_reloads_and_hinted_parts_wait_for_their_part() {
    let engine = Engine::start(&["--cores", "2", "--hls-segment-ms", "1000"]);
    let mut publisher = publish_loop(&engine.rtmp_url("live/block"));
    let playlist = wait_for_segments(&engine, "/live/block/llhls.m3u8", 2);
    let (msn, part) = hint(&playlist);
    let waits_before = engine.metrics().sum("ll_hls_waits");
    // Both ask for the part being written now: neither can be answered before it closes.
    let reload = {
        let engine_http = engine.http;
        std::thread::spawn(move || {
            http_get(
                engine_http,
                &format!("/live/block/llhls.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
            )
        })
    };
    let early = {
        let engine_http = engine.http;
        std::thread::spawn(move || {
            http_get(engine_http, &format!("/live/block/part-{msn}.{part}.m4s"))
        })
    };
    let reload = reload.join().unwrap();
    let early = early.join().unwrap();
    assert_eq!(reload.status(), 200);
    let body = String::from_utf8(reload.body).unwrap();
    assert!(
        body.contains(&format!("URI=\"part-{msn}.{part}.m4s\"")),
        "{body}"
    );
    assert!(
        reload.head.contains("Cache-Control: public, max-age=6"),
        "{}",
        reload.head
    );
    assert_eq!(early.status(), 200);
    assert_eq!(&early.body[4..8], b"moof");
    assert!(early.head.contains("immutable"));
    // The hinted part was streamed as it was written (chunked), to its end.
    assert_eq!(early.chunked, Some(true), "{}", early.head);
    // The part they got is the part the playlist lists.
    assert_eq!(
        get(&engine, &format!("/live/block/part-{msn}.{part}.m4s")).1,
        early.body
    );
    let m = engine.metrics();
    assert!(m.sum("ll_hls_waits") > waits_before, "{m:?}");
    assert!(m.sum("ll_hls_parts") >= 2);

    // Too far ahead: 400 at once; nonsense directives: 400.
    let (status, body) = get(
        &engine,
        &format!("/live/block/llhls.m3u8?_HLS_msn={}", msn + 10),
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(get(&engine, "/live/block/llhls.m3u8?_HLS_part=1").0, 400);
    assert_eq!(
        get(&engine, "/live/block/llhls.m3u8?_HLS_skip=maybe").0,
        400
    );
    assert_eq!(get(&engine, "/live/block/part-1.x.m4s").0, 404);
    assert_eq!(get(&engine, "/live/nope/llhls.m3u8").0, 404);

    // A stalled publisher (stopped, not gone): a reload for the next part gets 503 after
    // three target durations, counted.
    let pid = publisher.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let playlist = text(&engine, "/live/block/llhls.m3u8");
    let (msn, part) = hint(&playlist);
    let (status, _) = get(
        &engine,
        &format!(
            "/live/block/llhls.m3u8?_HLS_msn={msn}&_HLS_part={}",
            part + 1
        ),
    );
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert_eq!(status, 503);
    engine.wait_for("a wait timeout counted", Duration::from_secs(10), |m| {
        m.sum("ll_hls_wait_timeouts") >= 1 && m.sum("ll_hls_parked") == 0
    });
    publisher.0.kill().unwrap();
}

/// The fixture's FLV tags: (kind, timestamp, body), metadata left out.
fn fixture_tags() -> Vec<(edge_core::media::MediaKind, u32, Vec<u8>)> {
    let mut r = edge_core::flv::FlvReader::new();
    r.handle_input(&std::fs::read(fixture("bframes.flv")).unwrap());
    let mut tags = Vec::new();
    while let Ok(Some(t)) = r.poll_tag() {
        let kind = match t.type_id {
            8 => edge_core::media::MediaKind::Audio,
            9 => edge_core::media::MediaKind::Video,
            _ => continue,
        };
        tags.push((kind, t.timestamp, t.body.to_vec()));
    }
    tags
}

/// Reads a response head and at least `want` bytes of body (the raw, chunked bytes).
fn read_head_and(s: &mut std::net::TcpStream, want: usize) -> Vec<u8> {
    use std::io::Read;
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            if all.len() >= end + 4 + want {
                return all;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The part the preload hint names is streamed while it is written: with the publisher held
/// between two frames (nothing can close the part), its request already has its first
/// chunk (`moof`), and the playlist does not list the part yet; once the publisher goes on,
/// the response ends with the part's bytes, exactly the part its URI serves afterwards.
/// Driven by the publisher, not a clock: no frame, no part.
#[test]
fn a_hinted_part_streams_its_first_bytes_before_the_part_closes() {
    use std::io::{Read, Write};
    let engine = Engine::start(&["--cores", "2", "--hls-segment-ms", "1000"]);
    let tags = fixture_tags();
    let mut p = Publisher::start(engine.rtmp, "live", "hint");
    // Three seconds of the fixture: segments to list, then the publisher pauses.
    let mut next = 0;
    while next < tags.len() && tags[next].1 < 3_000 {
        let (kind, ts, body) = &tags[next];
        p.send(*kind, *ts, body);
        next += 1;
    }
    wait_for_segments(&engine, "/live/hint/llhls.m3u8", 2);
    // The engine may still be muxing the last frames sent: ask again until the hinted part
    // is one that stays open (what the publisher sent is all muxed).
    let mut streamed = None;
    for _ in 0..50 {
        let (msn, part) = hint(&text(&engine, "/live/hint/llhls.m3u8"));
        let mut s = std::net::TcpStream::connect(engine.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /live/hint/part-{msn}.{part}.m4s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // The head, a chunk size line and a moof's first 8 bytes.
        let first = read_head_and(&mut s, 16);
        let uri = format!("URI=\"part-{msn}.{part}.m4s\"");
        let listed = text(&engine, "/live/hint/llhls.m3u8")
            .lines()
            .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&uri));
        if !listed {
            streamed = Some(((msn, part), s, first));
            break;
        }
        // The part closed meanwhile (the tail of what was sent): its next one, again.
    }
    let ((msn, part), mut s, first) = streamed.expect("a hinted part that stays open");
    let head = split_response(&first);
    assert_eq!(head.status(), 200, "{}", head.head);
    assert!(
        head.head.contains("Transfer-Encoding: chunked"),
        "{}",
        head.head
    );
    assert!(head.head.contains("immutable") && head.head.contains("video/mp4"));
    assert_eq!(head.chunked, Some(false), "the part is not complete");
    assert!(
        head.body.len() >= 8 && &head.body[4..8] == b"moof",
        "{:?}",
        head.body
    );
    // The publisher goes on: the part closes, and the response ends with all of it.
    for (kind, ts, body) in &tags[next..] {
        p.send(*kind, *ts, body);
    }
    let mut all = first;
    let _ = s.read_to_end(&mut all);
    let whole = split_response(&all);
    assert_eq!(whole.chunked, Some(true), "the last chunk came");
    let (status, part_bytes) = get(&engine, &format!("/live/hint/part-{msn}.{part}.m4s"));
    assert_eq!(status, 200);
    assert_eq!(whole.body, part_bytes, "streamed bytes = the part's bytes");
    assert!(engine.metrics().sum("ll_hls_streamed") >= 1);
    p.finish();
}

/// An RTMP-pull edge makes its own LL-HLS from the pulled frames: a first `llhls.m3u8`
/// request starts the pull, and its segments carry the origin's numbers and durations.
#[test]
fn an_rtmp_pull_edge_serves_ll_hls_with_the_origins_segment_numbers() {
    let origin = Engine::start(&["--cores", "2", "--hls-segment-ms", "1000"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/edge"));
    wait_until_published(&origin, "edge");
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--hls-segment-ms",
        "1000",
        "--origin",
        &origin_of(&origin),
    ]);
    let at_edge = wait_for_segments(&edge, "/live/edge/llhls.m3u8", 3);
    assert_eq!(edge.metrics().sum("upstream_pulls_started"), 1);
    let at_origin = text(&origin, "/live/edge/llhls.m3u8");
    let segments = |p: &str| -> Vec<(String, String)> {
        let lines: Vec<&str> = p.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[1].starts_with("seg-") && w[0].starts_with("#EXTINF"))
            .map(|w| (w[1].to_string(), w[0].to_string()))
            .collect()
    };
    let (edge_segs, origin_segs) = (segments(&at_edge), segments(&at_origin));
    // The edge joined later: its complete segments (after its first, which began at the
    // pull's first keyframe) are the origin's, number for number, duration for duration.
    let common: Vec<_> = edge_segs[1..]
        .iter()
        .filter(|s| origin_segs.contains(s))
        .collect();
    assert_eq!(common.len(), edge_segs.len() - 1, "{at_edge}\n{at_origin}");
    // And the edge's segments decode.
    let url = edge.http_url("live/edge/llhls.m3u8");
    if let Err(err) = ffmpeg_decode(&url, Some(3)) {
        panic!("{err}");
    }
}

/// `--ll-hls off`: the TS playlist as before, no LL-HLS (404), nothing parked or served; and
/// a part target the segments cannot hold is refused at start-up, naming the flag.
#[test]
fn ll_hls_off_serves_ts_only_and_bad_part_targets_are_refused() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--ll-hls",
        "off",
        "--hls-segment-ms",
        "1000",
    ]);
    let _publisher = publish_loop(&engine.rtmp_url("live/off"));
    eventually("a TS segment", Duration::from_secs(30), || {
        String::from_utf8_lossy(&get(&engine, "/live/off.m3u8").1).contains("#EXTINF")
    });
    assert_eq!(get(&engine, "/live/off/llhls.m3u8").0, 404);
    assert_eq!(get(&engine, "/live/off/part-0.0.m4s").0, 404);
    let m = engine.metrics();
    assert_eq!(m.sum("ll_hls_parts") + m.sum("ll_hls_waits"), 0);

    for bad in [["--hls-part-ms", "20"], ["--hls-part-ms", "3000"]] {
        let (ok, _, err) = run_tool(
            engine_bin().to_str().unwrap(),
            &["--check", bad[0], bad[1]],
            Duration::from_secs(10),
        );
        assert!(!ok, "{bad:?} accepted");
        assert!(err.contains("--hls-part-ms"), "{err}");
    }
}
