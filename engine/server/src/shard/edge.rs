//! Edge mode on the owner shard: the stream's one upstream pull, its failover, its idle
//! teardown, and the forwarding of publishes made here.
//!
//! A pull, in steps:
//! 1. Demand: a viewer (RTMP/FLV on any shard, via `Subscribe`) or an HLS playlist request
//!    (via `Demand`) for a stream nobody publishes here. The owner creates an
//!    [`UpstreamPlanner`] and opens one connection to the first origin.
//! 2. The connection's first media makes it the stream's publisher (`handle_publish`):
//!    viewers everywhere join as for a local publish, and HLS is segmented here.
//! 3. It fails (connect, loss, "not found", redirect, no media for `--upstream-timeout-ms`):
//!    the master goes to grace (viewers stay), the planner picks the next origin, and the new
//!    connection's media republishes: fresh headers, rebased monotonic timestamps, and an HLS
//!    discontinuity. A fallback pull probes the preferred origin and switches back to it.
//! 4. No viewers on any shard and no playlist request for `--upstream-idle-ms`: the
//!    connections close, the stream ends and its state is freed.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use edge_core::media::Frame;
use edge_core::stream::{PublisherId, StreamUpdate};
use edge_core::upstream::{OriginUrl, UpstreamAction, UpstreamPlanner, UpstreamTiming};
use edge_core::StreamKey;
use tracing::{info, warn};

use super::{Counter, Shard};
use crate::mesh::MeshMsg;
use crate::stats::LinkView;
use crate::upstream::{self, Cancel, ForwardQueue, LinkEvent};

/// How often pulls check their deadlines (media timeout, backoff, probe, idle).
const TICK: Duration = Duration::from_millis(50);
/// How often a shard tells an owner that its HLS viewers still want a stream.
const HLS_DEMAND_EVERY_MS: u64 = 1000;
/// The longest a first playlist request waits for the pull's first segment.
const HLS_FIRST_WAIT_MAX_MS: u64 = 10_000;

/// A stream's upstream pull (on its owner shard).
pub(crate) struct Pull {
    planner: UpstreamPlanner,
    /// `{stream}` plus the first viewer's `?query`.
    stream_name: String,
    active: Option<Link>,
    probe: Option<Link>,
    last_used_ms: u64,
    last_origin: String,
}

/// One upstream connection of a pull.
struct Link {
    gen: u64,
    /// The connection publishes into the stream's master under this id.
    publisher: PublisherId,
    cancel: Rc<Cancel>,
    url: OriginUrl,
    view: LinkView,
}

/// The forwarding of a local publish.
pub(crate) struct Forward {
    queue: Rc<ForwardQueue>,
    cancel: Rc<Cancel>,
}

impl Forward {
    pub(crate) fn push(&self, f: &Frame) {
        self.queue.push(f);
    }

    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        // The writer waits on its queue, not on the cancel.
        self.queue.clear();
        self.queue.wake();
    }
}

fn stream_name(key: &StreamKey, query: Option<&str>) -> String {
    let name = key.stream();
    match query {
        Some(q) if !q.is_empty() => format!("{name}?{q}"),
        _ => name.to_string(),
    }
}

impl Shard {
    pub fn is_edge(&self) -> bool {
        !self.config.origins.is_empty()
    }

    /// An HLS playlist request for `key` on this shard (edge mode): starts or keeps the pull.
    pub fn hls_demand(self: &Rc<Self>, key: &StreamKey, query: Option<&str>) {
        if !self.is_edge() {
            return;
        }
        let now = self.now_ms();
        {
            let mut sent = self.hls_demand_sent.borrow_mut();
            match sent.get_mut(key) {
                Some(t) if now < *t + HLS_DEMAND_EVERY_MS => return,
                Some(t) => *t = now,
                None => {
                    sent.insert(key.clone(), now);
                }
            }
        }
        let query: Option<Arc<str>> = query.map(Arc::from);
        let owner = self.owner_of(key);
        if owner == self.id {
            self.owner_demand(key, query);
        } else {
            self.send_control(
                owner,
                MeshMsg::Demand {
                    key: key.clone(),
                    query,
                },
            );
        }
    }

    /// Waits, bounded, until `key` has an HLS playlist here (the first segment of a pull).
    pub async fn wait_for_hls(&self, key: &StreamKey) {
        let wait = self.config.play_wait_ms.min(HLS_FIRST_WAIT_MAX_MS);
        let deadline = self.now_ms() + wait;
        while self.hls(key).is_none() && self.now_ms() < deadline {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// On the owner: someone wants `key`. In edge mode, with nobody publishing it here,
    /// starts the pull (or notes that it is still used).
    pub(super) fn owner_demand(self: &Rc<Self>, key: &StreamKey, query: Option<Arc<str>>) {
        if !self.is_edge() {
            return;
        }
        let now = self.now_ms();
        let connect = {
            let mut owned = self.owned.borrow_mut();
            let o = self.owned_entry(&mut owned, key);
            if let Some(p) = &mut o.pull {
                p.last_used_ms = now;
                return;
            }
            if !o.master.is_idle() {
                // Published here (or in its grace): served locally.
                return;
            }
            let timing = UpstreamTiming {
                media_timeout_ms: self.config.upstream_timeout_ms,
                ..UpstreamTiming::default()
            };
            let (planner, action) = UpstreamPlanner::new(self.config.origins.clone(), timing, now);
            o.pull = Some(Pull {
                planner,
                stream_name: stream_name(key, query.as_deref()),
                active: None,
                probe: None,
                last_used_ms: now,
                last_origin: String::new(),
            });
            action
        };
        self.stats().upstream_pulls_started.inc();
        self.stats().upstream_pulls_active.inc();
        info!(shard = self.id, %key, "pulling from upstream");
        self.run_actions(key, vec![connect]);
        self.refresh_view(key);
    }

    /// A pull connection reports. Returns whether the connection is still wanted.
    pub(crate) fn pull_event(self: &Rc<Self>, key: &StreamKey, gen: u64, ev: LinkEvent) -> bool {
        let now = self.now_ms();
        let mut updates = Vec::new();
        let mut actions = Vec::new();
        let mut cancels = Vec::new();
        let mut arm_grace = false;
        let mut changed = false;
        let mut keep = true;
        let mut taken_over = false;
        {
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else {
                return false;
            };
            let Some(p) = o.pull.as_mut() else {
                return false;
            };
            let is_active = p.active.as_ref().is_some_and(|l| l.gen == gen);
            let is_probe = p.probe.as_ref().is_some_and(|l| l.gen == gen);
            if !is_active && !is_probe {
                return false;
            }
            match ev {
                LinkEvent::Started => {
                    if let Some(l) = p.active.as_mut().filter(|_| is_active) {
                        l.view = LinkView::new(l.url.to_string(), "playing");
                        changed = true;
                    }
                }
                LinkEvent::Media { .. } | LinkEvent::Metadata(_) => {
                    if is_probe {
                        if p.planner.handle_probe_media(now) != Some(UpstreamAction::PromoteProbe) {
                            return false;
                        }
                        let new = p.probe.take().expect("probe link");
                        info!(shard = self.id, %key, origin = %new.url, "the preferred origin is back: switching to it");
                        if let Some(old) = p.active.replace(new) {
                            cancels.push(old.cancel);
                            updates.extend(o.master.handle_unpublish(old.publisher, now));
                        }
                        self.stats().upstream_failovers.inc();
                        o.view.update(|s| s.failovers += 1);
                        changed = true;
                    }
                    let link = p.active.as_mut().expect("active link");
                    p.planner.handle_media(now);
                    if !o.master.is_live(link.publisher) {
                        match o.master.handle_publish(link.publisher, now) {
                            Ok(u) => {
                                info!(shard = self.id, %key, origin = %link.url, "upstream media flowing");
                                link.view = LinkView::new(link.url.to_string(), "playing");
                                updates.extend(u);
                                changed = true;
                            }
                            Err(_) => {
                                // A local publisher has the stream now.
                                taken_over = true;
                                keep = false;
                            }
                        }
                    }
                    if !taken_over {
                        let publisher = link.publisher;
                        match ev {
                            LinkEvent::Media {
                                kind,
                                timestamp,
                                body,
                            } => match o.master.handle_media(publisher, kind, timestamp, body) {
                                Ok(Some(f)) => updates.push(StreamUpdate::Frame(f)),
                                Ok(None) => {}
                                Err(e) => {
                                    warn!(shard = self.id, %key, "dropping upstream media: {e}")
                                }
                            },
                            LinkEvent::Metadata(body) => {
                                if let Some(f) = o.master.handle_metadata(publisher, body) {
                                    updates.push(StreamUpdate::Frame(f));
                                }
                            }
                            _ => unreachable!(),
                        }
                    }
                }
                LinkEvent::Failed(..) | LinkEvent::Redirect(_) if is_probe => {
                    p.probe = None;
                    actions.extend(p.planner.handle_probe_failure(now));
                    keep = false;
                }
                LinkEvent::Failed(why, msg) => {
                    let old = p.active.take().expect("active link");
                    warn!(shard = self.id, %key, origin = %old.url, "upstream failed: {msg}");
                    let u = o.master.handle_unpublish(old.publisher, now);
                    arm_grace = !u.is_empty();
                    updates.extend(u);
                    actions.extend(p.planner.handle_failure(why, now));
                    self.stats().upstream_failovers.inc();
                    o.view.update(|s| s.failovers += 1);
                    changed = true;
                    keep = false;
                }
                LinkEvent::Redirect(url) => {
                    let old = p.active.take().expect("active link");
                    info!(shard = self.id, %key, from = %old.url, to = %url, "origin redirects the pull");
                    let u = o.master.handle_unpublish(old.publisher, now);
                    arm_grace = !u.is_empty();
                    updates.extend(u);
                    actions.push(p.planner.handle_redirect(url, now));
                    self.stats().upstream_failovers.inc();
                    changed = true;
                    keep = false;
                }
            }
        }
        for c in cancels {
            c.cancel();
        }
        if !updates.is_empty() {
            self.broadcast(key, updates);
        }
        if arm_grace {
            self.arm_grace_timer(key.clone());
        }
        self.run_actions(key, actions);
        if taken_over {
            self.stop_pull(key, false);
        }
        if changed || taken_over {
            self.refresh_view(key);
        }
        keep
    }

    /// Performs the planner's actions for `key`'s pull.
    fn run_actions(self: &Rc<Self>, key: &StreamKey, actions: Vec<UpstreamAction>) {
        for action in actions {
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else { return };
            let Some(p) = o.pull.as_mut() else { return };
            match action {
                UpstreamAction::Connect { url, .. } => {
                    let link = self.spawn_link(key, url, &p.stream_name, &o.view);
                    p.last_origin = link.url.to_string();
                    // A replaced connection has already been unpublished by the caller.
                    if let Some(old) = p.active.replace(link) {
                        old.cancel.cancel();
                    }
                }
                UpstreamAction::Probe { url } => {
                    let link = self.spawn_link(key, url, &p.stream_name, &o.view);
                    if let Some(old) = p.probe.replace(link) {
                        old.cancel.cancel();
                    }
                }
                UpstreamAction::DropProbe => {
                    if let Some(old) = p.probe.take() {
                        old.cancel.cancel();
                    }
                }
                // Done by `pull_event`, where the probe's media arrives.
                UpstreamAction::PromoteProbe => {}
            }
        }
    }

    fn spawn_link(
        self: &Rc<Self>,
        key: &StreamKey,
        url: OriginUrl,
        stream_name: &str,
        view: &Arc<crate::stats::StreamView>,
    ) -> Link {
        let gen = self.next_gen.get();
        self.next_gen.set(gen + 1);
        let cancel = Cancel::new();
        self.stats().upstream_connects.inc();
        monoio::spawn(upstream::run_pull(
            Rc::clone(self),
            key.clone(),
            gen,
            url.clone(),
            stream_name.to_string(),
            Rc::clone(&cancel),
            Arc::clone(view),
        ));
        Link {
            gen,
            publisher: PublisherId(self.next_conn_id()),
            cancel,
            view: LinkView::new(url.to_string(), "connecting"),
            url,
        }
    }

    /// Closes `key`'s pull. `end_stream`: the stream ends for everyone and its segments go
    /// (idle teardown); otherwise a local publisher took over and the stream goes on.
    pub(super) fn stop_pull(self: &Rc<Self>, key: &StreamKey, end_stream: bool) {
        let updates = {
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else { return };
            let Some(p) = o.pull.take() else { return };
            for l in p.active.iter().chain(p.probe.iter()) {
                l.cancel.cancel();
            }
            if end_stream {
                o.master.end()
            } else {
                Vec::new()
            }
        };
        self.stats().upstream_pulls_active.dec();
        if !updates.is_empty() {
            self.broadcast(key, updates);
        }
        if end_stream {
            self.forget_hls(key);
        }
        self.refresh_view(key);
        self.maybe_free(key);
    }

    /// Checks every pull's deadlines until shutdown (edge mode only).
    pub async fn run_upstream_tick(self: Rc<Self>) {
        if !self.is_edge() {
            return;
        }
        loop {
            monoio::time::sleep(TICK).await;
            if self.mesh.is_shutting_down() {
                return;
            }
            let now = self.now_ms();
            let keys: Vec<StreamKey> = self
                .owned
                .borrow()
                .iter()
                .filter(|(_, o)| o.pull.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                self.tick_pull(&key, now);
            }
            let idle = self.config.upstream_idle_ms;
            self.hls_demand_sent
                .borrow_mut()
                .retain(|_, t| now.saturating_sub(*t) < idle.max(HLS_DEMAND_EVERY_MS));
        }
    }

    fn tick_pull(self: &Rc<Self>, key: &StreamKey, now: u64) {
        let local_viewers = self
            .streams
            .borrow()
            .get(key)
            .map_or(0, |ls| ls.viewers.borrow().len());
        let mut updates = Vec::new();
        let mut actions = Vec::new();
        let mut arm_grace = false;
        let idle;
        {
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else { return };
            let Some(p) = o.pull.as_mut() else { return };
            if !o.subscribers.is_empty() || local_viewers > 0 {
                p.last_used_ms = now;
            }
            idle = now.saturating_sub(p.last_used_ms) >= self.config.upstream_idle_ms;
            if !idle {
                let timed_out = p.planner.media_deadline().is_some_and(|d| now >= d);
                if timed_out {
                    if let Some(old) = p.active.take() {
                        warn!(shard = self.id, %key, origin = %old.url, "no media from the origin for {} ms", self.config.upstream_timeout_ms);
                        old.cancel.cancel();
                        let u = o.master.handle_unpublish(old.publisher, now);
                        arm_grace = !u.is_empty();
                        updates.extend(u);
                        self.stats().upstream_failovers.inc();
                        o.view.update(|s| s.failovers += 1);
                    }
                }
                if p.planner.poll_timeout().is_some_and(|t| now >= t) {
                    actions = p.planner.handle_timeout(now);
                }
            }
        }
        if idle {
            info!(shard = self.id, %key, idle_ms = self.config.upstream_idle_ms, "no viewers left: closing the upstream pull");
            self.stop_pull(key, true);
            return;
        }
        let changed = !updates.is_empty() || !actions.is_empty();
        if !updates.is_empty() {
            self.broadcast(key, updates);
        }
        if arm_grace {
            self.arm_grace_timer(key.clone());
        }
        self.run_actions(key, actions);
        if changed {
            self.refresh_view(key);
        }
    }

    /// Starts forwarding a publish made here (edge mode), unless it is forwarded already
    /// (a republish in grace continues the same forward).
    pub(super) fn start_forward(self: &Rc<Self>, key: &StreamKey, query: Option<Arc<str>>) {
        if !self.is_edge() {
            return;
        }
        let mut owned = self.owned.borrow_mut();
        let Some(o) = owned.get_mut(key) else { return };
        if o.forward.is_some() {
            return;
        }
        let queue = ForwardQueue::new(self.config.queue.max_queue_bytes);
        let cancel = Cancel::new();
        monoio::spawn(upstream::run_forward(
            Rc::clone(self),
            key.clone(),
            stream_name(key, query.as_deref()),
            Rc::clone(&queue),
            Rc::clone(&cancel),
            Arc::clone(&o.view),
        ));
        o.forward = Some(Forward { queue, cancel });
    }

    /// A forward session starts: what the origin needs first (metadata, headers, the GOP).
    /// Frames queued before this moment are dropped: they are in the GOP or older.
    pub(crate) fn forward_join(&self, key: &StreamKey) -> Vec<Frame> {
        if let Some(fw) = self
            .owned
            .borrow()
            .get(key)
            .and_then(|o| o.forward.as_ref())
        {
            fw.queue.clear();
        }
        self.streams
            .borrow()
            .get(key)
            .map(|ls| ls.replica.borrow().join_frames().cloned().collect())
            .unwrap_or_default()
    }

    /// Brings `/api/v1/streams` up to date for `key` (on state changes, never per frame).
    pub(super) fn refresh_view(&self, key: &StreamKey) {
        let owned = self.owned.borrow();
        let Some(o) = owned.get(key) else { return };
        let master = o.master.state_name();
        let (source, upstream) = match &o.pull {
            Some(p) => (
                "upstream",
                Some(match &p.active {
                    Some(l) => l.view.clone(),
                    None => LinkView::new(p.last_origin.clone(), "backoff"),
                }),
            ),
            None if !o.master.is_idle() => ("publisher", None),
            None => ("none", None),
        };
        o.view.update(|s| {
            s.master = master;
            s.source = source;
            s.upstream = upstream;
        });
    }
}
