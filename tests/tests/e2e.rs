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

/// The fixture's own packets, as ffmpeg sees them.
fn source_md5() -> Vec<String> {
    let (lines, err) = framemd5(fixture(FIXTURE).to_str().unwrap(), Duration::from_secs(30));
    assert!(err.is_empty(), "{err}");
    assert!(lines.len() > 200, "fixture has {} packets", lines.len());
    lines
}

#[test]
fn ffmpeg_plays_rtmp_and_http_flv_checksum_identical() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let source = source_md5();
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
    assert!(engine.stop().success(), "SIGTERM exits 0");
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
    }
    let m = engine.metrics();
    assert_eq!(m.sum("frames_dropped"), 0);
    assert_eq!(
        m.sum("frames_in"),
        video + audio + 2,
        "media plus two sequence headers"
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
    while progress.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
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
    while progress.load(Ordering::Relaxed) < target {
        std::thread::sleep(Duration::from_millis(20));
    }
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
    while progress.load(Ordering::Relaxed) < 10 {
        std::thread::sleep(Duration::from_millis(20));
    }

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
