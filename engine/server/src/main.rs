//! `edge-engine`: thread-per-core live-streaming edge server.
//!
//! Try it: `cargo run --release -p edge-engine`, then
//! `ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1/live/x` and
//! `ffplay http://127.0.0.1:8080/live/x.flv`.

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = edge_engine::run() {
        tracing::error!("{e:#}");
        eprintln!("edge-engine: {e:#}");
        std::process::exit(2);
    }
}
