//! Drain, readiness and idle exit, end to end: SIGTERM and `POST /api/v1/drain` against the
//! real binary with RTMP, HTTP-FLV and HLS viewers attached. Assertions are on status codes,
//! refused connections, bytes and frames that keep coming, and exit statuses; times are
//! printed, never asserted.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_core::rtmp::client::ClientEvent;
use tests::*;

fn status(addr: SocketAddr, path: &str) -> u16 {
    http_get(addr, path).status()
}

/// A raw HTTP request on a fresh connection; the status.
fn request(addr: SocketAddr, head: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    split_response(&all).status()
}

/// A GET on an open keep-alive connection, its body read by Content-Length.
fn keepalive_get(s: &mut TcpStream, path: &str) -> Response {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(h)) = edge_core::http::parse_response_head(&got) {
            let want = h.len + h.content_length.unwrap_or(0);
            if got.len() >= want {
                return split_response(&got[..want]);
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return split_response(&got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(mut s) => {
            // Accepted by the kernel before the listener closed: the reset comes on use.
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
            matches!(s.read(&mut [0u8; 16]), Ok(0) | Err(_))
        }
    }
}

#[test]
fn sigterm_drains_viewers_stay_listeners_close_and_the_last_viewer_leaving_ends_it() {
    let mut e = Engine::start(&["--cores", "2", "--drain-accept-ms", "3000"]);
    let publisher = publish_loop(&e.rtmp_url("live/cam"));
    let (rtmp, viewer) = watch(e.rtmp, "live/cam", Duration::from_secs(14));
    let (flv, stop_flv) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let flv_viewer = read_http_until(
        e.http,
        "/live/cam.flv",
        Arc::clone(&flv),
        Arc::clone(&stop_flv),
    );
    eventually("both viewers to get media", Duration::from_secs(20), || {
        rtmp.load(Ordering::Relaxed) > 10 && flv.load(Ordering::Relaxed) > 50_000
    });
    eventually("a first HLS segment", Duration::from_secs(20), || {
        status(e.http, "/live/cam.m3u8") == 200
    });
    assert_eq!(status(e.http, "/readyz"), 200);

    e.signal(libc::SIGTERM);
    let sent = Instant::now();
    eventually("/readyz to fail", Duration::from_secs(5), || {
        status(e.http, "/readyz") == 503
    });
    println!(
        "SIGTERM -> /readyz 503 in {} ms",
        sent.elapsed().as_millis()
    );
    // Still accepting for --drain-accept-ms, and saying it drains. HLS is still served (no
    // peer to send it to) over keep-alive, so that a viewer reloads over its connection after
    // the listeners have closed; other responses close theirs.
    let mut hls_conn = TcpStream::connect(e.http).unwrap();
    let r = keepalive_get(&mut hls_conn, "/live/cam.m3u8");
    assert_eq!(r.status(), 200);
    assert!(!r.head.contains("Connection: close"), "{}", r.head);
    let mut api_conn = TcpStream::connect(e.http).unwrap();
    let r = keepalive_get(&mut api_conn, "/healthz");
    assert_eq!(r.status(), 200);
    assert!(r.head.contains("Connection: close"), "{}", r.head);
    let summary = String::from_utf8_lossy(&http_get(e.http, "/api/v1/summary").body).into_owned();
    assert!(summary.contains("\"draining\":true"), "{summary}");
    assert!(
        summary.contains("\"viewers\":{\"rtmp\":1,\"flv\":1,"),
        "{summary}"
    );
    let metrics = String::from_utf8_lossy(&http_get(e.http, "/metrics").body).into_owned();
    assert!(metrics.contains("\nedge_draining 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nedge_viewers{protocol=\"rtmp\"} 1\n"),
        "{metrics}"
    );

    eventually(
        "new connections to be refused",
        Duration::from_secs(15),
        || refused(e.http) && refused(e.rtmp),
    );
    println!(
        "SIGTERM -> listeners closed in {} ms",
        sent.elapsed().as_millis()
    );
    // The viewers keep getting media after the listeners closed, and the HLS viewer its
    // playlists.
    let r = keepalive_get(&mut hls_conn, "/live/cam.m3u8");
    assert_eq!(
        r.status(),
        200,
        "a playlist reload after the listeners closed"
    );
    drop(hls_conn);
    let (r, f) = (rtmp.load(Ordering::Relaxed), flv.load(Ordering::Relaxed));
    eventually("media to keep flowing", Duration::from_secs(10), || {
        rtmp.load(Ordering::Relaxed) > r + 10 && flv.load(Ordering::Relaxed) > f + 50_000
    });
    assert!(!e.has_exited(), "viewers and the publisher are still there");

    // They leave: the process exits 0.
    stop_flv.store(true, Ordering::Relaxed);
    assert!(
        !flv_viewer.join().unwrap(),
        "the FLV viewer was not dropped"
    );
    let log = viewer.join().unwrap();
    assert!(!log.closed, "the RTMP viewer was not dropped: {log:?}");
    drop(publisher);
    let exit = e.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

#[test]
fn the_admin_api_drains_only_with_the_token() {
    let plain = Engine::start(&["--cores", "1"]);
    assert_eq!(
        request(
            plain.http,
            "POST /api/v1/drain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ),
        403,
        "no token configured: SIGTERM only"
    );
    assert_eq!(status(plain.http, "/readyz"), 200);

    let token = "0123456789abcdef-token";
    let mut e = Engine::start_logged(
        &[
            "--cores",
            "1",
            "--admin-token",
            token,
            "--drain-accept-ms",
            "2000",
        ],
        "info",
    );
    for wrong in [
        "",
        "Authorization: Bearer nope\r\n",
        "Authorization: Basic YTpi\r\n",
    ] {
        let head =
            format!("POST /api/v1/drain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{wrong}\r\n");
        assert_eq!(request(e.http, &head), 401, "{wrong:?}");
    }
    let ready = http_get(e.http, "/readyz").status();
    assert_eq!(ready, 200, "not draining after refusals: {}", e.log());
    let head = format!(
        "POST /api/v1/drain HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    assert_eq!(request(e.http, &head), 202);
    assert_eq!(status(e.http, "/readyz"), 503, "readiness fails at once");
    // Nothing is attached: it exits once the accept window is over.
    let exit = e.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

#[test]
fn exit_when_idle_waits_for_a_viewer_that_waits_for_its_stream() {
    let mut e = Engine::start(&[
        "--cores",
        "2",
        "--exit-when-idle-s",
        "2",
        "--play-wait-ms",
        "60000",
    ]);
    // A viewer waits 5 s for a stream nobody publishes: the node is not idle meanwhile.
    let (_, viewer) = watch(e.rtmp, "live/later", Duration::from_secs(5));
    let log = viewer.join().unwrap();
    assert!(
        log.started || log.statuses.iter().any(|s| s.contains("Play")),
        "{log:?}"
    );
    assert!(!e.has_exited(), "exited while a viewer waited");
    let left = Instant::now();
    let exit = e.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    println!(
        "viewer left -> idle exit in {} ms",
        left.elapsed().as_millis()
    );
}

/// A registry, an origin and two edges pulling through it (`--origin registry`), e1 with
/// `e1_args` too; returned once e1 knows e2.
fn origin_and_two_edges(e1_args: &[&str]) -> (Redis, Engine, Engine, Engine) {
    let redis = Redis::start();
    let url = redis.url();
    let node = |id: &str, extra: &[&str]| {
        let mut args = vec!["--cores", "1", "--registry", &url, "--node-id", id];
        args.extend_from_slice(extra);
        Engine::start(&args)
    };
    let origin = node("o", &[]);
    let mut edge_args = vec!["--origin", "registry"];
    edge_args.extend_from_slice(e1_args);
    let e1 = node("e1", &edge_args);
    let e2 = node("e2", &["--origin", "registry"]);
    eventually("e1 to know e2", Duration::from_secs(20), || {
        let c = String::from_utf8_lossy(&http_get(e1.http, "/api/v1/cluster").body).into_owned();
        c.contains("\"id\":\"e2\"")
    });
    (redis, origin, e1, e2)
}

#[test]
fn a_draining_edge_sends_its_hls_viewers_to_a_peer_edge_with_their_next_playlist() {
    // Accepting long enough for this test's fresh connections while e2 warms up (a player
    // keeps its keep-alive connection instead).
    let (redis, origin, mut e1, e2) = origin_and_two_edges(&["--drain-accept-ms", "20000"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/cam"));
    eventually("the stream to be placed", Duration::from_secs(20), || {
        redis.cli(&["GET", "edge:stream:live/cam"]) == "o"
    });
    // An HLS viewer on e1: playlists and segments served there.
    eventually("e1 to serve the playlist", Duration::from_secs(30), || {
        status(e1.http, "/live/cam.m3u8?token=abc") == 200
    });
    // A publisher at e1 that offers Enhanced RTMP reconnect (its publish is forwarded to
    // the origin).
    let mut publisher = Publisher::start_offering(
        e1.rtmp,
        "live",
        "studio",
        edge_core::rtmp::amf::CAPS_EX_RECONNECT,
    );
    e1.signal(libc::SIGTERM);
    eventually("/readyz to fail", Duration::from_secs(5), || {
        status(e1.http, "/readyz") == 503
    });
    // It is asked to reconnect to e2, the peer edge.
    let events = publisher.pump(Duration::from_secs(10), is_reconnect);
    let to_e2 = ClientEvent::ReconnectRequest {
        tc_url: Some(format!("rtmp://{}/live", e2.rtmp)),
    };
    assert!(events.contains(&to_e2), "{events:?}");
    drop(publisher);
    // e2 has not pulled the stream: e1 fetches e2's playlist (which starts e2's pull) and
    // serves its viewers itself until e2 lists segments a viewer here may still need. Then
    // the next playlist request goes to e2, query kept; segments already listed stay here.
    let first = http_get(e1.http, "/live/cam.m3u8?token=abc");
    assert_eq!(
        first.status(),
        200,
        "held while e2 warms up: {}",
        first.head
    );
    let moved = std::cell::RefCell::new(first);
    eventually(
        "a playlist request to be sent to e2",
        Duration::from_secs(30),
        || {
            *moved.borrow_mut() = http_get(e1.http, "/live/cam.m3u8?token=abc");
            moved.borrow().status() == 302
        },
    );
    let moved = moved.into_inner();
    assert!(e1.metrics().sum("drain_peer_probes") >= 1);
    assert!(e1.metrics().sum("drain_held") >= 1);
    let location = format!("Location: http://{}/live/cam.m3u8?token=abc\r\n", e2.http);
    assert!(moved.head.contains(&location), "{}", moved.head);
    assert_eq!(e1.metrics().sum("drain_redirects"), 1);
    // Followed, as a player does: e2 pulls the stream once and serves a playlist whose
    // segments ffprobe decodes.
    let playlist = http_get(e2.http, "/live/cam.m3u8?token=abc");
    assert_eq!(playlist.status(), 200, "{}", playlist.head);
    let (segments, _) = parse_playlist(&String::from_utf8_lossy(&playlist.body));
    let first = &segments.first().expect("a segment").0;
    let packets = probe_packets(&e2.http_url(&format!("/live/{first}")));
    assert!(
        packets.iter().any(|p| p.3),
        "a keyframe in {} packets",
        packets.len()
    );
    assert_eq!(
        e2.metrics().sum("upstream_pulls_started"),
        1,
        "e2 pulled it"
    );
    // e1 holds nothing more once the edge pull idles out: it exits 0 by itself.
    let exit = e1.wait_exit(Duration::from_secs(60));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

/// A counter in a loadgen JSON report (0 when it was never counted).
fn report_count(report: &str, section: &str, name: &str) -> u64 {
    let Some(at) = report.find(&format!("\"{section}\":{{")) else {
        return 0;
    };
    let body = &report[at..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    let key = format!("\"{name}\":");
    body.find(&key).map_or(0, |i| {
        body[i + key.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    })
}

/// Per stream of a framemd5 listing, the DTS steps from one packet to the next.
fn dts_steps(lines: &[String]) -> std::collections::BTreeMap<u32, Vec<i64>> {
    let mut last = std::collections::BTreeMap::new();
    let mut steps: std::collections::BTreeMap<u32, Vec<i64>> = Default::default();
    for l in lines {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let (Some(Ok(stream)), Some(Ok(dts))) = (
            f.first().map(|s| s.parse::<u32>()),
            f.get(1).map(|s| s.parse::<i64>()),
        ) else {
            continue;
        };
        if let Some(prev) = last.insert(stream, dts) {
            steps.entry(stream).or_default().push(dts - prev);
        }
    }
    steps
}

#[test]
fn hls_viewers_of_a_draining_edge_carry_on_at_a_peer_without_a_stall_or_a_skipped_segment() {
    // e1 accepts through the whole test. ffmpeg 5.1 reloads the URL it was given, not the
    // one it was sent to, and opens a new connection for each host it alternates between:
    // it reaches e2 only through e1's 302s. Behind a load balancer that URL is the
    // balancer's, which sends it to e2 once e1 is out; here e1 stands in for it.
    let (_redis, origin, mut e1, e2) =
        origin_and_two_edges(&["--drain-accept-ms", "60000", "--upstream-idle-ms", "5000"]);
    // loadgen publishes (with its latency probes) to the origin and watches e1 over HLS.
    let loadgen = LoadgenRun::start(
        "migrate",
        &[
            "--publish-target",
            &format!("rtmp://{}", origin.rtmp),
            "--target",
            &format!("http://{}", e1.http),
            "--publish",
            "--viewers",
            "40",
            "--protocol",
            "hls",
            "--stream-prefix",
            "cam",
            "--duration",
            "30s",
            "--max-error-rate",
            "1",
        ],
    );
    eventually("e1 to serve the playlist", Duration::from_secs(30), || {
        status(e1.http, "/live/cam0.m3u8") == 200
    });
    // ffmpeg plays from e1 too, packets listed as they come.
    let playlist = e1.http_url("/live/cam0.m3u8");
    let player = std::thread::spawn(move || framemd5_for(&playlist, Duration::from_secs(26)));
    std::thread::sleep(Duration::from_secs(10));
    e1.signal(libc::SIGTERM);
    eventually("/readyz to fail", Duration::from_secs(5), || {
        status(e1.http, "/readyz") == 503
    });
    let (lines, err) = player.join().unwrap();
    let (status, report) = loadgen.finish();
    println!("{report}");
    let e1_metrics = e1.metrics();
    for (name, m) in [("e1", &e1_metrics), ("e2", &e2.metrics())] {
        println!(
            "{name}: unaligned {} held {} probes {} failed {} redirects {}",
            m.sum("hls_unaligned_cuts"),
            m.sum("drain_held"),
            m.sum("drain_peer_probes"),
            m.sum("drain_peer_probes_failed"),
            m.sum("drain_redirects")
        );
    }
    assert!(status.success(), "loadgen exit {status}: {report}");
    // loadgen's viewers: each moved once, and carried on with no stall, no error and no
    // segment number skipped.
    assert_eq!(
        report_count(&report, "counters", "redirects"),
        40,
        "{report}"
    );
    for what in ["stalls", "segment_gaps", "startup_pending"] {
        assert_eq!(
            report_count(&report, "counters", what),
            0,
            "{what}: {report}"
        );
    }
    let errors = report
        .split("\"errors\":{")
        .nth(1)
        .and_then(|e| e.split('}').next())
        .unwrap_or("missing");
    assert!(
        errors
            .split(',')
            .all(|kv| kv.is_empty() || kv.ends_with(":0")),
        "no error: {errors}"
    );
    assert!(e1_metrics.sum("drain_redirects") >= 40);
    assert!(e1_metrics.sum("drain_peer_probes") >= 1);
    // ffmpeg: no error, and every stream's timestamps never go back and advance by less than
    // a second from packet to packet across the move (a repeated segment goes back, a skipped
    // one jumps). Video steps are all one frame; audio has a 0 step where loadgen's source
    // loops, every 4 s, with or without a move.
    // ffmpeg 5.1 logs at error level, and then opens a new connection, when its keep-alive
    // connection to e1 cannot carry a request for e2 (http_persistent across a redirect):
    // that line is its own bookkeeping, not a failure to play. Its "Last message repeated N
    // times" stands for that same line again when it follows it, and only then.
    let mut failures: Vec<&str> = Vec::new();
    let mut previous_was_reuse = false;
    for l in err.lines().filter(|l| !l.trim().is_empty()) {
        let reuse = l.contains("Cannot reuse HTTP connection for different host");
        let repeat = l.trim_start().starts_with("Last message repeated");
        if !(reuse || (repeat && previous_was_reuse)) {
            failures.push(l);
        }
        previous_was_reuse = reuse || (repeat && previous_was_reuse);
    }
    assert!(failures.is_empty(), "ffmpeg: {err}");
    let steps = dts_steps(&lines);
    assert_eq!(steps.len(), 2, "video and audio: {steps:?}");
    for (stream, steps) in &steps {
        let worst = steps.iter().copied().max().unwrap_or(0);
        let least = steps.iter().copied().min().unwrap_or(0);
        println!(
            "stream {stream}: {} packets, steps {least}..{worst}",
            steps.len() + 1
        );
        assert!(least >= 0, "stream {stream} went back: {steps:?}");
        assert!(worst < 90_000, "stream {stream} skipped: {steps:?}");
    }
    // 26 s of playing at 25 fps, most of it after the move.
    let video = steps.values().map(Vec::len).min().unwrap_or(0);
    assert!(video > 400, "{video} packets");
    let e2_requests = e2.metrics().sum("http_requests");
    assert!(
        e2_requests > 40,
        "the moved viewers' requests reached e2: {e2_requests}"
    );
    let exit = e1.wait_exit(Duration::from_secs(60));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

fn is_reconnect(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::ReconnectRequest { .. })
}

#[test]
fn a_draining_node_asks_publishers_that_offer_enhanced_rtmp_reconnect_to_reconnect_once() {
    let mut e = Engine::start(&["--cores", "1", "--drain-accept-ms", "20000"]);
    let reconnect = edge_core::rtmp::amf::CAPS_EX_RECONNECT;
    let mut capable = Publisher::start_offering(e.rtmp, "live", "a", reconnect);
    // Other capsEx bits are not the reconnect one.
    let mut legacy = Publisher::start_offering(e.rtmp, "live", "b", 0x06);
    assert!(
        !capable
            .pump(Duration::from_millis(500), is_reconnect)
            .iter()
            .any(is_reconnect),
        "not before a drain"
    );
    e.signal(libc::SIGTERM);
    let events = capable.pump(Duration::from_secs(10), is_reconnect);
    // Without a registry there is no peer to name: it reconnects to the URL it used.
    assert!(
        events.contains(&ClientEvent::ReconnectRequest { tc_url: None }),
        "{events:?}"
    );
    // Once only, and never to a publisher that did not offer it; both keep publishing.
    let again = capable.pump(Duration::from_secs(1), is_reconnect);
    assert!(!again.iter().any(is_reconnect), "{again:?}");
    let other = legacy.pump(Duration::from_secs(1), is_reconnect);
    assert!(!other.iter().any(is_reconnect), "{other:?}");
    assert_eq!(e.metrics().sum("drain_reconnect_requests"), 1);
    assert!(!e.has_exited());
}
