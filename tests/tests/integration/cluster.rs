//! The origin cluster end to end: real `redis-server` processes (each test starts its own on
//! a free loopback port), origins and edges of the real binary with `--registry`, ffmpeg as
//! the publisher and edge-core's client as the viewer. Assertions are on what Redis holds,
//! redirects, frame counts and counters; times are measured and printed, never asserted.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::*;

fn node(redis: &Redis, id: &str, extra: &[&str]) -> Engine {
    let url = redis.url();
    let mut args = vec!["--cores", "2", "--registry", &url, "--node-id", id];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

/// `/metrics` as text (the registry's series have no shard label, so [`Engine::metrics`]
/// does not hold them).
fn prometheus(e: &Engine) -> String {
    String::from_utf8_lossy(&http_get(e.http, "/metrics").body).into_owned()
}

fn cluster(e: &Engine) -> String {
    String::from_utf8_lossy(&http_get(e.http, "/api/v1/cluster").body).into_owned()
}

/// Waits until `e`'s registry places `stream` on node `id`.
fn wait_placed(e: &Engine, stream: &str, id: &str) {
    let want = format!("{{\"stream\":\"{stream}\",\"node\":\"{id}\",\"node_live\":true");
    eventually(
        &format!("{stream} on {id} in the cluster view"),
        Duration::from_secs(15),
        || cluster(e).contains(&want),
    );
}

fn grows(progress: &AtomicU64, what: &str) {
    let before = progress.load(Ordering::Relaxed);
    eventually(what, Duration::from_secs(20), || {
        progress.load(Ordering::Relaxed) > before + 25
    });
}

#[test]
fn origins_register_redirect_and_refuse_duplicates_and_an_edge_pulls_from_the_holder() {
    let redis = Redis::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let _publisher = publish_loop(&a.rtmp_url("live/cam"));
    wait_placed(&b, "live/cam", "a");
    // What Redis holds: the stream's holder, both node records with their addresses.
    assert_eq!(redis.cli(&["GET", "edge:stream:live/cam"]), "a");
    let record = redis.cli(&["GET", "edge:node:a"]);
    assert!(record.contains(&format!("rtmp={}", a.rtmp)), "{record}");
    assert!(record.contains("role=origin"), "{record}");

    // HTTP at b: 302 to a, query kept.
    let flv = http_get(b.http, "/live/cam.flv?token=x");
    assert_eq!(flv.status(), 302, "{}", flv.head);
    let location = format!("Location: http://{}/live/cam.flv?token=x", a.http);
    assert!(flv.head.contains(&location), "{}", flv.head);
    let m3u8 = http_get(b.http, "/live/cam.m3u8");
    assert!(
        m3u8.head
            .contains(&format!("Location: http://{}/live/cam.m3u8\r\n", a.http)),
        "{}",
        m3u8.head
    );
    // RTMP at b: SRS's 302, to a's tcUrl.
    let opts = PlayOpts {
        deadline: Duration::from_secs(10),
        ..PlayOpts::default()
    };
    let redirected = play_rtmp(b.rtmp, "live", "cam", &opts, None);
    assert_eq!(
        redirected.redirect.as_deref(),
        Some(format!("rtmp://{}/live", a.rtmp).as_str()),
        "{redirected:?}"
    );
    assert!(b.metrics().sum("cluster_redirects") >= 3);

    // An edge that finds origins through the registry: one pull, to a.
    let edge = node(&redis, "e", &["--origin", "registry"]);
    let plays_at_a = a.metrics().sum("rtmp_play_requests");
    let (p1, v1) = watch(edge.rtmp, "live/cam", Duration::from_secs(8));
    let (p2, v2) = watch(edge.rtmp, "live/cam", Duration::from_secs(8));
    grows(&p1, "edge viewer 1 to get media");
    grows(&p2, "edge viewer 2 to get media");
    let (l1, l2) = (v1.join().unwrap(), v2.join().unwrap());
    assert!(l1.video > 0 && l2.video > 0, "{l1:?} {l2:?}");
    assert_eq!(edge.metrics().sum("upstream_pulls_started"), 1);
    assert_eq!(
        a.metrics().sum("rtmp_play_requests"),
        plays_at_a + 1,
        "one pull, to a"
    );
    assert_eq!(b.metrics().sum("rtmp_play_requests"), 0, "nothing asked b");
    assert!(cluster(&edge).contains("\"id\":\"e\",\"role\":\"edge\""));

    // A duplicate publish of the live key at b is refused; a still holds it.
    let mut dup = ffmpeg_publish(&fixture("bframes.flv"), &b.rtmp_url("live/cam"), &[]);
    let status = dup.wait().unwrap();
    assert!(
        !status.success(),
        "ffmpeg publishing a live key elsewhere must fail"
    );
    assert!(b.metrics().sum("publish_rejected") >= 1);
    assert_eq!(redis.cli(&["GET", "edge:stream:live/cam"]), "a");
}

#[test]
fn when_the_holder_dies_the_edge_follows_the_republish_and_viewers_stay() {
    let redis = Redis::start();
    let mut a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let edge = node(
        &redis,
        "e",
        &["--origin", "registry", "--republish-grace-ms", "15000"],
    );
    let publisher = publish_loop(&a.rtmp_url("live/cam"));
    wait_placed(&edge, "live/cam", "a");
    // Long enough to see the whole failover; it ends by its deadline, still connected.
    let (progress, viewer) = watch(edge.rtmp, "live/cam", Duration::from_secs(25));
    grows(&progress, "the edge viewer to get media from a");

    a.kill();
    drop(publisher);
    let killed = Instant::now();
    // The publisher comes back at b; b refuses it while a's node record lives (up to 3 s).
    let stop = Arc::new(AtomicBool::new(false));
    let (url, s) = (b.rtmp_url("live/cam"), Arc::clone(&stop));
    let republisher = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let mut p = KillOnDrop(ffmpeg_publish(
                &fixture("bframes.flv"),
                &url,
                &["-stream_loop", "-1"],
            ));
            while !s.load(Ordering::Relaxed) {
                if let Ok(Some(_)) = p.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    eventually("b to register live/cam", Duration::from_secs(20), || {
        redis.cli(&["GET", "edge:stream:live/cam"]) == "b"
    });
    let registered = Instant::now();
    eventually("the edge to pull from b", Duration::from_secs(20), || {
        b.metrics().sum("rtmp_play_requests") >= 1
    });
    let pulled = Instant::now();
    let frames_then = progress.load(Ordering::Relaxed);
    grows(&progress, "the edge viewer to get media from b");
    let resumed = Instant::now();
    println!(
        "failover: a killed -> b registered {} ms; registered -> edge pulling from b {} ms; \
         a killed -> viewer media again {} ms",
        (registered - killed).as_millis(),
        (pulled - registered).as_millis(),
        (resumed - killed).as_millis()
    );
    let log = viewer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    republisher.join().unwrap();
    assert!(!log.closed, "the viewer kept its connection: {log:?}");
    assert!(log.video > frames_then, "{log:?}");
    assert!(
        log.video_ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps stay monotonic across the move"
    );
}

#[test]
fn a_redis_outage_leaves_media_alone_and_registrations_come_back() {
    let mut redis = Redis::start();
    let port = redis.port;
    let a = node(&redis, "a", &[]);
    let _publisher = publish_loop(&a.rtmp_url("live/cam"));
    wait_placed(&a, "live/cam", "a");
    let (progress, viewer) = watch(a.rtmp, "live/cam", Duration::from_secs(30));
    grows(&progress, "the viewer to get media");

    redis.kill();
    eventually(
        "healthz to say Redis is gone",
        Duration::from_secs(10),
        || {
            String::from_utf8_lossy(&http_get(a.http, "/healthz").body)
                .contains("\"registry\":{\"reachable\":false}")
        },
    );
    grows(&progress, "media to flow without Redis");
    assert_eq!(
        a.metrics().0.get(&("registry_up".to_string(), 0)),
        None,
        "registry_up has no shard label"
    );

    let redis = Redis::start_on(port);
    eventually(
        "the registration to come back",
        Duration::from_secs(20),
        || redis.cli(&["GET", "edge:stream:live/cam"]) == "a",
    );
    assert!(redis.cli(&["GET", "edge:node:a"]).starts_with("v1 id=a "));
    grows(&progress, "media to keep flowing");
    let log = viewer.join().unwrap();
    assert!(!log.closed, "the viewer kept its connection: {log:?}");
    let metrics = prometheus(&a);
    assert!(metrics.contains("edge_registry_up 1"), "{metrics}");
    assert!(
        !metrics.contains("edge_registry_reconnects 0\n"),
        "{metrics}"
    );
}

#[test]
fn an_origin_in_pull_mode_pulls_a_stream_held_elsewhere_once_for_every_protocol() {
    let redis = Redis::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &["--cluster-mode", "pull"]);
    let _publisher = publish_loop(&a.rtmp_url("live/cam"));
    wait_placed(&b, "live/cam", "a");
    let plays_at_a = a.metrics().sum("rtmp_play_requests");

    // RTMP viewers on both of b's shards, an HTTP-FLV viewer and an HLS playlist: all served
    // by b, from one pull to a.
    let (p1, v1) = watch(b.rtmp, "live/cam", Duration::from_secs(8));
    let (p2, v2) = watch(b.rtmp, "live/cam", Duration::from_secs(8));
    grows(&p1, "b's viewer 1 to get media");
    grows(&p2, "b's viewer 2 to get media");
    let (bytes, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let flv = read_http_until(
        b.http,
        "/live/cam.flv",
        Arc::clone(&bytes),
        Arc::clone(&stop),
    );
    // The FLV header, metadata and codec headers are well under 2 KiB: the rest is media.
    eventually("FLV media at b", Duration::from_secs(10), || {
        bytes.load(Ordering::Relaxed) > 64 * 1024
    });
    stop.store(true, Ordering::Relaxed);
    assert!(!flv.join().unwrap(), "b kept the FLV viewer connected");
    let playlist = http_get(b.http, "/live/cam.m3u8");
    assert_eq!(playlist.status(), 200, "{}", playlist.head);
    assert!(
        String::from_utf8_lossy(&playlist.body).contains("#EXTINF"),
        "{}",
        String::from_utf8_lossy(&playlist.body)
    );
    // An HLS player's keep-alive connection counts as an HLS viewer, in /metrics and in the
    // node record the cluster sees, until it closes.
    let mut hls = std::net::TcpStream::connect(b.http).unwrap();
    for _ in 0..2 {
        hls.write_all(b"GET /live/cam.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            hls.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Content-Length");
        hls.read_exact(&mut vec![0u8; length]).unwrap();
    }
    assert_eq!(
        b.metrics().sum("hls_viewers"),
        1,
        "one connection, one viewer"
    );
    eventually("b's record to count it", Duration::from_secs(10), || {
        redis
            .cli(&["GET", "edge:node:b"])
            .contains(" hls_viewers=1 ")
    });
    drop(hls);
    eventually("the HLS viewer to leave", Duration::from_secs(10), || {
        b.metrics().sum("hls_viewers") == 0
    });
    let (l1, l2) = (v1.join().unwrap(), v2.join().unwrap());
    assert!(l1.redirect.is_none() && l2.redirect.is_none());
    assert!(l1.video > 0 && l2.video > 0, "{l1:?} {l2:?}");
    assert_eq!(b.metrics().sum("upstream_pulls_started"), 1, "one pull");
    assert_eq!(b.metrics().sum("cluster_redirects"), 0);
    assert_eq!(
        a.metrics().sum("rtmp_play_requests"),
        plays_at_a + 1,
        "a saw b's pull and nothing else"
    );
    // b pulls it; it does not claim it.
    assert_eq!(redis.cli(&["GET", "edge:stream:live/cam"]), "a");
}

#[test]
fn an_edge_publish_lands_on_the_least_loaded_origin_and_a_stopping_origin_leaves_at_once() {
    let redis = Redis::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let edge = node(&redis, "e", &["--origin", "registry"]);
    // a holds a stream, b none: b is the least loaded.
    let _busy = publish_loop(&a.rtmp_url("live/busy"));
    eventually("the edge to see a's load", Duration::from_secs(15), || {
        cluster(&edge).contains(&format!("\"http\":\"{}\",\"streams\":1,", a.http))
    });
    let _publisher = publish_loop(&edge.rtmp_url("live/fwd"));
    eventually(
        "b to register the forwarded stream",
        Duration::from_secs(20),
        || redis.cli(&["GET", "edge:stream:live/fwd"]) == "b",
    );
    assert_eq!(edge.metrics().sum("forwards_started"), 1);
    let (progress, viewer) = watch(b.rtmp, "live/fwd", Duration::from_secs(4));
    grows(&progress, "the forwarded stream to play at b");
    assert!(viewer.join().unwrap().video > 0);

    // A clean stop deletes b's record and registration instead of leaving them to expire
    // (3 s and 30 s): the forward moves to a, which registers the stream. (SIGINT: at once;
    // SIGTERM would drain, and the edge's forward would keep b for the drain's length.)
    let status = b.interrupt();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        redis.cli(&["EXISTS", "edge:node:b"]),
        "0",
        "b's record is gone as b exits"
    );
    assert_ne!(redis.cli(&["GET", "edge:stream:live/fwd"]), "b");
    eventually(
        "a to register the forwarded stream",
        Duration::from_secs(20),
        || redis.cli(&["GET", "edge:stream:live/fwd"]) == "a",
    );
}

#[test]
fn a_tls_registry_with_a_password_places_streams_like_a_plain_one() {
    let certs = TestCerts::generate("rediss");
    let redis = Redis::start_tls(&certs, "s3cret");
    assert!(redis.url().starts_with("rediss://:s3cret@127.0.0.1:"));
    let ca = certs.ca.to_str().unwrap();
    let a = node(&redis, "a", &["--upstream-ca", ca]);
    let b = node(&redis, "b", &["--upstream-ca", ca]);
    let _publisher = publish_loop(&a.rtmp_url("live/cam"));
    // Registered over TLS, read back over TLS, heard by b through the TLS subscription.
    eventually("a to register over TLS", Duration::from_secs(15), || {
        redis.cli(&["GET", "edge:stream:live/cam"]) == "a"
    });
    wait_placed(&b, "live/cam", "a");
    let flv = http_get(b.http, "/live/cam.flv");
    assert_eq!(flv.status(), 302, "{}", flv.head);
    assert!(
        prometheus(&a).contains("\nedge_registry_errors 0\n"),
        "no error replies: the password was taken"
    );

    // Without the CA the node cannot trust Redis: it stays unregistered and says so.
    let c = node(&redis, "c", &[]);
    let _other = publish_loop(&c.rtmp_url("live/other"));
    eventually(
        "c to count a failed connect",
        Duration::from_secs(15),
        || !prometheus(&c).contains("\nedge_registry_reconnects 0\n"),
    );
    let health = String::from_utf8_lossy(&http_get(c.http, "/healthz").body).into_owned();
    assert!(
        health.contains("\"registry\":{\"reachable\":false}"),
        "{health}"
    );
    assert_eq!(redis.cli(&["EXISTS", "edge:stream:live/other"]), "0");
}
