//! edge-engine: the thin layer that moves bytes between sockets and edge-core state machines.
//!
//! [`run`] starts the engine ([`node::lifecycle`]). The crate is layered, and a module only
//! imports from its own layer or the layers below it (a test checks it, `tests/layers.rs`):
//!
//! ```text
//! node      the process: lifecycle, drain, upgrade, registry client, `sign`
//! serve     accept loops, RTMP and HTTP sessions, routes, access checks
//! shard     one core's state: the dispatcher and its parts, viewers' outlets
//! upstream  connections out: RTMP origins, HTTP origins, hooks, an upgrade's predecessor
//! machine   what shards share: counters, drain flags, registry handles, reports
//! config    settings: flags, environment, the TOML file, validated
//! net       sockets, TLS, dialing, arena and zero-copy, the mesh, timer, clock, containment
//! ```

pub(crate) mod config;
pub(crate) mod machine;
pub mod net;
pub(crate) mod node;
pub(crate) mod serve;
pub(crate) mod shard;
pub(crate) mod upstream;

pub use node::lifecycle::run;
