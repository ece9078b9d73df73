//! edge-core: the sans-IO heart of edge-engine.
//!
//! Nothing in this crate touches a socket, a thread, a runtime or the clock: every input is
//! bytes plus, where time matters, `now_ms` as an argument. The engine crate moves bytes between
//! sockets and these state machines; tests drive them byte by byte.
//!
//! ```text
//!  publisher bytes ──▶ rtmp::server::ServerConnection ──ServerEvent::Media──▶ (header parsed once)
//!                                                                                │
//!                      owner::Owner (on the stream's owner shard): stream::StreamMaster,
//!                      join cache, subscribers, hls::Segmenter, pull::Pull, forward::Forward
//!                                                                                │ OwnerEffect::Update
//!                       (Frame: payload, RTMP chunks and FLV tag, each built once)│
//!                                                                                ▼
//!                      replica::Replica (one per shard with viewers: stream::StreamReplica)
//!                                                                                │ ReplicaEffect::Fanout
//!                                                                                ▼
//!                       queue::SendQueue (one per viewer, bounded in bytes) ──▶ socket
//! ```
//!
//! The state machines ([`owner`], [`replica`], [`pull`], [`forward`], [`hls::catalog`]) take
//! `handle_*(…, now_ms)` and append effects to the caller's vector; each says when it wants
//! to be called again with `poll_timeout()`. The engine runs the effects and arms its timer.
//!
//! Other modules: [`media`] (keys, tags, frames), [`rtmp`] (chunk reader and serialiser,
//! messages, AMF0, timestamps, aggregate messages, server and client sessions), [`flv`]
//! (tags and a demuxer), [`gop`] (join cache), [`stream`] (publisher lifecycle and replica
//! caches), [`queue`] (per-viewer send queue, forward backlog), [`upstream`] (origin URLs,
//! the failover planner, link reports), [`http`] (requests, response heads, chunked bodies),
//! [`ids`] (typed ids), [`cpus`] (CPU lists), [`json`] (the string escaper the API and
//! loadgen share), [`sei`] (latency probes), [`drain`] (the node's lifecycle), [`migrate`]
//! (when a draining node's HLS viewers may move to a peer).

pub mod access;
pub mod admission;
pub mod batching;
pub mod cluster;
pub mod cpus;
pub mod drain;
pub mod flv;
pub mod forward;
pub mod gop;
pub mod h3;
pub mod handover;
pub mod hls;
pub mod http;
pub mod httpc;
pub mod ids;
pub mod json;
pub mod media;
pub mod migrate;
pub mod owner;
pub mod pull;
pub mod queue;
pub mod registry;
pub mod replica;
pub mod resp;
pub mod rtmp;
pub mod sei;
pub mod stream;
pub mod token;
pub mod upstream;
pub mod webrtc;

pub use ids::{LinkId, SegmentSeq, ShardId, ViewerId};
pub use media::{Frame, FrameFlags, MediaKind, StreamKey, TagInfo};
