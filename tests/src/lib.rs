//! Helpers for the end-to-end tests: start the real `edge-engine` binary on ephemeral
//! loopback ports, read its counters, drive ffmpeg, and play with edge-core's RTMP client.
//!
//! The binary is the one `cargo test --workspace` builds next to this test executable
//! (edge-engine's own CLI test makes cargo build it). By concern: [`engine`] (the process),
//! [`players`] and [`publishers`] (RTMP and FLV clients), [`http`], [`media`] (ffmpeg,
//! GStreamer, ffprobe), [`origins`], [`relay`], [`nginx`] and [`redis`] (peers that are not
//! an engine), [`certs`] (TLS), [`h3`] (HTTP/3: aioquic and a UDP relay), [`netns`] (a second host over veth, with loss), [`support`] (binaries, fixtures, waiting).

pub mod certs;
pub mod engine;
pub mod h3;
pub mod http;
pub mod media;
pub mod netns;
pub mod nginx;
pub mod origins;
pub mod players;
pub mod publishers;
pub mod redis;
pub mod relay;
pub mod support;

pub use certs::*;
pub use engine::*;
pub use h3::*;
pub use http::*;
pub use media::*;
pub use netns::Netns;
pub use nginx::Nginx;
pub use origins::*;
pub use players::*;
pub use publishers::*;
pub use redis::Redis;
pub use relay::DelayRelay;
pub use support::*;
