//! The end-to-end tests, one binary (each test file a module, as ripgrep gathers its own):
//! the real `edge-engine` binary on loopback against real peers (ffmpeg, GStreamer,
//! rtmpdump, nginx-rtmp, Redis, Chromium) and the harness's clients, plus the deployment
//! files and tuning scripts checked with the tools operators use. One binary links the
//! harness once; the tests still run in parallel, each on its own ports.

mod access;
mod basics;
mod browser;
mod cluster;
mod deploy;
mod docs;
mod drain;
mod edge;
mod hls_feed;
mod hls_origin;
mod hostile;
mod http3;
mod interop;
mod limits;
mod llhls;
mod rtmp_reader;
mod tls;
mod tuning;
mod upgrade;
mod webrtc;
mod zero_copy;
