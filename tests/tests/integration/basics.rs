//! End-to-end: the real `edge-engine --cores 2` on 127.0.0.1 with ephemeral ports, against
//! ffmpeg (publisher and player) and edge-core's RTMP client. Assertions are on bytes,
//! frame counts and counters, never on elapsed time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_core::rtmp::client::ClientEvent;
use tests::*;

const FIXTURE: &str = "bframes.flv";

/// With the defaults: adaptive write batching on, which holds writes only while the shard
/// is busy.
#[test]
fn ffmpeg_plays_rtmp_and_http_flv_checksum_identical() {
    checksum_identical(&[]);
}

/// Batching off (`--write-coalesce-ms 0`): every frame is written at once, nothing is held.
#[test]
fn ffmpeg_plays_rtmp_and_http_flv_checksum_identical_without_batching() {
    let m = checksum_identical(&["--write-coalesce-ms", "0"]);
    assert_eq!(m.sum("viewer_writes_held"), 0);
    assert_eq!(m.sum("write_window_ms"), 0);
    assert!(m.sum("viewer_writes") > 0);
}

/// Batching at its ceiling whatever the load (`--write-coalesce-load 0`): frames held back
/// for the window, released together, still all arrive, in order, byte for byte.
#[test]
fn ffmpeg_plays_rtmp_and_http_flv_checksum_identical_with_writes_held() {
    let m = checksum_identical(&["--write-coalesce-ms", "40", "--write-coalesce-load", "0"]);
    assert!(m.sum("viewer_writes_held") > 0, "writes were held");
    assert!(
        m.sum("viewer_write_releases") > 0,
        "held writes were released"
    );
    assert_eq!(m.get("write_window_ms", 0), 40);
    assert_eq!(m.get("write_window_ms", 1), 40);
}

/// Six players, RTMP and HTTP-FLV, on both shards see exactly the source's packets; returns the
/// counters after they finished.
fn checksum_identical(extra: &[&str]) -> Metrics {
    let mut args = vec!["--cores", "2", "--republish-grace-ms", "300"];
    args.extend_from_slice(extra);
    let engine = Engine::start(&args);
    let source = fixture_md5(FIXTURE);
    // Several players of each kind, so that both shards serve some with high probability;
    // every one of them must see exactly the source's packets.
    let players: Vec<_> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 {
                engine.rtmp_url("live/md5")
            } else {
                engine.http_url("live/md5.flv")
            };
            std::thread::spawn(move || (url.clone(), framemd5(&url, Duration::from_secs(60))))
        })
        .collect();
    engine.wait_for("6 waiting players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") + m.sum("flv_players") == 6
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/md5"), &[]);
    assert!(publisher.wait().unwrap().success());
    for p in players {
        let (url, (lines, _err)) = p.join().unwrap();
        assert_eq!(lines.len(), source.len(), "{url}: packet count");
        for (i, (got, want)) in lines.iter().zip(&source).enumerate() {
            assert_eq!(got, want, "{url}: packet {i} differs");
        }
    }
    let m = engine.metrics();
    assert_eq!(m.sum("frames_dropped"), 0);
    assert!(engine.stop().success(), "SIGTERM exits 0");
    m
}

#[test]
fn a_thousand_players_on_both_shards_get_every_frame() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    let players = play_many(engine.rtmp, "live", "crowd", 1000, PlayOpts::default());
    let m = engine.wait_for("1000 attached players", Duration::from_secs(60), |m| {
        m.sum("rtmp_players") == 1000
    });
    let split = (m.get("rtmp_players", 0), m.get("rtmp_players", 1));
    println!("players per shard: {split:?}");
    assert!(
        split.0 > 0 && split.1 > 0,
        "both shards serve players: {split:?}"
    );
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/crowd"), &[]);
    assert!(publisher.wait().unwrap().success());
    let logs = players.join().unwrap();
    assert_eq!(logs.len(), 1000);
    for (i, log) in logs.iter().enumerate() {
        assert!(log.started && log.error.is_none(), "player {i}: {log:?}");
        assert_eq!(
            (log.video, log.audio),
            (video, audio),
            "player {i} frame counts"
        );
        assert_eq!(
            (log.video_headers, log.audio_headers),
            (1, 1),
            "player {i} headers"
        );
        assert!(log
            .statuses
            .contains(&"NetStream.Play.UnpublishNotify".to_string()));
        assert_eq!(
            log.video_ends, 1,
            "player {i}: the fixture's end-of-sequence marker"
        );
    }
    let m = engine.metrics();
    assert_eq!(m.sum("frames_dropped"), 0);
    assert_eq!(
        m.sum("frames_in"),
        video + audio + 3,
        "media plus two sequence headers and the end-of-sequence marker"
    );
}

#[test]
fn duplicate_publish_is_refused_and_republish_reaches_attached_players() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "5000"]);
    let (video, _) = flv_frame_counts(&fixture(FIXTURE));
    let progress = Arc::new(AtomicU64::new(0));
    let addr = engine.rtmp;
    let p = Arc::clone(&progress);
    let player =
        std::thread::spawn(move || play_rtmp(addr, "live", "dup", &PlayOpts::default(), Some(&p)));
    engine.wait_for("player attached", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });

    let mut first = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/dup"), &[]);
    engine.wait_for("first publisher live", Duration::from_secs(20), |m| {
        m.sum("publishers") == 1
    });
    eventually("media at the player", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) > 0
    });
    let (events, closed) = try_publish(engine.rtmp, "live", "dup");
    assert!(
        events.contains(&ClientEvent::Status {
            code: "NetStream.Publish.BadName".into()
        }),
        "second publisher must get BadName: {events:?}"
    );
    assert!(!events.contains(&ClientEvent::Started));
    assert!(closed, "the refused publisher is disconnected");
    let before = progress.load(Ordering::Relaxed);
    assert!(first.wait().unwrap().success(), "first publisher untouched");
    assert!(
        progress.load(Ordering::Relaxed) > before,
        "media kept flowing after the refusal"
    );

    // Republish within the grace period: the same player continues.
    let mut second = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/dup"), &[]);
    assert!(second.wait().unwrap().success());
    let log = player.join().unwrap();
    assert_eq!(
        log.video,
        2 * video,
        "both publishes' frames reached the player: {log:?}"
    );
    assert_eq!(log.video_headers, 2, "fresh sequence headers on republish");
    assert!(
        log.video_ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps stay monotonic across the republish"
    );
    assert!(log
        .statuses
        .contains(&"NetStream.Play.UnpublishNotify".to_string()));
    assert_eq!(engine.metrics().sum("publish_rejected"), 1);
}

#[test]
fn a_stalled_player_does_not_hold_back_others_and_is_disconnected() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--max-queue-bytes",
        "65536",
        "--slow-viewer-ms",
        "1000",
        "--republish-grace-ms",
        "300",
    ]);
    let addr = engine.rtmp;
    let stalled = std::thread::spawn(move || {
        let opts = PlayOpts {
            stall_after_bytes: Some(1),
            rcvbuf: Some(4096),
            deadline: Duration::from_secs(120),
            until_status: None,
            ..PlayOpts::default()
        };
        play_rtmp(addr, "live", "slow", &opts, None)
    });
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let healthy = std::thread::spawn(move || {
        let opts = PlayOpts {
            deadline: Duration::from_secs(120),
            ..PlayOpts::default()
        };
        play_rtmp(addr, "live", "slow", &opts, Some(&p))
    });
    engine.wait_for("two players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 2
    });
    // Loop the fixture at 10x real time so the stalled player's queue fills quickly.
    let mut publisher = ffmpeg_publish(
        &fixture(FIXTURE),
        &engine.rtmp_url("live/slow"),
        &["-stream_loop", "-1", "-readrate", "10"],
    );
    engine.wait_for("slow viewer disconnected", Duration::from_secs(60), |m| {
        m.sum("slow_viewer_disconnects") == 1
    });
    let at_disconnect = progress.load(Ordering::Relaxed);
    let stalled_log = stalled.join().unwrap();
    assert!(
        stalled_log.closed,
        "the stalled player's connection was closed: {stalled_log:?}"
    );
    // The healthy player keeps receiving after the other was cut.
    let target = at_disconnect + 200;
    eventually(
        "200 more frames at the healthy player",
        Duration::from_secs(60),
        || progress.load(Ordering::Relaxed) >= target,
    );
    publisher.kill().unwrap();
    publisher.wait().unwrap();
    let log = healthy.join().unwrap();
    assert!(log.error.is_none() && !log.video_ts.is_empty(), "{log:?}");
    let m = engine.metrics();
    assert_eq!(
        m.sum("slow_viewer_disconnects"),
        1,
        "only the stalled player was cut"
    );
}

#[test]
fn garbage_closes_only_that_connection() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let addr = engine.rtmp;
    let player =
        std::thread::spawn(move || play_rtmp(addr, "live", "g", &PlayOpts::default(), Some(&p)));
    engine.wait_for("player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/g"), &[]);
    eventually("10 frames at the player", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) >= 10
    });

    // Not an RTMP handshake: the server closes that socket.
    let mut s = TcpStream::connect(engine.rtmp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\x10\xff garbage that is not rtmp \x00\x01\x02")
        .unwrap();
    s.write_all(&[0xAB; 3000]).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    // Not HTTP: 400, then close.
    let mut h = TcpStream::connect(engine.http).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    h.write_all(b"\x01\x02\x03 NOT HTTP\r\n\r\n").unwrap();
    let mut all = Vec::new();
    h.read_to_end(&mut all).unwrap();
    assert_eq!(split_response(&all).status(), 400);

    let before = progress.load(Ordering::Relaxed);
    assert!(publisher.wait().unwrap().success(), "publisher unaffected");
    let log = player.join().unwrap();
    assert!(
        log.video + log.audio > before,
        "the stream continued after the garbage"
    );
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    assert_eq!((log.video, log.audio), (video, audio), "and lost nothing");
    assert!(engine.metrics().sum("connection_errors") >= 2);
}

#[test]
fn players_without_a_publisher_get_not_found_after_the_play_wait() {
    let engine = Engine::start(&["--cores", "2", "--play-wait-ms", "300"]);
    let opts = PlayOpts {
        until_status: Some("NetStream.Play.StreamNotFound".into()),
        ..PlayOpts::default()
    };
    // Several of each, so the owner shard and the other one both serve some (regression: a
    // viewer on the owner shard used to leave its replica behind).
    let rtmp = play_many(engine.rtmp, "live", "nobody", 8, opts);
    let http: Vec<_> = (0..8)
        .map(|_| {
            let addr = engine.http;
            std::thread::spawn(move || http_get(addr, "/live/nobody.flv"))
        })
        .collect();
    for log in rtmp.join().unwrap() {
        assert!(log.started, "{log:?}");
        assert_eq!(
            log.statuses.last().map(String::as_str),
            Some("NetStream.Play.StreamNotFound"),
            "{log:?}"
        );
    }
    for h in http {
        let r = h.join().unwrap();
        assert_eq!(r.status(), 404, "{}", r.head);
    }
    let m = engine.metrics();
    assert!(
        m.get("rtmp_connections_accepted", 0) > 0 && m.get("rtmp_connections_accepted", 1) > 0,
        "{m:?}"
    );
    let m = engine.wait_for("state freed", Duration::from_secs(10), |m| {
        m.sum("replicas") == 0
    });
    assert_eq!(
        m.sum("streams_owned"),
        0,
        "nothing is kept for streams nobody watches"
    );
}

#[test]
fn http_keep_alive_pipelining_head_and_health() {
    let engine = Engine::start(&["--cores", "2"]);
    let mut s = TcpStream::connect(engine.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let heads: Vec<&str> = text.matches("HTTP/1.1 ").collect();
    assert_eq!(heads.len(), 3, "three pipelined answers: {text}");
    let first = split_response(&all);
    assert_eq!(first.status(), 200);
    let len: usize = first
        .head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let body = String::from_utf8_lossy(&first.body[..len]);
    assert!(
        body.contains("\"status\":\"ok\"") && body.contains("\"driver\""),
        "{body}"
    );
    let rest = split_response(&first.body[len..]);
    assert_eq!(rest.status(), 200);
    assert!(
        rest.head.contains("Content-Length: "),
        "HEAD carries the length"
    );
    assert!(
        rest.body.starts_with(b"HTTP/1.1 404"),
        "HEAD has no body; the 404 follows"
    );
    // A head over 16 KiB is refused.
    let mut s = TcpStream::connect(engine.http).unwrap();
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 17 * 1024));
    let _ = s.write_all(&big);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert_eq!(split_response(&all).status(), 431);
}

/// Regression: a viewer on the owner shard of a stream nobody publishes used to leave the
/// owner's replica behind when it gave up. One shard makes every viewer land on the owner.
#[test]
fn not_found_viewer_on_the_owner_shard_frees_the_replica() {
    let engine = Engine::start(&["--cores", "1", "--play-wait-ms", "200"]);
    let opts = PlayOpts {
        until_status: Some("NetStream.Play.StreamNotFound".into()),
        ..PlayOpts::default()
    };
    let log = play_rtmp(engine.rtmp, "live", "ghost", &opts, None);
    assert_eq!(
        log.statuses.last().map(String::as_str),
        Some("NetStream.Play.StreamNotFound")
    );
    engine.wait_for("replica freed", Duration::from_secs(10), |m| {
        m.sum("replicas") == 0
    });
}

#[test]
fn silent_connections_are_closed_after_the_idle_timeout() {
    let engine = Engine::start(&["--cores", "2", "--idle-timeout-ms", "300"]);
    for addr in [engine.rtmp, engine.http] {
        let mut s = TcpStream::connect(addr).unwrap();
        // Generous: the assertion is that the server closes, not how fast.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{addr}: {r:?}"
        );
    }
    // An HTTP connection that sends nothing closes before its request.
    let m = engine.metrics();
    assert_eq!(m.sum("rtmp_connections_accepted"), 1);
}

/// The epoll fallback (what a shard runs where io_uring is blocked) serves the same stream,
/// and `/healthz` says which driver runs.
#[test]
fn legacy_driver_fallback_serves_and_reports_it() {
    let engine = Engine::start_with_env(
        &["--cores", "2", "--republish-grace-ms", "300"],
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    let health = String::from_utf8(http_get(engine.http, "/healthz").body).unwrap();
    assert_eq!(
        health.matches("\"driver\":\"legacy\"").count(),
        2,
        "{health}"
    );
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    let players = play_many(engine.rtmp, "live", "epoll", 4, PlayOpts::default());
    engine.wait_for("players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 4
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/epoll"), &[]);
    assert!(publisher.wait().unwrap().success());
    for log in players.join().unwrap() {
        assert_eq!((log.video, log.audio), (video, audio), "{log:?}");
    }
}

#[test]
fn hls_decodes_cleanly_and_matches_the_source_packets() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let playlist = publish_and_wait_for_endlist(&engine, "live/hls");
    let url = engine.http_url("live/hls.m3u8");
    if let Err(err) = ffmpeg_decode(&url, None) {
        panic!("ffmpeg decoding HLS printed: {err}");
    }

    // Packet lists: same count per stream; timestamps shifted by one constant. The source is
    // FLV (ms) and HLS is 90 kHz: video matches exactly; for audio, ffprobe interpolates the
    // second and later ADTS frames of a PES from the sample rate, which differs from the
    // FLV's rounded milliseconds by less than 1 ms.
    let source = probe_packets(fixture(FIXTURE).to_str().unwrap());
    let hls = probe_packets(&url);
    for stream in [0, 1] {
        let src: Vec<_> = source.iter().filter(|p| p.0 == stream).collect();
        let out: Vec<_> = hls.iter().filter(|p| p.0 == stream).collect();
        assert_eq!(
            out.len(),
            src.len(),
            "stream {stream} packet count ({playlist})"
        );
        let offset = out[0].2 - src[0].2 * 90;
        for (i, (o, s)) in out.iter().zip(&src).enumerate() {
            let (pts, dts) = (o.1 - offset, o.2 - offset);
            if stream == 0 {
                assert_eq!((pts, dts), (s.1 * 90, s.2 * 90), "video packet {i}");
                assert_eq!(o.3, s.3, "keyframe flag of video packet {i}");
            } else {
                assert!(
                    (pts - s.1 * 90).abs() < 90 && (dts - s.2 * 90).abs() < 90,
                    "audio packet {i}: {o:?} vs {s:?}"
                );
            }
        }
    }
}

#[test]
fn hls_segments_start_with_keyframes_and_respect_the_target() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--republish-grace-ms",
        "300",
        "--hls-segment-ms",
        "1000",
    ]);
    let playlist = publish_and_wait_for_endlist(&engine, "live/seg");
    let (segments, target) = parse_playlist(&playlist);
    assert!(segments.len() >= 3, "{playlist}");
    assert_eq!(target, 1, "{playlist}");
    for (i, (uri, ms)) in segments.iter().enumerate() {
        assert!(*ms <= target * 1000, "{uri}: {ms} ms over the target");
        if i + 1 < segments.len() {
            assert!(*ms >= 1000, "{uri}: cut before the 1 s target ({ms} ms)");
        }
        let packets = probe_packets(&engine.http_url(&format!("live/{uri}")));
        let first_video = packets
            .iter()
            .find(|p| p.0 == 0)
            .expect("video in every segment");
        assert!(first_video.3, "{uri} starts with a keyframe");
    }
}

#[test]
fn a_segment_fetched_over_50_connections_on_both_shards_is_identical() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let playlist = publish_and_wait_for_endlist(&engine, "live/same");
    let (segments, _) = parse_playlist(&playlist);
    let path = format!("/live/{}", segments[0].0);
    let fetches: Vec<_> = (0..50)
        .map(|_| {
            let (addr, path) = (engine.http, path.clone());
            std::thread::spawn(move || http_get(addr, &path))
        })
        .collect();
    let bodies: Vec<Response> = fetches.into_iter().map(|f| f.join().unwrap()).collect();
    let first = &bodies[0].body;
    assert!(
        first.len() > 10_000 && first.len().is_multiple_of(188),
        "{} bytes",
        first.len()
    );
    for (i, r) in bodies.iter().enumerate() {
        assert_eq!(r.status(), 200, "{}", r.head);
        assert!(r
            .head
            .contains(&format!("Content-Length: {}\r\n", first.len())));
        assert!(r.head.contains("Content-Type: video/mp2t") && r.head.contains("immutable"));
        assert!(&r.body == first, "fetch {i} differs");
    }
    let m = engine.metrics();
    let (a, b) = (
        m.get("http_connections_accepted", 0),
        m.get("http_connections_accepted", 1),
    );
    assert!(a > 0 && b > 0, "both shards served: {a}/{b}");
    let p = http_get(engine.http, "/live/same.m3u8");
    assert!(
        p.head.contains("application/vnd.apple.mpegurl") && p.head.contains("max-age=1"),
        "{}",
        p.head
    );
    assert_eq!(http_get(engine.http, "/live/same-999.ts").status(), 404);
    assert_eq!(http_get(engine.http, "/live/nothing.m3u8").status(), 404);
}

#[test]
fn hls_republish_adds_a_discontinuity_and_sequence_numbers_keep_rising() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "4000"]);
    for _ in 0..2 {
        let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/again"), &[]);
        assert!(publisher.wait().unwrap().success());
    }
    let playlist = publish_and_wait_for_endlist(&engine, "live/again");
    let (segments, _) = parse_playlist(&playlist);
    let seqs: Vec<u64> = segments
        .iter()
        .map(|(uri, _)| {
            uri.trim_end_matches(".ts")
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive: {seqs:?}"
    );
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
        2,
        "one per republish:\n{playlist}"
    );
    let media_seq: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(media_seq, seqs[0]);
    // Three publishes of three segments each: the 4 s fixture (1 s GOP) meets the 2 s cells'
    // boundaries at 1 and 3 s, so 0-1, 1-3 and 3-4 s; numbers run on across republishes.
    assert_eq!(seqs.last().copied(), Some(8), "{playlist}");
}

/// With a tiny `--cache-mb`, an ended stream's segments are evicted first, then new segments
/// are refused (counted) rather than exceeding the budget; the engine keeps serving.
#[test]
fn segment_cache_budget_evicts_ended_streams_then_refuses() {
    let engine = Engine::start(&[
        "--cores",
        "1",
        "--republish-grace-ms",
        "200",
        "--cache-mb",
        "1",
    ]);
    let m = engine.metrics();
    let total = m.get("cache_bytes_total", 0);
    assert!(
        total > 0 && total <= 2 << 20,
        "arena of about 1 MiB: {total}"
    );
    publish_and_wait_for_endlist(&engine, "live/old");
    assert_eq!(http_get(engine.http, "/live/old.m3u8").status(), 200);
    // About 20 s of media: more segments than the arena holds.
    let mut publisher = ffmpeg_publish(
        &fixture(FIXTURE),
        &engine.rtmp_url("live/big"),
        &["-stream_loop", "4", "-readrate", "8"],
    );
    assert!(publisher.wait().unwrap().success());
    let m = engine.wait_for("eviction and refusal", Duration::from_secs(30), |m| {
        m.get("hls_evictions", 0) == 1 && m.get("hls_segments_refused", 0) > 0
    });
    assert!(m.get("cache_bytes_free", 0) <= total);
    assert_eq!(
        http_get(engine.http, "/live/old.m3u8").status(),
        404,
        "the ended stream went first"
    );
    let big = http_get(engine.http, "/live/big.m3u8");
    assert_eq!(big.status(), 200);
    let text = String::from_utf8_lossy(&big.body).into_owned();
    let (segments, _) = parse_playlist(&text);
    // The live stream kept producing: after a refusal it sheds its oldest segments and the
    // next ones fit again (a refusal marks a discontinuity).
    let last: u64 = segments
        .last()
        .unwrap()
        .0
        .trim_end_matches(".ts")
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        last >= 6,
        "segments kept coming after the first refusal:\n{text}"
    );
    for (uri, _) in segments {
        assert_eq!(
            http_get(engine.http, &format!("/live/{uri}")).status(),
            200,
            "{uri} listed and served"
        );
    }
}

/// Regression: a second engine started on a running engine's HTTP port printed `ready`, and
/// SO_REUSEPORT dealt the connections out between the two (`live/x.m3u8` answered 200 and 404
/// in turn). It must refuse to start, name the address, and leave the first one alone.
#[test]
fn a_second_engine_on_the_same_port_exits_and_the_first_keeps_serving() {
    let first = Engine::start(&["--cores", "2"]);
    let _publisher = publish_loop(&first.rtmp_url("live/port"));
    eventually("the stream's playlist", Duration::from_secs(30), || {
        http_get(first.http, "/live/port.m3u8").status() == 200
    });
    for (rtmp, http, taken) in [
        (
            "127.0.0.1:0".to_string(),
            first.http.to_string(),
            first.http,
        ),
        (
            first.rtmp.to_string(),
            "127.0.0.1:0".to_string(),
            first.rtmp,
        ),
    ] {
        let out = std::process::Command::new(engine_bin())
            .args(["--cores", "2", "--rtmp", &rtmp, "--http", &http])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the second engine started: {out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ready"),
            "{out:?}"
        );
        assert!(stderr.contains(&taken.to_string()), "{stderr}");
        assert!(stderr.contains("already in use"), "{stderr}");
        assert_eq!(
            stderr.matches("already in use").count(),
            1,
            "the error is printed once: {stderr}"
        );
    }
    // Every request reaches the first engine, on new connections each time.
    for i in 0..30 {
        let r = http_get(first.http, "/live/port.m3u8");
        assert_eq!(r.status(), 200, "request {i}: {}", r.head);
    }
}

/// Regression: `edge_bytes_out` stayed flat while viewers played and jumped when they left,
/// and `/api/v1/summary` said `"egress_bits_per_second":0` with viewers playing. Bytes out are
/// counted as they are written: over a window in which an RTMP and an HTTP-FLV viewer play,
/// the counter rises by what they received (plus the test's own metric responses), within
/// 10 %, and the summary's egress is the viewers' rate, not 0.
#[test]
fn egress_is_counted_while_viewers_play() {
    let engine = Engine::start(&["--cores", "2"]);
    let _publisher = publish_loop(&engine.rtmp_url("live/egress"));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flv = {
        let (received, stop, http) = (Arc::clone(&received), Arc::clone(&stop), engine.http);
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(http).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            write!(
                s,
                "GET /live/egress.flv HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => panic!("the FLV response ended while the stream plays"),
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("FLV read: {e}"),
                }
            }
        })
    };
    let rtmp = {
        let (received, addr) = (Arc::clone(&received), engine.rtmp);
        std::thread::spawn(move || {
            let opts = PlayOpts {
                deadline: Duration::from_secs(25),
                bytes_read: Some(received),
                ..PlayOpts::default()
            };
            play_rtmp(addr, "live", "egress", &opts, None)
        })
    };
    engine.wait_for("an RTMP and an FLV viewer", Duration::from_secs(30), |m| {
        m.sum("rtmp_players") == 1 && m.sum("flv_players") == 1
    });
    eventually("media flowing", Duration::from_secs(30), || {
        received.load(Ordering::Relaxed) > 100_000
    });
    // A byte count of the server's: the metrics response's own bytes count once it is out,
    // so the test adds what it fetched itself between the two readings.
    let bytes_out = |own: &mut u64| {
        let r = http_get(engine.http, "/metrics");
        *own += (r.head.len() + r.body.len()) as u64;
        Metrics::parse(&String::from_utf8_lossy(&r.body)).sum("bytes_out")
    };
    let mut own = 0u64;
    let (out0, got0) = (bytes_out(&mut own), received.load(Ordering::Relaxed));
    let mut egress = Vec::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        let r = http_get(engine.http, "/api/v1/summary");
        own += (r.head.len() + r.body.len()) as u64;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let bps: u64 = text
            .split("\"egress_bits_per_second\":")
            .nth(1)
            .and_then(|t| t.split([',', '}']).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no egress in {text}"));
        egress.push(bps);
    }
    let got1 = received.load(Ordering::Relaxed);
    // The last metrics response was rendered before it was written: not in its own count.
    let out1 = bytes_out(&mut 0);
    let (server, client) = (out1 - out0, got1 - got0 + own);
    let diff = server.abs_diff(client) as f64 / client as f64;
    assert!(
        diff <= 0.10,
        "bytes_out rose by {server} while the viewers received {client} ({:.1} % apart)",
        diff * 100.0
    );
    // The summary's window is the engine's last second, not the test's: each reading is
    // within a factor of two of the viewers' mean rate, and none is 0.
    let mean_bps = (got1 - got0) as f64 * 8.0 / 6.0;
    for bps in &egress {
        assert!(
            *bps as f64 > mean_bps / 2.0 && (*bps as f64) < mean_bps * 2.0,
            "egress {egress:?} b/s against the viewers' {mean_bps:.0} b/s"
        );
    }
    stop.store(true, Ordering::Relaxed);
    flv.join().unwrap();
    drop(_publisher);
    let log = rtmp.join().unwrap();
    assert!(log.started && log.video > 0, "{log:?}");
}

/// loadgen watches a stream someone else publishes (`--stream live/x`, here ffmpeg without
/// loadgen's probes): its viewers receive media, so the run passes, and the report names the
/// stream. (Before `--stream`, loadgen could only watch streams named `PREFIXn`.)
#[test]
fn loadgen_watches_an_existing_stream_by_name() {
    let engine = Engine::start(&["--cores", "2"]);
    let _publisher = publish_loop(&engine.rtmp_url("live/x"));
    eventually("live/x live", Duration::from_secs(30), || {
        http_get(engine.http, "/live/x.m3u8").status() == 200
    });
    let (rtmp, http) = (engine.rtmp_url(""), engine.http_url(""));
    let run = LoadgenRun::start(
        "watch",
        &[
            "--target",
            rtmp.trim_end_matches('/'),
            "--target",
            http.trim_end_matches('/'),
            "--viewers",
            "4",
            "--protocol",
            "rtmp=1,flv=1",
            "--stream",
            "live/x",
            "--duration",
            "3s",
        ],
    );
    let (status, report) = run.finish();
    assert!(status.success(), "{status:?} {report}");
    assert!(report.contains("\"streams\":[\"live/x\"]"), "{report}");
    assert!(!report.contains("no_media"), "{report}");
}

/// Regression: H.264 with MP3 audio (older encoders and IP cameras publish it) played over
/// RTMP and HTTP-FLV, but its playlist was a 404: "HLS stopped for this stream: unsupported
/// codec for HLS: audio format 2". MPEG-TS carries MPEG audio: ffmpeg decodes the HLS with
/// both tracks, and its MP3 frames are the RTMP output's, byte for byte, from the first
/// segment on (the metadata announces MP3, which has no sequence header).
#[test]
fn h264_with_mp3_audio_is_served_over_hls_with_both_tracks() {
    let dir = std::env::temp_dir().join(format!("edge-mp3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("mp3.flv");
    let (ok, _, err) = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            fixture(FIXTURE).to_str().unwrap(),
            "-c:v",
            "copy",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "64k",
            "-ar",
            "44100",
            "-f",
            "flv",
            source.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "making the MP3 fixture: {err}");
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let addr = engine.rtmp;
    let player = std::thread::spawn(move || {
        let opts = PlayOpts {
            keep_frames: true,
            ..PlayOpts::default()
        };
        play_rtmp(addr, "live", "mp3", &opts, None)
    });
    engine.wait_for("the player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let mut publisher = ffmpeg_publish(&source, &engine.rtmp_url("live/mp3"), &[]);
    assert!(publisher.wait().unwrap().success());
    let url = engine.http_url("live/mp3.m3u8");
    eventually("EXT-X-ENDLIST", Duration::from_secs(30), || {
        String::from_utf8_lossy(&http_get(engine.http, "/live/mp3.m3u8").body)
            .contains("#EXT-X-ENDLIST")
    });
    let log = player.join().unwrap();
    let rtmp_audio: Vec<u8> = log
        .frames
        .iter()
        .filter(|(kind, _, _)| *kind == edge_core::media::MediaKind::Audio)
        .flat_map(|(_, _, body)| body[1..].to_vec())
        .collect();
    // The TS playlist, and LL-HLS's fMP4 (`mp4a` whose esds names MPEG audio).
    let ll_url = engine.http_url("live/mp3/llhls.m3u8");
    for (url, name) in [(&url, "HLS"), (&ll_url, "LL-HLS")] {
        let codecs = ffprobe(url, &["-show_entries", "stream=codec_name"]);
        let codecs: std::collections::BTreeSet<&str> = codecs.split_whitespace().collect();
        assert_eq!(codecs, ["h264", "mp3"].into(), "{name}: both tracks");
        if let Err(err) = ffmpeg_decode(url, None) {
            panic!("ffmpeg decoding the {name} printed: {err}");
        }
        // The audio, as raw MP3 frames.
        let out = dir.join("out.mp3");
        let (ok, _, err) = run_tool(
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-i",
                url,
                "-map",
                "0:a",
                "-c",
                "copy",
                "-write_xing",
                "0",
                "-id3v2_version",
                "0",
                "-write_id3v1",
                "0",
                out.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert!(ok, "{err}");
        let audio = std::fs::read(&out).unwrap();
        assert!(!audio.is_empty());
        assert!(
            rtmp_audio.ends_with(&audio),
            "the {name} MP3 frames are the RTMP output's ({} of {} bytes)",
            audio.len(),
            rtmp_audio.len()
        );
        assert!(
            audio.len() * 10 >= rtmp_audio.len() * 9,
            "{name}: from the first segment on"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A publisher faster than its owner shard drains (the smallest mesh channels, 16 slots;
/// four ffmpeg publishers at 20× real time) waits for room in its channel and is woken by
/// the drain that makes it (the mesh's space bell), not by a timer: every publisher ends, and
/// each stream's HLS, muxed on its owner shard from what arrived, holds every picture and
/// audio frame of the source. (Viewers on other shards may skip frames by design when their
/// updates overflow, resynchronised at the next keyframe; the publisher path drops nothing.)
#[test]
fn publishers_wait_for_room_in_the_mesh_and_lose_nothing() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--mesh-queue-len",
        "16",
        "--republish-grace-ms",
        "300",
    ]);
    let source = probe_packets(fixture(FIXTURE).to_str().unwrap());
    let count =
        |packets: &[ProbePacket], stream: u32| packets.iter().filter(|p| p.0 == stream).count();
    let names: Vec<String> = (0..4).map(|i| format!("fast{i}")).collect();
    let publishers: Vec<_> = names
        .iter()
        .map(|n| {
            KillOnDrop(ffmpeg_publish(
                &fixture(FIXTURE),
                &engine.rtmp_url(&format!("live/{n}")),
                &["-readrate", "20"],
            ))
        })
        .collect();
    for mut p in publishers {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while p.0.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "a publisher stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for n in &names {
        let path = format!("/live/{n}.m3u8");
        eventually("EXT-X-ENDLIST", Duration::from_secs(30), || {
            String::from_utf8_lossy(&http_get(engine.http, &path).body).contains("#EXT-X-ENDLIST")
        });
        let hls = probe_packets(&engine.http_url(&path[1..]));
        for stream in [0, 1] {
            assert_eq!(
                count(&hls, stream),
                count(&source, stream),
                "{n}: stream {stream}"
            );
        }
    }
}

#[test]
fn an_app_table_gives_its_streams_their_own_hls_window() {
    let conf = config_file("apps", "[apps.short]\nhls_window = 1\n");
    let engine = Engine::start(&["--cores", "1", "--config", conf.to_str().unwrap()]);
    let _long = publish_loop(&engine.rtmp_url("live/w"));
    let _short = publish_loop(&engine.rtmp_url("short/w"));
    let playlist = |path: &str| {
        let r = http_get(engine.http, path);
        (r.status() == 200)
            .then(|| edge_core::hls::m3u8::parse_media_playlist(&String::from_utf8_lossy(&r.body)))
            .and_then(Result::ok)
    };
    // Once the default app lists three segments, the short app has cut as many but lists one.
    eventually("three segments in live/w", Duration::from_secs(60), || {
        playlist("/live/w.m3u8").is_some_and(|p| p.segments.len() >= 3)
    });
    eventually("short/w to have cut three", Duration::from_secs(60), || {
        playlist("/short/w.m3u8").is_some_and(|p| p.media_sequence >= 2)
    });
    let short = playlist("/short/w.m3u8").unwrap();
    assert_eq!(short.segments.len(), 1, "{short:?}");
    let long = playlist("/live/w.m3u8").unwrap();
    assert!(long.segments.len() >= 3, "{long:?}");
    let _ = std::fs::remove_file(conf);
}

/// A viewer's join (the FLV response head, the GOP burst) is written at once even where every
/// live write is held, for a second (`--write-coalesce-load 0`); the live frames after it are
/// held. Deterministic: the stream is paused while the viewers join, so nothing but the join is
/// written until the publisher goes on.
#[test]
fn a_join_is_never_held_and_the_live_frames_after_it_are() {
    let engine = Engine::start(&[
        "--cores",
        "1",
        "--write-coalesce-ms",
        "1000",
        "--write-coalesce-load",
        "0",
    ]);
    // Media only: the owner counts media bodies as they are, and metadata as it re-reads it.
    let tags: Vec<_> = fixture_flv_tags(FIXTURE)
        .into_iter()
        .filter(|t| t.type_id == 8 || t.type_id == 9)
        .collect();
    let split = tags.iter().position(|t| t.timestamp >= 3_000).unwrap();
    let mut publisher = Publisher::start(engine.rtmp, "live", "join");
    publisher.send_tags(&tags[..split]);
    // Every frame sent has reached the owner (it counts the stream's ingest as it takes them).
    let media_bytes: usize = tags[..split].iter().map(|t| t.body.len()).sum();
    let ingest = format!("\"ingest_bytes\":{media_bytes},");
    eventually(
        "the owner took every frame",
        Duration::from_secs(20),
        || {
            String::from_utf8_lossy(&http_get(engine.http, "/api/v1/streams").body)
                .contains(&ingest)
        },
    );

    let rtmp_frames = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&rtmp_frames);
    let addr = engine.rtmp;
    let rtmp = std::thread::spawn(move || {
        play_rtmp(addr, "live", "join", &PlayOpts::default(), Some(&progress))
    });
    let mut flv = TcpStream::connect(engine.http).unwrap();
    flv.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(flv, "GET /live/join.flv HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // The FLV head, the file header and the first tags.
    let mut got = vec![0u8; 4096];
    flv.read_exact(&mut got).unwrap();
    eventually("the RTMP player's GOP", Duration::from_secs(20), || {
        rtmp_frames.load(Ordering::Relaxed) > 0
    });
    let m = engine.metrics();
    assert_eq!(m.sum("write_window_ms"), 1000);
    let health = String::from_utf8_lossy(&http_get(engine.http, "/healthz").body).to_string();
    assert!(health.contains("\"write_window_ms\":1000"), "{health}");
    assert_eq!(m.sum("viewer_writes_held"), 0, "a join was held");
    assert!(m.sum("viewer_writes") >= 2);

    // The publisher goes on: live frames are held, and still all arrive.
    publisher.send_tags(&tags[split..]);
    publisher.finish();
    let log = rtmp.join().unwrap();
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    assert!(log.error.is_none(), "{log:?}");
    assert!(log.video > 0 && log.video <= video && log.audio <= audio);
    let last_video = tags.iter().rev().find(|t| t.type_id == 9).unwrap();
    assert_eq!(
        log.video_ts.last(),
        Some(&last_video.timestamp),
        "the last frame arrived"
    );
    assert!(engine.metrics().sum("viewer_writes_held") > 0);
    assert!(engine.stop().success());
}
