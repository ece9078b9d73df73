//! The configuration each new stream gets on a shard: its owner's (HLS cutting, GOP cache,
//! republish grace, how it pulls) and its replicas' (play wait, GOP cache), by app, from the
//! top-level settings with the config file's `[apps.NAME]` tables over them, and, on an
//! upgrade's successor, the owners of the streams its predecessor still holds.
//!
//! Must not: hold stream state (it is read when an owner or a replica is created), or
//! change after the shard starts.

use std::collections::HashMap;
use std::sync::Arc;

use edge_core::media::StreamKey;
use edge_core::owner::{EdgeConfig, OwnerConfig};
use edge_core::replica::ReplicaConfig;
use edge_core::ShardId;

use crate::config::{Config, StreamPolicy};
use crate::upstream::predecessor::Predecessor;

/// Owner and replica configurations by app.
pub(crate) struct StreamConfig {
    default: (Arc<OwnerConfig>, ReplicaConfig),
    apps: HashMap<String, (Arc<OwnerConfig>, ReplicaConfig)>,
    /// An upgrade's successor: the predecessor whose streams are pulled from its relay (the
    /// relay as their only origin; a local publish takes over).
    relayed: Option<(Arc<Predecessor>, EdgeConfig)>,
}

impl StreamConfig {
    pub(crate) fn new(me: ShardId, config: &Config, predecessor: Option<Arc<Predecessor>>) -> Self {
        let edge = config.pulls().then(|| EdgeConfig {
            origins: config.origins.clone(),
            upstream_timeout_ms: config.upstream_timeout_ms,
            upstream_idle_ms: config.upstream_idle_ms,
            forward: config.is_edge(),
            hls_feed: !config.hls_origins.is_empty(),
            local_publish_wins: false,
        });
        let build = |p: &StreamPolicy| {
            let owner = OwnerConfig {
                me,
                grace_ms: p.republish_grace_ms,
                gop: p.gop,
                hls: p.hls,
                edge: edge.clone(),
            };
            let replica = ReplicaConfig {
                play_wait_ms: p.play_wait_ms,
                gop: p.gop,
            };
            (Arc::new(owner), replica)
        };
        let relayed = predecessor.map(|predecessor| {
            let edge = EdgeConfig {
                origins: vec![predecessor.origin.clone()],
                upstream_timeout_ms: config.upstream_timeout_ms,
                upstream_idle_ms: config.upstream_idle_ms,
                forward: false,
                hls_feed: false,
                local_publish_wins: true,
            };
            (predecessor, edge)
        });
        StreamConfig {
            default: build(&config.apps.default),
            apps: config
                .apps
                .apps
                .iter()
                .map(|(app, p)| (app.clone(), build(p)))
                .collect(),
            relayed,
        }
    }

    fn for_app(&self, app: &str) -> &(Arc<OwnerConfig>, ReplicaConfig) {
        self.apps.get(app).unwrap_or(&self.default)
    }

    /// Streams nobody publishes here are pulled (an edge, or an origin in cluster pull
    /// mode).
    pub(crate) fn pulls(&self) -> bool {
        self.default.0.edge.is_some()
    }

    /// Whether `key` is pulled when nobody publishes it here: at an edge, or (a successor
    /// origin) a stream its predecessor held and still holds.
    pub(crate) fn pulls_stream(&self, key: &StreamKey) -> bool {
        self.pulls() || self.relayed_serves(key)
    }

    fn relayed_serves(&self, key: &StreamKey) -> bool {
        self.relayed.as_ref().is_some_and(|(p, _)| p.serves(key))
    }

    /// The configuration a new owner of `key` gets.
    pub(crate) fn owner(&self, key: &StreamKey) -> Arc<OwnerConfig> {
        let base = &self.for_app(key.app()).0;
        match &self.relayed {
            Some((p, edge)) if p.serves(key) => Arc::new(OwnerConfig {
                edge: Some(edge.clone()),
                ..(**base).clone()
            }),
            _ => Arc::clone(base),
        }
    }

    /// The configuration a new replica of `key` gets.
    pub(crate) fn replica(&self, key: &StreamKey) -> ReplicaConfig {
        self.for_app(key.app()).1
    }
}
