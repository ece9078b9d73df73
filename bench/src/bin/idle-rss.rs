//! Memory per idle RTMP player: starts the engine, attaches players to a stream that has no
//! publisher yet (they wait, fully set up: session, queue, writer), and reports the growth of
//! the engine's resident set per player.
//!
//! Run: `cargo build --release -p edge-engine && cargo run --release -p bench --bin idle-rss -- 1000`

use std::time::Duration;

use tests::{play_many, Engine, PlayOpts};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let players: usize = std::env::args()
        .nth(1)
        .map_or(1000, |a| a.parse().expect("player count"));
    let engine = Engine::start(&["--cores", "2", "--play-wait-ms", "600000"]);
    let opts = PlayOpts {
        deadline: Duration::from_secs(30),
        until_status: None,
        ..PlayOpts::default()
    };
    // Warm up: the first players pay for lazily grown runtime structures.
    let warm = play_many(engine.rtmp, "live", "idle", 20, opts.clone());
    engine.wait_for("warm-up players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 20
    });
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(engine.pid());
    let crowd = play_many(engine.rtmp, "live", "idle", players, opts);
    engine.wait_for("all players", Duration::from_secs(60), |m| {
        m.sum("rtmp_players") == 20 + players as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(engine.pid());
    let per_player = (after.saturating_sub(before)) as f64 * 1024.0 / players as f64;
    println!("players={players} rss_before_kib={before} rss_after_kib={after} bytes_per_idle_player={per_player:.0}");
    drop(engine);
    let _ = warm.join();
    let _ = crowd.join();
}
