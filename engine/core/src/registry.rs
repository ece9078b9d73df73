//! The registry session, sans-IO: this node's side of the Redis stream registry. It runs on
//! the registry thread (never on a shard), which moves its bytes and arms the one timer it
//! names.
//!
//! What lives in Redis (every key under `edge:`):
//! - `edge:node:{id}`: the node's [`NodeRecord`], `SET … EX 3` every second; plus the set
//!   `edge:nodes` of ids. A node is live while its record exists, so a dead node stops being
//!   an answer within 3 s.
//! - `edge:stream:{app}/{stream}`: the id of the node that holds it, plus the set
//!   `edge:streams`. Registered by a script that is `SET NX` unless the holder's record is
//!   gone (then the stream is taken over) or the holder is this node; refreshed every 10 s
//!   (`EX 30`) by one script call per [`REFRESH_BATCH`] streams, so a node's commands stay
//!   near three a second whatever its stream count; deleted on end only by its holder.
//! - Channel `edge:events`: `up {stream} {node}` and `down {stream} {node}`, published by the
//!   scripts when a stream changes hands, so edges move within a round trip, not a poll.
//!
//! After a reconnect (a Redis restart), every local stream is registered again, as in
//! OvenMediaEngine's refresh without `XX`.
//!
//! Must not: block, read a clock, or know sockets and shards. It reports what the cluster
//! looks like ([`ClusterUpdate`]) and leaves what to do about it to the shards.

use std::collections::{HashMap, VecDeque};

use crate::cluster::{ClusterUpdate, Load, NodeRecord};
use crate::media::StreamKey;
use crate::resp::{self, Value};

/// A node record's lifetime in Redis (s), and how often it is refreshed (ms).
pub const NODE_TTL_S: u64 = 3;
pub const NODE_EVERY_MS: u64 = 1000;
/// A stream key's lifetime (s), and how often every local stream is registered again (ms).
pub const STREAM_TTL_S: u64 = 30;
pub const STREAM_REFRESH_MS: u64 = 10_000;
/// How often the whole stream map is read back (events keep it current in between; a
/// subscription that restarts reads it at once). Each read costs Redis a GET per stream, so
/// it is rare: at 1,000 streams a 10 s period was half of Redis's load from two nodes.
pub const STREAMS_SNAPSHOT_MS: u64 = 60_000;
/// Reconnect backoff bounds (ms).
pub const BACKOFF_MIN_MS: u64 = 250;
pub const BACKOFF_MAX_MS: u64 = 5000;
/// The pub/sub channel.
pub const CHANNEL: &str = "edge:events";
/// Streams refreshed by one script call, at most (one call holds Redis for its length).
pub const REFRESH_BATCH: usize = 256;

/// Registers `KEYS[1]` for `ARGV[1]` unless another live node holds it; returns "" or the
/// holder.
const REGISTER: &str = "local h = redis.call('GET', KEYS[1]) \
if h and h ~= ARGV[1] and redis.call('EXISTS', 'edge:node:' .. h) == 1 then return h end \
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) \
redis.call('SADD', 'edge:streams', ARGV[3]) \
if h ~= ARGV[1] then redis.call('PUBLISH', 'edge:events', 'up ' .. ARGV[3] .. ' ' .. ARGV[1]) end \
return ''";

/// Refreshes `KEYS` (stream keys; `ARGV[2 + i]` the streams) for `ARGV[1]` with `EX ARGV[2]`:
/// extends those this node holds, takes back those that are gone or whose holder died, and
/// returns the others flattened as stream, holder.
const REFRESH: &str = "local out = {} for i, k in ipairs(KEYS) do local h = redis.call('GET', k) if h == ARGV[1] then redis.call('EXPIRE', k, ARGV[2]) elseif h and redis.call('EXISTS', 'edge:node:' .. h) == 1 then table.insert(out, ARGV[i + 2]) table.insert(out, h) else redis.call('SET', k, ARGV[1], 'EX', ARGV[2]) redis.call('SADD', 'edge:streams', ARGV[i + 2]) redis.call('PUBLISH', 'edge:events', 'up ' .. ARGV[i + 2] .. ' ' .. ARGV[1]) end end return out";

/// Deletes `KEYS[1]` if `ARGV[1]` holds it.
const UNREGISTER: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
redis.call('DEL', KEYS[1]) \
redis.call('SREM', 'edge:streams', ARGV[2]) \
redis.call('PUBLISH', 'edge:events', 'down ' .. ARGV[2] .. ' ' .. ARGV[1]) \
return 1";

/// The records of every live node (dead ids are pruned from the set).
const NODES: &str = "local out = {} \
for _, id in ipairs(redis.call('SMEMBERS', 'edge:nodes')) do \
local r = redis.call('GET', 'edge:node:' .. id) \
if r then table.insert(out, r) else redis.call('SREM', 'edge:nodes', id) end end \
return out";

/// Every registered stream and its holder, flattened (ended ones are pruned from the set).
const STREAMS: &str = "local out = {} \
for _, s in ipairs(redis.call('SMEMBERS', 'edge:streams')) do \
local h = redis.call('GET', 'edge:stream:' .. s) \
if h then table.insert(out, s) table.insert(out, h) else redis.call('SREM', 'edge:streams', s) end end \
return out";

/// How to log in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl Login {
    /// `AUTH [USER] PASSWORD`, when there is a password: what every connection sends first
    /// (the command connection, and the subscription, where the database does not matter).
    pub fn auth(&self, out: &mut Vec<u8>) -> bool {
        let Some(password) = &self.password else {
            return false;
        };
        let mut args = vec!["AUTH"];
        args.extend(self.username.as_deref());
        args.push(password);
        resp::command(&args, out);
        true
    }
}

/// What the registry thread must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEffect {
    /// Open the command connection (and the subscription); report with
    /// [`RegistrySession::handle_connected`] or [`RegistrySession::handle_lost`].
    Connect,
    /// Write these bytes on the command connection.
    Send(Vec<u8>),
    /// Close the command connection (a protocol error); report it lost.
    Close,
    /// Tell every shard.
    Update(ClusterUpdate),
    Note(RegistryNote),
}

/// For the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryNote {
    Connected,
    Lost { reason: String, retry_ms: u64 },
    Registered(StreamKey),
    Conflict { stream: StreamKey, holder: String },
    ServerError(String),
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounters {
    pub commands: u64,
    pub errors: u64,
    pub conflicts: u64,
    pub reconnects: u64,
    pub events: u64,
}

/// A command waiting for its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Login,
    Register(StreamKey),
    /// A batch refresh: its reply lists the streams another live node holds.
    Refresh,
    Unregister,
    Node,
    Nodes,
    Streams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down {
        retry_at_ms: u64,
    },
    Connecting,
    Up,
    /// [`RegistrySession::leave`]: nothing more is sent.
    Left,
}

/// This node's registry session.
#[derive(Debug)]
pub struct RegistrySession {
    me: NodeRecord,
    login: Login,
    link: Link,
    backoff_ms: u64,
    /// Streams this node holds (registered or to be).
    local: HashMap<StreamKey, ()>,
    pending: VecDeque<Pending>,
    next_node_ms: u64,
    next_refresh_ms: u64,
    next_snapshot_ms: u64,
    pub counters: RegistryCounters,
}

impl RegistrySession {
    /// `me`: this node's record (its load is replaced by [`Self::set_load`]).
    pub fn new(me: NodeRecord, login: Login, now_ms: u64) -> Self {
        Self {
            me,
            login,
            link: Link::Down {
                retry_at_ms: now_ms,
            },
            backoff_ms: BACKOFF_MIN_MS,
            local: HashMap::new(),
            pending: VecDeque::new(),
            next_node_ms: now_ms,
            next_refresh_ms: now_ms,
            next_snapshot_ms: now_ms,
            counters: RegistryCounters::default(),
        }
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me.id
    }

    pub fn is_up(&self) -> bool {
        self.link == Link::Up
    }

    /// Streams this node holds.
    pub fn local_streams(&self) -> usize {
        self.local.len()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match self.link {
            Link::Down { retry_at_ms } => Some(retry_at_ms),
            Link::Connecting | Link::Left => None,
            Link::Up => Some(
                self.next_node_ms
                    .min(self.next_refresh_ms)
                    .min(self.next_snapshot_ms),
            ),
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut Vec<RegistryEffect>) {
        match self.link {
            Link::Down { retry_at_ms } if now_ms >= retry_at_ms => {
                self.link = Link::Connecting;
                out.push(RegistryEffect::Connect);
            }
            Link::Up => {
                let mut buf = Vec::new();
                if now_ms >= self.next_node_ms {
                    self.next_node_ms = now_ms + NODE_EVERY_MS;
                    self.node_commands(&mut buf);
                }
                if now_ms >= self.next_refresh_ms {
                    self.next_refresh_ms = now_ms + STREAM_REFRESH_MS;
                    let mut keys: Vec<StreamKey> = self.local.keys().cloned().collect();
                    keys.sort();
                    for batch in keys.chunks(REFRESH_BATCH) {
                        self.refresh_command(batch, &mut buf);
                    }
                }
                if now_ms >= self.next_snapshot_ms {
                    self.next_snapshot_ms = now_ms + STREAMS_SNAPSHOT_MS;
                    self.eval(STREAMS, &[], &[], Pending::Streams, &mut buf);
                }
                if !buf.is_empty() {
                    out.push(RegistryEffect::Send(buf));
                }
            }
            _ => {}
        }
    }

    /// The command connection is open: log in, register everything again, read the cluster.
    pub fn handle_connected(&mut self, now_ms: u64, out: &mut Vec<RegistryEffect>) {
        self.link = Link::Up;
        self.backoff_ms = BACKOFF_MIN_MS;
        self.pending.clear();
        let mut buf = Vec::new();
        if self.login.auth(&mut buf) {
            self.expect(Pending::Login);
        }
        if self.login.db != 0 {
            let db = self.login.db.to_string();
            self.send(&["SELECT", &db], Pending::Login, &mut buf);
        }
        out.push(RegistryEffect::Note(RegistryNote::Connected));
        out.push(RegistryEffect::Update(ClusterUpdate::Reachable(true)));
        out.push(RegistryEffect::Send(buf));
        // Everything due now: the node record, every registration, both snapshots.
        self.next_node_ms = now_ms;
        self.next_refresh_ms = now_ms;
        self.next_snapshot_ms = now_ms;
        self.handle_timeout(now_ms, out);
    }

    /// The subscription (re)started: events may have been missed, so read the map again.
    pub fn handle_subscribed(&mut self, now_ms: u64, out: &mut Vec<RegistryEffect>) {
        self.next_snapshot_ms = now_ms;
        self.handle_timeout(now_ms, out);
    }

    /// The command connection failed or closed; try again after the backoff.
    pub fn handle_lost(&mut self, reason: &str, now_ms: u64, out: &mut Vec<RegistryEffect>) {
        if self.link == Link::Left {
            self.pending.clear();
            return;
        }
        let was_up = self.link == Link::Up;
        if !matches!(self.link, Link::Down { .. }) {
            self.counters.reconnects += 1;
        }
        let retry_ms = self.backoff_ms;
        self.link = Link::Down {
            retry_at_ms: now_ms + retry_ms,
        };
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
        self.pending.clear();
        out.push(RegistryEffect::Note(RegistryNote::Lost {
            reason: reason.to_string(),
            retry_ms,
        }));
        if was_up {
            out.push(RegistryEffect::Update(ClusterUpdate::Reachable(false)));
        }
    }

    /// A reply on the command connection.
    pub fn handle_reply(&mut self, reply: Value, out: &mut Vec<RegistryEffect>) {
        let Some(pending) = self.pending.pop_front() else {
            out.push(RegistryEffect::Note(RegistryNote::ServerError(
                "a reply to no command".into(),
            )));
            out.push(RegistryEffect::Close);
            return;
        };
        if let Value::Error(e) = &reply {
            self.counters.errors += 1;
            out.push(RegistryEffect::Note(RegistryNote::ServerError(e.clone())));
            if pending == Pending::Login {
                out.push(RegistryEffect::Close);
            }
            return;
        }
        match pending {
            Pending::Login | Pending::Unregister | Pending::Node => {}
            Pending::Register(stream) => match reply.as_str() {
                Some("") => out.push(RegistryEffect::Note(RegistryNote::Registered(stream))),
                Some(holder) => self.conflict(stream, holder, out),
                None => {}
            },
            Pending::Refresh => {
                for pair in reply.as_array().unwrap_or_default().chunks_exact(2) {
                    let stream = pair[0].as_str().and_then(parse_stream);
                    if let (Some(stream), Some(holder)) = (stream, pair[1].as_str()) {
                        self.conflict(stream, holder, out);
                    }
                }
            }
            Pending::Nodes => {
                let nodes = reply
                    .as_array()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_bytes().and_then(NodeRecord::parse))
                    .collect();
                out.push(RegistryEffect::Update(ClusterUpdate::Nodes(nodes)));
            }
            Pending::Streams => {
                let flat = reply.as_array().unwrap_or_default();
                let streams = flat
                    .chunks_exact(2)
                    .filter_map(|p| {
                        let stream = parse_stream(p[0].as_str()?)?;
                        let node = p[1].as_str()?;
                        crate::cluster::check_node_id(node).ok()?;
                        Some((stream, node.to_string()))
                    })
                    .collect();
                out.push(RegistryEffect::Update(ClusterUpdate::Streams(streams)));
            }
        }
    }

    /// Another live node holds `stream`: it is no longer ours (unless it ended here while
    /// the registration was on its way).
    fn conflict(&mut self, stream: StreamKey, holder: &str, out: &mut Vec<RegistryEffect>) {
        if self.local.remove(&stream).is_none() {
            return;
        }
        self.counters.conflicts += 1;
        let holder = holder.to_string();
        out.push(RegistryEffect::Note(RegistryNote::Conflict {
            stream: stream.clone(),
            holder: holder.clone(),
        }));
        out.push(RegistryEffect::Update(ClusterUpdate::Conflict {
            stream,
            holder,
        }));
    }

    /// A message on the `edge:events` channel.
    pub fn handle_event(&mut self, payload: &[u8], out: &mut Vec<RegistryEffect>) {
        let Some((up, stream, node)) = parse_event(payload) else {
            return;
        };
        self.counters.events += 1;
        out.push(RegistryEffect::Update(if up {
            ClusterUpdate::Up { stream, node }
        } else {
            ClusterUpdate::Down { stream, node }
        }));
    }

    /// This node stops (a graceful shutdown): its streams and its node record are deleted
    /// now instead of expiring, and the `down` events tell every edge at once. Nothing is
    /// sent after this; [`Self::is_settled`] says when Redis has answered.
    pub fn leave(&mut self, out: &mut Vec<RegistryEffect>) {
        let up = self.link == Link::Up;
        self.link = Link::Left;
        let local = std::mem::take(&mut self.local);
        if !up {
            self.pending.clear();
            return;
        }
        let mut buf = Vec::new();
        for stream in local.keys() {
            self.unregister_command(stream, &mut buf);
        }
        let id = self.me.id.clone();
        let node = format!("edge:node:{id}");
        self.send(&["DEL", &node], Pending::Node, &mut buf);
        self.send(&["SREM", "edge:nodes", &id], Pending::Node, &mut buf);
        out.push(RegistryEffect::Send(buf));
    }

    /// Every command sent has been answered (or the connection is gone).
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// A stream went live on this node (a publish, or a forward from an edge).
    pub fn register(&mut self, stream: StreamKey, out: &mut Vec<RegistryEffect>) {
        if self.link == Link::Left {
            return;
        }
        if self.local.insert(stream.clone(), ()).is_some() {
            return;
        }
        if self.link == Link::Up {
            let mut buf = Vec::new();
            self.register_command(&stream, &mut buf);
            out.push(RegistryEffect::Send(buf));
        }
    }

    /// A stream ended on this node.
    pub fn unregister(&mut self, stream: &StreamKey, out: &mut Vec<RegistryEffect>) {
        if self.local.remove(stream).is_none() || self.link != Link::Up {
            return;
        }
        let mut buf = Vec::new();
        self.unregister_command(stream, &mut buf);
        out.push(RegistryEffect::Send(buf));
    }

    /// The load the next node record reports.
    pub fn set_load(&mut self, load: Load) {
        self.me.load = load;
    }

    fn node_commands(&mut self, buf: &mut Vec<u8>) {
        let key = format!("edge:node:{}", self.me.id);
        let ttl = NODE_TTL_S.to_string();
        let record = self.me.encode();
        let id = self.me.id.clone();
        self.send(&["SET", &key, &record, "EX", &ttl], Pending::Node, buf);
        self.send(&["SADD", "edge:nodes", &id], Pending::Node, buf);
        self.eval(NODES, &[], &[], Pending::Nodes, buf);
    }

    fn register_command(&mut self, stream: &StreamKey, buf: &mut Vec<u8>) {
        let key = format!("edge:stream:{}", stream.as_str());
        let ttl = STREAM_TTL_S.to_string();
        let id = self.me.id.clone();
        self.eval(
            REGISTER,
            &[&key],
            &[&id, &ttl, stream.as_str()],
            Pending::Register(stream.clone()),
            buf,
        );
    }

    fn unregister_command(&mut self, stream: &StreamKey, buf: &mut Vec<u8>) {
        let key = format!("edge:stream:{}", stream.as_str());
        let id = self.me.id.clone();
        self.eval(
            UNREGISTER,
            &[&key],
            &[&id, stream.as_str()],
            Pending::Unregister,
            buf,
        );
    }

    fn refresh_command(&mut self, streams: &[StreamKey], buf: &mut Vec<u8>) {
        let keys: Vec<String> = streams
            .iter()
            .map(|s| format!("edge:stream:{}", s.as_str()))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (id, ttl) = (self.me.id.clone(), STREAM_TTL_S.to_string());
        let mut args = vec![id.as_str(), ttl.as_str()];
        args.extend(streams.iter().map(|s| s.as_str()));
        self.eval(REFRESH, &keys, &args, Pending::Refresh, buf);
    }

    fn eval(&mut self, script: &str, keys: &[&str], args: &[&str], p: Pending, buf: &mut Vec<u8>) {
        let n = keys.len().to_string();
        let mut all = vec!["EVAL", script, &n];
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        self.send(&all, p, buf);
    }

    fn send(&mut self, args: &[&str], p: Pending, buf: &mut Vec<u8>) {
        resp::command(args, buf);
        self.expect(p);
    }

    /// A command was written: its reply comes in this place.
    fn expect(&mut self, p: Pending) {
        self.pending.push_back(p);
        self.counters.commands += 1;
    }
}

/// `app/stream` as a key.
pub fn parse_stream(text: &str) -> Option<StreamKey> {
    let (app, stream) = text.split_once('/')?;
    let key = StreamKey::new(app, stream)?;
    (key.as_str() == text).then_some(key)
}

/// `up {stream} {node}` or `down {stream} {node}`.
fn parse_event(payload: &[u8]) -> Option<(bool, StreamKey, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(' ');
    let up = match parts.next()? {
        "up" => true,
        "down" => false,
        _ => return None,
    };
    let stream = parse_stream(parts.next()?)?;
    let node = parts.next()?;
    crate::cluster::check_node_id(node).ok()?;
    parts
        .next()
        .is_none()
        .then(|| (up, stream, node.to_string()))
}

/// A subscriber connection's push: the payload of a `message` on [`CHANNEL`], if it is one.
pub fn channel_message(v: &Value) -> Option<&[u8]> {
    let a = v.as_array()?;
    match a {
        [kind, channel, payload]
            if kind.as_bytes() == Some(b"message")
                && channel.as_bytes() == Some(CHANNEL.as_bytes()) =>
        {
            payload.as_bytes()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Role;

    fn me() -> NodeRecord {
        NodeRecord::new("a", Role::Origin, "10.0.0.1:1935", "10.0.0.1:8080")
    }

    fn key(s: &str) -> StreamKey {
        StreamKey::new("live", s).unwrap()
    }

    /// The commands in a `Send`, as text arrays.
    fn commands(out: &[RegistryEffect]) -> Vec<Vec<String>> {
        let mut d = resp::Decoder::default();
        for e in out {
            if let RegistryEffect::Send(b) = e {
                d.feed(b);
            }
        }
        let mut all = Vec::new();
        while let Some(v) = d.next_reply().unwrap() {
            all.push(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            );
        }
        all
    }

    fn bulk(t: &str) -> Value {
        Value::Bulk(Some(t.as_bytes().to_vec()))
    }

    /// What a refused registration of `stream` (held by `holder`) produces.
    fn conflict(stream: &str, holder: &str) -> [RegistryEffect; 2] {
        [
            RegistryEffect::Note(RegistryNote::Conflict {
                stream: key(stream),
                holder: holder.into(),
            }),
            RegistryEffect::Update(ClusterUpdate::Conflict {
                stream: key(stream),
                holder: holder.into(),
            }),
        ]
    }

    fn up(s: &mut RegistrySession, now: u64) -> Vec<RegistryEffect> {
        let mut out = Vec::new();
        s.handle_timeout(now, &mut out);
        assert_eq!(out, [RegistryEffect::Connect]);
        out.clear();
        s.handle_connected(now, &mut out);
        out
    }

    #[test]
    fn a_connect_logs_in_registers_again_and_reads_the_cluster() {
        let login = Login {
            username: None,
            password: Some("pw".into()),
            db: 2,
        };
        let mut s = RegistrySession::new(me(), login, 0);
        let mut out = Vec::new();
        s.register(key("cam"), &mut out);
        assert!(out.is_empty(), "nothing is sent before the link is up");
        let out = up(&mut s, 0);
        let cmds = commands(&out);
        let names: Vec<&str> = cmds.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(
            names,
            ["AUTH", "SELECT", "SET", "SADD", "EVAL", "EVAL", "EVAL"]
        );
        assert_eq!(cmds[2][1..], ["edge:node:a", &me().encode(), "EX", "3"]);
        assert_eq!(
            cmds[5][3..],
            ["edge:stream:live/cam", "a", "30", "live/cam"]
        );
        assert!(out.contains(&RegistryEffect::Update(ClusterUpdate::Reachable(true))));
        assert_eq!(s.poll_timeout(), Some(NODE_EVERY_MS));
    }

    #[test]
    fn leaving_deletes_the_streams_and_the_record_and_then_sends_nothing() {
        let mut s = RegistrySession::new(me(), Login::default(), 0);
        up(&mut s, 0);
        let mut out = Vec::new();
        s.register(key("cam"), &mut out);
        out.clear();
        s.leave(&mut out);
        let cmds = commands(&out);
        let names: Vec<&str> = cmds.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(names, ["EVAL", "DEL", "SREM"]);
        assert_eq!(cmds[0][3..], ["edge:stream:live/cam", "a", "live/cam"]);
        assert_eq!(cmds[1][1], "edge:node:a");
        assert!(!s.is_settled(), "replies are awaited");
        for _ in 0..cmds.len() + 7 {
            s.handle_reply(Value::Integer(1), &mut Vec::new());
        }
        assert!(s.is_settled());
        out.clear();
        s.register(key("late"), &mut out);
        s.handle_timeout(60_000, &mut out);
        s.handle_lost("closed", 60_000, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn replies_become_registrations_conflicts_and_the_cluster() {
        let mut s = RegistrySession::new(me(), Login::default(), 0);
        up(&mut s, 0);
        let mut out = Vec::new();
        s.register(key("cam"), &mut out);
        s.register(key("dup"), &mut out);
        out.clear();
        let mut other = me();
        other.id = "b".into();
        let replies = [
            Value::Simple("OK".into()),
            Value::Integer(1),
            Value::Array(Some(vec![
                bulk(&me().encode()),
                bulk(&other.encode()),
                bulk("junk"),
            ])),
            Value::Array(Some(vec![
                bulk("live/x"),
                bulk("b"),
                bulk("bad key"),
                bulk("b"),
                bulk("live/y"),
            ])),
            bulk(""),
            bulk("b"),
        ];
        for r in replies {
            s.handle_reply(r, &mut out);
        }
        assert_eq!(
            out,
            [
                RegistryEffect::Update(ClusterUpdate::Nodes(vec![me(), other])),
                RegistryEffect::Update(ClusterUpdate::Streams(vec![(key("x"), "b".into())])),
                RegistryEffect::Note(RegistryNote::Registered(key("cam"))),
            ]
            .into_iter()
            .chain(conflict("dup", "b"))
            .collect::<Vec<_>>()
        );
        assert_eq!(s.local_streams(), 1);
        assert_eq!(s.counters.conflicts, 1);
    }

    #[test]
    fn a_lost_link_backs_off_and_comes_back_with_every_registration() {
        let mut s = RegistrySession::new(me(), Login::default(), 0);
        up(&mut s, 0);
        let mut out = Vec::new();
        s.register(key("cam"), &mut out);
        out.clear();
        s.handle_lost("reset", 100, &mut out);
        assert!(out.contains(&RegistryEffect::Update(ClusterUpdate::Reachable(false))));
        assert_eq!(s.poll_timeout(), Some(100 + BACKOFF_MIN_MS));
        out.clear();
        s.handle_timeout(100 + BACKOFF_MIN_MS, &mut out);
        assert_eq!(out, [RegistryEffect::Connect]);
        out.clear();
        s.handle_lost("refused", 400, &mut out);
        assert_eq!(s.poll_timeout(), Some(400 + 2 * BACKOFF_MIN_MS));
        assert!(!out.contains(&RegistryEffect::Update(ClusterUpdate::Reachable(false))));
        let out = up(&mut s, 900);
        let registers = commands(&out)
            .into_iter()
            .filter(|c| c.get(3).map(String::as_str) == Some("edge:stream:live/cam"))
            .count();
        assert_eq!(registers, 1, "the stream is registered again");
        assert_eq!(s.counters.reconnects, 2);
    }

    #[test]
    fn refreshes_are_periodic_and_unregistering_needs_the_holder() {
        let mut s = RegistrySession::new(me(), Login::default(), 0);
        up(&mut s, 0);
        let mut out = Vec::new();
        for n in 0..1000 {
            s.register(key(&format!("s{n}")), &mut out);
        }
        out.clear();
        // Over a minute: sixty node ticks, six refreshes of every stream, one snapshot.
        let mut now = 0;
        while now < STREAMS_SNAPSHOT_MS {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now, &mut out);
        }
        let cmds = commands(&out);
        let batches = 1000usize.div_ceil(REFRESH_BATCH);
        assert_eq!(
            cmds.len(),
            60 * 3 + 6 * batches + 1,
            "commands in a minute at 1,000 streams"
        );
        // Each round of refresh scripts names every stream once, as key and as argument.
        let refreshes: Vec<&Vec<String>> = cmds
            .iter()
            .filter(|c| c[1] == REFRESH)
            .take(batches)
            .collect();
        let mut named = std::collections::HashSet::new();
        for c in &refreshes {
            let n: usize = c[2].parse().unwrap();
            assert_eq!(c[3 + n..5 + n], ["a", "30"]);
            for (k, arg) in c[3..3 + n].iter().zip(&c[5 + n..]) {
                assert_eq!(k, &format!("edge:stream:{arg}"));
                assert!(named.insert(arg.clone()), "{arg} twice");
            }
        }
        assert_eq!(named.len(), 1000);
        // A refresh can find a stream taken over while Redis had forgotten it.
        let mut out = Vec::new();
        s.pending.clear();
        s.expect(Pending::Refresh);
        s.handle_reply(
            Value::Array(Some(vec![bulk("live/s7"), bulk("b"), bulk("live/none")])),
            &mut out,
        );
        assert_eq!(out, conflict("s7", "b"));
        assert_eq!(s.local_streams(), 999);
        out.clear();
        s.unregister(&key("s1"), &mut out);
        let c = commands(&out);
        assert_eq!(c[0][3..], ["edge:stream:live/s1", "a", "live/s1"]);
        out.clear();
        s.unregister(&key("s1"), &mut out);
        assert!(out.is_empty(), "once");
    }

    #[test]
    fn events_and_pushes_parse_strictly() {
        let mut s = RegistrySession::new(me(), Login::default(), 0);
        let mut out = Vec::new();
        s.handle_event(b"up live/cam b", &mut out);
        s.handle_event(b"down live/cam b", &mut out);
        for bad in [
            &b"up live/cam"[..],
            b"up live/cam b c",
            b"sideways live/cam b",
            b"up cam b",
        ] {
            s.handle_event(bad, &mut out);
        }
        assert_eq!(
            out,
            [
                RegistryEffect::Update(ClusterUpdate::Up {
                    stream: key("cam"),
                    node: "b".into()
                }),
                RegistryEffect::Update(ClusterUpdate::Down {
                    stream: key("cam"),
                    node: "b".into()
                }),
            ]
        );
        let push = Value::Array(Some(vec![
            bulk("message"),
            bulk(CHANNEL),
            bulk("up live/cam b"),
        ]));
        assert_eq!(channel_message(&push), Some(&b"up live/cam b"[..]));
        let other = Value::Array(Some(vec![
            bulk("subscribe"),
            bulk(CHANNEL),
            Value::Integer(1),
        ]));
        assert_eq!(channel_message(&other), None);
    }

    #[test]
    fn a_reply_to_nothing_closes_the_link() {
        let mut s = RegistrySession::new(me(), Login::default(), 0);
        let mut out = Vec::new();
        s.handle_reply(Value::Integer(1), &mut out);
        assert!(out.contains(&RegistryEffect::Close));
    }
}
