//! What a node knows of its cluster: the live nodes with their load, and which node holds
//! each stream. Every shard keeps its own [`ClusterView`], fed by the registry session's
//! [`ClusterUpdate`]s; it answers "where is this stream" and "which origin is least
//! loaded" on the shard, with no round trip to Redis.
//!
//! A stream is placed on a node only while that node is live (its record is in the latest
//! node list): a node that died stops being an answer within its record's TTL, although its
//! stream keys live longer.
//!
//! Must not: talk to Redis, read a clock, or decide what a shard does with an answer.

use std::collections::HashMap;

use crate::media::StreamKey;

/// The most bytes of one node record.
pub const MAX_RECORD: usize = 1024;

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds published streams (takes publishes, answers plays or redirects them).
    Origin,
    /// Pulls from origins (`--origin registry`) and forwards its publishes to them.
    Edge,
}

impl Role {
    /// Its name in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Edge => "edge",
        }
    }
}

/// The load a node reports: its shards' totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub streams: u64,
    pub rtmp_viewers: u64,
    pub flv_viewers: u64,
    pub hls_viewers: u64,
    pub webrtc_viewers: u64,
    pub egress_bps: u64,
    pub draining: bool,
}

impl Load {
    /// Viewers of every protocol.
    pub fn viewers(&self) -> u64 {
        self.rtmp_viewers + self.flv_viewers + self.hls_viewers + self.webrtc_viewers
    }
}

/// One node's record: who it is, where to reach it, its load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: String,
    pub role: Role,
    /// `HOST:PORT` of its RTMP listener, as others reach it.
    pub rtmp: String,
    /// `HOST:PORT` of its HTTP listener.
    pub http: String,
    pub load: Load,
}

/// A node id that cannot be used (ids go into Redis keys and space-separated messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node id {0:?}: use 1-64 of A-Z a-z 0-9 . _ -")]
pub struct BadNodeId(pub String);

/// Checks a node id.
pub fn check_node_id(id: &str) -> Result<(), BadNodeId> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or_else(|| BadNodeId(id.to_string()))
}

/// Whether `addr` can be an advertised `HOST:PORT` (no spaces or controls, a port).
pub fn check_address(addr: &str) -> bool {
    addr.len() <= 255
        && addr.bytes().all(|b| b.is_ascii_graphic())
        && addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

impl NodeRecord {
    /// A record with no load yet.
    pub fn new(id: &str, role: Role, rtmp: &str, http: &str) -> Self {
        Self {
            id: id.to_string(),
            role,
            rtmp: rtmp.to_string(),
            http: http.to_string(),
            load: Load::default(),
        }
    }

    /// The text stored in Redis: `v1` and `name=value` fields, space-separated.
    pub fn encode(&self) -> String {
        format!(
            "v1 id={} role={} rtmp={} http={} streams={} rtmp_viewers={} flv_viewers={} \
             hls_viewers={} webrtc_viewers={} egress_bps={} draining={}",
            self.id,
            self.role.as_str(),
            self.rtmp,
            self.http,
            self.load.streams,
            self.load.rtmp_viewers,
            self.load.flv_viewers,
            self.load.hls_viewers,
            self.load.webrtc_viewers,
            self.load.egress_bps,
            u8::from(self.load.draining)
        )
    }

    /// Parses a record another node wrote; `None` when it is not one (a newer version, or
    /// garbage): such a node is ignored, not trusted.
    pub fn parse(text: &[u8]) -> Option<NodeRecord> {
        if text.len() > MAX_RECORD {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = text.split(' ');
        if fields.next()? != "v1" {
            return None;
        }
        let mut r = NodeRecord::new("", Role::Origin, "", "");
        for f in fields {
            let (name, value) = f.split_once('=')?;
            let n = || value.parse::<u64>().ok();
            match name {
                "id" => r.id = value.to_string(),
                "role" => {
                    r.role = match value {
                        "origin" => Role::Origin,
                        "edge" => Role::Edge,
                        _ => return None,
                    }
                }
                "rtmp" => r.rtmp = value.to_string(),
                "http" => r.http = value.to_string(),
                "streams" => r.load.streams = n()?,
                "rtmp_viewers" => r.load.rtmp_viewers = n()?,
                "flv_viewers" => r.load.flv_viewers = n()?,
                "hls_viewers" => r.load.hls_viewers = n()?,
                "webrtc_viewers" => r.load.webrtc_viewers = n()?,
                "egress_bps" => r.load.egress_bps = n()?,
                "draining" => r.load.draining = value == "1",
                // Fields a later version adds are skipped.
                _ => {}
            }
        }
        (check_node_id(&r.id).is_ok() && check_address(&r.rtmp) && check_address(&r.http))
            .then_some(r)
    }
}

/// What the registry session tells every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterUpdate {
    /// The live nodes, all of them (a node not listed is dead).
    Nodes(Vec<NodeRecord>),
    /// Every registered stream and its holder, all of them.
    Streams(Vec<(StreamKey, String)>),
    /// `node` registered `stream`.
    Up { stream: StreamKey, node: String },
    /// `node` ended `stream`.
    Down { stream: StreamKey, node: String },
    /// Another live node holds `stream`, which this node published: its publisher must go.
    Conflict { stream: StreamKey, holder: String },
    /// Redis can (`true`) or cannot be reached.
    Reachable(bool),
}

/// One node's picture of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    me: String,
    nodes: HashMap<String, NodeRecord>,
    streams: HashMap<StreamKey, String>,
    reachable: bool,
    /// When the node list was last replaced (ms, the caller's clock).
    pub nodes_at_ms: u64,
}

impl ClusterView {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_string(),
            nodes: HashMap::new(),
            streams: HashMap::new(),
            reachable: false,
            nodes_at_ms: 0,
        }
    }

    pub fn apply(&mut self, update: &ClusterUpdate, now_ms: u64) {
        match update {
            ClusterUpdate::Nodes(nodes) => {
                self.nodes = nodes.iter().map(|n| (n.id.clone(), n.clone())).collect();
                self.nodes_at_ms = now_ms;
            }
            ClusterUpdate::Streams(streams) => {
                self.streams = streams.iter().cloned().collect();
            }
            ClusterUpdate::Up { stream, node } => {
                self.streams.insert(stream.clone(), node.clone());
            }
            ClusterUpdate::Down { stream, node } => {
                if self.streams.get(stream) == Some(node) {
                    self.streams.remove(stream);
                }
            }
            ClusterUpdate::Conflict { stream, holder } => {
                self.streams.insert(stream.clone(), holder.clone());
            }
            ClusterUpdate::Reachable(r) => self.reachable = *r,
        }
    }

    pub fn reachable(&self) -> bool {
        self.reachable
    }

    /// The live node that holds `stream`, when it is another node than this one.
    pub fn locate(&self, stream: &StreamKey) -> Option<&NodeRecord> {
        let holder = self.streams.get(stream)?;
        (holder != &self.me)
            .then(|| self.nodes.get(holder))
            .flatten()
    }

    /// The other live nodes of `role` that are not draining, least loaded first: fewest
    /// viewers, then fewest streams, then the smallest id (so every node orders them the same
    /// way).
    pub fn by_load(&self, role: Role) -> Vec<&NodeRecord> {
        let mut o: Vec<&NodeRecord> = self
            .nodes
            .values()
            .filter(|n| n.role == role && !n.load.draining && n.id != self.me)
            .collect();
        o.sort_by_key(|n| (n.load.viewers(), n.load.streams, &n.id));
        o
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// Every stream the registry places, with its holder and whether that node is live.
    pub fn streams(&self) -> impl Iterator<Item = (&StreamKey, &str, bool)> {
        self.streams
            .iter()
            .map(|(k, n)| (k, n.as_str(), self.nodes.contains_key(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, role: Role, viewers: u64) -> NodeRecord {
        let mut r = NodeRecord::new(
            id,
            role,
            &format!("{id}.example:1935"),
            &format!("{id}.example:8080"),
        );
        r.load.streams = 1;
        r.load.rtmp_viewers = viewers;
        r
    }

    #[test]
    fn records_round_trip_and_garbage_is_ignored() {
        let r = record("a-1", Role::Edge, 7);
        assert_eq!(NodeRecord::parse(r.encode().as_bytes()), Some(r));
        for bad in [
            "v2 id=a rtmp=a:1 http=a:2",
            "v1 id=a rtmp=a http=a:2",
            "v1 id=a b rtmp=a:1 http=a:2",
            "v1 id=a rtmp=a:1 http=a:2 streams=-1",
            "v1 id=a rtmp=a:1 http=a:2 role=king",
            "v1 rtmp=a:1 http=a:2",
        ] {
            assert_eq!(NodeRecord::parse(bad.as_bytes()), None, "{bad}");
        }
        let later = "v1 id=a rtmp=a:1 http=a:2 shiny=yes";
        assert!(NodeRecord::parse(later.as_bytes()).is_some());
    }

    #[test]
    fn a_stream_is_placed_only_on_a_live_other_node() {
        let key = StreamKey::new("live", "cam").unwrap();
        let mut v = ClusterView::new("b");
        let up = |node: &str| ClusterUpdate::Up {
            stream: key.clone(),
            node: node.into(),
        };
        v.apply(&up("a"), 1);
        assert_eq!(v.locate(&key), None, "a is not known to be live");
        v.apply(
            &ClusterUpdate::Nodes(vec![
                record("a", Role::Origin, 0),
                record("b", Role::Origin, 0),
            ]),
            2,
        );
        assert_eq!(v.locate(&key).map(|n| n.id.as_str()), Some("a"));
        // a dies: its record is gone from the next list, its stream key not yet.
        v.apply(&ClusterUpdate::Nodes(vec![record("b", Role::Origin, 0)]), 3);
        assert_eq!(v.locate(&key), None);
        // b takes the stream over: it is here, not elsewhere.
        v.apply(&up("b"), 4);
        assert_eq!(v.locate(&key), None);
        // A late "down" from a does not remove b's registration.
        v.apply(
            &ClusterUpdate::Down {
                stream: key.clone(),
                node: "a".into(),
            },
            5,
        );
        assert_eq!(v.streams().count(), 1);
    }

    #[test]
    fn origins_are_ordered_by_load_the_same_everywhere() {
        let mut v = ClusterView::new("edge");
        let mut busy = record("a", Role::Origin, 10);
        busy.load.streams = 0;
        let mut draining = record("c", Role::Origin, 0);
        draining.load.draining = true;
        v.apply(
            &ClusterUpdate::Nodes(vec![
                busy,
                record("b", Role::Origin, 3),
                draining,
                record("edge", Role::Edge, 0),
                record("d", Role::Origin, 3),
            ]),
            1,
        );
        let ids: Vec<&str> = v
            .by_load(Role::Origin)
            .iter()
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(ids, ["b", "d", "a"], "no draining node, no edge");
    }
}
