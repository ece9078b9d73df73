//! Origin-cluster measurements on loopback, against a real `redis-server`:
//!
//! 1. **Convergence**: a stream moves between origins A and B (its publisher stops at one
//!    and starts at the other); from the moment the new holder's `up` event is published on
//!    `edge:events` to the moment that origin counts the edge's play request, and to the
//!    edge viewer's next frame. The viewer stays connected throughout.
//! 2. **Cold-edge resolve**: a freshly started edge is asked for a stream it has never seen;
//!    play request to first video frame, `--origin registry` against `--origin rtmp://A/live`,
//!    alternating.
//! 3. **Redis load**: commands per second per node with N live streams on one origin (and
//!    an idle edge beside it), from the nodes' own counters and Redis's `INFO stats`.
//!
//! Run (release binaries must be built):
//! `cargo build --release -p edge-engine -p loadgen -p bench && target/release/cluster-bench [RUNS] [STREAMS] [SECONDS]`
//! (defaults 20, 1000, 30; RUNS 0 measures only the Redis load). Needs redis-server,
//! redis-cli and ffmpeg.
//!
//! Results go to docs/BENCHMARKS.md ("Origin cluster").

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_core::registry::{channel_message, CHANNEL};
use edge_core::resp::{self, Decoder};
use tests::{eventually, publish_loop, watch, Engine, Redis};

/// `edge:events` messages with the moment each arrived.
type Events = Arc<Mutex<Vec<(Instant, String)>>>;

fn subscribe(redis: &Redis) -> Events {
    let events: Events = Arc::default();
    let log = Arc::clone(&events);
    let mut sock = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis");
    let mut hello = Vec::new();
    resp::command(&["SUBSCRIBE", CHANNEL], &mut hello);
    sock.write_all(&hello).unwrap();
    std::thread::spawn(move || {
        let mut d = Decoder::default();
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = sock.read(&mut buf) {
            if n == 0 {
                return;
            }
            let at = Instant::now();
            d.feed(&buf[..n]);
            while let Ok(Some(v)) = d.next_reply() {
                if let Some(p) = channel_message(&v) {
                    let text = String::from_utf8_lossy(p).into_owned();
                    log.lock().unwrap().push((at, text));
                }
            }
        }
    });
    events
}

fn node(redis: &Redis, id: &str, extra: &[&str]) -> Engine {
    let url = redis.url();
    let mut args = vec!["--cores", "1", "--registry", &url, "--node-id", id];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

/// A prometheus series without labels, from `/metrics`.
fn series(e: &Engine, name: &str) -> u64 {
    let body = tests::http_get(e.http, "/metrics").body;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(what: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{what}: n={} median {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn converge(runs: usize) {
    let redis = Redis::start();
    let events = subscribe(&redis);
    let grace = ["--republish-grace-ms", "300"];
    let origins = [node(&redis, "a", &grace), node(&redis, "b", &grace)];
    let edge = node(
        &redis,
        "e",
        &["--origin", "registry", "--republish-grace-ms", "600000"],
    );
    let (progress, viewer) = watch(edge.rtmp, "live/cam", Duration::from_secs(3600));
    let (mut to_pull, mut to_media) = (Vec::new(), Vec::new());
    let mut publisher = None;
    for run in 0..runs {
        let (holder, id) = (&origins[run % 2], ["a", "b"][run % 2]);
        // The stream ends where it was: the old holder unregisters it after its grace.
        drop(publisher.take());
        eventually(
            "the old registration to go",
            Duration::from_secs(20),
            || redis.cli(&["EXISTS", "edge:stream:live/cam"]) == "0",
        );
        let plays = holder.metrics().sum("rtmp_play_requests");
        let seen = events.lock().unwrap().len();
        publisher = Some(publish_loop(&holder.rtmp_url("live/cam")));
        let want = format!("up live/cam {id}");
        let up = loop {
            let found = events.lock().unwrap()[seen..]
                .iter()
                .find(|(_, t)| *t == want)
                .map(|e| e.0);
            if let Some(at) = found {
                break at;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let frames = progress.load(Ordering::Relaxed);
        let deadline = up + Duration::from_secs(20);
        let mut pulled = None;
        let mut media = None;
        while (pulled.is_none() || media.is_none()) && Instant::now() < deadline {
            let now = Instant::now();
            if pulled.is_none() && holder.metrics().sum("rtmp_play_requests") > plays {
                pulled = Some(now);
            }
            if media.is_none() && progress.load(Ordering::Relaxed) > frames {
                media = Some(now);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let (Some(pulled), Some(media)) = (pulled, media) else {
            println!("run {run}: the edge did not follow within 20 s");
            continue;
        };
        to_pull.push(ms(pulled.saturating_duration_since(up)));
        to_media.push(ms(media.saturating_duration_since(up)));
    }
    drop(publisher);
    summary("registration -> edge pulling from the new holder", to_pull);
    summary("registration -> edge viewer's next frame", to_media);
    let connected = !viewer.is_finished();
    drop(edge);
    let log = viewer.join().unwrap();
    println!(
        "edge viewer: {} video frames over {runs} moves, still connected at the end: {connected}",
        log.video
    );
}

fn resolve(runs: usize) {
    let redis = Redis::start();
    let origin = node(&redis, "a", &[]);
    let _publisher = publish_loop(&origin.rtmp_url("live/cam"));
    eventually(
        "the stream to be registered",
        Duration::from_secs(20),
        || redis.cli(&["GET", "edge:stream:live/cam"]) == "a",
    );
    let fixed = format!("rtmp://{}/live", origin.rtmp);
    let (mut registry, mut fixed_ms) = (Vec::new(), Vec::new());
    for run in 0..runs * 2 {
        let via_registry = run % 2 == 0;
        let edge = if via_registry {
            node(&redis, "e", &["--origin", "registry"])
        } else {
            node(&redis, "e", &["--origin", &fixed])
        };
        let asked = Instant::now();
        let (progress, viewer) = watch(edge.rtmp, "live/cam", Duration::from_secs(20));
        while progress.load(Ordering::Relaxed) == 0 && asked.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let t = ms(asked.elapsed());
        if via_registry {
            registry.push(t);
        } else {
            fixed_ms.push(t);
        }
        drop(edge);
        let _ = viewer.join();
    }
    summary(
        "cold edge, --origin registry: play -> first frame",
        registry,
    );
    summary(
        "cold edge, --origin rtmp://A: play -> first frame",
        fixed_ms,
    );
}

fn redis_commands(redis: &Redis) -> u64 {
    redis
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("total_commands_processed:")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn redis_load(streams: usize, seconds: u64) {
    let redis = Redis::start();
    let origin = node(&redis, "a", &[]);
    let edge = node(&redis, "e", &["--origin", "registry"]);
    let loadgen = tests::loadgen_bin();
    let mut pub_all = Command::new(loadgen)
        .args(["--publish", "--viewers", "0", "--bitrate", "200k"])
        .args(["--streams", &streams.to_string(), "--stream-prefix", "s"])
        .args(["--target", &format!("rtmp://{}", origin.rtmp)])
        .args(["--duration", &format!("{}s", seconds + 120)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadgen");
    eventually(
        "every stream to be registered",
        Duration::from_secs(120),
        || redis.cli(&["SCARD", "edge:streams"]) == streams.to_string(),
    );
    // Past the first refresh of everything (10 s), so the window is steady state.
    std::thread::sleep(Duration::from_secs(11));
    let at = |()| {
        (
            Instant::now(),
            series(&origin, "edge_registry_commands"),
            series(&edge, "edge_registry_commands"),
            redis_commands(&redis),
        )
    };
    let (t0, o0, e0, r0) = at(());
    std::thread::sleep(Duration::from_secs(seconds));
    let (t1, o1, e1, r1) = at(());
    let s = (t1 - t0).as_secs_f64();
    println!(
        "{streams} live streams on one origin, {seconds} s: origin {:.1} commands/s, idle edge \
         {:.1} commands/s (their own counters: one per command or script sent); Redis processed \
         {:.1} commands/s in all (INFO stats, the bench's own redis-cli calls included)",
        (o1 - o0) as f64 / s,
        (e1 - e0) as f64 / s,
        (r1 - r0) as f64 / s
    );
    let _ = pub_all.kill();
    let _ = pub_all.wait();
}

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (runs, streams, seconds) = (arg(1, 20) as usize, arg(2, 1000) as usize, arg(3, 30));
    if runs > 0 {
        converge(runs);
        resolve(runs);
    }
    redis_load(streams, seconds);
}
