//! Connections this node opens: RTMP pulls and forwards to origins ([`rtmp`]), requests to
//! HTTP origins for the HLS pull ([`http`]), hook calls ([`hook`]), and an upgrade's
//! predecessor whose streams are pulled from its relay ([`predecessor`]).
//!
//! Must not: import the shard, serving or node layers (they hand these their work).

pub(crate) mod hook;
pub(crate) mod http;
pub(crate) mod predecessor;
pub(crate) mod rtmp;
