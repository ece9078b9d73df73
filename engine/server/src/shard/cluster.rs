//! The shard's side of the cluster: its own [`ClusterView`], fed from its registry inbox;
//! where a stream is (for redirects and pulls); registering the streams it owns; refusing a
//! publisher whose stream another live node holds. Decisions are the view's and the owner's.

use std::rc::Rc;
use std::time::Duration;

use edge_core::cluster::{ClusterUpdate, NodeRecord, Role};
use edge_core::hls::m3u8::parse_media_playlist;
use edge_core::migrate::{self, Migration, MigrationDecision, PeerPlaylist};
use edge_core::rtmp::chunk::PLAY_STREAM_ID;
use edge_core::rtmp::server::status_message;
use edge_core::upstream::OriginUrl;
use edge_core::SegmentSeq;
use edge_core::StreamKey;
use tracing::{debug, warn};

use super::Shard;
use crate::hook::{self, HookUrl};
use crate::outlet::{Close, Outlet};
use crate::stats::Counter;

impl Shard {
    /// The live node that holds `key`, when it is another node.
    pub fn located_elsewhere(&self, key: &StreamKey) -> Option<NodeRecord> {
        self.registry.as_ref()?;
        self.cluster.borrow().locate(key).cloned()
    }

    /// Where an RTMP play for `key` is sent instead (an origin in `--cluster-mode redirect`;
    /// a node that pulls does not redirect).
    pub fn rtmp_redirect(&self, key: &StreamKey) -> Option<String> {
        if self.pulls() {
            return None;
        }
        let n = self.located_elsewhere(key)?;
        Some(format!("rtmp://{}/{}", n.rtmp, key.as_str()))
    }

    /// Where an HTTP-FLV or playlist request for `key` is sent instead (origin role):
    /// the same path and query on the holder.
    pub fn http_redirect(
        &self,
        key: &StreamKey,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        if self.pulls() {
            return None;
        }
        let n = self.located_elsewhere(key)?;
        Some(same_request_at(&n.http, path, query))
    }

    /// Where a draining node sends an HLS viewer's next playlist request: on an edge, the
    /// least-loaded other edge (it pulls the stream itself), else the holder; on an origin,
    /// the holder when that is another node. Never a draining node. `None`: keep serving,
    /// also while the peer cannot yet continue where this node's viewers are (edge-core's
    /// [`edge_core::migrate`]; the peer's playlist is fetched here meanwhile).
    pub fn drain_redirect(
        self: &Rc<Self>,
        key: &StreamKey,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        let holder = self.located_elsewhere(key).filter(|n| !n.load.draining);
        let peer = if self.config.is_edge() {
            let view = self.cluster.borrow();
            view.by_load(Role::Edge).first().map(|n| n.http.clone())
        } else {
            None
        };
        let to = peer.or(holder.map(|n| n.http))?;
        let url = same_request_at(&to, path, query);
        match self.migration(key, to, &url) {
            MigrationDecision::Redirect => Some(url),
            MigrationDecision::ServeHere => None,
        }
    }

    /// After an upgrade handover: whether an HLS viewer's playlist response here may close
    /// its connection, so that its next request reaches the successor. It may once the
    /// successor (our own HTTP address now leads there) lists the segments the viewer may
    /// still need, as a drain decides for a peer; until then the viewer stays here.
    pub fn successor_ready(
        self: &Rc<Self>,
        key: &StreamKey,
        path: &str,
        query: Option<&str>,
    ) -> bool {
        let Some(at) = self.stats.http_addr.get() else {
            return true;
        };
        let to = at.to_string();
        let url = same_request_at(&to, path, query);
        self.migration(key, to, &url) == MigrationDecision::Redirect
    }

    /// The migration of `key`'s HLS viewers to `to`, probed at `url`: what to do now.
    fn migration(self: &Rc<Self>, key: &StreamKey, to: String, url: &str) -> MigrationDecision {
        let now = self.now_ms();
        let newest = self
            .hls
            .borrow()
            .get(key)
            .and_then(|s| s.segments.last().map(|s| s.seq));
        let (decision, probe) = {
            let mut all = self.migrations.borrow_mut();
            let m = all
                .entry(key.clone())
                .or_insert_with(|| Migration::new(to.clone(), now));
            if m.peer() != to {
                *m = Migration::new(to.clone(), now);
            }
            (m.decide(newest, now), m.probe_due(now))
        };
        if probe {
            self.probe_peer(key.clone(), to, url);
        }
        if decision == MigrationDecision::ServeHere {
            self.stats().drain_held.inc();
        }
        decision
    }

    /// Fetches the peer's playlist for `key` and tells the stream's migration what it lists.
    fn probe_peer(self: &Rc<Self>, key: StreamKey, peer: String, url: &str) {
        let shard = Rc::clone(self);
        let url = url.to_string();
        monoio::spawn(async move {
            shard.stats().drain_peer_probes.inc();
            let found = peer_playlist(&url).await.unwrap_or_else(|why| {
                debug!(%key, %peer, "peer playlist: {why}");
                shard.stats().drain_peer_probes_failed.inc();
                PeerPlaylist::Failed
            });
            let now = shard.now_ms();
            if let Some(m) = shard.migrations.borrow_mut().get_mut(&key) {
                if m.peer() == peer {
                    m.handle_probe(found, now);
                }
            }
        });
    }

    /// Where a draining node asks a publisher of `app` to reconnect (Enhanced RTMP), as an
    /// `rtmp://host:port/app` tcUrl: the least-loaded other node of this node's role, with
    /// `--registry`. `None`: to the URL it used (through a load balancer, another node).
    pub fn drain_publish_peer(&self, app: &str) -> Option<String> {
        self.registry.as_ref()?;
        let role = if self.config.is_edge() {
            Role::Edge
        } else {
            Role::Origin
        };
        let view = self.cluster.borrow();
        view.by_load(role)
            .first()
            .map(|n| format!("rtmp://{}/{app}", n.rtmp))
    }

    /// The holder as an origin to pull `key` from (`--origin registry`, or an origin in
    /// `--cluster-mode pull`).
    pub(super) fn located_origin(&self, key: &StreamKey) -> Option<OriginUrl> {
        if !self.config.follows_registry() {
            return None;
        }
        let rtmp = self.cluster.borrow().locate(key)?.rtmp.clone();
        origin_url(&rtmp, key)
    }

    /// Where a publish of `key` made here is forwarded first (`--origin registry`): the
    /// registry's live origins, least loaded first.
    pub(super) fn forward_origins(&self, key: &StreamKey) -> Vec<OriginUrl> {
        if !self.config.origin_registry {
            return Vec::new();
        }
        let view = self.cluster.borrow();
        view.by_load(Role::Origin)
            .into_iter()
            .filter_map(|n| origin_url(&n.rtmp, key))
            .collect()
    }

    /// A stream this shard owns went live (a local publish): register it (origin role).
    pub(super) fn stream_live(&self, key: &StreamKey) {
        if let Some(r) = self.registry.as_ref().filter(|_| !self.config.is_edge()) {
            r.register(key);
        }
    }

    /// A stream this shard owns ended.
    pub(super) fn stream_ended(&self, key: &StreamKey) {
        if let Some(r) = self.registry.as_ref().filter(|_| !self.config.is_edge()) {
            r.unregister(key);
        }
    }

    /// A publisher connected here publishes `key` (its outlet, to refuse it later).
    pub fn publisher_started(&self, key: &StreamKey, outlet: &Rc<Outlet>) {
        if self.registry.is_some() {
            self.local_publishers
                .borrow_mut()
                .insert(key.clone(), Rc::clone(outlet));
        }
    }

    pub fn publisher_ended(&self, key: &StreamKey, outlet: &Rc<Outlet>) {
        let mut p = self.local_publishers.borrow_mut();
        if p.get(key).is_some_and(|o| Rc::ptr_eq(o, outlet)) {
            p.remove(key);
        }
    }

    /// Applies the registry's updates until shutdown.
    pub async fn run_cluster(self: Rc<Self>) {
        let Some(inbox) = self
            .registry
            .as_ref()
            .map(|r| std::sync::Arc::clone(&r.inbox))
        else {
            return;
        };
        loop {
            let batch = inbox.next_batch().await;
            if self.mesh.is_shutting_down() {
                return;
            }
            let now = self.now_ms();
            for u in batch {
                self.cluster.borrow_mut().apply(&u, now);
                if let ClusterUpdate::Conflict { stream, holder } = &u {
                    self.refuse_publisher(stream, holder);
                }
            }
            // Every owner that pulls hears where its stream is now.
            if self.config.follows_registry() {
                for k in self.owned_keys() {
                    let url = self.located_origin(&k);
                    self.with_owner(&k, false, |o, fx| o.handle_located(url, now, fx));
                }
            }
        }
    }

    /// Another live node holds `key`: the publisher here is told and closed.
    fn refuse_publisher(&self, key: &StreamKey, holder: &str) {
        let Some(outlet) = self.local_publishers.borrow_mut().remove(key) else {
            return;
        };
        warn!(shard = %self.id, %key, %holder, "publisher closed: the stream is published on another node");
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

/// `path?query` on another node's HTTP address.
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

fn same_request_at(http: &str, path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("http://{http}{path}?{q}"),
        _ => format!("http://{http}{path}"),
    }
}
