//! Zero-downtime upgrade, end to end: a running engine with `--upgrade-socket` hands its
//! listening sockets to a successor started with `--upgrade-from`, under load. Assertions are
//! on every request answered, connect errors, which process served, and exit statuses;
//! times are printed, never asserted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::*;

fn socket_path(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("edge-upgrade-{name}-{}.sock", std::process::id()))
        .display()
        .to_string()
}

/// One `GET /healthz` on a fresh connection: the status, or why there was none.
fn health(addr: SocketAddr) -> Result<u16, String> {
    get(addr, "/healthz")
}

/// One GET of `path` on a fresh connection: the status, or why there was none (with how
/// long it took, so a timeout tells itself from a close).
fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let start = Instant::now();
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        format!("{what} after {} ms: {e}", start.elapsed().as_millis())
    };
    let mut s = TcpStream::connect(addr).map_err(|e| failed("connect", &e))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| failed("write", &e))?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).map_err(|e| failed("read", &e))?;
    if all.is_empty() {
        return Err(failed("read", &"closed unanswered"));
    }
    Ok(split_response(&all).status())
}

#[test]
fn every_connection_during_a_handover_is_answered_and_the_old_process_drains_out() {
    let path = socket_path("hammer");
    let mut old = Engine::start(&["--cores", "2", "--upgrade-socket", &path]);
    let http = old.http;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match health(http) {
                        Ok(200) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(s) => failures.push(format!("status {s}")),
                        Err(e) => failures.push(e),
                    }
                }
                failures
            })
        })
        .collect();
    eventually("requests flow", Duration::from_secs(10), || {
        answered.load(Ordering::Relaxed) > 200
    });
    let before = answered.load(Ordering::Relaxed);
    let t = Instant::now();
    // One shard fewer: the successor's shard accepts on both inherited sockets.
    let new = Engine::start(&[
        "--cores",
        "1",
        "--upgrade-from",
        &path,
        "--upgrade-socket",
        &path,
    ]);
    println!("successor ready after {:?}", t.elapsed());
    assert_eq!(
        (new.rtmp, new.http),
        (old.rtmp, old.http),
        "the same addresses"
    );
    let status = old.wait_exit(Duration::from_secs(30));
    println!("predecessor exited after {:?}: {status:?}", t.elapsed());
    assert!(
        status.is_some_and(|s| s.success()),
        "the old process drains out and exits 0: {status:?}"
    );
    // Past the old process's exit, everything is the successor's.
    let at_exit = answered.load(Ordering::Relaxed);
    eventually("requests flow after", Duration::from_secs(10), || {
        answered.load(Ordering::Relaxed) > at_exit + 200
    });
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = hammers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    println!(
        "{} requests answered, {} during the handover",
        answered.load(Ordering::Relaxed),
        at_exit - before
    );
    assert!(failures.is_empty(), "every request answered: {failures:?}");
    let served = new.metrics().sum("http_connections_accepted");
    assert!(served > 200, "the successor served them: {served}");
    // The successor is upgradable in turn: it bound the path anew.
    assert!(std::path::Path::new(&path).exists());
    drop(new);
    let _ = std::fs::remove_file(&path);
}

/// Runs the engine on ephemeral ports with `args`, expecting it to fail: what it printed.
fn engine_fails(args: &[&str]) -> String {
    let mut all = vec!["--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    all.extend(args);
    let (ok, _, err) = run_tool(
        engine_bin().to_str().unwrap(),
        &all,
        Duration::from_secs(10),
    );
    assert!(!ok, "edge-engine {all:?} should have failed");
    err
}

#[test]
fn a_second_successor_is_refused_and_a_failed_one_leaves_the_engine_serving() {
    let path = socket_path("refuse");
    let old = Engine::start(&["--cores", "1", "--upgrade-socket", &path]);
    // A successor that cannot start (a bad flag) fails before it connects.
    let err = engine_fails(&["--upgrade-from", &path, "--cores", "0"]);
    assert!(err.contains("--cores"), "{err}");
    // A second engine cannot take the path from a live one.
    let err = engine_fails(&["--upgrade-socket", &path]);
    assert!(err.contains("another engine answers there"), "{err}");
    // A successor that goes away after taking the sockets, before READY: the old engine
    // takes them back and still serves, and can hand them over later.
    {
        use socket2::{Domain, SockAddr, Socket, Type};
        let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        s.connect(&SockAddr::unix(&path).unwrap()).unwrap();
        s.send(b"HELLO 1 1\n").unwrap();
        let mut packet = [std::mem::MaybeUninit::<u8>::uninit(); 256];
        // The listeners' packets (their descriptors are discarded), the relay (an origin's;
        // no stream yet), then END.
        let mut packets = Vec::new();
        loop {
            let n = s.recv(&mut packet).unwrap();
            assert!(n > 0, "the engine hung up before END");
            // SAFETY: recv initialised the first n bytes.
            let text: Vec<u8> = packet[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let word = String::from_utf8_lossy(&text)
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_string();
            packets.push(word);
            if text.starts_with(b"END ") {
                break;
            }
        }
        assert_eq!(
            packets,
            ["LISTENER", "LISTENER", "RELAY", "END"],
            "an RTMP and an HTTP listener, the relay, then END"
        );
    }
    eventually(
        "the engine took its listeners back",
        Duration::from_secs(10),
        || health(old.http) == Ok(200),
    );
    let new = Engine::start(&["--cores", "1", "--upgrade-from", &path]);
    assert_eq!(health(new.http), Ok(200));
    // The listeners are handed over once: a third process finds no engine to take them from.
    let err = engine_fails(&["--upgrade-from", &path]);
    assert!(err.contains("--upgrade-from"), "{err}");
    drop(new);
    drop(old);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn loadgen_runs_through_an_upgrade_without_a_connect_error() {
    let path = socket_path("load");
    let origin = Engine::start(&["--cores", "1"]);
    let origin_url = origin.rtmp_url("live");
    let origin_url = origin_url.as_str();
    let edge_args = [
        "--cores",
        "2",
        "--origin",
        origin_url,
        "--upgrade-socket",
        &path,
        "--drain-timeout-s",
        "60",
    ];
    let mut old = Engine::start(&edge_args);
    let loadgen = LoadgenRun::start(
        "upgrade",
        &[
            "--publish-target",
            &format!("rtmp://{}", origin.rtmp),
            "--target",
            &format!("rtmp://{}", old.rtmp),
            "--target",
            &format!("http://{}", old.http),
            "--publish",
            "--viewers",
            "2000",
            "--protocol",
            "rtmp=0.4,flv=0.3,hls=0.3",
            "--ramp",
            "400",
            "--duration",
            "8s",
            "--max-error-rate",
            "1",
        ],
    );
    // Mid-ramp: viewers connect before, during and after the handover.
    std::thread::sleep(Duration::from_secs(3));
    let mut new_args = edge_args.to_vec();
    new_args.extend(["--upgrade-from", &path]);
    let new = Engine::start(&new_args);
    let (status, text) = loadgen.finish();
    assert!(status.success(), "loadgen exit {status}: {text}");
    println!("{text}");
    assert!(
        text.contains("\"connect\":0"),
        "no connect error through the handover: {text}"
    );
    // HLS viewers leave the old process with a playlist only once the successor lists what
    // they may still need: no segment they ask for there is missing.
    assert!(
        text.contains("\"status\":0"),
        "no HLS status error through the handover: {text}"
    );
    // Its viewers gone, the old process has nothing left and exits 0.
    let exit = old.wait_exit(Duration::from_secs(30));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    let m = new.metrics();
    let accepted = m.sum("rtmp_connections_accepted") + m.sum("http_connections_accepted");
    assert!(
        accepted > 100,
        "viewers arriving after the handover reached the successor: {accepted}"
    );
    drop(new);
    let _ = std::fs::remove_file(&path);
}

/// Regression: an origin upgraded twice in a row while ffmpeg published to it answered a
/// playlist client (a new connection per request) 200 before the first handover and 404 for
/// every request after it: the publisher stays on the draining predecessor, and the
/// successor had no source. Now each successor pulls the stream from its predecessor's relay
/// (C from B, which pulls from A), and has its playlist before it accepts: every request gets
/// 200, and an RTMP player attached to A before the first handover keeps receiving.
#[test]
fn a_published_stream_stays_watchable_across_two_handovers() {
    let path = socket_path("relay");
    let a = Engine::start(&["--cores", "2", "--upgrade-socket", &path]);
    let _publisher = publish_loop(&a.rtmp_url("live/up"));
    eventually("the stream's playlist", Duration::from_secs(30), || {
        http_get(a.http, "/live/up.m3u8").status() == 200
    });
    let progress = Arc::new(AtomicU64::new(0));
    let player = {
        let (progress, addr) = (Arc::clone(&progress), a.rtmp);
        std::thread::spawn(move || {
            let opts = PlayOpts {
                deadline: Duration::from_secs(90),
                until_status: None,
                ..PlayOpts::default()
            };
            play_rtmp(addr, "live", "up", &opts, Some(&progress))
        })
    };
    eventually("the RTMP player receiving", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) > 20
    });
    // A client that opens a new connection for every playlist request, every 50 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicU64::new(0));
    let poller = {
        let (stop, asked, http) = (Arc::clone(&stop), Arc::clone(&asked), a.http);
        std::thread::spawn(move || {
            let (mut answers, mut slowest) = (Vec::new(), Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                answers.push(match get(http, "/live/up.m3u8") {
                    Ok(status) => status.to_string(),
                    Err(e) => e,
                });
                slowest = slowest.max(t.elapsed());
                asked.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
            println!("the slowest playlist answer took {slowest:?}");
            answers
        })
    };
    let after = |n: u64| {
        let from = asked.load(Ordering::Relaxed);
        eventually("playlist requests", Duration::from_secs(60), || {
            asked.load(Ordering::Relaxed) >= from + n
        });
    };
    after(20);
    let upgrade = || {
        let args = [
            "--cores",
            "2",
            "--upgrade-from",
            &path,
            "--upgrade-socket",
            &path,
        ];
        let t = Instant::now();
        let e = Engine::start_logged(&args, "info");
        println!("successor ready after {:?}", t.elapsed());
        // Each shard had the stream's playlist before it accepted: no viewer that lands on
        // the successor waits for its first segment.
        let log = e.log();
        let warm = log
            .lines()
            .filter(|l| l.contains("inherited streams with a playlist here"))
            .collect::<Vec<_>>();
        assert_eq!(warm.len(), 2, "one line per shard: {log}");
        assert!(warm.iter().all(|l| l.contains("ready=1 of=1")), "{warm:?}");
        e
    };
    let b = upgrade();
    after(60);
    let c = upgrade();
    after(60);
    let at_c = progress.load(Ordering::Relaxed);
    eventually(
        "the RTMP player still receiving",
        Duration::from_secs(30),
        || progress.load(Ordering::Relaxed) > at_c + 50,
    );
    stop.store(true, Ordering::Relaxed);
    let answers = poller.join().unwrap();
    let not_200: Vec<&String> = answers.iter().filter(|a| *a != "200").collect();
    println!("{} playlist requests, all answered", answers.len());
    assert!(
        not_200.is_empty(),
        "every answer 200: {not_200:?} of {}",
        answers.len()
    );
    // Each successor pulled the stream once, from its predecessor (B's log: its /metrics
    // is C's now, the port being C's).
    for (name, e) in [("B", &b), ("C", &c)] {
        let log = e.log();
        let pulls = log.matches("pulling from upstream").count();
        assert_eq!(pulls, 1, "{name}: {log}");
    }
    let m = c.metrics();
    assert_eq!(m.sum("upstream_pulls_started"), 1, "C: {m:?}");
    drop((b, c));
    drop(a);
    let log = player.join().unwrap();
    assert!(log.error.is_none(), "{log:?}");
    let _ = std::fs::remove_file(&path);
}
