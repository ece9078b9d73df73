//! Edge measurements on loopback: the edge hop (frame latency at an edge viewer minus at an
//! origin viewer, same frames matched by their SEI frame number) and failover time (SIGKILL
//! of the origin in use → first frame from the backup at an edge viewer), repeated.
//!
//! Run (release binaries of edge-engine and loadgen must be built):
//! `cargo build --release -p edge-engine -p loadgen -p bench && target/release/edge-failover RUNS HOP_SECONDS`
//!
//! Set-up: origins A and B (edge-engine --cores 1), each fed by its own `loadgen --publish`
//! (SEI probes in every video frame), and an edge (`--cores 2 --origin A --origin B`). For
//! each run the edge must be pulling from A (it probes A back after a failover); A is killed,
//! a viewer that has watched through the edge since the start records when the backup's first
//! frame arrives, then A and its publisher are restarted on the same port.
//!
//! Last results (ci-vm, 2 vCPU KVM, 2026-11-21, `edge-failover 20 30`): edge hop p99 0.2 ms
//! (706 frames); failover p50 8.1 ms, p99 13.7 ms (20 runs). See docs/BENCHMARKS.md.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_core::media::{self, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::sei;
use std::io::{Read, Write};
use tests::Engine;

/// One video message as a viewer saw it.
#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    header: bool,
    seq: Option<u64>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Plays `rtmp://addr/live/load0` until `stop`, logging every video message.
fn viewer(addr: SocketAddr, stop: Arc<AtomicBool>) -> (Log, std::thread::JoinHandle<()>) {
    let log: Log = Arc::default();
    let out = Arc::clone(&log);
    let h = std::thread::spawn(move || {
        let mut sock = TcpStream::connect(addr).expect("connect viewer");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let _ = sock.set_nodelay(true);
        let mut c = RtmpClient::new(ClientConfig::new(
            &format!("rtmp://{addr}/live"),
            "load0",
            ClientMode::Play,
        ))
        .unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            if let Some(b) = c.poll_transmit() {
                sock.write_all(&b).expect("viewer write");
            }
            let n = match sock.read(&mut buf) {
                Ok(0) => panic!("the edge closed a viewer"),
                Ok(n) => n,
                Err(_) => continue,
            };
            let at = Instant::now();
            let mut events = Vec::new();
            c.handle_input(&buf[..n], &mut events)
                .expect("viewer protocol");
            for ev in events {
                if let ClientEvent::Media {
                    kind: MediaKind::Video,
                    body,
                    ..
                } = ev
                {
                    let header = media::parse_video_tag(&body).is_ok_and(|t| t.sequence_header);
                    let seq = body
                        .get(5..)
                        .and_then(|d| sei::find_in_avcc(d, 4))
                        .map(|p| p.seq);
                    out.lock().unwrap().push(Seen { at, header, seq });
                }
            }
        }
    });
    (log, h)
}

fn publisher(loadgen: &std::path::Path, origin: SocketAddr) -> Child {
    Command::new(loadgen)
        .args(["--publish", "--viewers", "0", "--duration", "3600s"])
        .arg("--target")
        .arg(format!("rtmp://{origin}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadgen (cargo build --release -p loadgen)")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
        v[v.len() - 1]
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_origin(port: u16) -> Engine {
    Engine::start(&["--cores", "1", "--rtmp", &format!("127.0.0.1:{port}")])
}

fn edge_origin(edge: &Engine) -> String {
    let body = tests::http_get(edge.http, "/api/v1/streams").body;
    let text = String::from_utf8_lossy(&body);
    text.split("\"origin\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let hop_seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30);
    let loadgen = tests::engine_bin().with_file_name("loadgen");
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = start_origin(port_a);
    let b = start_origin(port_b);
    let mut pub_a = publisher(&loadgen, a.rtmp);
    let mut pub_b = publisher(&loadgen, b.rtmp);
    std::thread::sleep(Duration::from_secs(2));
    let url = |p: u16| format!("rtmp://127.0.0.1:{p}/live");
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &url(port_a),
        "--origin",
        &url(port_b),
    ]);
    let stop = Arc::new(AtomicBool::new(false));

    // 1. The edge hop: the same frames at an origin viewer and at an edge viewer.
    let (at_origin, h1) = viewer(a.rtmp, Arc::clone(&stop));
    let (at_edge, h2) = viewer(edge.rtmp, Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(hop_seconds));
    let arrivals = |log: &Log| -> std::collections::HashMap<u64, Instant> {
        let mut m = std::collections::HashMap::new();
        for s in log.lock().unwrap().iter() {
            if let Some(q) = s.seq {
                m.entry(q).or_insert(s.at);
            }
        }
        m
    };
    let (o, e) = (arrivals(&at_origin), arrivals(&at_edge));
    // Skip the join bursts (GOP caches): the first 3 s of frames.
    let first = o
        .keys()
        .min()
        .copied()
        .unwrap_or(0)
        .max(e.keys().min().copied().unwrap_or(0));
    let hops: Vec<f64> = e
        .iter()
        .filter(|(q, _)| **q > first + 75)
        .filter_map(|(q, te)| {
            o.get(q).map(|to| {
                te.saturating_duration_since(*to).as_secs_f64() * 1000.0
                    - to.saturating_duration_since(*te).as_secs_f64() * 1000.0
            })
        })
        .collect();
    summary("edge hop (edge viewer − origin viewer, same frame)", hops);
    stop.store(true, Ordering::Relaxed);
    h1.join().unwrap();
    h2.join().unwrap();

    // 2. Failover, repeated.
    let stop = Arc::new(AtomicBool::new(false));
    let (log, h) = viewer(edge.rtmp, Arc::clone(&stop));
    let mut to_backup = Vec::new();
    for run in 0..runs {
        // Wait until the edge is back on A and media flows.
        let deadline = Instant::now() + Duration::from_secs(30);
        while edge_origin(&edge) != url(port_a) {
            assert!(Instant::now() < deadline, "the edge did not return to A");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        let before = log.lock().unwrap().len();
        let t0 = Instant::now();
        a.kill();
        let _ = pub_a.kill();
        let _ = pub_a.wait();
        // First frame from B: after the fresh sequence header that follows the kill.
        let deadline = Instant::now() + Duration::from_secs(10);
        let backup = loop {
            std::thread::sleep(Duration::from_millis(20));
            let l = log.lock().unwrap();
            let after = &l[before..];
            let header = after.iter().position(|s| s.header && s.at >= t0);
            if let Some(f) = header.and_then(|h| after[h..].iter().find(|s| !s.header)) {
                break f.at;
            }
            assert!(Instant::now() < deadline, "run {run}: no frame from B");
        };
        let ms = backup.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        to_backup.push(ms);
        println!("run {run}: first frame from the backup {ms:.1} ms after SIGKILL");
        a = start_origin(port_a);
        pub_a = publisher(&loadgen, a.rtmp);
    }
    summary(
        "failover (SIGKILL → first backup frame at the viewer)",
        to_backup,
    );
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    for p in [&mut pub_a, &mut pub_b] {
        let _ = p.kill();
        let _ = p.wait();
    }
    let m = edge.metrics();
    println!(
        "edge counters: failovers={} connects={} pulls_started={}",
        m.sum("upstream_failovers"),
        m.sum("upstream_connects"),
        m.sum("upstream_pulls_started")
    );
    drop(b);
}
