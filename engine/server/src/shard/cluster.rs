//! A shard's side of the cluster: its own [`ClusterView`], fed from its registry inbox;
//! where a stream is (for redirects and pulls); registering the streams it owns; the
//! publishers connected here (to refuse one whose stream another live node holds); and, in
//! a drain or after an upgrade, whether HLS viewers may move on yet (edge-core's
//! [`edge_core::migrate`], with the peer's playlist fetched here).
//!
//! Must not: decide placement or migration itself (the view and the migration do), or touch
//! streams (the dispatcher hands owners what this part says).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use edge_core::cluster::{ClusterUpdate, ClusterView, NodeRecord, Role};
use edge_core::hls::m3u8::parse_media_playlist;
use edge_core::migrate::{self, Migration, MigrationDecision, PeerPlaylist};
use edge_core::rtmp::chunk::PLAY_STREAM_ID;
use edge_core::rtmp::server::status_message;
use edge_core::upstream::OriginUrl;
use edge_core::{SegmentSeq, ShardId, StreamKey};
use tracing::{debug, warn};

use crate::config::access::HookUrl;
use crate::config::Config;
use crate::machine::registry::{Inbox, ShardRegistry};
use crate::machine::stats::{Counter, Stats};
use crate::net::clock::Clock;
use crate::shard::outlet::{Close, Outlet};
use crate::upstream::hook;

type Migrations = Rc<RefCell<HashMap<StreamKey, Migration>>>;

pub(crate) struct ClusterPart {
    me: ShardId,
    config: Arc<Config>,
    stats: Arc<Stats>,
    clock: Clock,
    registry: Option<ShardRegistry>,
    view: RefCell<ClusterView>,
    /// In a drain: per stream, whether its HLS viewers may move to the peer yet.
    migrations: Migrations,
    /// Publishers connected to this shard, by stream (with a registry: to refuse them).
    publishers: RefCell<HashMap<StreamKey, Rc<Outlet>>>,
}

impl ClusterPart {
    pub(crate) fn new(
        me: ShardId,
        config: &Arc<Config>,
        stats: &Arc<Stats>,
        clock: Clock,
        registry: Option<ShardRegistry>,
    ) -> Self {
        let node = registry.as_ref().map_or("", |r| &*r.me);
        ClusterPart {
            me,
            config: Arc::clone(config),
            stats: Arc::clone(stats),
            clock,
            view: RefCell::new(ClusterView::new(node)),
            registry,
            migrations: Rc::default(),
            publishers: RefCell::new(HashMap::new()),
        }
    }

    /// The registry's updates for this shard.
    pub(crate) fn inbox(&self) -> Option<Arc<Inbox>> {
        self.registry.as_ref().map(|r| Arc::clone(&r.inbox))
    }

    /// Applies one update; a conflict refuses the publisher here.
    pub(crate) fn apply(&self, update: &ClusterUpdate, now_ms: u64) {
        self.view.borrow_mut().apply(update, now_ms);
        if let ClusterUpdate::Conflict { stream, holder } = update {
            self.refuse_publisher(stream, holder);
        }
    }

    /// The live node that holds `key`, when it is another node.
    pub(crate) fn located_elsewhere(&self, key: &StreamKey) -> Option<NodeRecord> {
        self.registry.as_ref()?;
        self.view.borrow().locate(key).cloned()
    }

    /// The holder as an origin to pull `key` from (`--origin registry`, or an origin in
    /// `--cluster-mode pull`).
    pub(crate) fn located_origin(&self, key: &StreamKey) -> Option<OriginUrl> {
        if !self.config.follows_registry() {
            return None;
        }
        let rtmp = self.view.borrow().locate(key)?.rtmp.clone();
        origin_url(&rtmp, key)
    }

    /// Where a publish of `key` made here is forwarded first (`--origin registry`): the
    /// registry's live origins, least loaded first.
    pub(crate) fn forward_origins(&self, key: &StreamKey) -> Vec<OriginUrl> {
        if !self.config.origin_registry {
            return Vec::new();
        }
        let view = self.view.borrow();
        view.by_load(Role::Origin)
            .into_iter()
            .filter_map(|n| origin_url(&n.rtmp, key))
            .collect()
    }

    /// Where a draining node sends an HLS viewer's next playlist request: on an edge, the
    /// least-loaded other edge, else the holder when it does not drain.
    pub(crate) fn drain_target(&self, key: &StreamKey) -> Option<String> {
        let holder = self.located_elsewhere(key).filter(|n| !n.load.draining);
        let peer = if self.config.is_edge() {
            let view = self.view.borrow();
            view.by_load(Role::Edge).first().map(|n| n.http.clone())
        } else {
            None
        };
        peer.or(holder.map(|n| n.http))
    }

    /// Where a draining node asks a publisher of `app` to reconnect: the least-loaded other
    /// node of this node's role, with `--registry`.
    pub(crate) fn drain_publish_peer(&self, app: &str) -> Option<String> {
        self.registry.as_ref()?;
        let role = if self.config.is_edge() {
            Role::Edge
        } else {
            Role::Origin
        };
        let view = self.view.borrow();
        view.by_load(role)
            .first()
            .map(|n| format!("rtmp://{}/{app}", n.rtmp))
    }

    /// The migration of `key`'s HLS viewers to `to` (probed at `url`; `newest` is the newest
    /// segment here): what to do now. A due probe of the peer's playlist starts here.
    pub(crate) fn migration(
        &self,
        key: &StreamKey,
        to: String,
        url: &str,
        newest: Option<SegmentSeq>,
        now_ms: u64,
    ) -> MigrationDecision {
        let (decision, probe) = {
            let mut all = self.migrations.borrow_mut();
            let m = all
                .entry(key.clone())
                .or_insert_with(|| Migration::new(to.clone(), now_ms));
            if m.peer() != to {
                *m = Migration::new(to.clone(), now_ms);
            }
            (m.decide(newest, now_ms), m.probe_due(now_ms))
        };
        if probe {
            self.probe_peer(key.clone(), to, url);
        }
        if decision == MigrationDecision::ServeHere {
            self.stats.shards[self.me.0].drain_held.inc();
        }
        decision
    }

    /// Fetches the peer's playlist for `key` and tells the stream's migration what it lists.
    fn probe_peer(&self, key: StreamKey, peer: String, url: &str) {
        let (migrations, stats, me) = (
            Rc::clone(&self.migrations),
            Arc::clone(&self.stats),
            self.me,
        );
        let clock = self.clock;
        let url = url.to_string();
        monoio::spawn(async move {
            let counters = &stats.shards[me.0];
            counters.drain_peer_probes.inc();
            let found = peer_playlist(&url).await.unwrap_or_else(|why| {
                debug!(%key, %peer, "peer playlist: {why}");
                counters.drain_peer_probes_failed.inc();
                PeerPlaylist::Failed
            });
            let now = clock.now_ms();
            if let Some(m) = migrations.borrow_mut().get_mut(&key) {
                if m.peer() == peer {
                    m.handle_probe(found, now);
                }
            }
        });
    }

    /// A stream this shard owns went live (a local publish): register it (origin role).
    pub(crate) fn stream_live(&self, key: &StreamKey) {
        if let Some(r) = self.registry.as_ref().filter(|_| !self.config.is_edge()) {
            r.register(key);
        }
    }

    /// A stream this shard owns ended.
    pub(crate) fn stream_ended(&self, key: &StreamKey) {
        if let Some(r) = self.registry.as_ref().filter(|_| !self.config.is_edge()) {
            r.unregister(key);
        }
    }

    /// A publisher connected here publishes `key` (its outlet, to refuse it later).
    pub(crate) fn publisher_started(&self, key: &StreamKey, outlet: &Rc<Outlet>) {
        if self.registry.is_some() {
            self.publishers
                .borrow_mut()
                .insert(key.clone(), Rc::clone(outlet));
        }
    }

    pub(crate) fn publisher_ended(&self, key: &StreamKey, outlet: &Rc<Outlet>) {
        let mut p = self.publishers.borrow_mut();
        if p.get(key).is_some_and(|o| Rc::ptr_eq(o, outlet)) {
            p.remove(key);
        }
    }

    /// Another live node holds `key`: the publisher here is told and closed.
    fn refuse_publisher(&self, key: &StreamKey, holder: &str) {
        let Some(outlet) = self.publishers.borrow_mut().remove(key) else {
            return;
        };
        warn!(shard = %self.me, %key, %holder, "publisher closed: the stream is published on another node");
        outlet.push_control(status_message(
            PLAY_STREAM_ID,
            "error",
            "NetStream.Publish.BadName",
            &format!("{key} is already published on node {holder}"),
        ));
        outlet.close(Close::Flush);
    }
}

/// A node's advertised RTMP address as the origin of `key`'s app.
fn origin_url(rtmp: &str, key: &StreamKey) -> Option<OriginUrl> {
    OriginUrl::parse(&format!("rtmp://{rtmp}/{}", key.app())).ok()
}

/// What the media playlist at `url` lists, or why there is none.
async fn peer_playlist(url: &str) -> Result<PeerPlaylist, String> {
    let url = HookUrl::parse(url)?;
    let timeout = Duration::from_millis(migrate::PROBE_TIMEOUT_MS);
    let (status, body) = hook::get(&url, timeout).await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let p = parse_media_playlist(&String::from_utf8_lossy(&body)).map_err(|e| e.to_string())?;
    Ok(match (p.segments.first(), p.segments.last()) {
        (Some(first), Some(last)) => PeerPlaylist::Listed {
            first: SegmentSeq(first.seq),
            last: SegmentSeq(last.seq),
        },
        _ => PeerPlaylist::Empty,
    })
}

/// `path?query` on another node's HTTP address.
pub(crate) fn same_request_at(http: &str, path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("http://{http}{path}?{q}"),
        _ => format!("http://{http}{path}"),
    }
}
