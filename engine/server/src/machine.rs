//! What the shards of one machine share, read from any thread: counters and stream views
//! ([`stats`]), the drain's flags and listening sockets ([`control`]), the registry
//! handles and status ([`registry`]), the origins' reachability ([`origins`]), and what
//! `/metrics`, `/healthz` and `/api/v1/*` render of them ([`report`]).
//!
//! Must not: import the shard, serving or node layers, or make a shard wait on a lock
//! longer than a counter update.

pub(crate) mod control;
pub(crate) mod origins;
pub(crate) mod registry;
pub(crate) mod report;
pub(crate) mod stats;
