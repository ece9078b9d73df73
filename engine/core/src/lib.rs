//! edge-core: the sans-IO heart of edge-engine.
//!
//! Nothing in this crate touches a socket, a thread, a runtime or the clock: every input is
//! bytes plus, where time matters, `now_ms` as an argument. The engine crate moves bytes between
//! sockets and these state machines; tests drive them byte by byte.
//!
//! ```text
//!  publisher bytes ──▶ rtmp::server::ServerConnection ──ServerEvent::Media──▶ stream::StreamMaster
//!                                                                                │ StreamUpdate
//!                       (Frame: payload, RTMP chunks and FLV tag, each built once)│
//!                                                                                ▼
//!                    stream::StreamReplica (one per shard with viewers: headers + gop::GopCache)
//!                                                                                │ Frame (Bytes clones)
//!                                                                                ▼
//!                       queue::SendQueue (one per viewer, bounded in bytes) ──▶ socket
//! ```
//!
//! Modules: [`media`] (keys, tags, frames), [`rtmp`] (chunk serialiser, timestamps, aggregate
//! messages, server and client sessions), [`flv`] (tags and a demuxer), [`gop`] (join cache),
//! [`stream`] (publisher lifecycle and replicas), [`queue`] (per-viewer send queue), [`http`]
//! (request parsing and response heads), [`json`] (the string escaper the API and loadgen share).

pub mod cpus;
pub mod flv;
pub mod forward;
pub mod gop;
pub mod hls;
pub mod http;
pub mod ids;
pub mod json;
pub mod media;
pub mod owner;
pub mod pull;
pub mod queue;
pub mod replica;
pub mod rtmp;
pub mod sei;
pub mod stream;
pub mod upstream;

pub use ids::{LinkId, SegmentSeq, ShardId, ViewerId};
pub use media::{Frame, FrameFlags, MediaKind, StreamKey, TagInfo};
