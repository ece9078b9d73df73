//! Running what an [`Owner`](edge_core::owner::Owner) decided: updates to replicas (here or
//! over the mesh), publish answers, upstream connections started and stopped, the forward's
//! queue, log lines and counters. No decision is made here.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use edge_core::forward::ForwardNote;
use edge_core::hls::feed::FeedNote;
use edge_core::owner::{LinkRole, OwnerEffect, OwnerNote};
use edge_core::pull::PullNote;
use edge_core::stream::StreamUpdate;
use edge_core::{LinkId, ShardId, StreamKey};
use tracing::{debug, error, info, warn};

use super::{LinkTask, Owned, Shard};
use crate::mesh::MeshMsg;
use crate::stats::Counter;
use crate::upstream::{self, Cancel, ForwardQueue, LinkParams, LinkSink};

impl Shard {
    pub(super) fn run_owner_effects(self: &Rc<Self>, key: &StreamKey, effects: Vec<OwnerEffect>) {
        for e in effects {
            match e {
                OwnerEffect::Update { to, update } => self.update_to(key, to, update),
                OwnerEffect::PublishReply {
                    to,
                    publisher,
                    result,
                } => {
                    if result.is_err() {
                        self.stats().publish_rejected.inc();
                    }
                    if to == self.id {
                        self.publish_answered(publisher, result);
                    } else {
                        self.send_control(to, MeshMsg::PublishReply { publisher, result });
                    }
                }
                OwnerEffect::Hls(snapshot) => self.install_own_hls(key, snapshot),
                OwnerEffect::HlsRefused => {
                    self.stats().hls_segments_refused.inc();
                    error!(shard = %self.id, %key, "segment cache full (--cache-mb): segment refused");
                    // Streams without a publisher go first; if none is left, this stream
                    // gives up its oldest segments so that its next one fits.
                    if !self.evict_ended_hls() {
                        self.with_owner(key, false, |o, fx| o.handle_shed(fx));
                    }
                }
                OwnerEffect::ForgetHls => self.forget_hls(key),
                OwnerEffect::StartHlsFeed { query } => self.start_hls_feed(key, query.as_deref()),
                OwnerEffect::StopHlsFeed => self.stop_hls_feed(key),
                OwnerEffect::Connect {
                    link,
                    role,
                    url,
                    stream_name,
                } => self.start_link(key, link, role, url, stream_name),
                OwnerEffect::Disconnect(link) => self.stop_link(key, link),
                OwnerEffect::ForwardJoin(frames) => {
                    if let Some((_, q)) = self.forward_queue(key) {
                        q.reset(frames);
                    }
                }
                OwnerEffect::ForwardFrame(f) => {
                    if let Some((_, q)) = self.forward_queue(key) {
                        q.push(&f);
                    }
                }
                OwnerEffect::Note(n) => self.note(key, n),
                OwnerEffect::Unavailable { not_found } => {
                    let (status, what) = if not_found {
                        (404, "no origin has the stream")
                    } else {
                        (502, "no origin could be reached")
                    };
                    info!(shard = %self.id, %key, status, "{what}: answering the viewers waiting for it; the pull retries");
                    self.broadcast_unavailable(key, status);
                }
                OwnerEffect::ViewChanged => {
                    if let Some(o) = self.owners.borrow().get(key) {
                        let clock = self.clock;
                        o.view
                            .set(o.owner.view(), self.now_ms(), |ms| clock.unix_ms(ms));
                    }
                }
                OwnerEffect::Free => {
                    let gone = self.owners.borrow_mut().remove(key);
                    if let Some(o) = gone {
                        self.free_owned(key, o);
                        debug!(shard = %self.id, %key, "stream state freed");
                    }
                }
            }
        }
    }

    pub(super) fn free_owned(&self, key: &StreamKey, o: Owned) {
        self.stats().streams_owned.dec();
        // An HLS pull of the stream shows the same view; it goes with the last of them.
        if !self.hls_pulls.borrow().contains_key(key) {
            self.stats.remove_stream(self.id, key);
        }
        self.links.borrow_mut().retain(|_, t| {
            let mine = t.key == *key;
            if mine {
                t.cancel.cancel();
            }
            !mine
        });
        if let Some((_, q)) = o.forward {
            q.close();
        }
    }

    /// An owner's update for shard `to`: applied here, or sent; a full channel makes `to`
    /// lag (the owner resynchronises it at the next keyframe).
    pub(super) fn update_to(self: &Rc<Self>, key: &StreamKey, to: ShardId, update: StreamUpdate) {
        if to == self.id {
            self.apply_update(key, &update);
            return;
        }
        let msg = MeshMsg::Update {
            key: key.clone(),
            update,
        };
        if self.mesh.try_send(self.id, to, msg).is_err() {
            self.stats().mesh_lagging.inc();
            if let Some(o) = self.owners.borrow_mut().get_mut(key) {
                o.owner.handle_send_failed(to);
            }
        }
    }

    pub(super) fn forward_queue(&self, key: &StreamKey) -> Option<(LinkId, Rc<ForwardQueue>)> {
        self.owners
            .borrow()
            .get(key)
            .and_then(|o| o.forward.as_ref().map(|(l, q)| (*l, Rc::clone(q))))
    }

    pub(super) fn start_link(
        self: &Rc<Self>,
        key: &StreamKey,
        link: LinkId,
        role: LinkRole,
        url: edge_core::upstream::OriginUrl,
        stream_name: String,
    ) {
        let Some(view) = self.owners.borrow().get(key).map(|o| Arc::clone(&o.view)) else {
            return;
        };
        let cancel = Cancel::new();
        // Signed here, once per connection: a reconnect or a failover carries a fresh token,
        // never a viewer's that may have expired since.
        let path = self.config.rtmp_origin_path(&url);
        let sign = path
            .and_then(|p| p.sign.as_ref())
            .or(self.config.access.upstream_sign.as_ref());
        let stream_name = match sign {
            Some(sign) => {
                let viewer_query = stream_name.split_once('?').map(|(_, q)| q);
                sign.stream_name(&url.app, key, viewer_query)
            }
            None => stream_name,
        };
        let params = LinkParams {
            key: key.clone(),
            link,
            url,
            stream_name,
            timeout: Duration::from_millis(self.config.upstream_timeout_ms),
            connect_timeout: Duration::from_millis(
                path.and_then(|p| p.connect_timeout_ms)
                    .unwrap_or(self.config.upstream_timeout_ms),
            ),
            egress: path.map(|p| p.egress.clone()).unwrap_or_default(),
            tls: self.config.upstream_tls.clone(),
            view,
            stats: Arc::clone(&self.stats),
            shard: self.id,
        };
        let sink: Rc<dyn LinkSink> = Rc::clone(self) as Rc<dyn LinkSink>;
        match role {
            LinkRole::Pull | LinkRole::Probe => {
                self.stats().upstream_connects.inc();
                monoio::spawn(upstream::run_pull(sink, params, Rc::clone(&cancel)));
            }
            LinkRole::Forward => {
                let queue = ForwardQueue::new(self.config.queue.max_queue_bytes);
                if let Some(o) = self.owners.borrow_mut().get_mut(key) {
                    if let Some((_, old)) = o.forward.replace((link, Rc::clone(&queue))) {
                        old.close();
                    }
                }
                monoio::spawn(upstream::run_forward(
                    sink,
                    params,
                    queue,
                    Rc::clone(&cancel),
                ));
            }
        }
        self.links.borrow_mut().insert(
            link,
            LinkTask {
                key: key.clone(),
                cancel,
            },
        );
    }

    pub(super) fn stop_link(&self, key: &StreamKey, link: LinkId) {
        if let Some(t) = self.links.borrow_mut().remove(&link) {
            t.cancel.cancel();
        }
        if let Some(o) = self.owners.borrow_mut().get_mut(key) {
            if o.forward.as_ref().is_some_and(|(l, _)| *l == link) {
                if let Some((_, q)) = o.forward.take() {
                    q.close();
                }
            }
        }
    }

    /// Logs and counts what an owner reports.
    pub(super) fn note(&self, key: &StreamKey, n: OwnerNote) {
        let s = self.stats();
        let id = self.id;
        match n {
            OwnerNote::PublishAccepted => {
                info!(shard = %id, %key, "publish accepted");
                self.stream_live(key);
            }
            OwnerNote::PublisherLeft { grace_ms } => {
                info!(shard = %id, %key, grace_ms, "publisher left; waiting for a republish")
            }
            OwnerNote::GraceOver => {
                info!(shard = %id, %key, "grace period over; stream ended");
                self.stream_ended(key);
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
    }
}
