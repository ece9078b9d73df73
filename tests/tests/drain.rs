//! Drain, readiness and idle exit, end to end: SIGTERM and `POST /api/v1/drain` against the
//! real binary with RTMP, HTTP-FLV and HLS viewers attached. Assertions are on status codes,
//! refused connections, bytes and frames that keep coming, and exit statuses; times are
//! printed, never asserted.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    // Still accepting for --drain-accept-ms, and saying it drains; HLS is still served (no
    // peer to send it to), and every response closes its connection.
    let playlist = http_get(e.http, "/live/cam.m3u8");
    assert_eq!(playlist.status(), 200);
    assert!(
        playlist.head.contains("Connection: close"),
        "{}",
        playlist.head
    );
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
    // The viewers keep getting media after the listeners closed.
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

#[test]
fn a_draining_edge_sends_its_hls_viewers_to_a_peer_edge_with_their_next_playlist() {
    let redis = Redis::start();
    let url = redis.url();
    let node = |id: &str, extra: &[&str]| {
        let mut args = vec!["--cores", "1", "--registry", &url, "--node-id", id];
        args.extend_from_slice(extra);
        Engine::start(&args)
    };
    let origin = node("o", &[]);
    let mut e1 = node("e1", &["--origin", "registry", "--drain-accept-ms", "4000"]);
    let e2 = node("e2", &["--origin", "registry"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/cam"));
    eventually("the stream to be placed", Duration::from_secs(20), || {
        redis.cli(&["GET", "edge:stream:live/cam"]) == "o"
    });
    eventually("e1 to know e2", Duration::from_secs(20), || {
        let c = String::from_utf8_lossy(&http_get(e1.http, "/api/v1/cluster").body).into_owned();
        c.contains("\"id\":\"e2\"")
    });
    // An HLS viewer on e1: playlists and segments served there.
    eventually("e1 to serve the playlist", Duration::from_secs(30), || {
        status(e1.http, "/live/cam.m3u8?token=abc") == 200
    });
    e1.signal(libc::SIGTERM);
    eventually("/readyz to fail", Duration::from_secs(5), || {
        status(e1.http, "/readyz") == 503
    });
    // Its next playlist request goes to e2, query kept; segments already listed stay here.
    let moved = http_get(e1.http, "/live/cam.m3u8?token=abc");
    assert_eq!(moved.status(), 302, "{}", moved.head);
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
