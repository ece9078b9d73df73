//! The bottom layer: sockets, memory and time, knowing nothing of streams. Connections and
//! their TLS ([`conn`], [`tls`]), outgoing connects ([`dial`]), listening sockets
//! ([`listeners`]), the segment arena and its zero-copy sends ([`arena`], [`zerocopy`]), the
//! cross-shard channels ([`mesh`]), a shard's one timer and one clock ([`timer`], [`clock`]),
//! and panic containment ([`contain`]).
//!
//! Must not: import any other layer of the crate.

pub mod arena;
pub mod clock;
pub mod conn;
pub mod contain;
pub mod dial;
pub mod listeners;
pub mod mesh;
pub mod timer;
pub mod tls;
pub mod zerocopy;
