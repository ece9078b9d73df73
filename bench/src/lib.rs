//! Benchmarks and measurement tools for edge-engine. `cargo bench` runs the criterion
//! benches in `benches/`; `cargo run --release -p bench --bin idle-rss` measures memory per
//! idle RTMP player against a running engine. Results live in `docs/BENCHMARKS.md`.
