//! The bottom layer: sockets, memory and time, knowing nothing of streams. Connections and
//! their TLS ([`conn`], [`tls`]), outgoing connects ([`dial`]), listening sockets
//! ([`listeners`]), the segment arena and its zero-copy sends ([`arena`], [`zerocopy`]), the
//! cross-shard channels ([`mesh`]), a shard's one timer and one clock ([`timer`], [`clock`]),
//! panic containment ([`contain`]), HTTP/3's QUIC endpoint, a UDP socket per shard
//! ([`quic`]), WebRTC's sessions on a UDP socket per shard ([`webrtc`]), and the UDP calls
//! both make ([`udp`]).
//!
//! Must not: import any other layer of the crate.

pub(crate) mod arena;
pub(crate) mod clock;
pub(crate) mod conn;
pub(crate) mod contain;
pub(crate) mod dial;
pub(crate) mod listeners;
pub mod mesh;
pub(crate) mod quic;
pub(crate) mod timer;
pub(crate) mod tls;
pub(crate) mod udp;
pub mod webrtc;
pub(crate) mod zerocopy;
