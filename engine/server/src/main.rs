//! `edge-engine`: thread-per-core live-streaming edge server.
//!
//! Try it: `cargo run --release -p edge-engine`, then
//! `ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1/live/x` and
//! `ffplay http://127.0.0.1:8080/live/x.flv`.

use std::io::IsTerminal as _;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file, a pipe or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = edge_engine::run() {
        // Once, in plain words: the log line it would also make says the same.
        eprintln!("edge-engine: {e:#}");
        std::process::exit(2);
    }
}
