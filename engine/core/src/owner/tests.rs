//! Scenarios on one machine in memory: an owner, a replica per shard, a mesh whose channels
//! can be made full, and viewers that keep what a send queue would let through. A simulated
//! clock; no sockets, no threads.

use std::collections::HashMap;

use bytes::Bytes;

use super::*;
use crate::hls::VecStore;
use crate::media::{parse_tag, FrameFlags, MediaKind};
use crate::replica::{FinishReason, Replica, ReplicaConfig, ReplicaEffect};
use crate::stream::ReplicaState;
use crate::upstream::LinkError;

const P1: PublisherId = PublisherId(1);
const P2: PublisherId = PublisherId(2);

/// What a viewer got, as its send queue would pass it on.
#[derive(Debug, Default)]
struct Viewer {
    /// (kind, timestamp, keyframe, header) in arrival order.
    got: Vec<(MediaKind, u64, bool, bool)>,
    /// Skipping to the next keyframe (a join without one, a republish, a resync).
    waiting_for_key: bool,
    finished: Option<FinishReason>,
}

impl Viewer {
    fn take(&mut self, f: &Frame) {
        if self.waiting_for_key && !f.flags.header {
            if !f.flags.sync_point {
                return;
            }
            self.waiting_for_key = false;
        }
        self.got
            .push((f.kind, f.timestamp_ms, f.flags.sync_point, f.flags.header));
    }

    /// What a resync skips: frames the viewer already has (by kind and timestamp).
    fn has(&self, f: &Frame) -> bool {
        !f.flags.header
            && self
                .got
                .iter()
                .any(|(k, t, _, h)| !h && *k == f.kind && *t >= f.timestamp_ms)
    }

    fn pictures(&self) -> Vec<(u64, bool)> {
        self.got
            .iter()
            .filter(|(k, _, _, h)| *k == MediaKind::Video && !h)
            .map(|(_, t, key, _)| (*t, *key))
            .collect()
    }
}

struct Sim {
    now: u64,
    owner: Owner<VecStore>,
    replicas: HashMap<ShardId, Replica<u32>>,
    viewers: HashMap<u32, (ShardId, Viewer)>,
    /// Shards whose channel from the owner is full right now.
    full: Vec<ShardId>,
    effects: Vec<OwnerEffect>,
    links: Vec<(LinkId, LinkRole, String)>,
    /// The origin each link connected to.
    urls: HashMap<LinkId, String>,
    forward_queue: crate::queue::FrameQueue,
    hls: Vec<HlsSnapshot>,
    freed: bool,
    /// Feeds asked for (with their query) and ended.
    feeds_started: Vec<Option<Arc<str>>>,
    feeds_stopped: usize,
    /// `OwnerEffect::Unavailable` answers (`not_found`), in order.
    unavailable: Vec<bool>,
}

fn config(edge: bool) -> OwnerConfig {
    OwnerConfig {
        me: ShardId(0),
        grace_ms: 1000,
        gop: GopLimits::default(),
        hls: HlsConfig::default(),
        edge: edge.then(|| EdgeConfig {
            origins: ["rtmp://a/live", "rtmp://b/live"]
                .iter()
                .map(|u| OriginUrl::parse(u).unwrap())
                .collect(),
            upstream_timeout_ms: 1500,
            upstream_idle_ms: 5000,
            forward: true,
            hls_feed: false,
            local_publish_wins: false,
        }),
    }
}

impl Sim {
    fn new(edge: bool) -> Sim {
        let key = StreamKey::new("live", "cam").unwrap();
        Sim {
            now: 0,
            owner: Owner::new(key, Arc::new(config(edge)), VecStore, 77),
            replicas: HashMap::new(),
            viewers: HashMap::new(),
            full: Vec::new(),
            effects: Vec::new(),
            links: Vec::new(),
            urls: HashMap::new(),
            forward_queue: crate::queue::FrameQueue::new(2000),
            hls: Vec::new(),
            freed: false,
            feeds_started: Vec::new(),
            feeds_stopped: 0,
            unavailable: Vec::new(),
        }
    }

    /// An edge whose only origins are HTTP ones: RTMP and FLV viewers are fed from HLS.
    fn hls_only_edge() -> Sim {
        let mut c = config(true);
        if let Some(e) = &mut c.edge {
            e.origins.clear();
            e.hls_feed = true;
        }
        let mut sim = Sim::new(true);
        sim.owner = Owner::new(sim.owner.key().clone(), Arc::new(c), VecStore, 77);
        sim
    }

    /// Runs every effect the owner produced, and the replicas' in turn.
    fn run(&mut self) {
        while !self.effects.is_empty() {
            for e in std::mem::take(&mut self.effects) {
                match e {
                    OwnerEffect::Update { to, update } => {
                        if self.full.contains(&to) {
                            self.owner.handle_send_failed(to);
                            continue;
                        }
                        let mut out = Vec::new();
                        if let Some(r) = self.replicas.get_mut(&to) {
                            r.handle_update(&update, self.now, &mut out);
                        }
                        self.replica_effects(to, out);
                    }
                    OwnerEffect::Connect {
                        link,
                        role,
                        stream_name,
                        url,
                    } => {
                        self.urls.insert(link, url.to_string());
                        self.links.push((link, role, stream_name));
                    }
                    OwnerEffect::Disconnect(link) => self.links.retain(|l| l.0 != link),
                    OwnerEffect::ForwardJoin(frames) => self.forward_queue.reset(frames),
                    OwnerEffect::ForwardFrame(f) => {
                        self.forward_queue.push(&f);
                    }
                    OwnerEffect::Hls(s) => self.hls.push(s),
                    OwnerEffect::Free => self.freed = true,
                    OwnerEffect::StartHlsFeed { query } => self.feeds_started.push(query),
                    OwnerEffect::StopHlsFeed => self.feeds_stopped += 1,
                    OwnerEffect::Unavailable { not_found } => self.unavailable.push(not_found),
                    _ => {}
                }
            }
        }
    }

    fn replica_effects(&mut self, shard: ShardId, effects: Vec<ReplicaEffect<u32>>) {
        for e in effects {
            match e {
                ReplicaEffect::Subscribe { query } => {
                    self.owner
                        .handle_subscribe(shard, query, self.now, &mut self.effects)
                }
                ReplicaEffect::Unsubscribe => {
                    self.owner
                        .handle_unsubscribe(shard, self.now, &mut self.effects)
                }
                ReplicaEffect::Join {
                    viewer,
                    needs_keyframe,
                } => {
                    let frames: Vec<Frame> = self.replicas[&shard].join_frames().cloned().collect();
                    let v = &mut self.viewers.get_mut(&viewer).unwrap().1;
                    for f in &frames {
                        v.take(f);
                    }
                    v.waiting_for_key |= needs_keyframe;
                }
                ReplicaEffect::Fanout(f) => {
                    let joined: Vec<u32> = self.replicas[&shard].joined().copied().collect();
                    for id in joined {
                        self.viewers.get_mut(&id).unwrap().1.take(&f);
                    }
                }
                ReplicaEffect::Resync {
                    viewer,
                    frames,
                    gop_empty,
                } => {
                    let v = &mut self.viewers.get_mut(&viewer).unwrap().1;
                    v.waiting_for_key |= gop_empty;
                    let missing: Vec<&Frame> = frames.iter().filter(|f| !v.has(f)).collect();
                    for f in missing {
                        v.take(f);
                    }
                }
                ReplicaEffect::RequireKeyframe { viewer } => {
                    self.viewers.get_mut(&viewer).unwrap().1.waiting_for_key = true
                }
                ReplicaEffect::Finish { viewer, reason } => {
                    self.viewers.get_mut(&viewer).unwrap().1.finished = Some(reason)
                }
                ReplicaEffect::Released => {
                    self.replicas.remove(&shard);
                }
            }
        }
        self.run();
    }

    fn add_viewer(&mut self, shard: ShardId, id: u32) {
        self.viewers.insert(id, (shard, Viewer::default()));
        let r = self.replicas.entry(shard).or_insert_with(|| {
            Replica::new(ReplicaConfig {
                play_wait_ms: 3000,
                gop: GopLimits::default(),
            })
        });
        let mut out = Vec::new();
        r.handle_add_viewer(
            crate::ids::ViewerId(u64::from(id)),
            id,
            None,
            self.now,
            &mut out,
        );
        self.replica_effects(shard, out);
    }

    fn remove_viewer(&mut self, id: u32) {
        let shard = self.viewers[&id].0;
        let mut out = Vec::new();
        if let Some(r) = self.replicas.get_mut(&shard) {
            r.handle_remove_viewer(crate::ids::ViewerId(u64::from(id)), &mut out);
        }
        self.replica_effects(shard, out);
    }

    fn publish(&mut self, p: PublisherId) {
        self.publish_via(p, Vec::new());
    }

    fn publish_via(&mut self, p: PublisherId, cluster_origins: Vec<OriginUrl>) {
        self.owner.handle_publish(
            p,
            ShardId(1),
            None,
            cluster_origins,
            self.now,
            &mut self.effects,
        );
        self.run();
    }

    fn media(&mut self, p: PublisherId, kind: MediaKind, ts: u32, body: Bytes) {
        let tag = parse_tag(kind, &body).unwrap();
        self.owner.handle_media(p, ts, body, tag, &mut self.effects);
        self.run();
    }

    fn headers(&mut self, p: PublisherId) {
        self.media(p, MediaKind::Video, 0, avc_header());
        self.media(
            p,
            MediaKind::Audio,
            0,
            Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        );
    }

    fn link(&mut self, link: LinkId, ev: LinkEvent) -> bool {
        let keep = self
            .owner
            .handle_link_event(link, ev, self.now, &mut self.effects);
        self.run();
        keep
    }

    /// Advances the clock to `t`, firing the owner's and replicas' deadlines on the way.
    fn advance(&mut self, t: u64) {
        loop {
            let next = [self.owner.poll_timeout()]
                .into_iter()
                .chain(self.replicas.values().map(|r| r.poll_timeout()))
                .flatten()
                .filter(|&d| d <= t)
                .min();
            let Some(d) = next else { break };
            self.now = self.now.max(d);
            self.owner.handle_timeout(self.now, &mut self.effects);
            self.run();
            let shards: Vec<ShardId> = self.replicas.keys().copied().collect();
            for s in shards {
                let mut out = Vec::new();
                if let Some(r) = self.replicas.get_mut(&s) {
                    r.handle_timeout(self.now, &mut out);
                }
                self.replica_effects(s, out);
            }
        }
        self.now = t;
    }
}

fn avc_header() -> Bytes {
    let mut b = vec![0x17, 0, 0, 0, 0];
    b.extend([
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3,
    ]);
    Bytes::from(b)
}

fn picture(key: bool) -> Bytes {
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 2];
    b.extend([if key { 0x65 } else { 0x41 }, 0xab]);
    Bytes::from(b)
}

/// 25 fps video, a keyframe every `gop` pictures, from picture `from` to `to`.
fn pictures(sim: &mut Sim, p: PublisherId, from: u32, to: u32, gop: u32) {
    for n in from..to {
        sim.media(p, MediaKind::Video, n * 40, picture(n % gop == 0));
    }
}

#[test]
fn three_shards_subscribe_and_one_lags_then_resyncs_at_the_next_keyframe() {
    let mut sim = Sim::new(false);
    sim.publish(P1);
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 5, 10);
    for (shard, viewer) in [(1, 10), (2, 20), (3, 30)] {
        sim.add_viewer(ShardId(shard), viewer);
    }
    pictures(&mut sim, P1, 5, 13, 10);
    // Shard 2's channel fills for pictures 13..17: it lags.
    sim.full.push(ShardId(2));
    pictures(&mut sim, P1, 13, 17, 10);
    sim.full.clear();
    // Still lagging until a keyframe: pictures 17..20 do not go to shard 2 either.
    pictures(&mut sim, P1, 17, 25, 10);
    let full: Vec<(u64, bool)> = (0..25u64).map(|n| (n * 40, n % 10 == 0)).collect();
    // Viewers joined with the GOP (0..5), then live: everything.
    assert_eq!(sim.viewers[&10].1.pictures(), full);
    assert_eq!(sim.viewers[&30].1.pictures(), full);
    // The lagging shard's viewer: everything up to the lag, then from the keyframe at 20,
    // with nothing undecodable in between and nothing twice.
    let lagged = sim.viewers[&20].1.pictures();
    let expect: Vec<(u64, bool)> = full
        .iter()
        .copied()
        .filter(|(t, _)| *t < 13 * 40 || *t >= 20 * 40)
        .collect();
    assert_eq!(lagged, expect);
    assert!(lagged.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn a_republish_inside_the_grace_continues_with_fresh_headers_and_later_times() {
    let mut sim = Sim::new(false);
    sim.add_viewer(ShardId(1), 1);
    sim.publish(P1);
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 10, 5);
    sim.owner
        .handle_unpublish(P1, Departure::Unpublished, sim.now, &mut sim.effects);
    sim.run();
    sim.advance(600);
    // A new publisher whose clock starts at 0 again, inside the grace.
    sim.publish(P2);
    sim.headers(P2);
    pictures(&mut sim, P2, 0, 5, 5);
    let v = &sim.viewers[&1].1;
    assert_eq!(
        v.got
            .iter()
            .filter(|g| g.3 && g.0 == MediaKind::Video)
            .count(),
        2
    );
    let times: Vec<u64> = v.pictures().iter().map(|p| p.0).collect();
    assert_eq!(times.len(), 15);
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {times:?}"
    );
    // Rebased by the real gap: 360 ms (last picture) + 600 ms later.
    assert_eq!(times[10], 360 + 600);
    assert!(v.finished.is_none());
    assert_eq!(sim.hls.last().map(|s| s.ended), Some(false));
}

#[test]
fn after_the_grace_viewers_are_ended_and_everything_is_freed() {
    let mut sim = Sim::new(false);
    sim.add_viewer(ShardId(0), 1);
    sim.add_viewer(ShardId(2), 2);
    sim.publish(P1);
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 60, 25);
    sim.owner
        .handle_unpublish(P1, Departure::Unpublished, sim.now, &mut sim.effects);
    sim.run();
    assert_eq!(sim.owner.poll_timeout(), Some(1000));
    sim.advance(999);
    assert!(sim.viewers[&1].1.finished.is_none());
    sim.advance(1000);
    for id in [1, 2] {
        assert_eq!(sim.viewers[&id].1.finished, Some(FinishReason::StreamEnded));
    }
    assert!(sim.replicas.is_empty(), "replicas released");
    assert!(sim.freed, "the owner is free");
    assert!(sim.hls.last().unwrap().ended, "the playlist ends");
}

#[test]
fn a_viewer_before_the_publish_waits_and_a_late_one_times_out() {
    let mut sim = Sim::new(false);
    sim.add_viewer(ShardId(1), 1);
    assert_eq!(sim.replicas[&ShardId(1)].state(), ReplicaState::Waiting);
    sim.advance(2999);
    sim.publish(P1);
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 3, 25);
    assert_eq!(
        sim.viewers[&1].1.pictures().len(),
        3,
        "joined when the stream started"
    );
    // Another stream's viewer, with no publisher ever.
    let mut other = Sim::new(false);
    other.add_viewer(ShardId(1), 9);
    other.advance(3000);
    assert_eq!(other.viewers[&9].1.finished, Some(FinishReason::NotFound));
    assert!(other.replicas.is_empty());
    assert!(other.freed);
}

#[test]
fn a_pull_fails_over_mid_gop_and_probes_back_to_the_preferred_origin() {
    let mut sim = Sim::new(true);
    sim.add_viewer(ShardId(1), 1);
    let (a, role, name) = sim.links[0].clone();
    assert_eq!((role, name.as_str()), (LinkRole::Pull, "cam"));
    let upstream = |ts: u32, body: Bytes| LinkEvent::Media {
        kind: MediaKind::Video,
        timestamp: ts,
        body,
    };
    assert!(sim.link(a, LinkEvent::Started));
    sim.link(a, upstream(5000, avc_header()));
    for n in 0..13u32 {
        sim.now = u64::from(n) * 40;
        sim.link(a, upstream(5000 + n * 40, picture(n % 10 == 0)));
    }
    // Mid-GOP, the origin goes away; the next one is connected at once.
    sim.now = 600;
    assert!(!sim.link(a, LinkEvent::Failed(LinkError::Closed)));
    let (b, role, _) = sim.links.iter().find(|l| l.0 != a).cloned().unwrap();
    assert_eq!(role, LinkRole::Pull);
    assert_eq!(sim.owner.view().phase, MasterPhase::Grace);
    // Origin b's clock is elsewhere; it sends its headers with an old time.
    sim.now = 700;
    sim.link(b, upstream(90_000, avc_header()));
    for n in 0..10u32 {
        sim.now = 700 + u64::from(n) * 40;
        sim.link(b, upstream(100_000 + n * 40, picture(n % 10 == 0)));
    }
    let v = &sim.viewers[&1].1;
    let pics = v.pictures();
    assert_eq!(pics.len(), 13 + 10);
    assert!(
        pics.windows(2).all(|w| w[0].0 < w[1].0),
        "monotonic across the failover"
    );
    assert!(pics[13].1, "the new origin's first picture is a keyframe");
    assert_eq!(
        v.got
            .iter()
            .filter(|g| g.3 && g.0 == MediaKind::Video)
            .count(),
        2,
        "fresh headers"
    );
    // On the fallback: the preferred origin is probed 5 s after media resumed, and taken back
    // when it delivers.
    let mut t = 1100;
    while sim.links.len() < 2 {
        t += 100;
        sim.advance(t);
        sim.link(b, upstream(100_400 + (t as u32), picture(false)));
    }
    let (probe, role, _) = sim.links.iter().find(|l| l.0 != b).cloned().unwrap();
    assert_eq!(role, LinkRole::Probe, "{:?} b={b:?} t={t}", sim.links);
    assert!((5700..=5900).contains(&t), "probed at {t}");
    sim.link(probe, upstream(7000, avc_header()));
    sim.link(probe, upstream(7040, picture(true)));
    assert_eq!(sim.links.len(), 1, "the fallback connection is closed");
    assert_eq!(sim.links[0].0, probe);
    assert_eq!(sim.owner.view().upstream.unwrap().origin.host, "a");
    assert_eq!(sim.owner.view().failovers, 2);
}

/// Regression: at an edge whose origins were down, viewers waited their whole play-wait
/// (then `StreamNotFound`, as if the stream did not exist). When every origin failed in a
/// row, waiting viewers are answered at once with "origin unavailable", and HLS requests
/// too (the `Unavailable` effect); the pull goes on retrying with backoff.
#[test]
fn an_edge_whose_origins_are_down_answers_waiting_viewers_at_once() {
    let mut sim = Sim::new(true);
    sim.add_viewer(ShardId(1), 1);
    let (a, _, _) = sim.links[0].clone();
    sim.now = 20;
    assert!(!sim.link(a, LinkEvent::Failed(LinkError::Connect("refused".into()))));
    assert!(
        sim.viewers[&1].1.finished.is_none(),
        "origin b is tried next"
    );
    let (b, _, _) = sim.links[0].clone();
    assert_eq!(sim.urls[&b], "rtmp://b:1935/live");
    sim.now = 40;
    sim.link(b, LinkEvent::Failed(LinkError::Connect("refused".into())));
    assert_eq!(
        sim.viewers[&1].1.finished,
        Some(FinishReason::OriginUnavailable),
        "answered at the end of the round, well before the 3 s play-wait"
    );
    assert_eq!(sim.unavailable, [false]);
    assert_eq!(sim.owner.view().failovers, 1, "a to b; a retry is none");
    // Origins that answer "no such stream" give a not-found.
    let mut sim = Sim::new(true);
    sim.add_viewer(ShardId(1), 1);
    for _ in 0..2 {
        let (l, _, _) = sim.links[0].clone();
        sim.link(l, LinkEvent::Started);
        sim.link(
            l,
            LinkEvent::Failed(LinkError::Refused("NetStream.Play.StreamNotFound".into())),
        );
    }
    assert_eq!(sim.viewers[&1].1.finished, Some(FinishReason::NotFound));
    assert_eq!(sim.unavailable, [true]);
    // Origins that take the play and send nothing may be waiting for their publisher: the
    // pull goes on, and the viewer waits its play-wait (3 s here), as at an origin.
    let mut sim = Sim::new(true);
    sim.add_viewer(ShardId(1), 1);
    let (a, _, _) = sim.links[0].clone();
    sim.link(a, LinkEvent::Started);
    sim.advance(1500);
    let (b, _, _) = sim.links[0].clone();
    sim.link(b, LinkEvent::Started);
    sim.advance(2999);
    assert!(sim.unavailable.is_empty(), "no early answer");
    assert!(sim.viewers[&1].1.finished.is_none());
    sim.advance(3000);
    assert_eq!(sim.viewers[&1].1.finished, Some(FinishReason::NotFound));
}

/// Regression: when an edge's origin was killed, its viewers were ended after the grace
/// exactly as at a normal end (ffmpeg exited 0). A stream whose upstream was lost and did
/// not come back ends as a failure; one the origin ended (`UnpublishNotify`) ends normally.
#[test]
fn a_lost_upstream_ends_viewers_with_a_failure_and_an_origin_end_is_an_end() {
    for (error, expect) in [
        (LinkError::Closed, FinishReason::Failed),
        (
            LinkError::Refused("NetStream.Play.UnpublishNotify".into()),
            FinishReason::StreamEnded,
        ),
    ] {
        let mut sim = Sim::new(true);
        sim.add_viewer(ShardId(1), 1);
        let (a, _, _) = sim.links[0].clone();
        sim.link(a, LinkEvent::Started);
        sim.link(
            a,
            LinkEvent::Media {
                kind: MediaKind::Video,
                timestamp: 0,
                body: avc_header(),
            },
        );
        sim.link(
            a,
            LinkEvent::Media {
                kind: MediaKind::Video,
                timestamp: 0,
                body: picture(true),
            },
        );
        sim.now = 100;
        sim.link(a, LinkEvent::Failed(error.clone()));
        assert_eq!(sim.owner.view().phase, MasterPhase::Grace);
        let (b, _, _) = sim.links[0].clone();
        sim.link(b, LinkEvent::Failed(LinkError::Connect("refused".into())));
        assert!(
            sim.unavailable.is_empty(),
            "viewers in the grace are not answered early"
        );
        assert!(sim.viewers[&1].1.finished.is_none());
        sim.advance(1100);
        assert_eq!(sim.viewers[&1].1.finished, Some(expect), "{error:?}");
    }
}

#[test]
fn an_idle_pull_tears_down_and_frees_every_entry() {
    let mut sim = Sim::new(true);
    sim.add_viewer(ShardId(0), 1);
    sim.add_viewer(ShardId(1), 2);
    let (a, _, _) = sim.links[0].clone();
    sim.link(
        a,
        LinkEvent::Media {
            kind: MediaKind::Video,
            timestamp: 0,
            body: avc_header(),
        },
    );
    for n in 0..25u32 {
        sim.now = u64::from(n) * 40;
        sim.link(
            a,
            LinkEvent::Media {
                kind: MediaKind::Video,
                timestamp: n * 40,
                body: picture(n % 25 == 0),
            },
        );
    }
    sim.remove_viewer(1);
    sim.remove_viewer(2);
    assert!(sim.replicas.is_empty());
    assert!(!sim.freed, "the pull lingers for the idle time");
    // Media keeps coming while nobody watches; the idle deadline is 5 s after the last one left.
    let left = sim.now;
    let mut t = left;
    while !sim.freed {
        t += 100;
        sim.advance(t);
        if !sim.links.is_empty() {
            sim.link(
                a,
                LinkEvent::Media {
                    kind: MediaKind::Video,
                    timestamp: t as u32,
                    body: picture(false),
                },
            );
        }
        assert!(t <= left + 5000, "not freed by {t}");
    }
    assert_eq!(t, left + 5000);
    assert!(sim.links.is_empty(), "the upstream connection is closed");
    assert!(sim.hls.last().is_none_or(|s| s.ended));
    assert_eq!(sim.owner.view().source, Source::None);
}

#[test]
fn an_edge_publish_is_forwarded_and_its_backlog_overflows_to_a_keyframe() {
    let mut sim = Sim::new(true);
    sim.publish(P1);
    let (fw, role, name) = sim.links[0].clone();
    assert_eq!((role, name.as_str()), (LinkRole::Forward, "cam"));
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 3, 10);
    assert!(
        sim.forward_queue.is_empty(),
        "nothing queued before the origin took it"
    );
    assert!(sim.link(fw, LinkEvent::Started));
    // The session starts from the join frames: two headers and the GOP so far.
    let mut got = Vec::new();
    while let Some(f) = sim.forward_queue.pop() {
        got.push(f.timestamp_ms);
    }
    assert_eq!(got, vec![0, 0, 0, 40, 80]);
    // The origin stops reading: 2000 bytes of backlog at most.
    for n in 3..310u32 {
        let body = Bytes::from(
            vec![if n % 100 == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0]
                .into_iter()
                .chain(std::iter::repeat_n(0xab, 95))
                .collect::<Vec<u8>>(),
        );
        sim.media(P1, MediaKind::Video, n * 40, body);
    }
    assert!(sim.forward_queue.dropped() > 0);
    let first = sim.forward_queue.pop().expect("something queued");
    assert!(
        first.flags.sync_point,
        "after an overflow the queue resumes at a keyframe"
    );
    // The origin goes away: the next one, and the stream going on meanwhile.
    assert!(!sim.link(fw, LinkEvent::Failed(LinkError::Closed)));
    assert_eq!(sim.links.len(), 1);
    assert_ne!(sim.links[0].0, fw);
    let _ = FrameFlags::default();
}

#[test]
fn a_pull_follows_the_stream_to_where_the_registry_places_it() {
    let mut sim = Sim::new(true);
    let at = |h: &str| OriginUrl::parse(&format!("rtmp://{h}:1935/live")).ok();
    let upstream = |ts: u32, body: Bytes| LinkEvent::Media {
        kind: MediaKind::Video,
        timestamp: ts,
        body,
    };
    sim.owner.handle_located(at("n1"), 0, &mut sim.effects);
    sim.run();
    assert!(
        sim.links.is_empty(),
        "nobody watches: nothing is pulled yet"
    );
    sim.add_viewer(ShardId(1), 1);
    let n1 = sim.links[0].0;
    assert_eq!(
        sim.urls[&n1], "rtmp://n1:1935/live",
        "the registry's node comes first"
    );
    sim.link(n1, LinkEvent::Started);
    sim.link(n1, upstream(0, avc_header()));
    for n in 0..5u32 {
        sim.now = u64::from(n) * 40;
        sim.link(n1, upstream(n * 40, picture(n == 0)));
    }
    // The publisher moved to n2, which registered the stream: the pull moves at once.
    sim.now = 300;
    sim.owner.handle_located(at("n2"), 300, &mut sim.effects);
    sim.run();
    assert_eq!(sim.links.len(), 1, "{:?}", sim.links);
    let n2 = sim.links[0].0;
    assert_eq!(sim.urls[&n2], "rtmp://n2:1935/live");
    assert_eq!(
        sim.owner.view().phase,
        MasterPhase::Grace,
        "viewers wait, connected"
    );
    sim.link(n2, LinkEvent::Started);
    sim.link(n2, upstream(50_000, avc_header()));
    for n in 0..5u32 {
        sim.now = 400 + u64::from(n) * 40;
        sim.link(n2, upstream(50_000 + n * 40, picture(n == 0)));
    }
    let pics = sim.viewers[&1].1.pictures();
    assert_eq!(pics.len(), 10);
    assert!(
        pics.windows(2).all(|w| w[0].0 < w[1].0),
        "monotonic across the move"
    );
    // The same place again, or the holder gone: the flowing pull is left alone.
    sim.owner.handle_located(at("n2"), 700, &mut sim.effects);
    sim.owner.handle_located(None, 700, &mut sim.effects);
    sim.run();
    assert_eq!(sim.links, [(n2, LinkRole::Pull, "cam".to_string())]);
    assert_eq!(sim.owner.view().upstream.unwrap().origin.host, "n2");
}

#[test]
fn registry_only_viewers_wait_until_the_stream_is_placed() {
    let mut config = config(true);
    config.edge.as_mut().unwrap().origins.clear();
    let mut sim = Sim::new(true);
    sim.owner = Owner::new(
        StreamKey::new("live", "cam").unwrap(),
        Arc::new(config),
        VecStore,
        77,
    );
    sim.add_viewer(ShardId(1), 1);
    assert!(sim.links.is_empty(), "no origin is known");
    assert_eq!(sim.owner.view().upstream, None);
    sim.owner.handle_located(
        OriginUrl::parse("rtmp://n1/live").ok(),
        10,
        &mut sim.effects,
    );
    sim.run();
    assert_eq!(sim.links.len(), 1);
    assert_eq!(sim.urls[&sim.links[0].0], "rtmp://n1:1935/live");
}

#[test]
fn an_edge_forwards_to_the_registry_origins_first_and_a_pulling_origin_keeps_its_publishes() {
    let at = |h: &str| OriginUrl::parse(&format!("rtmp://{h}/live")).unwrap();
    let mut sim = Sim::new(true);
    sim.publish_via(P1, vec![at("least"), at("a")]);
    let (fw, role, _) = sim.links[0].clone();
    assert_eq!(role, LinkRole::Forward);
    assert_eq!(
        sim.urls[&fw], "rtmp://least:1935/live",
        "least loaded first"
    );
    // It fails: the next one is the registry's second origin, then the static `b` (the
    // static `a` is not tried twice in a row).
    sim.link(fw, LinkEvent::Failed(LinkError::Closed));
    let next = sim.links[0].0;
    assert_eq!(sim.urls[&next], "rtmp://a:1935/live");
    sim.link(next, LinkEvent::Failed(LinkError::Closed));
    let next = sim.links[0].0;
    assert_eq!(sim.urls[&next], "rtmp://b:1935/live");

    // An origin in pull mode: no static origins, no forwarding.
    let mut config = config(true);
    let edge = config.edge.as_mut().unwrap();
    edge.origins.clear();
    edge.forward = false;
    let pulling = Arc::new(config);
    let mut sim = Sim::new(true);
    sim.owner = Owner::new(
        StreamKey::new("live", "cam").unwrap(),
        Arc::clone(&pulling),
        VecStore,
        77,
    );
    sim.publish_via(P1, vec![at("least")]);
    assert!(sim.links.is_empty(), "the publish stays here");
    assert_eq!(sim.owner.view().source, Source::Publisher);
    // and it still pulls what the registry places on another node, for its viewers.
    let mut sim2 = Sim::new(true);
    sim2.owner = Owner::new(
        StreamKey::new("live", "other").unwrap(),
        pulling,
        VecStore,
        78,
    );
    sim2.add_viewer(ShardId(1), 1);
    assert!(sim2.links.is_empty());
    sim2.owner
        .handle_located(Some(at("n1")), 10, &mut sim2.effects);
    sim2.run();
    assert_eq!(sim2.links.len(), 1);
    assert_eq!(sim2.links[0].1, LinkRole::Pull);
    assert_eq!(sim2.urls[&sim2.links[0].0], "rtmp://n1:1935/live");
}

/// An HLS segment of 1 s (25 pictures, a keyframe first, and AAC) from `start_ms`.
fn hls_segment(sim: &mut Sim, seq: u64, start_ms: u64) {
    let pieces = crate::hls::feed::tests::segment(start_ms, 0);
    sim.owner
        .handle_hls_segment(seq, seq, false, pieces, sim.now, &mut sim.effects);
    sim.run();
}

#[test]
fn at_an_hls_only_edge_rtmp_viewers_are_fed_from_the_hls_pull_and_the_feed_idles_out() {
    let mut sim = Sim::hls_only_edge();
    sim.now = 1_000;
    sim.add_viewer(ShardId(1), 10);
    assert_eq!(sim.feeds_started, vec![None], "one feed asked for");
    assert!(sim.owner.fed_by_hls());
    assert!(
        sim.links.is_empty(),
        "no RTMP link: there is no RTMP origin"
    );
    // A second shard's viewer: the same feed.
    sim.add_viewer(ShardId(2), 20);
    assert_eq!(sim.feeds_started.len(), 1);
    // The pull's segments: frames are published as their time comes.
    hls_segment(&mut sim, 7, 7_000);
    let early = sim.viewers[&10].1.pictures();
    assert_eq!(early.first(), Some(&(0, true)), "{early:?}");
    assert!(early.len() < 3, "paced, not all at once: {early:?}");
    hls_segment(&mut sim, 8, 8_000);
    sim.advance(sim.now + 2_000);
    for id in [10, 20] {
        let v = &sim.viewers[&id].1;
        let pics = v.pictures();
        assert_eq!(pics.len(), 50, "viewer {id}");
        assert!(
            pics.windows(2).all(|w| w[1].0 == w[0].0 + 40),
            "viewer {id}: {pics:?}"
        );
        // Each track's sequence header came before its frames.
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let first = v.got.iter().find(|g| g.0 == kind);
            assert!(
                first.is_some_and(|g| g.3),
                "viewer {id}: {kind:?} {first:?}"
            );
        }
    }
    // The HLS viewers get the origin's segments: the owner segments nothing.
    assert!(sim.hls.is_empty());
    assert_eq!(sim.owner.view().source, Source::Upstream);
    // A local publish cannot take a stream the feed publishes.
    sim.publish(P1);
    assert!(sim.owner.fed_by_hls());
    // Everyone leaves: the feed ends after upstream_idle_ms, and the stream with it.
    sim.remove_viewer(10);
    sim.remove_viewer(20);
    sim.advance(sim.now + 4_000);
    assert_eq!(sim.feeds_stopped, 0);
    assert!(!sim.freed);
    sim.advance(sim.now + 1_500);
    assert_eq!(sim.feeds_stopped, 1);
    assert!(!sim.owner.fed_by_hls());
    assert!(sim.freed);
}

#[test]
fn a_local_publish_replaces_a_feed_that_has_published_nothing() {
    let mut sim = Sim::hls_only_edge();
    sim.add_viewer(ShardId(1), 10);
    assert!(sim.owner.fed_by_hls());
    sim.publish(P1);
    assert_eq!(sim.feeds_stopped, 1);
    assert!(!sim.owner.fed_by_hls());
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 3, 10);
    assert_eq!(sim.viewers[&10].1.pictures().len(), 3);
    // No RTMP origin to forward it to: it stays here.
    assert!(sim.links.is_empty());
}

#[test]
fn when_the_hls_pull_under_a_feed_ends_so_does_the_stream() {
    let mut sim = Sim::hls_only_edge();
    sim.add_viewer(ShardId(1), 10);
    hls_segment(&mut sim, 3, 3_000);
    assert!(!sim.viewers[&10].1.pictures().is_empty());
    sim.owner.handle_hls_pull_ended(&mut sim.effects);
    sim.run();
    assert_eq!(sim.feeds_stopped, 1);
    assert!(!sim.owner.fed_by_hls());
    assert_eq!(sim.viewers[&10].1.finished, Some(FinishReason::StreamEnded));
    // A new play starts a new feed.
    sim.add_viewer(ShardId(1), 11);
    assert_eq!(sim.feeds_started.len(), 2);
}

/// An upgrade's successor pulls a stream whose publisher stayed on its predecessor (origin
/// app `*`: the stream's own app) until the publisher moves over: its local publish takes
/// the stream from the live pull, which is stopped, and the viewer goes on with later
/// timestamps. (Without `local_publish_wins`, as at an edge, the publish is refused.)
#[test]
fn a_local_publish_takes_a_relayed_stream_over_from_its_pull() {
    let relay = |wins: bool| {
        let mut c = config(true);
        if let Some(e) = &mut c.edge {
            e.origins = vec![OriginUrl::parse("rtmp://127.0.0.1:40000/*").unwrap()];
            e.forward = false;
            e.local_publish_wins = wins;
        }
        let mut sim = Sim::new(true);
        sim.owner = Owner::new(sim.owner.key().clone(), Arc::new(c), VecStore, 77);
        sim
    };
    let mut sim = relay(true);
    sim.add_viewer(ShardId(1), 1);
    let (link, role, name) = sim.links[0].clone();
    assert_eq!((role, name.as_str()), (LinkRole::Pull, "cam"));
    assert_eq!(
        sim.urls[&link], "rtmp://127.0.0.1:40000/live",
        "the stream's own app"
    );
    let upstream = |ts: u32, body: Bytes| LinkEvent::Media {
        kind: MediaKind::Video,
        timestamp: ts,
        body,
    };
    sim.link(link, LinkEvent::Started);
    sim.link(link, upstream(9000, avc_header()));
    for n in 0..10u32 {
        sim.now = u64::from(n) * 40;
        sim.link(link, upstream(9000 + n * 40, picture(n == 0)));
    }
    sim.now = 500;
    sim.publish(P1);
    assert!(sim.links.is_empty(), "the pull is stopped");
    assert_eq!(sim.owner.view().source, Source::Publisher);
    sim.headers(P1);
    pictures(&mut sim, P1, 0, 5, 5);
    let v = &sim.viewers[&1].1;
    assert!(v.finished.is_none());
    let times: Vec<u64> = v.pictures().iter().map(|p| p.0).collect();
    assert_eq!(times.len(), 15, "{times:?}");
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {times:?}"
    );

    let mut sim = relay(false);
    sim.add_viewer(ShardId(1), 1);
    let (link, _, _) = sim.links[0].clone();
    sim.link(link, upstream(0, avc_header()));
    sim.link(link, upstream(0, picture(true)));
    sim.publish(P1);
    assert_eq!(sim.links.len(), 1, "an edge keeps its pull");
    assert_eq!(sim.owner.view().source, Source::Upstream);
}
