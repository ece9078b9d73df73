//! What an owner reports ([`OwnerNote`]), in the log and the counters, and the one thing a
//! note asks of the shard (a stream went live or ended: tell the registry).
//!
//! Must not: change any state but counters.

use edge_core::forward::ForwardNote;
use edge_core::hls::feed::FeedNote;
use edge_core::owner::OwnerNote;
use edge_core::pull::PullNote;
use edge_core::{ShardId, StreamKey};
use tracing::{debug, info, warn};

use crate::machine::stats::{Counter, ShardStats};

/// What the shard does after a note.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Followup {
    None,
    /// A local publish was accepted.
    Live,
    /// The stream ended after its grace period.
    Ended,
}

/// Logs and counts `n`, reported by `key`'s owner on shard `id`.
pub(crate) fn report(id: ShardId, key: &StreamKey, n: OwnerNote, s: &ShardStats) -> Followup {
    match n {
        OwnerNote::PublishAccepted => {
            info!(shard = %id, %key, "publish accepted");
            return Followup::Live;
        }
        OwnerNote::PublisherLeft { grace_ms } => {
            info!(shard = %id, %key, grace_ms, "publisher left; waiting for a republish")
        }
        OwnerNote::GraceOver => {
            info!(shard = %id, %key, "grace period over; stream ended");
            return Followup::Ended;
        }
        OwnerNote::PullStarted => {
            s.upstream_pulls_started.inc();
            s.upstream_pulls_active.inc();
            info!(shard = %id, %key, "pulling from upstream");
        }
        OwnerNote::PullStopped => s.upstream_pulls_active.dec(),
        OwnerNote::PullIdle { idle_ms } => {
            info!(shard = %id, %key, idle_ms, "no viewers left: closing the upstream pull")
        }
        OwnerNote::Pull(PullNote::Flowing { origin }) => {
            info!(shard = %id, %key, %origin, "upstream media flowing")
        }
        OwnerNote::Pull(PullNote::Failed { origin, error }) => {
            warn!(shard = %id, %key, %origin, "upstream failed: {error}");
        }
        OwnerNote::Pull(PullNote::Redirected { from, to }) => {
            info!(shard = %id, %key, %from, %to, "origin redirects the pull");
        }
        OwnerNote::Pull(PullNote::PreferredBack { origin }) => {
            info!(shard = %id, %key, %origin, "the preferred origin is back: switching to it");
        }
        OwnerNote::Pull(PullNote::Failover { from, to }) => {
            s.upstream_failovers.inc();
            info!(shard = %id, %key, %from, %to, "the pull moves to another origin");
        }
        OwnerNote::ForwardStarted => s.forwards_started.inc(),
        OwnerNote::Forward(ForwardNote::Publishing { origin }) => {
            info!(shard = %id, %key, %origin, "forwarding the publish")
        }
        OwnerNote::Forward(ForwardNote::Failed { origin, error }) => {
            warn!(shard = %id, %key, %origin, "forwarding failed: {error}")
        }
        OwnerNote::HlsUnaligned { gap_ms, first } => {
            s.hls_unaligned_cuts.inc();
            if first {
                warn!(
                    shard = %id, %key, gap_ms,
                    "HLS segment numbers no longer follow this stream's timeline (a segment opened {gap_ms} ms after the last, not in the next --hls-segment-ms cell: a GOP longer than --hls-segment-ms, a refused segment, a republish or a timestamp jump); a player moved between this node and another may skip or repeat a segment"
                )
            }
        }
        OwnerNote::HlsStopped(e) => {
            warn!(shard = %id, %key, "HLS stopped for this stream: {e}")
        }
        OwnerNote::HlsTrackDropped(why) => {
            warn!(shard = %id, %key, "HLS leaves a track out of this stream ({why}); RTMP and HTTP-FLV viewers get it")
        }
        OwnerNote::UpstreamMediaDropped(e) => {
            warn!(shard = %id, %key, "dropping upstream media: {e}")
        }
        OwnerNote::HlsFeedStarted => {}
        OwnerNote::HlsFeedLost => {
            warn!(shard = %id, %key, "the HLS pull feeding this stream ended; so does the stream")
        }
        OwnerNote::HlsFeed(FeedNote::Demuxed { seq, frames }) => {
            s.hls_feed_segments.inc();
            debug!(shard = %id, %key, seq, frames, "HLS feed: segment demuxed")
        }
        OwnerNote::HlsFeedIdle { idle_ms } => {
            info!(shard = %id, %key, idle_ms, "no RTMP or FLV viewers left: the HLS feed ends")
        }
        OwnerNote::HlsFeed(FeedNote::Skipped { seq, why }) => {
            s.hls_feed_skipped.inc();
            warn!(shard = %id, %key, seq, "HLS feed skips a segment: {why:?}")
        }
        OwnerNote::HlsFeed(FeedNote::Rebased { seq }) => {
            info!(shard = %id, %key, seq, "HLS feed: timestamps rebased (discontinuity)")
        }
    }
    Followup::None
}
