//! The HLS-origin edge end to end: `edge-engine --cores 2 --origin http://…` in front of an
//! edge-engine origin and of nginx-rtmp's `hls on` served by nginx, each behind a relay that
//! records every request (and, for the slow-origin cases, holds every byte). loadgen's HLS
//! viewers and ffmpeg watch the edge. Assertions are on bytes, request counts, statuses and
//! counters, never on elapsed time (the latency comparison is `bench/hls_origin.sh`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::*;

/// Segments of `playlist` fetched from `addr`, by URI.
fn segments_of(addr: SocketAddr, dir: &str, playlist: &str) -> Vec<(String, Vec<u8>)> {
    let (segments, _) = parse_playlist(playlist);
    segments
        .into_iter()
        .map(|(uri, _)| {
            let r = http_get(addr, &format!("{dir}/{uri}"));
            assert_eq!(r.status(), 200, "{dir}/{uri} at {addr}: {}", r.head);
            (uri, r.body)
        })
        .collect()
}

/// While loadgen's `viewers` HLS viewers watch `stream` (published by ffmpeg) at the edge
/// for 14 s, with ffmpeg decoding it too: the edge's segments are the origin's bytes, and
/// the origin sees one request per segment, and playlist requests at the reload rate, not
/// per viewer.
fn check_pull(
    edge: &Engine,
    relay: &DelayRelay,
    origin_http: SocketAddr,
    origin_dir: &str,
    stream: &str,
    viewers: usize,
) {
    let began = std::time::Instant::now();
    let target = format!("http://{}", edge.http);
    let viewers_arg = viewers.to_string();
    let prefix = stream.trim_end_matches('0');
    let args = [
        "--target",
        &target,
        "--viewers",
        &viewers_arg,
        "--protocol",
        "hls",
        "--stream-prefix",
        prefix,
        "--duration",
        "14s",
    ];
    let loadgen = LoadgenRun::start(&format!("hls-origin-{stream}"), &args);
    let playlist_path = format!("/live/{stream}.m3u8");
    eventually(
        "the edge to list three segments",
        Duration::from_secs(30),
        || {
            let r = http_get(edge.http, &playlist_path);
            r.status() == 200 && parse_playlist(&String::from_utf8_lossy(&r.body)).0.len() >= 3
        },
    );
    let url = edge.http_url(&playlist_path[1..]);
    let player = std::thread::spawn(move || {
        run_tool(
            "ffmpeg",
            &["-v", "error", "-i", &url, "-t", "6", "-f", "null", "-"],
            Duration::from_secs(40),
        )
    });
    // Byte-identical: each segment the edge lists is the origin's segment of that number.
    let listed = String::from_utf8(http_get(edge.http, &playlist_path).body).unwrap();
    let at_edge = segments_of(edge.http, "/live", &listed);
    for (uri, bytes) in &at_edge {
        let r = http_get(origin_http, &format!("/{origin_dir}/{uri}"));
        assert_eq!(r.status(), 200, "{uri} at the origin");
        assert!(
            r.body == *bytes,
            "{uri}: {} bytes at the edge, {} at the origin, not the same",
            bytes.len(),
            r.body.len()
        );
    }
    let (ok, _, err) = player.join().unwrap();
    assert!(ok && err.trim().is_empty(), "ffmpeg at the edge: {err}");
    let (status, report) = loadgen.finish();
    assert!(status.success(), "loadgen exit {status}: {report}");
    let m = edge.metrics();
    for shard in 0..2 {
        assert!(
            m.get("hls_viewers", shard) > 0 || m.get("http_requests", shard) > 100,
            "viewers on shard {shard}"
        );
    }
    // Once per machine: one request per segment, whatever the viewers.
    let gets = relay.gets_by_path();
    let segment_gets: Vec<(&String, &usize)> =
        gets.iter().filter(|(p, _)| p.ends_with(".ts")).collect();
    assert!(segment_gets.len() >= 4, "{gets:?}");
    for (path, n) in &segment_gets {
        assert_eq!(
            **n, 1,
            "{path} requested {n} times from the origin: {gets:?}"
        );
    }
    let playlist_gets = gets
        .get(&format!("/{origin_dir}/{stream}.m3u8"))
        .copied()
        .unwrap_or(0);
    let viewer_requests = m.sum("http_requests");
    println!(
        "origin: {} segment requests, {playlist_gets} playlist requests; edge: {viewer_requests} requests",
        segment_gets.len()
    );
    // One reload every 250 ms at the most (an edge lists a new segment within that long of
    // the origin), whatever the viewers, for as long as this ran, plus the first loads that
    // found no stream yet. A count, bounded by the run's own length.
    let bound = began.elapsed().as_millis() as usize / 250 + 20;
    assert!(
        playlist_gets <= bound,
        "{playlist_gets} playlist requests at the origin (at most {bound})"
    );
    assert!(viewer_requests as usize > 10 * playlist_gets);
    assert_eq!(
        m.sum("hls_origin_requests") as usize,
        relay.requests().len(),
        "the edge counts what the origin saw"
    );
}

#[test]
fn an_edge_pulls_hls_once_per_machine_from_an_edge_engine_origin() {
    let origin = Engine::start(&["--cores", "1"]);
    let relay = DelayRelay::start(origin.http, Duration::ZERO);
    let edge = Engine::start(&["--cores", "2", "--origin", &relay.url("live")]);
    let _publisher = publish_loop(&origin.rtmp_url("live/ho0"));
    check_pull(&edge, &relay, origin.http, "live", "ho0", 200);
    let m = edge.metrics();
    assert_eq!(m.sum("hls_pulls_started"), 1, "one pull for the machine");
    let prefetched = m.sum("hls_prefetches");
    let segments = relay
        .gets_by_path()
        .keys()
        .filter(|p| p.ends_with(".ts"))
        .count();
    assert_eq!(
        prefetched as usize, segments,
        "every segment was prefetched"
    );
    let api = String::from_utf8(http_get(edge.http, "/api/v1/streams").body).unwrap();
    assert!(
        api.contains(&format!(
            "\"hls_pull\":{{\"origin\":\"http://{}/live\"",
            relay.addr
        )),
        "{api}"
    );
}

#[test]
fn an_edge_pulls_hls_once_per_machine_from_nginx_rtmp() {
    let nginx = Nginx::start_hls();
    let _publisher = publish_loop(&format!("{}/nx0", nginx.url()));
    let relay = DelayRelay::start(nginx.http_addr(), Duration::ZERO);
    let edge = Engine::start(&["--cores", "2", "--origin", &relay.url("hls")]);
    eventually("nginx to write a playlist", Duration::from_secs(30), || {
        http_get(nginx.http_addr(), "/hls/nx0.m3u8").status() == 200
    });
    check_pull(&edge, &relay, nginx.http_addr(), "hls", "nx0", 200);
    // nginx makes no LL-HLS: the edge says so, in words the player falls back to HLS on.
    let ll = http_get(edge.http, "/live/nx0/llhls.m3u8");
    assert_eq!(ll.status(), 404);
    let why = String::from_utf8_lossy(&ll.body);
    assert!(why.contains("no LL-HLS"), "{why}");
}

#[test]
fn behind_a_slow_origin_prefetch_fetches_each_segment_once_before_the_viewers_ask() {
    let origin = Engine::start(&["--cores", "1"]);
    // 300 ms round trip.
    let relay = DelayRelay::start(origin.http, Duration::from_millis(150));
    let edge = Engine::start(&["--cores", "2", "--origin", &relay.url("live")]);
    let _publisher = publish_loop(&origin.rtmp_url("live/slow0"));
    check_pull(&edge, &relay, origin.http, "live", "slow0", 1000);
    let m = edge.metrics();
    let segments = relay
        .gets_by_path()
        .keys()
        .filter(|p| p.ends_with(".ts"))
        .count();
    assert_eq!(m.sum("hls_prefetches") as usize, segments);
}

#[test]
fn without_prefetch_the_first_viewers_wait_on_one_collapsed_request_per_segment() {
    let origin = Engine::start(&["--cores", "1"]);
    let relay = DelayRelay::start(origin.http, Duration::from_millis(150));
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &relay.url("live"),
        "--hls-prefetch",
        "off",
    ]);
    let _publisher = publish_loop(&origin.rtmp_url("live/lazy0"));
    check_pull(&edge, &relay, origin.http, "live", "lazy0", 200);
    let m = edge.metrics();
    assert_eq!(m.sum("hls_prefetches"), 0);
    // check_pull asserted one origin request per segment. Without prefetch each of those
    // was a viewer's miss, and a collapsed request is any other miss that waited on it (or
    // asked the owner for it), so collapsing shows as more waiters than downloads. How many
    // more depends on when the viewers happen to ask, so only the inequality is asserted.
    let segments = relay
        .gets_by_path()
        .keys()
        .filter(|p| p.ends_with(".ts"))
        .count();
    let waiters = m.sum("hls_collapsed_waiters") as usize;
    println!("{waiters} segment requests waited on {segments} downloads");
    assert!(
        waiters > segments,
        "{waiters} segment requests waited on {segments} downloads: none collapsed"
    );
}

/// What the scripted origin does with a segment.
#[derive(Clone, Copy)]
enum Behaviour {
    Ok,
    Status500,
    Hang,
    /// Content-Length of the whole, then half of it and a close.
    CloseHalfway,
}

/// An HTTP origin serving `/live/f.m3u8` (segments 1..=4, live) and `f-N.ts` with
/// `segment(N)`'s behaviour; the playlist itself answers `playlist_status`.
struct ScriptedOrigin {
    addr: SocketAddr,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

const SEGMENT_LEN: usize = 188 * 200;

fn segment_bytes(n: u64) -> Vec<u8> {
    (0..SEGMENT_LEN)
        .map(|i| {
            if i % 188 == 0 {
                0x47
            } else {
                (i as u64 * 7 + n) as u8
            }
        })
        .collect()
}

impl ScriptedOrigin {
    fn start(playlist_status: u16, segment: fn(u64) -> Behaviour) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(sock) = conn else { return };
                let (seen, stopped) = (Arc::clone(&seen), Arc::clone(&stopped));
                std::thread::spawn(move || {
                    serve_scripted(sock, playlist_status, segment, &seen, &stopped)
                });
            }
        });
        ScriptedOrigin {
            addr,
            requests,
            stop,
        }
    }

    fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.as_str() == path)
            .count()
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_scripted(
    mut sock: TcpStream,
    playlist_status: u16,
    segment: fn(u64) -> Behaviour,
    seen: &std::sync::Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_string();
        pending.drain(..end + 4);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        seen.lock().unwrap().push(path.clone());
        let reply = |sock: &mut TcpStream, status: u16, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                body.len()
            );
            sock.write_all(head.as_bytes()).is_ok() && sock.write_all(body).is_ok()
        };
        let ok = if path == "/live/f.m3u8" {
            let mut p = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n");
            for n in 1..=4 {
                p.push_str(&format!("#EXTINF:2.000,\nf-{n}.ts\n"));
            }
            if playlist_status == 200 {
                reply(&mut sock, 200, p.as_bytes())
            } else {
                reply(&mut sock, playlist_status, b"no\n")
            }
        } else if let Some(n) = path
            .strip_prefix("/live/f-")
            .and_then(|s| s.strip_suffix(".ts"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            let body = segment_bytes(n);
            match segment(n) {
                Behaviour::Ok => reply(&mut sock, 200, &body),
                Behaviour::Status500 => reply(&mut sock, 500, b"broken\n"),
                Behaviour::Hang => {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    false
                }
                Behaviour::CloseHalfway => {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = sock.write_all(head.as_bytes());
                    let _ = sock.write_all(&body[..body.len() / 2]);
                    false
                }
            }
        } else {
            reply(&mut sock, 404, b"no\n")
        };
        if !ok {
            return;
        }
    }
}

/// A segment response read to the connection's end: status, Content-Length, body.
fn get_segment(addr: SocketAddr, path: &str) -> (u16, Option<usize>, Vec<u8>) {
    let r = http_get(addr, path);
    let head = edge_core::http::parse_response_head(r.head.as_bytes())
        .ok()
        .flatten();
    (r.status(), head.and_then(|h| h.content_length), r.body)
}

#[test]
fn origin_failures_become_502_and_504_and_a_truncated_segment_never_passes_for_whole() {
    let origin = ScriptedOrigin::start(200, |n| match n {
        1 => Behaviour::Status500,
        2 => Behaviour::Hang,
        3 => Behaviour::CloseHalfway,
        _ => Behaviour::Ok,
    });
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &format!("http://{}/live", origin.addr),
        "--hls-prefetch",
        "off",
        "--upstream-timeout-ms",
        "1000",
    ]);
    let r = http_get(edge.http, "/live/f.m3u8");
    assert_eq!(r.status(), 200, "{}", r.head);
    let (segments, _) = parse_playlist(&String::from_utf8_lossy(&r.body));
    assert_eq!(
        segments.len(),
        4,
        "without prefetch every segment is listed"
    );
    // The origin's 500: a 502 for every viewer, and a storm of them reaches the origin once.
    let storm: Vec<_> = (0..20)
        .map(|_| {
            let addr = edge.http;
            std::thread::spawn(move || get_segment(addr, "/live/f-1.ts").0)
        })
        .collect();
    for s in storm {
        assert_eq!(s.join().unwrap(), 502);
    }
    assert_eq!(origin.count("/live/f-1.ts"), 1, "negative cache");
    // A hang: 504 once the first-byte deadline passes.
    assert_eq!(get_segment(edge.http, "/live/f-2.ts").0, 504);
    // Closed halfway: the response the viewer got, if any, is visibly short.
    let (status, length, body) = get_segment(edge.http, "/live/f-3.ts");
    match status {
        502 => {}
        200 => assert!(
            length == Some(SEGMENT_LEN) && body.len() < SEGMENT_LEN,
            "a 200 for a segment the origin cut short must end short of its length: {length:?}, {} bytes",
            body.len()
        ),
        s => panic!("status {s} for a truncated segment"),
    }
    // The good one: the origin's bytes.
    let (status, _, body) = get_segment(edge.http, "/live/f-4.ts");
    assert_eq!(status, 200);
    assert!(body == segment_bytes(4));
    let m = edge.metrics();
    assert!(
        m.sum("hls_origin_errors") >= 3,
        "{}",
        m.sum("hls_origin_errors")
    );
    // A missing segment is a 404 from the edge itself.
    assert_eq!(get_segment(edge.http, "/live/f-99.ts").0, 404);
}

#[test]
fn an_origin_whose_playlist_fails_gets_viewers_a_502_at_once() {
    let origin = ScriptedOrigin::start(500, |_| Behaviour::Ok);
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &format!("http://{}/live", origin.addr),
    ]);
    let r = http_get(edge.http, "/live/f.m3u8");
    assert_eq!(r.status(), 502, "{}", r.head);
    // While the error is remembered, more requests do not reach the origin each.
    for _ in 0..10 {
        assert_eq!(http_get(edge.http, "/live/f.m3u8").status(), 502);
    }
    assert!(
        origin.count("/live/f.m3u8") <= 3,
        "{}",
        origin.count("/live/f.m3u8")
    );
}

#[test]
fn failover_to_a_second_http_origin_continues_the_playlist_with_a_discontinuity() {
    let (mut a, b) = (
        Engine::start(&["--cores", "1"]),
        Engine::start(&["--cores", "1"]),
    );
    let _pa = publish_loop(&a.rtmp_url("live/fo"));
    let _pb = publish_loop(&b.rtmp_url("live/fo"));
    for o in [&a, &b] {
        eventually(
            "both origins to list three segments",
            Duration::from_secs(30),
            || {
                let r = http_get(o.http, "/live/fo.m3u8");
                r.status() == 200 && parse_playlist(&String::from_utf8_lossy(&r.body)).0.len() >= 3
            },
        );
    }
    let relay_b = DelayRelay::start(b.http, Duration::ZERO);
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &a.http_url("live"),
        "--origin",
        &relay_b.url("live"),
        "--upstream-timeout-ms",
        "500",
    ]);
    eventually(
        "the edge to list three segments",
        Duration::from_secs(30),
        || {
            let r = http_get(edge.http, "/live/fo.m3u8");
            r.status() == 200 && parse_playlist(&String::from_utf8_lossy(&r.body)).0.len() >= 3
        },
    );
    let before = edge_core::hls::m3u8::parse_media_playlist(&String::from_utf8_lossy(
        &http_get(edge.http, "/live/fo.m3u8").body,
    ))
    .unwrap();
    assert_eq!(edge.metrics().sum("hls_origin_failovers"), 0);
    a.kill();
    let current = || {
        let r = http_get(edge.http, "/live/fo.m3u8");
        edge_core::hls::m3u8::parse_media_playlist(&String::from_utf8_lossy(&r.body))
            .unwrap_or_default()
    };
    eventually(
        "a discontinuity after the failover",
        Duration::from_secs(30),
        || current().segments.iter().any(|s| s.discontinuity),
    );
    let after = current();
    let first_new = after
        .segments
        .iter()
        .find(|s| s.discontinuity)
        .expect("a discontinuity")
        .clone();
    let last_before = before.segments.last().unwrap().seq;
    assert!(first_new.seq > last_before, "the numbering went on");
    assert!(
        after.media_sequence >= before.media_sequence,
        "the media sequence never goes back"
    );
    // The new segment is served, and it came from the second origin.
    let (status, _, body) = get_segment(edge.http, &format!("/live/{}", first_new.uri));
    assert_eq!(status, 200);
    assert!(body.len() > 188 && body[0] == 0x47);
    assert!(
        relay_b.gets_by_path().keys().any(|p| p.ends_with(".ts")),
        "{:?}",
        relay_b.requests()
    );
    assert_eq!(edge.metrics().sum("hls_origin_failovers"), 1);
}

#[test]
fn an_edge_pulls_hls_from_an_https_origin_checked_against_its_ca() {
    let certs = TestCerts::generate("hls-origin");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let origin = Engine::start(&[
        "--cores",
        "1",
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]);
    let _publisher = publish_loop(&origin.rtmp_url("live/sec"));
    let url = format!("https://localhost:{}/live", origin.https.unwrap().port());
    let ca = certs.ca.to_str().unwrap();
    let edge = Engine::start(&["--cores", "2", "--origin", &url, "--upstream-ca", ca]);
    eventually(
        "the edge to list two segments",
        Duration::from_secs(30),
        || {
            let r = http_get(edge.http, "/live/sec.m3u8");
            r.status() == 200 && parse_playlist(&String::from_utf8_lossy(&r.body)).0.len() >= 2
        },
    );
    let listed = String::from_utf8(http_get(edge.http, "/live/sec.m3u8").body).unwrap();
    for (uri, bytes) in segments_of(edge.http, "/live", &listed) {
        let r = http_get(origin.http, &format!("/live/{uri}"));
        assert!(r.body == bytes, "{uri} differs from the origin's");
    }
    // Without the CA the origin's certificate is refused: no playlist, a 502.
    let untrusting = Engine::start(&["--cores", "1", "--origin", &url]);
    assert_eq!(http_get(untrusting.http, "/live/sec.m3u8").status(), 502);
}

/// An HLS-origin edge (`--cores 2`) in front of an edge-engine LL-HLS origin, through the
/// relay that records every request: 200 loadgen LL-HLS viewers watch the edge (both of its
/// shards). The origin sees each part, segment and init segment asked for once, and its
/// playlist about once per part (one blocking reload at a time for the machine), whatever the
/// viewers; the edge's parts are the origin's bytes; every viewer got parts.
#[test]
fn an_edge_relays_ll_hls_once_per_machine() {
    let origin = Engine::start(&["--cores", "1", "--hls-segment-ms", "1000"]);
    let relay = DelayRelay::start(origin.http, Duration::from_millis(10));
    let edge = Engine::start(&["--cores", "2", "--origin", &relay.url("live")]);
    let _publisher = publish_loop(&origin.rtmp_url("live/llr0"));
    eventually("the origin's LL-HLS", Duration::from_secs(30), || {
        let r = http_get(origin.http, "/live/llr0/llhls.m3u8");
        r.status() == 200 && String::from_utf8_lossy(&r.body).matches("#EXTINF").count() >= 2
    });
    let target = format!("http://{}", edge.http);
    let args = [
        "--target",
        &target,
        "--viewers",
        "200",
        "--protocol",
        "llhls",
        "--stream-prefix",
        "llr",
        "--duration",
        "12s",
    ];
    let loadgen = LoadgenRun::start("ll-relay", &args);
    let (status, report) = loadgen.finish();
    assert!(status.success(), "loadgen exit {status}: {report}");
    let j: serde_json::Value = serde_json::from_str(&report).unwrap();
    let parts = j["counters"]["parts"].as_u64().unwrap_or(0);
    assert!(parts >= 200 * 5 * 5, "parts the viewers got: {parts}");
    let errors: u64 = j["errors"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(errors, 0, "{report}");
    let m = edge.metrics();
    assert_eq!(
        m.sum("ll_hls_relays_started"),
        1,
        "one relay for the machine"
    );
    for shard in 0..2 {
        assert!(
            m.get("http_requests", shard) > 100,
            "viewers on shard {shard}"
        );
    }
    // Once per machine: every file asked for once at the origin.
    let gets = relay.gets_by_path();
    let files: Vec<(&String, &usize)> = gets
        .iter()
        .filter(|(p, _)| p.ends_with(".m4s") || p.ends_with(".mp4"))
        .collect();
    assert!(files.len() >= 25, "{gets:?}");
    for (path, n) in &files {
        assert_eq!(**n, 1, "{path} asked for {n} times at the origin");
    }
    let part_files = files.iter().filter(|(p, _)| p.contains("/part-")).count();
    let playlists = gets.get("/live/llr0/llhls.m3u8").copied().unwrap_or(0);
    println!(
        "origin: {part_files} parts, {} files, {playlists} playlist requests; the viewers got {parts} parts",
        files.len()
    );
    // One blocking reload per part (each answered when the part it names is complete), plus
    // the first load and retries: not per viewer.
    assert!(
        playlists <= part_files + 10,
        "{playlists} playlist requests for {part_files} parts"
    );
    assert_eq!(
        m.sum("ll_hls_relay_playlists") as usize,
        playlists,
        "the edge counts what the origin saw"
    );
    // The edge's parts are the origin's.
    let listed = String::from_utf8(http_get(edge.http, "/live/llr0/llhls.m3u8").body).unwrap();
    let names: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .collect();
    assert!(names.len() >= 5, "{listed}");
    for name in names.iter().rev().take(5) {
        let at_edge = http_get(edge.http, &format!("/live/llr0/{name}"));
        let at_origin = http_get(origin.http, &format!("/live/llr0/{name}"));
        assert_eq!((at_edge.status(), at_origin.status()), (200, 200), "{name}");
        assert!(
            at_edge.body == at_origin.body,
            "{name}: not the origin's bytes"
        );
    }
}
