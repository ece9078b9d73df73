//! Serving connections: the accept loops ([`listen`]), RTMP sessions ([`rtmp`]), HTTP
//! connections ([`http`]), HTTP/3 requests ([`h3`]) and WebRTC offers ([`whep`]), with routing as a pure function ([`routes`]), and access checks
//! where peers ask ([`access`]). Handlers hold a [`crate::shard::ShardHandle`].
//!
//! Must not: import the node layer, or reach a shard other than through its handle.

pub(crate) mod access;
pub(crate) mod h3;
pub(crate) mod http;
pub(crate) mod listen;
pub(crate) mod ll;
pub(crate) mod pieces;
pub(crate) mod routes;
pub(crate) mod rtmp;
pub(crate) mod whep;
