//! Load for flamegraphs and quick checks: N RTMP players of one stream for a while.
//!
//! Run: `cargo run --release -p bench --bin rtmp-players -- ADDR APP STREAM PLAYERS SECONDS`

use std::time::Duration;

use tests::{play_many, PlayOpts};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: rtmp-players ADDR APP STREAM PLAYERS SECONDS");
        std::process::exit(2);
    }
    let addr = args[1].parse().expect("ADDR like 127.0.0.1:1935");
    let players: usize = args[4].parse().expect("PLAYERS");
    let seconds: u64 = args[5].parse().expect("SECONDS");
    let opts = PlayOpts {
        deadline: Duration::from_secs(seconds),
        until_status: None,
        ..PlayOpts::default()
    };
    let logs = play_many(addr, &args[2], &args[3], players, opts)
        .join()
        .unwrap();
    let frames: u64 = logs.iter().map(|l| l.video + l.audio).sum();
    let errors = logs.iter().filter(|l| l.error.is_some()).count();
    println!("players={players} frames={frames} errors={errors}");
}
