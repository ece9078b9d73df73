//! Limits on what a peer controls (issue 20), end to end against `edge-engine --cores 2`:
//! one peer over each limit is closed with the documented reason while a watched stream on
//! the same engine loses nothing; connections per address and in total; the open-file limit
//! (EMFILE) reached and recovered from without spinning.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::*;

const FIXTURE: &str = "bframes.flv";

/// One RTMP message in chunks of 128 bytes on chunk stream `csid` (2..=63).
fn message(csid: u8, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![csid];
    let len = body.len() as u32;
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, piece) in body.chunks(128).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(piece);
    }
    out
}

/// AMF0 `connect`, transaction 1, then an object nested `depth` deep.
fn deep_connect(depth: usize) -> Vec<u8> {
    let mut body = vec![0x02, 0x00, 0x07];
    body.extend_from_slice(b"connect");
    body.push(0x00);
    body.extend_from_slice(&1f64.to_be_bytes());
    for _ in 0..depth {
        body.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    body.push(0x05);
    message(3, 20, 0, &body)
}

/// Incomplete 200-byte messages on chunk streams 3..3+n (two-byte basic headers past 63).
fn many_chunk_streams(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for csid in 3..3 + n {
        if csid < 64 {
            out.push(csid as u8);
        } else {
            out.extend_from_slice(&[0, (csid - 64) as u8]);
        }
        out.extend_from_slice(&[0, 0, 0, 0, 0, 200, 8, 1, 0, 0, 0]);
        out.extend_from_slice(&[0u8; 128]);
    }
    out
}

fn rtmp_offender(engine: &Engine, bytes: &[u8]) -> bool {
    let mut s = rtmp_handshake(engine.rtmp).expect("handshake");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The engine may close (and reset) before it has read everything.
    let _ = s.write_all(bytes);
    closed_by_peer(&mut s)
}

#[test]
fn each_limit_closes_its_offender_with_the_reason_and_a_watched_stream_loses_nothing() {
    let engine = Engine::start_logged(
        &["--cores", "2", "--republish-grace-ms", "300"],
        "edge_engine=info",
    );
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let addr = engine.rtmp;
    let player = std::thread::spawn(move || {
        play_rtmp(addr, "live", "watched", &PlayOpts::default(), Some(&p))
    });
    engine.wait_for("the watching player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let tags = fixture_flv_tags(FIXTURE);
    let half = tags.len() / 2;
    let mut publisher = Publisher::start(engine.rtmp, "live", "watched");
    publisher.send_tags(&tags[..half]);
    eventually("frames at the player", Duration::from_secs(20), || {
        progress.load(Ordering::Relaxed) >= 20
    });

    // (offender bytes after a handshake, the reason the log must name), each on two
    // connections so that both shards see one with high probability.
    let mut set_chunk = vec![0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0];
    set_chunk.extend_from_slice(&(16u32 << 20).to_be_bytes());
    let mut huge = vec![0x03, 0, 0, 0];
    huge.extend_from_slice(&(10u32 << 20).to_be_bytes()[1..]);
    huge.extend_from_slice(&[8, 1, 0, 0, 0]);
    let offenders: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a 16 MiB chunk size",
            set_chunk,
            "chunk size 16777216 out of range",
        ),
        ("a 10 MiB message", huge, "message of 10485760 bytes"),
        (
            "100 chunk streams",
            many_chunk_streams(100),
            "more than 64 chunk streams",
        ),
        (
            "a 10,000-deep AMF object",
            deep_connect(10_000),
            "AMF0 nested deeper than 32",
        ),
    ];
    for (what, bytes, _) in &offenders {
        for _ in 0..2 {
            assert!(rtmp_offender(&engine, bytes), "{what}: not closed");
        }
    }
    // A 5,000-byte stream name: refused (BadName), never a stream.
    let long = "n".repeat(5000);
    let (events, closed) = try_publish(engine.rtmp, "live", &long);
    assert!(
        closed,
        "a 5,000-byte stream name is refused and closed: {events:?}"
    );
    assert!(
        !events.contains(&edge_core::rtmp::client::ClientEvent::Started),
        "{events:?}"
    );
    let flv = http_get(engine.http, &format!("/live/{long}.flv"));
    assert_eq!(flv.status(), 404, "{}", flv.head);
    // 200 header lines: 431, closed.
    let mut s = TcpStream::connect(engine.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-{i}: y\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert_eq!(split_response(&all).status(), 431);

    publisher.send_tags(&tags[half..]);
    publisher.finish();
    let log = player.join().unwrap();
    assert_eq!(
        (log.video, log.audio),
        (video, audio),
        "the watched stream lost nothing"
    );
    assert!(log.error.is_none(), "{log:?}");

    let text = engine.log();
    for (what, _, reason) in &offenders {
        assert!(
            text.matches(reason).count() >= 2,
            "{what}: the log names the reason {reason:?}:\n{text}"
        );
    }
    assert!(text.contains("more than 64 header lines"), "{text}");
    let m = engine.metrics();
    assert!(m.sum("connection_errors") >= 9, "{m:?}");
    assert_eq!(m.sum("peer_panics"), 0);
    assert!(!text.contains("panicked"), "{text}");
}

/// Connects from `source` (a loopback address) to `addr`.
fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// Whether the engine has closed `s` (EOF or reset) by now, without waiting.
fn closed_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let mut r = s;
    let closed = match r.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

fn closed_count(socks: &[TcpStream]) -> usize {
    socks.iter().filter(|s| closed_now(s)).count()
}

#[test]
fn connections_per_address_and_in_total_are_limited_and_freed() {
    // 1,000 per address; 1,001 in all, which leaves room for the /metrics connection (from
    // 127.0.0.1) while 1,000 are held.
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--max-connections-per-ip",
        "1000",
        "--max-connections",
        "1001",
    ]);
    // 1,001 from one address: exactly one is refused.
    let mut flood: Vec<TcpStream> = (0..1001)
        .map(|_| connect_from("127.0.0.3", engine.rtmp))
        .collect();
    let m = engine.wait_for("1,001 connections seen", Duration::from_secs(30), |m| {
        m.sum("rtmp_connections_accepted") + m.sum("connections_refused_per_ip") == 1001
    });
    assert_eq!(m.sum("connections_refused_per_ip"), 1, "{m:?}");
    assert_eq!(m.sum("rtmp_connections_accepted"), 1000);
    eventually("the refused one closed", Duration::from_secs(10), || {
        closed_count(&flood) == 1
    });
    assert_eq!(closed_count(&flood), 1, "the other 1,000 stay open");

    // Two from another address, with no /metrics read in between: its own count is 0, but
    // the machine's total fits only one of them.
    let other: Vec<TcpStream> = (0..2)
        .map(|_| connect_from("127.0.0.4", engine.rtmp))
        .collect();
    eventually("one of the two refused", Duration::from_secs(10), || {
        closed_count(&other) == 1
    });
    // The machine is full now (even /metrics is refused): free the admitted one. A /metrics
    // request made before the engine has seen that close is refused too, and counted: the
    // exact count of this phase is the socket check above; from here on it must not move.
    drop(other);
    let m = engine.wait_for("room again", Duration::from_secs(10), |m| {
        // the 1,000 and this /metrics request
        m.sum("connections_open") == 1001
    });
    let refused_max = m.sum("connections_refused_max");
    assert!(refused_max >= 1, "{m:?}");
    assert_eq!(m.sum("rtmp_connections_accepted"), 1001);

    // Closing connections frees their places: 500 of the first address's go, and 10 more
    // from it are admitted.
    flood.retain(|s| !closed_now(s));
    flood.truncate(500);
    let m = engine.wait_for("the closes seen", Duration::from_secs(20), |m| {
        m.sum("connections_open") == 501
    });
    assert_eq!(m.sum("connections_refused_per_ip"), 1);
    let again: Vec<TcpStream> = (0..10)
        .map(|_| connect_from("127.0.0.3", engine.rtmp))
        .collect();
    let m = engine.wait_for("10 more accepted", Duration::from_secs(10), |m| {
        m.sum("rtmp_connections_accepted") == 1011
    });
    assert_eq!(closed_count(&again), 0);
    assert_eq!(m.sum("connections_refused_per_ip"), 1);
    assert_eq!(m.sum("connections_refused_max"), refused_max);
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn at_the_open_file_limit_viewers_keep_playing_accept_backs_off_and_recovers() {
    let engine = Engine::start_logged(&["--cores", "2"], "edge_engine=info");
    let pid = engine.pid().to_string();
    let (ok, _, err) = run_tool(
        "prlimit",
        &["--pid", &pid, "--nofile=256:256"],
        Duration::from_secs(5),
    );
    assert!(ok, "prlimit: {err}");
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let addr = engine.rtmp;
    let player = std::thread::spawn(move || {
        play_rtmp(
            addr,
            "live",
            "full",
            &PlayOpts {
                deadline: Duration::from_secs(25),
                ..PlayOpts::default()
            },
            Some(&p),
        )
    });
    engine.wait_for("the player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let _publisher = publish_loop(&engine.rtmp_url("live/full"));
    eventually("media flowing", Duration::from_secs(20), || {
        progress.load(Ordering::Relaxed) >= 20
    });

    // 300 connections: the engine runs out of descriptors part way.
    let mut flood: Vec<TcpStream> = (0..300)
        .map(|_| connect_from("127.0.0.5", engine.rtmp))
        .collect();
    eventually(
        "accept failing with EMFILE",
        Duration::from_secs(20),
        || engine.log().contains("Too many open files"),
    );
    // Saturated: the viewer keeps playing, and the shards do not spin on accept.
    let (frames, ticks) = (progress.load(Ordering::Relaxed), cpu_ticks(engine.pid()));
    std::thread::sleep(Duration::from_secs(3));
    let (frames2, ticks2) = (progress.load(Ordering::Relaxed), cpu_ticks(engine.pid()));
    assert!(
        frames2 >= frames + 50,
        "the viewer kept playing: {frames} → {frames2}"
    );
    // 3 s is 300 ticks of one core; a spinning accept loop burns that per shard.
    assert!(
        ticks2 - ticks < 90,
        "{} ticks of CPU in 3 s while saturated",
        ticks2 - ticks
    );
    assert_eq!(
        closed_count(&flood),
        0,
        "waiting connections stay queued, not reset"
    );
    // Descriptors come back: the engine accepts again.
    flood.clear();
    eventually("a fresh handshake", Duration::from_secs(20), || {
        rtmp_handshake(engine.rtmp).is_ok()
    });
    let m = engine.metrics();
    assert!(m.sum("accept_errors") > 0, "{m:?}");
    let log = engine.log();
    assert!(log.contains("backing off"), "{log}");
    assert!(
        log.matches("accept failed").count() <= 2 * 30,
        "the accept failure is logged at most once a second per shard and listener"
    );
    let played = player.join().unwrap();
    assert!(played.error.is_none(), "{played:?}");
}
