//! Edge mode end to end: `edge-engine --cores 2 --origin …` on 127.0.0.1 in front of real
//! origins (edge-engine, nginx with the rtmp module, and a fake origin that refuses or
//! redirects), with ffmpeg and edge-core's client as viewers. Assertions are on bytes, frame
//! counts, playlists and counters, never on elapsed time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::*;

const FIXTURE: &str = "bframes.flv";

#[test]
fn sixty_edge_viewers_cause_exactly_one_pull_from_an_engine_origin() {
    let origin = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    // A long media timeout: the pull starts before the publisher and must not give up on
    // the (healthy) origin while it waits; this test is about the one pull.
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_of(&origin),
        "--republish-grace-ms",
        "300",
        "--upstream-timeout-ms",
        "20000",
    ]);
    let source = fixture_md5(FIXTURE);
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    // The reference: a player at the origin itself.
    let reference = play_many(origin.rtmp, "live", "one", 1, PlayOpts::default());
    // 48 RTMP players at the edge (one with a token), 4 ffmpeg over RTMP, 4 over HTTP-FLV.
    let rtmp_players = play_many(edge.rtmp, "live", "one", 47, PlayOpts::default());
    let token_player = play_many(edge.rtmp, "live", "one?token=t1", 1, PlayOpts::default());
    let ffmpegs: Vec<_> = (0..8)
        .map(|i| {
            let url = if i % 2 == 0 {
                edge.rtmp_url("live/one")
            } else {
                edge.http_url("live/one.flv")
            };
            std::thread::spawn(move || (url.clone(), framemd5(&url, Duration::from_secs(60))))
        })
        .collect();
    edge.wait_for("56 viewers on both shards", Duration::from_secs(30), |m| {
        let on = |s| m.get("rtmp_players", s) + m.get("flv_players", s);
        on(0) + on(1) == 56 && on(0) > 0 && on(1) > 0
    });
    origin.wait_for(
        "the edge's pull and the reference player",
        Duration::from_secs(20),
        |m| m.sum("rtmp_players") == 2,
    );
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &origin.rtmp_url("live/one"), &[]);
    // 4 HLS viewers once it is live: the first playlist request waits for the first segment.
    let hls: Vec<_> = (0..4)
        .map(|_| {
            let url = edge.http_url("live/one.m3u8");
            std::thread::spawn(move || {
                run_tool(
                    "ffmpeg",
                    &["-nostdin", "-v", "error", "-i", &url, "-f", "null", "-"],
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    // While the stream is live: one play at the origin for the whole edge.
    edge.wait_for("a first edge segment", Duration::from_secs(30), |m| {
        m.sum("hls_segments") >= 1
    });
    let m = origin.metrics();
    assert_eq!(
        m.sum("rtmp_play_requests"),
        2,
        "the edge's pull + the reference"
    );
    assert_eq!(m.sum("rtmp_players"), 2, "the edge's pull + the reference");
    let e = edge.metrics();
    assert_eq!(e.sum("upstream_pulls_started"), 1);
    assert_eq!(e.sum("upstream_connects"), 1);
    assert!(publisher.wait().unwrap().success());

    let reference = reference.join().unwrap().remove(0);
    assert_eq!((reference.video, reference.audio), (video, audio));
    for (i, p) in rtmp_players
        .join()
        .unwrap()
        .into_iter()
        .chain(token_player.join().unwrap())
        .enumerate()
    {
        assert_eq!((p.video, p.audio), (video, audio), "edge player {i}");
        assert_eq!(p.digest, reference.digest, "edge player {i}: media differs");
        assert!(p.error.is_none(), "edge player {i}: {:?}", p.error);
    }
    for f in ffmpegs {
        let (url, (lines, err)) = f.join().unwrap();
        assert!(err.is_empty(), "{url}: {err}");
        assert_eq!(lines, source, "{url}: packets differ from the source");
    }
    for h in hls {
        let (ok, _, err) = h.join().unwrap();
        assert!(ok && err.is_empty(), "HLS at the edge: {err}");
    }
}

#[test]
fn ffmpeg_plays_from_an_edge_of_nginx_rtmp() {
    let nginx = Nginx::start(1);
    let _publisher = publish_loop(&format!("{}/n", nginx.url()));
    // By name: the edge resolves it off the shard (and tries each address it has).
    let by_name = nginx.url().replace("127.0.0.1", "localhost");
    let edge = Engine::start(&["--cores", "2", "--origin", &by_name]);
    let mut outputs = Vec::new();
    for url in [
        edge.rtmp_url("live/n"),
        edge.http_url("live/n.flv"),
        edge.http_url("live/n.m3u8"),
    ] {
        let (ok, _, err) = run_tool(
            "ffmpeg",
            &[
                "-nostdin", "-v", "error", "-i", &url, "-t", "3", "-f", "framemd5", "-",
            ],
            Duration::from_secs(60),
        );
        outputs.push((url, ok, err));
    }
    for (url, ok, err) in outputs {
        assert!(ok && err.is_empty(), "{url}: {err}");
    }
    let m = edge.metrics();
    assert_eq!(m.sum("upstream_pulls_started"), 1, "one pull for all three");
    assert!(m.sum("frames_in") == 0, "nothing was published at the edge");
}

#[test]
fn killing_the_origin_moves_every_viewer_to_the_backup_and_back_without_a_drop() {
    let a = Engine::start(&["--cores", "1"]);
    let b = Engine::start(&["--cores", "1"]);
    let _pub_a = publish_loop(&a.rtmp_url("live/f"));
    let _pub_b = publish_loop(&b.rtmp_url("live/f"));
    wait_until_published(&a, "f");
    wait_until_published(&b, "f");
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_of(&a),
        "--origin",
        &origin_of(&b),
    ]);
    let long = PlayOpts {
        deadline: Duration::from_secs(120),
        until_status: None,
        ..PlayOpts::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Vec<Arc<AtomicU64>> = (0..10).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let players: Vec<_> = progress[..6]
        .iter()
        .map(|p| {
            let (p, opts, addr) = (Arc::clone(p), long.clone(), edge.rtmp);
            std::thread::spawn(move || play_rtmp(addr, "live", "f", &opts, Some(&p)))
        })
        .collect();
    let flv: Vec<_> = progress[6..]
        .iter()
        .map(|p| read_http_until(edge.http, "/live/f.flv", Arc::clone(p), Arc::clone(&stop)))
        .collect();
    let snapshot = || -> Vec<u64> { progress.iter().map(|p| p.load(Ordering::Relaxed)).collect() };
    eventually(
        "every viewer receiving from A",
        Duration::from_secs(30),
        || snapshot().iter().all(|&n| n > 20),
    );
    // HLS: the playlist before the failover.
    let before = playlist(&edge, "/live/f.m3u8");
    let a_addr = a.rtmp;
    let mut a = a;
    a.kill();
    // RTMP viewers count frames, FLV viewers bytes: every one moved on by 50 frames or 50 KB.
    let advanced_since = |then: &[u64]| {
        snapshot()
            .iter()
            .zip(then)
            .enumerate()
            .all(|(i, (now, then))| *now > then + if i < 6 { 50 } else { 50_000 })
    };
    let at_kill = snapshot();
    eventually(
        "every viewer receiving from B",
        Duration::from_secs(30),
        || advanced_since(&at_kill),
    );
    let m = edge.metrics();
    assert_eq!(m.sum("upstream_failovers"), 1, "{m:?}");
    assert_eq!(m.sum("rtmp_players"), 6, "no RTMP viewer dropped");
    assert_eq!(m.sum("flv_players"), 4, "no FLV viewer dropped");
    // HLS: the media sequence continues and the switch is a discontinuity.
    eventually(
        "a discontinuity in the playlist",
        Duration::from_secs(30),
        || {
            playlist(&edge, "/live/f.m3u8")
                .segments
                .iter()
                .any(|s| s.discontinuity)
        },
    );
    let after = playlist(&edge, "/live/f.m3u8");
    let seqs: Vec<u64> = before
        .segments
        .iter()
        .chain(&after.segments)
        .map(|s| s.seq)
        .collect();
    let first = *seqs.iter().min().unwrap();
    let last = *seqs.iter().max().unwrap();
    assert!(
        (first..=last).all(|q| seqs.contains(&q)),
        "media sequence has a gap: {seqs:?}"
    );
    // A comes back (same port, publisher again): the edge probes it and moves back to it.
    let a = Engine::start(&["--cores", "1", "--rtmp", &a_addr.to_string()]);
    let _pub_a = publish_loop(&a.rtmp_url("live/f"));
    let preferred = format!("\"origin\":\"{}\"", origin_of(&a));
    eventually("the edge back on A", Duration::from_secs(60), || {
        let body = http_get(edge.http, "/api/v1/streams").body;
        String::from_utf8_lossy(&body).contains(&preferred)
    });
    let back = snapshot();
    eventually(
        "every viewer receiving from A again",
        Duration::from_secs(30),
        || advanced_since(&back),
    );
    let m = edge.metrics();
    assert_eq!(
        m.sum("upstream_failovers"),
        2,
        "A killed, then A taken back"
    );
    assert_eq!(
        m.sum("rtmp_players") + m.sum("flv_players"),
        10,
        "nobody dropped"
    );
    stop.store(true, Ordering::Relaxed);
    for f in flv {
        assert!(!f.join().unwrap(), "an FLV viewer was disconnected");
    }
    drop(edge);
    for p in players {
        let log = p.join().unwrap();
        assert!(log.error.is_none(), "{:?}", log.error);
        assert!(
            log.video_ts.windows(2).all(|w| w[1] >= w[0]),
            "video timestamps went back"
        );
        assert!(
            log.video_headers >= 2,
            "fresh sequence headers after the failover"
        );
    }
}

fn playlist(edge: &Engine, path: &str) -> edge_core::hls::m3u8::MediaPlaylist {
    let r = http_get(edge.http, path);
    assert_eq!(r.status(), 200, "{path}");
    edge_core::hls::m3u8::parse_media_playlist(&String::from_utf8_lossy(&r.body)).unwrap()
}

#[test]
fn the_pull_closes_once_the_last_viewer_has_been_gone_for_the_idle_time() {
    let origin = Engine::start(&["--cores", "2"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/idle"));
    wait_until_published(&origin, "idle");
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_of(&origin),
        "--upstream-idle-ms",
        "3000",
    ]);
    let opts = PlayOpts {
        deadline: Duration::from_secs(2),
        ..PlayOpts::default()
    };
    let log = play_rtmp(edge.rtmp, "live", "idle", &opts, None);
    assert!(log.video > 0);
    // The viewer left; the pull is still there (it is the origin's one player) until idle.
    let m = edge.wait_for("the viewer to leave", Duration::from_secs(10), |m| {
        m.sum("rtmp_players") == 0
    });
    assert_eq!(m.sum("upstream_pulls_active"), 1);
    assert_eq!(origin.metrics().sum("rtmp_players"), 1);
    edge.wait_for("the pull to stop", Duration::from_secs(30), |m| {
        m.sum("upstream_pulls_active") == 0 && m.sum("streams_owned") == 0
    });
    origin.wait_for(
        "the origin to lose its player",
        Duration::from_secs(10),
        |m| m.sum("rtmp_players") == 0,
    );
    let streams = http_get(edge.http, "/api/v1/streams");
    assert_eq!(String::from_utf8_lossy(&streams.body), "{\"streams\":[]}\n");
    // HLS demand alone starts it again.
    assert_eq!(http_get(edge.http, "/live/idle.m3u8").status(), 200);
    assert_eq!(edge.metrics().sum("upstream_pulls_started"), 2);
}

#[test]
fn refusing_and_redirecting_origins_are_skipped_and_the_query_goes_upstream() {
    let real = Engine::start(&["--cores", "1"]);
    let _publisher = publish_loop(&real.rtmp_url("live/q"));
    wait_until_published(&real, "q");
    let refusing = FakeOrigin::start(FakeAnswer::NotFound);
    let redirecting = FakeOrigin::start(FakeAnswer::Redirect(origin_of(&real)));
    // The real origin is only reachable through the redirect.
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &refusing.url(),
        "--origin",
        &redirecting.url(),
    ]);
    let opts = PlayOpts {
        deadline: Duration::from_secs(4),
        ..PlayOpts::default()
    };
    let log = play_rtmp(edge.rtmp, "live", "q?token=abc", &opts, None);
    assert!(log.video > 20, "{log:?}");
    assert_eq!(*refusing.plays.lock().unwrap(), vec!["q?token=abc"]);
    assert_eq!(*redirecting.plays.lock().unwrap(), vec!["q?token=abc"]);
    let streams =
        String::from_utf8_lossy(&http_get(edge.http, "/api/v1/streams").body).into_owned();
    assert!(
        streams.contains(&format!("\"origin\":\"rtmp://{}/live\"", real.rtmp)),
        "{streams}"
    );
}

#[test]
fn a_publish_at_the_edge_is_forwarded_to_the_origin_and_served_locally() {
    let origin = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_of(&origin),
        "--republish-grace-ms",
        "300",
    ]);
    let opts = PlayOpts {
        deadline: Duration::from_secs(60),
        ..PlayOpts::default()
    };
    let at_origin = play_many(origin.rtmp, "live", "fw", 1, opts.clone());
    let at_edge = play_many(edge.rtmp, "live", "fw", 1, opts);
    origin.wait_for("a waiting player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &edge.rtmp_url("live/fw"), &[]);
    edge.wait_for("the forward", Duration::from_secs(20), |m| {
        m.sum("forward_sessions") == 1
    });
    assert!(publisher.wait().unwrap().success());
    let (video, _) = flv_frame_counts(&fixture(FIXTURE));
    let local = at_edge.join().unwrap().remove(0);
    assert_eq!(local.video, video, "the edge viewer gets the local publish");
    let forwarded = at_origin.join().unwrap().remove(0);
    // The forward starts with the GOP the edge holds when it connects: every frame.
    assert_eq!(forwarded.video, video, "{forwarded:?}");
    let m = edge.metrics();
    // The edge viewer came first and started a pull (the origin had nothing yet); the local
    // publish replaced it.
    assert_eq!(
        m.sum("upstream_pulls_active"),
        0,
        "served locally, not pulled"
    );
    assert_eq!(m.sum("forwards_started"), 1);
}

/// The whole of an HTTP response, read until the server closes (each read bounded by 30 s,
/// so a server that never answers fails the test instead of hanging it), counting what has
/// arrived into `progress` as it arrives.
fn read_all(addr: std::net::SocketAddr, path: &str, progress: &AtomicU64) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                progress.store(all.len() as u64, Ordering::Relaxed);
            }
            Err(e) => panic!("{path}: no end after {} bytes: {e}", all.len()),
        }
    }
}

/// Regression: a play for a stream nobody publishes got nothing for 30 s (RTMP and FLV) on an
/// origin, and on an edge whose origin was down HLS was a 404 after 10 s and FLV after 30 s,
/// while `/healthz` said nothing of the origin. The origin answers after its play-wait (3 s
/// by default; the reads here give up at 10 s), and an edge whose play-wait is set far beyond
/// the test's reads answers as soon as its origin could not be reached: 502 on every
/// protocol. With one origin, its retries are no failovers.
#[test]
fn missing_streams_are_answered_promptly_on_an_origin_and_an_edge() {
    // The default play-wait (the CLI tests check that it is 3 s); the harness's is longer.
    let origin = Engine::start(&["--cores", "2", "--play-wait-ms", "3000"]);
    let not_found = "NetStream.Play.StreamNotFound";
    let log = play_until_status(origin.rtmp, "live", "nope", not_found, 10);
    assert!(
        log.statuses
            .iter()
            .any(|s| s == "NetStream.Play.StreamNotFound"),
        "{log:?}"
    );
    let flv = http_get(origin.http, "/live/nope.flv");
    assert_eq!(flv.status(), 404, "{flv:?}");
    assert!(String::from_utf8_lossy(&flv.body).contains("stream not found"));
    assert_eq!(http_get(origin.http, "/live/nope.m3u8").status(), 404);

    // An edge in front of a port nobody listens on.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &format!("rtmp://{down}/live"),
        "--play-wait-ms",
        "600000",
    ]);
    let flv = http_get(edge.http, "/live/x.flv");
    assert_eq!(flv.status(), 502, "{flv:?}");
    assert!(
        String::from_utf8_lossy(&flv.body).contains("no origin could be reached"),
        "{flv:?}"
    );
    let log = play_until_status(edge.rtmp, "live", "y", "NetStream.Play.Failed", 10);
    assert!(
        log.statuses.iter().any(|s| s == "NetStream.Play.Failed"),
        "{log:?}"
    );
    assert_eq!(http_get(edge.http, "/live/z.m3u8").status(), 502);
    eventually("the origin's reachability", Duration::from_secs(20), || {
        let health = String::from_utf8_lossy(&http_get(edge.http, "/healthz").body).into_owned();
        health.contains(&format!(
            "\"url\":\"rtmp://{down}/live\",\"reachable\":false"
        ))
    });
    assert_eq!(edge.metrics().sum("upstream_failovers"), 0, "one origin");

    // An edge of the origin above, with its defaults: the origin takes the play and sends
    // nothing (it may be waiting for its publisher), so the pull is under way and the
    // edge's viewer waits its own play-wait, then gets a 404.
    let edge2 = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_of(&origin),
        "--play-wait-ms",
        "3000",
    ]);
    let flv = http_get(edge2.http, "/live/nope.flv");
    assert_eq!(flv.status(), 404, "{flv:?}");
    eventually("the origin reachable", Duration::from_secs(20), || {
        String::from_utf8_lossy(&http_get(edge2.http, "/healthz").body).contains(&format!(
            "\"url\":\"{}\",\"reachable\":true",
            origin_of(&origin)
        ))
    });
}

/// Regression: when an edge's origin was SIGKILLed, RTMP and FLV viewers were ended after
/// the grace exactly as at a normal end (ffmpeg exited 0, silently). Now the end says it
/// failed: ffmpeg playing RTMP reports a server error, an HTTP-FLV body ends without its last
/// chunk;
/// and a stream that ends in order still ends with `UnpublishNotify` and the last chunk.
#[test]
fn a_killed_origin_ends_edge_viewers_with_a_failure_and_a_clean_end_stays_clean() {
    let mut origin = Engine::start(&["--cores", "1"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/k"));
    wait_until_published(&origin, "k");
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_of(&origin),
        "--republish-grace-ms",
        "1000",
    ]);
    let ffmpeg = {
        let url = edge.rtmp_url("live/k");
        std::thread::spawn(move || {
            std::process::Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-i", &url, "-f", "null", "-"])
                .output()
                .unwrap()
        })
    };
    let got = Arc::new(AtomicU64::new(0));
    let flv = {
        let (addr, got) = (edge.http, Arc::clone(&got));
        std::thread::spawn(move || read_all(addr, "/live/k.flv", &got))
    };
    edge.wait_for("two viewers playing", Duration::from_secs(30), |m| {
        m.sum("rtmp_players") == 1 && m.sum("flv_players") == 1
    });
    eventually("the FLV viewer playing", Duration::from_secs(30), || {
        got.load(Ordering::Relaxed) > 100_000
    });
    origin.kill();
    // ffmpeg 5.1 exits 0 at the end of any input; what it says is what differs: an orderly
    // end prints nothing at `-v error`.
    let out = ffmpeg.join().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Server error: stream failed: its source was lost"),
        "ffmpeg was told of the failure: {out:?}"
    );
    let body = flv.join().unwrap();
    assert!(body.len() > 100_000, "the FLV viewer played first");
    assert!(
        !body.ends_with(b"0\r\n\r\n"),
        "a failed stream's chunked body is cut short, not ended"
    );

    // A clean end at an origin of its own: the publisher unpublishes.
    let plain = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let flv = {
        let addr = plain.http;
        std::thread::spawn(move || read_all(addr, "/live/c.flv", &AtomicU64::new(0)))
    };
    plain.wait_for("the FLV viewer", Duration::from_secs(20), |m| {
        m.sum("flv_players") == 1
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &plain.rtmp_url("live/c"), &[]);
    assert!(publisher.wait().unwrap().success());
    let body = flv.join().unwrap();
    assert!(
        body.ends_with(b"0\r\n\r\n"),
        "an ended stream's body ends with the last chunk"
    );
}

#[test]
fn an_origin_table_sends_rtmp_and_hls_pulls_from_its_source_address() {
    let origin = Engine::start(&["--cores", "1"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/bound"));
    wait_until_published(&origin, "bound");
    let rtmp_relay = DelayRelay::start(origin.rtmp, Duration::ZERO);
    let http_relay = DelayRelay::start(origin.http, Duration::ZERO);
    let rtmp_conf = config_file(
        "bind-rtmp",
        &format!(
            "cores = 1\n[[origins]]\nurl = \"rtmp://{}/live\"\nbind = \"127.0.0.2\"\n",
            rtmp_relay.addr
        ),
    );
    let http_conf = config_file(
        "bind-http",
        &format!(
            "cores = 1\n[[origins]]\nurl = \"http://{}/live\"\nbind = \"127.0.0.3\"\n",
            http_relay.addr
        ),
    );
    let rtmp_edge = Engine::start(&["--config", rtmp_conf.to_str().unwrap()]);
    let http_edge = Engine::start(&["--config", http_conf.to_str().unwrap()]);
    let opts = PlayOpts {
        deadline: Duration::from_secs(3),
        ..PlayOpts::default()
    };
    eventually(
        "media through the bound RTMP pull",
        Duration::from_secs(30),
        || play_rtmp(rtmp_edge.rtmp, "live", "bound", &opts, None).video > 0,
    );
    eventually(
        "a playlist through the bound HLS pull",
        Duration::from_secs(30),
        || {
            let r = http_get(http_edge.http, "/live/bound.m3u8");
            r.status() == 200 && String::from_utf8_lossy(&r.body).contains("#EXTINF")
        },
    );
    let (rtmp_ips, http_ips) = (rtmp_relay.source_ips(), http_relay.source_ips());
    assert!(
        !rtmp_ips.is_empty() && rtmp_ips.iter().all(|ip| ip == "127.0.0.2"),
        "{rtmp_ips:?}"
    );
    assert!(
        !http_ips.is_empty() && http_ips.iter().all(|ip| ip == "127.0.0.3"),
        "{http_ips:?}"
    );
    let _ = std::fs::remove_file(rtmp_conf);
    let _ = std::fs::remove_file(http_conf);
}
