//! Serving connections: the accept loops ([`listen`]), RTMP sessions ([`rtmp`]), HTTP
//! connections ([`http`]) with routing as a pure function ([`routes`]), and access checks
//! where peers ask ([`access`]). Handlers hold a [`crate::shard::ShardHandle`].
//!
//! Must not: import the node layer, or reach a shard other than through its handle.

pub mod access;
pub mod http;
pub mod listen;
pub mod routes;
pub mod rtmp;
