//! Hostile peers against the real `edge-engine --cores 2`: bytes that once killed a shard, a
//! shard that panics anyway, and an origin that sends the same bytes to an edge. Every test
//! checks that the engine keeps serving what it served, byte for byte, and that the
//! offender is closed with a reason in the log.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::*;

const FIXTURE: &str = "bframes.flv";

/// The RTMP reproducers of issue 11, each sent right after a valid handshake. Every one
/// panicked a shard (rml_rtmp's command decoding and chunk deserializer).
const REPRODUCERS: [&[u8]; 3] = [
    // A zero-length AMF0 command (type 20) on chunk stream 3.
    &[0x03, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0],
    // The same as AMF3 (type 17).
    &[0x03, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0],
    // Set chunk size 1; a 2-byte message on csid 3; a header announcing length 0 mid-message.
    &[
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x03, 0, 0, 0, 0, 0, 2, 8, 1, 0, 0, 0,
        0xaa, 0x43, 0, 0, 0, 0, 0, 0, 8,
    ],
];

/// An extended timestamp continued by a type 3 chunk (rml_rtmp underflowed on it). Valid
/// chunking: it must not close the connection by itself.
const EXTENDED_TIMESTAMP: &[u8] = &[
    0x03, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xc3, 0, 0, 0, 0, 0xbb,
];

#[test]
fn regression_issue_11_reproducers_leave_the_engine_serving() {
    let engine = Engine::start_logged(
        &["--cores", "2", "--republish-grace-ms", "300"],
        "edge_engine=info",
    );
    let source = fixture_md5(FIXTURE);
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    // A packet-exact ffmpeg player and a counting one of our own.
    let url = engine.rtmp_url("live/watched");
    let md5_player = std::thread::spawn(move || framemd5(&url, Duration::from_secs(60)));
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let addr = engine.rtmp;
    let player = std::thread::spawn(move || {
        play_rtmp(addr, "live", "watched", &PlayOpts::default(), Some(&p))
    });
    engine.wait_for("two waiting players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 2
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/watched"), &[]);
    eventually("20 frames at the player", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) >= 20
    });

    // Each reproducer on several connections: SO_REUSEPORT spreads them over both shards.
    let mut offenders = 0;
    for (i, bytes) in REPRODUCERS.iter().enumerate() {
        for _ in 0..4 {
            let mut s = rtmp_handshake(engine.rtmp).expect("handshake");
            s.write_all(bytes).unwrap();
            assert!(
                closed_by_peer(&mut s),
                "reproducer {i}: connection not closed"
            );
            offenders += 1;
        }
    }
    // The extended timestamp is read, and the session goes on: a reproducer after it on the
    // same connection is still answered by a close.
    for _ in 0..4 {
        let mut s = rtmp_handshake(engine.rtmp).expect("handshake");
        s.write_all(EXTENDED_TIMESTAMP).unwrap();
        s.write_all(REPRODUCERS[0]).unwrap();
        assert!(
            closed_by_peer(&mut s),
            "extended timestamp, then a reproducer"
        );
        offenders += 1;
    }
    for _ in 0..10 {
        let health = http_get(engine.http, "/healthz");
        assert_eq!(health.status(), 200, "{health:?}");
    }
    let during = progress.load(Ordering::Relaxed);

    assert!(
        publisher.wait().unwrap().success(),
        "the publisher is untouched"
    );
    let (lines, _err) = md5_player.join().unwrap();
    assert_eq!(
        lines.len(),
        source.len(),
        "packet count of the watched stream"
    );
    for (i, (got, want)) in lines.iter().zip(&source).enumerate() {
        assert_eq!(got, want, "packet {i} of the watched stream differs");
    }
    let log = player.join().unwrap();
    assert!(
        log.video + log.audio > during,
        "media kept flowing after the offenders"
    );
    assert_eq!((log.video, log.audio), (video, audio), "and none was lost");

    let m = engine.metrics();
    assert!(
        m.sum("connection_errors") >= offenders,
        "every offender counted: {m:?}"
    );
    assert_eq!(
        m.sum("peer_panics"),
        0,
        "closed by errors, not by caught panics"
    );
    let text = engine.log();
    let reasons = text
        .lines()
        .filter(|l| l.contains("rtmp connection closed: protocol error"))
        .count();
    assert!(
        reasons as u64 >= offenders,
        "{reasons} logged reasons for {offenders} offenders:\n{text}"
    );
    assert!(
        text.contains("command message without a command name"),
        "{text}"
    );
    assert!(text.contains("a new message header mid-message"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn a_shard_that_panics_ends_the_process_with_a_failure() {
    let mut engine =
        Engine::start_with_env(&["--cores", "2"], &[("EDGE_ENGINE_TEST_PANIC_SHARD", "1")]);
    let status = engine
        .wait_exit(Duration::from_secs(30))
        .expect("the engine exits when a shard dies");
    assert_eq!(status.code(), Some(70), "exit status {status:?}");
}

#[test]
fn a_healthy_engine_does_not_exit_without_the_hook() {
    // The control for the test above: the same engine without the hook keeps running and
    // serving (so exit 70 there is the hook's doing).
    let mut engine = Engine::start(&["--cores", "2"]);
    assert!(engine.wait_exit(Duration::from_secs(2)).is_none());
    assert_eq!(http_get(engine.http, "/healthz").status(), 200);
}

/// An origin that completes the handshake and then sends `bytes`, for every connection.
fn hostile_origin(bytes: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&connections);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { return };
            seen.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                use std::io::Read;
                let mut c0c1 = vec![0u8; 1537];
                if sock.read_exact(&mut c0c1).is_err() {
                    return;
                }
                // S0, S1 (zeros), S2 echoing C1; then wait for C2 and attack.
                let mut reply = vec![3u8];
                reply.extend_from_slice(&[0u8; 1536]);
                reply.extend_from_slice(&c0c1[1..]);
                if sock.write_all(&reply).is_err() {
                    return;
                }
                let mut c2 = vec![0u8; 1536];
                if sock.read_exact(&mut c2).is_err() {
                    return;
                }
                let _ = sock.write_all(bytes);
                let mut sink = [0u8; 4096];
                while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    (addr, connections)
}

#[test]
fn a_hostile_origin_cannot_take_the_edge_down() {
    for bytes in REPRODUCERS {
        let (origin, connections) = hostile_origin(bytes);
        let edge = Engine::start_logged(
            &[
                "--cores",
                "2",
                "--origin",
                &format!("rtmp://{origin}/live"),
                "--upstream-timeout-ms",
                "500",
            ],
            "edge_engine=info",
        );
        // A viewer makes the edge pull; every pull gets the reproducer.
        let addr = edge.rtmp;
        let opts = PlayOpts {
            deadline: Duration::from_secs(3),
            ..PlayOpts::default()
        };
        let viewer = std::thread::spawn(move || play_rtmp(addr, "live", "x", &opts, None));
        edge.wait_for("two upstream connections", Duration::from_secs(20), |m| {
            m.sum("upstream_connects") >= 2
        });
        assert!(connections.load(Ordering::Relaxed) >= 2);
        for _ in 0..5 {
            assert_eq!(http_get(edge.http, "/healthz").status(), 200);
        }
        let log = viewer.join().unwrap();
        assert!(
            log.started,
            "the viewer is served while the origin misbehaves: {log:?}"
        );
        let text = edge.log();
        assert!(
            text.contains("upstream failed: protocol error"),
            "the edge says why it dropped the origin:\n{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
}
