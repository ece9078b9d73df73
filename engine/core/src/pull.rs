//! The edge pull of one stream, sans-IO: which upstream connections exist (the active one
//! and a probe of the preferred origin), what their reports mean, when to fail over, when
//! the pull is idle. Its [`UpstreamPlanner`] decides the origins; this decides the links.
//!
//! A pull, in steps:
//! 1. Demand (a viewer, or an HLS playlist request) for a stream nobody publishes here
//!    creates it; it connects to the first origin ([`PullEffect::Connect`]).
//! 2. The active link's first media makes it the stream's publisher ([`PullEffect::Publish`]);
//!    its media follows ([`PullEffect::Media`]).
//! 3. A failure (connect, loss, refusal, redirect, no media for the media timeout) unpublishes
//!    the link (viewers wait in the master's grace) and connects the next origin; its media
//!    republishes with fresh headers and rebased timestamps.
//! 4. On a fallback origin, the preferred one is probed; a probe that delivers media becomes
//!    the active link and the old one is dropped.
//! 5. No subscriber and no demand for `idle_ms`: [`PullEffect::Idle`]; the owner ends the
//!    stream and drops the pull.
//!
//! Every link it opened is closed with a [`PullEffect::Disconnect`] once it is not wanted,
//! also when it ended by itself: the effects say exactly which connections should exist.
//!
//! Must not: know the stream master, viewers or sockets; read a clock.

use std::collections::HashMap;

use bytes::Bytes;

use crate::ids::LinkId;
use crate::media::{MediaKind, StreamKey};
use crate::stream::{Departure, PublisherId};
use crate::upstream::{
    Failure, LinkError, LinkEvent, LinkState, OriginUrl, UpstreamAction, UpstreamPlanner,
    UpstreamTiming,
};

/// What the owner of a pull must do.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEffect {
    /// Open an upstream connection (`probe`: a second one, to the preferred origin).
    Connect {
        link: LinkId,
        url: OriginUrl,
        probe: bool,
    },
    /// Close an upstream connection (it may have ended already).
    Disconnect(LinkId),
    /// `publisher` (the active link) delivers media: it publishes the stream from now on.
    Publish(PublisherId),
    /// Media of the active link.
    Media {
        publisher: PublisherId,
        kind: MediaKind,
        timestamp: u32,
        body: Bytes,
    },
    Metadata {
        publisher: PublisherId,
        body: Bytes,
    },
    /// `publisher` is gone (failover): unpublish it, viewers wait in the grace period. `how`
    /// says whether the origin ended the stream (an end, if nothing takes over) or the link
    /// was lost (a failure).
    Unpublish {
        publisher: PublisherId,
        how: Departure,
    },
    /// Every origin was tried in a row and none gives the stream: viewers still waiting for
    /// it are answered now (`not_found`: each origin said it has no such stream; otherwise
    /// some could not be reached). Not when an origin took the play and sent nothing (it
    /// may be waiting for its publisher): then the viewers' play-wait decides. The pull
    /// backs off and goes on.
    Unavailable {
        not_found: bool,
    },
    /// Nobody wanted the stream for the idle time: end it and drop the pull.
    Idle,
    /// For the log and the counters.
    Note(PullNote),
}

/// What happened, for the log and the counters; decided already.
#[derive(Debug, Clone, PartialEq)]
pub enum PullNote {
    Flowing {
        origin: OriginUrl,
    },
    Failed {
        origin: OriginUrl,
        error: LinkError,
    },
    Redirected {
        from: OriginUrl,
        to: OriginUrl,
    },
    PreferredBack {
        origin: OriginUrl,
    },
    /// The pull moved from one origin to another (a retry of the same origin is none).
    Failover {
        from: OriginUrl,
        to: OriginUrl,
    },
}

/// What one round of origins said, the strongest answer kept: an origin that may still
/// deliver (`Waiting`) over one that could not be reached, over "no such stream".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Round {
    /// Every origin so far answered that it has no such stream.
    NotFound,
    /// Some origin could not be reached (connect, loss, no answer to the play).
    Unreachable,
    /// Some origin took the play and sent nothing yet: it may be waiting for its publisher.
    Waiting,
}

impl Round {
    fn add(&mut self, answer: Round) {
        *self = (*self).max(answer);
    }
}

/// One upstream connection of a pull.
#[derive(Debug, Clone, PartialEq)]
pub struct PullLink {
    pub id: LinkId,
    /// The connection publishes into the stream's master under this id.
    pub publisher: PublisherId,
    pub url: OriginUrl,
    pub state: LinkState,
    /// Shard-clock ms when it entered `state`.
    pub since_ms: u64,
    /// Its media has started: it publishes the stream.
    pub flowing: bool,
}

/// Allocates the link ids of one owner (and the publisher id each link publishes as).
#[derive(Debug, Clone)]
pub struct LinkIds {
    owner: u64,
    next: u32,
}

/// Publisher ids of upstream links have the top bit set; connection ids never do.
const LINK_PUBLISHER: u64 = 1 << 63;

impl LinkIds {
    /// `owner`: a machine-unique number for this owner state (the engine's connection ids).
    pub fn new(owner: u64) -> Self {
        Self { owner, next: 1 }
    }

    pub fn allocate(&mut self) -> LinkId {
        let n = self.next;
        self.next = self.next.wrapping_add(1);
        LinkId {
            owner: self.owner,
            n,
        }
    }

    /// The publisher a link publishes as.
    pub fn publisher(link: LinkId) -> PublisherId {
        PublisherId(LINK_PUBLISHER | u64::from(link.n))
    }
}

/// One stream's pull.
#[derive(Debug)]
pub struct Pull {
    planner: UpstreamPlanner,
    /// `{stream}` plus the first viewer's `?query`.
    stream_name: String,
    media_timeout_ms: u64,
    idle_ms: u64,
    active: Option<PullLink>,
    probe: Option<PullLink>,
    /// Someone wanted the stream at this time (a subscriber present, or a demand).
    last_used_ms: u64,
    /// Whether subscribers are present (then the pull is never idle).
    in_use: bool,
    last_origin: Option<OriginUrl>,
    /// What this round of origins said so far.
    round: Round,
    /// Moves from one origin to another.
    pub failovers: u64,
}

impl Pull {
    /// Starts a pull of `stream_name` from `origins`, connecting the first at once.
    pub fn new(
        origins: Vec<OriginUrl>,
        stream_name: String,
        media_timeout_ms: u64,
        idle_ms: u64,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<PullEffect>,
    ) -> Self {
        let (planner, first) =
            UpstreamPlanner::new(origins, UpstreamTiming::pull(media_timeout_ms), now_ms);
        let mut p = Self {
            planner,
            stream_name,
            media_timeout_ms,
            idle_ms,
            active: None,
            probe: None,
            last_used_ms: now_ms,
            in_use: false,
            last_origin: None,
            round: Round::NotFound,
            failovers: 0,
        };
        p.run(vec![first], ids, now_ms, out);
        p
    }

    /// What the pull asks the origin for: `{stream}[?query]`.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The active link, if any (none while backing off).
    pub fn active(&self) -> Option<&PullLink> {
        self.active.as_ref()
    }

    /// The origin last tried (what a backing-off pull shows).
    pub fn last_origin(&self) -> Option<&OriginUrl> {
        self.last_origin.as_ref()
    }

    /// Whether `link` is one of this pull's connections.
    pub fn has_link(&self, link: LinkId) -> bool {
        self.active.as_ref().is_some_and(|l| l.id == link)
            || self.probe.as_ref().is_some_and(|l| l.id == link)
    }

    /// Someone wants the stream now (an HLS playlist request, a new subscriber).
    pub fn handle_demand(&mut self, now_ms: u64) {
        self.last_used_ms = now_ms;
    }

    /// Subscribers came or all went: while any is there the pull is never idle; the idle
    /// time counts from the last one leaving.
    pub fn handle_in_use(&mut self, in_use: bool, now_ms: u64) {
        if self.in_use != in_use {
            self.in_use = in_use;
            self.last_used_ms = now_ms;
        }
    }

    /// A report from upstream connection `link`. Returns whether the connection is still
    /// wanted (a `false` tells its task to stop).
    pub fn handle_link_event(
        &mut self,
        link: LinkId,
        ev: LinkEvent,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<PullEffect>,
    ) -> bool {
        let is_active = self.active.as_ref().is_some_and(|l| l.id == link);
        let is_probe = self.probe.as_ref().is_some_and(|l| l.id == link);
        if !is_active && !is_probe {
            return false;
        }
        match ev {
            LinkEvent::Started => {
                if is_active {
                    self.set_active_state(LinkState::Playing, now_ms);
                }
                true
            }
            LinkEvent::Media { .. } | LinkEvent::Metadata(_) => {
                if is_probe {
                    if self.planner.handle_probe_media(now_ms) != Some(UpstreamAction::PromoteProbe)
                    {
                        return false;
                    }
                    let Some(new) = self.probe.take() else {
                        return false;
                    };
                    out.push(PullEffect::Note(PullNote::PreferredBack {
                        origin: new.url.clone(),
                    }));
                    let to = new.url.clone();
                    if let Some(old) = self.active.replace(new) {
                        out.push(PullEffect::Disconnect(old.id));
                        out.push(PullEffect::Unpublish {
                            publisher: old.publisher,
                            how: Departure::Unpublished,
                        });
                        self.note_move(old.url, to, out);
                    }
                    self.last_origin = self.active.as_ref().map(|l| l.url.clone());
                }
                let Some(active) = &mut self.active else {
                    return false;
                };
                self.planner.handle_media(now_ms);
                self.round = Round::NotFound;
                let publisher = active.publisher;
                if !active.flowing {
                    active.flowing = true;
                    active.state = LinkState::Playing;
                    active.since_ms = now_ms;
                    out.push(PullEffect::Publish(publisher));
                    out.push(PullEffect::Note(PullNote::Flowing {
                        origin: active.url.clone(),
                    }));
                }
                out.push(match ev {
                    LinkEvent::Media {
                        kind,
                        timestamp,
                        body,
                    } => PullEffect::Media {
                        publisher,
                        kind,
                        timestamp,
                        body,
                    },
                    LinkEvent::Metadata(body) => PullEffect::Metadata { publisher, body },
                    // Matched above.
                    _ => return true,
                });
                true
            }
            LinkEvent::Failed(_) | LinkEvent::Redirect(_) if is_probe => {
                if let Some(old) = self.probe.take() {
                    out.push(PullEffect::Disconnect(old.id));
                }
                let actions = self.planner.handle_probe_failure(now_ms);
                self.run(actions.into_iter().collect(), ids, now_ms, out);
                false
            }
            LinkEvent::Failed(error) => {
                self.fail_active(error, ids, now_ms, out);
                false
            }
            LinkEvent::Redirect(to) => {
                if let Some(old) = self.active.take() {
                    out.push(PullEffect::Disconnect(old.id));
                    out.push(PullEffect::Note(PullNote::Redirected {
                        from: old.url.clone(),
                        to: to.clone(),
                    }));
                    // Sent elsewhere: if nothing takes over, the stream was lost.
                    out.push(PullEffect::Unpublish {
                        publisher: old.publisher,
                        how: Departure::Lost,
                    });
                }
                let action = self.planner.handle_redirect(to, now_ms);
                self.run(vec![action], ids, now_ms, out);
                false
            }
        }
    }

    /// When [`Pull::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let idle = (!self.in_use).then(|| self.last_used_ms.saturating_add(self.idle_ms));
        match (self.planner.poll_timeout(), idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Deadlines: idle teardown, the media timeout, backoff, probes.
    pub fn handle_timeout(&mut self, ids: &mut LinkIds, now_ms: u64, out: &mut Vec<PullEffect>) {
        if !self.in_use && now_ms >= self.last_used_ms.saturating_add(self.idle_ms) {
            self.stop(out);
            out.push(PullEffect::Idle);
            return;
        }
        let backing_off = self.planner.is_backing_off();
        if self.planner.media_deadline().is_some_and(|d| now_ms >= d) {
            if let Some(old) = self.active.take() {
                out.push(PullEffect::Disconnect(old.id));
                out.push(PullEffect::Note(PullNote::Failed {
                    origin: old.url.clone(),
                    error: LinkError::NoMedia(self.media_timeout_ms),
                }));
                out.push(PullEffect::Unpublish {
                    publisher: old.publisher,
                    how: Departure::Lost,
                });
                // An origin that took the play and sent nothing may be waiting for its
                // publisher (its own play-wait): the viewers' play-wait decides. One that
                // never took it could not be reached.
                self.round.add(if old.state == LinkState::Playing {
                    Round::Waiting
                } else {
                    Round::Unreachable
                });
            }
        }
        if self.planner.poll_timeout().is_some_and(|t| now_ms >= t) {
            let actions = self.planner.handle_timeout(now_ms);
            self.run(actions, ids, now_ms, out);
        }
        self.check_round(backing_off, out);
    }

    /// After a failure: when it ended a round of origins (the planner now backs off), the
    /// viewers still waiting are answered.
    fn check_round(&mut self, was_backing_off: bool, out: &mut Vec<PullEffect>) {
        if !was_backing_off && self.planner.is_backing_off() {
            match std::mem::replace(&mut self.round, Round::NotFound) {
                Round::NotFound => out.push(PullEffect::Unavailable { not_found: true }),
                Round::Unreachable => out.push(PullEffect::Unavailable { not_found: false }),
                Round::Waiting => {}
            }
        }
    }

    /// Counts and notes a move from one origin to another.
    fn note_move(&mut self, from: OriginUrl, to: OriginUrl, out: &mut Vec<PullEffect>) {
        if from != to {
            self.failovers += 1;
            out.push(PullEffect::Note(PullNote::Failover { from, to }));
        }
    }

    /// Closes every connection (the owner drops the pull after this).
    pub fn stop(&mut self, out: &mut Vec<PullEffect>) {
        for l in self.active.take().into_iter().chain(self.probe.take()) {
            out.push(PullEffect::Disconnect(l.id));
        }
    }

    fn fail_active(
        &mut self,
        error: LinkError,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<PullEffect>,
    ) {
        let why: Failure = error.failure();
        if why != Failure::NotFound {
            self.round.add(Round::Unreachable);
        }
        let how = if error.is_end_of_stream() {
            Departure::Unpublished
        } else {
            Departure::Lost
        };
        if let Some(old) = self.active.take() {
            // Its task ended by itself; the owner forgets it all the same.
            out.push(PullEffect::Disconnect(old.id));
            out.push(PullEffect::Note(PullNote::Failed {
                origin: old.url.clone(),
                error,
            }));
            out.push(PullEffect::Unpublish {
                publisher: old.publisher,
                how,
            });
        }
        let backing_off = self.planner.is_backing_off();
        let actions = self.planner.handle_failure(why, now_ms);
        self.run(actions.into_iter().collect(), ids, now_ms, out);
        self.check_round(backing_off, out);
    }

    fn set_active_state(&mut self, state: LinkState, now_ms: u64) {
        if let Some(l) = &mut self.active {
            l.state = state;
            l.since_ms = now_ms;
        }
    }

    fn run(
        &mut self,
        actions: Vec<UpstreamAction>,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<PullEffect>,
    ) {
        for action in actions {
            match action {
                UpstreamAction::Connect { url, .. } => {
                    let link = self.new_link(url.clone(), ids, now_ms);
                    if let Some(from) = self.last_origin.replace(url.clone()) {
                        self.note_move(from, url.clone(), out);
                    }
                    out.push(PullEffect::Connect {
                        link: link.id,
                        url,
                        probe: false,
                    });
                    // A replaced connection was unpublished by whoever replaced it.
                    if let Some(old) = self.active.replace(link) {
                        out.push(PullEffect::Disconnect(old.id));
                    }
                }
                UpstreamAction::Probe { url } => {
                    let link = self.new_link(url.clone(), ids, now_ms);
                    out.push(PullEffect::Connect {
                        link: link.id,
                        url,
                        probe: true,
                    });
                    if let Some(old) = self.probe.replace(link) {
                        out.push(PullEffect::Disconnect(old.id));
                    }
                }
                UpstreamAction::DropProbe => {
                    if let Some(old) = self.probe.take() {
                        out.push(PullEffect::Disconnect(old.id));
                    }
                }
                // Done where the probe's media arrives.
                UpstreamAction::PromoteProbe => {}
            }
        }
    }

    fn new_link(&self, url: OriginUrl, ids: &mut LinkIds, now_ms: u64) -> PullLink {
        let id = ids.allocate();
        PullLink {
            id,
            publisher: LinkIds::publisher(id),
            url,
            state: LinkState::Connecting,
            since_ms: now_ms,
            flowing: false,
        }
    }
}

/// `{stream}` of `key` plus a viewer's `?query`: what a pull or a forward asks the origin
/// for (tokens keep working upstream).
pub fn upstream_stream_name(key: &StreamKey, query: Option<&str>) -> String {
    let name = key.stream();
    match query {
        Some(q) if !q.is_empty() => format!("{name}?{q}"),
        _ => name.to_string(),
    }
}

/// The sending side of HLS demand: a shard whose HLS viewers want a stream tells its owner
/// at most once per `every_ms` per stream, so playlist requests at any rate cost the mesh
/// one message a second.
#[derive(Debug)]
pub struct DemandLimiter {
    every_ms: u64,
    /// Entries older than this are forgotten.
    keep_ms: u64,
    last_sent: HashMap<StreamKey, u64>,
}

impl DemandLimiter {
    pub fn new(every_ms: u64, keep_ms: u64) -> Self {
        Self {
            every_ms,
            keep_ms: keep_ms.max(every_ms),
            last_sent: HashMap::new(),
        }
    }

    /// A playlist request for `key`: whether to tell the owner now.
    pub fn handle_request(&mut self, key: &StreamKey, now_ms: u64) -> bool {
        match self.last_sent.get_mut(key) {
            Some(t) if now_ms < t.saturating_add(self.every_ms) => false,
            Some(t) => {
                *t = now_ms;
                true
            }
            None => {
                self.last_sent.insert(key.clone(), now_ms);
                true
            }
        }
    }

    /// When old entries can be forgotten.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.last_sent
            .values()
            .min()
            .map(|t| t.saturating_add(self.keep_ms))
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let keep = self.keep_ms;
        self.last_sent
            .retain(|_, t| now_ms < t.saturating_add(keep));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Vec<OriginUrl> {
        ["rtmp://a/live", "rtmp://b/live"]
            .iter()
            .map(|u| OriginUrl::parse(u).unwrap())
            .collect()
    }

    fn connects(out: &[PullEffect]) -> Vec<(LinkId, String, bool)> {
        out.iter()
            .filter_map(|e| match e {
                PullEffect::Connect { link, url, probe } => Some((*link, url.host.clone(), *probe)),
                _ => None,
            })
            .collect()
    }

    fn media(ts: u32) -> LinkEvent {
        LinkEvent::Media {
            kind: MediaKind::Video,
            timestamp: ts,
            body: Bytes::from_static(b"\x17\x01\0\0\0"),
        }
    }

    #[test]
    fn first_media_publishes_and_a_failure_moves_to_the_next_origin() {
        let mut ids = LinkIds::new(7);
        let mut out = Vec::new();
        let mut p = Pull::new(
            origins(),
            "x?t=1".into(),
            1500,
            10_000,
            &mut ids,
            0,
            &mut out,
        );
        let first = connects(&out)[0].0;
        assert_eq!(connects(&out)[0].1, "a");
        out.clear();
        assert!(p.handle_link_event(first, LinkEvent::Started, &mut ids, 5, &mut out));
        assert!(p.handle_link_event(first, media(0), &mut ids, 10, &mut out));
        let publisher = LinkIds::publisher(first);
        assert_eq!(out[0], PullEffect::Publish(publisher));
        assert!(matches!(out[2], PullEffect::Media { timestamp: 0, .. }));
        out.clear();
        // Later media publishes nothing new.
        p.handle_link_event(first, media(40), &mut ids, 15, &mut out);
        assert!(matches!(out[..], [PullEffect::Media { timestamp: 40, .. }]));
        out.clear();
        let keep = p.handle_link_event(
            first,
            LinkEvent::Failed(LinkError::Closed),
            &mut ids,
            20,
            &mut out,
        );
        assert!(!keep);
        assert!(out.contains(&PullEffect::Unpublish {
            publisher,
            how: Departure::Lost
        }));
        assert_eq!(connects(&out)[0].1, "b");
        assert_eq!(p.failovers, 1);
        assert!(out.contains(&PullEffect::Note(PullNote::Failover {
            from: origins()[0].clone(),
            to: origins()[1].clone()
        })));
        // The old link's late reports are not wanted.
        assert!(!p.handle_link_event(first, media(40), &mut ids, 30, &mut Vec::new()));
    }

    #[test]
    fn no_media_fails_over_and_a_probe_takes_the_preferred_origin_back() {
        let mut ids = LinkIds::new(1);
        let mut out = Vec::new();
        let mut p = Pull::new(origins(), "x".into(), 1500, 60_000, &mut ids, 0, &mut out);
        p.handle_in_use(true, 0);
        out.clear();
        assert_eq!(p.poll_timeout(), Some(1500));
        p.handle_timeout(&mut ids, 1500, &mut out);
        assert!(out.iter().any(|e| matches!(
            e,
            PullEffect::Note(PullNote::Failed {
                error: LinkError::NoMedia(1500),
                ..
            })
        )));
        let b = connects(&out)[0].0;
        out.clear();
        p.handle_link_event(b, media(0), &mut ids, 1600, &mut out);
        // On the fallback: the probe comes 5 s after its media started.
        for t in (1700..6600).step_by(100) {
            p.handle_link_event(b, media(t as u32), &mut ids, t, &mut Vec::new());
        }
        out.clear();
        p.handle_timeout(&mut ids, 6600, &mut out);
        let c = connects(&out);
        let [(probe, ref host, true)] = c[..] else {
            panic!("{out:?}")
        };
        assert_eq!(host, "a");
        out.clear();
        assert!(p.handle_link_event(probe, media(100), &mut ids, 6700, &mut out));
        assert_eq!(
            out[..4],
            [
                PullEffect::Note(PullNote::PreferredBack {
                    origin: origins()[0].clone()
                }),
                PullEffect::Disconnect(b),
                PullEffect::Unpublish {
                    publisher: LinkIds::publisher(b),
                    how: Departure::Unpublished
                },
                PullEffect::Note(PullNote::Failover {
                    from: origins()[1].clone(),
                    to: origins()[0].clone()
                }),
            ]
        );
        assert_eq!(out[4], PullEffect::Publish(LinkIds::publisher(probe)));
        assert_eq!(p.failovers, 2, "a to b, and back");
        assert_eq!(p.active().unwrap().id, probe);
    }

    /// Regression: with one origin configured, `failovers` climbed to 8 while the pull
    /// retried it. A retry of the same origin is no failover; each round that fails answers
    /// the waiting viewers once.
    #[test]
    fn retries_of_the_only_origin_are_no_failovers() {
        let mut ids = LinkIds::new(3);
        let mut out = Vec::new();
        let only = vec![OriginUrl::parse("rtmp://a/live").unwrap()];
        let mut p = Pull::new(only, "x".into(), 1500, 60_000, &mut ids, 0, &mut out);
        p.handle_in_use(true, 0);
        let mut now = 0;
        let mut rounds = 0;
        for _ in 0..8 {
            let link = connects(&out).last().map(|c| c.0).unwrap();
            out.clear();
            now += 10;
            p.handle_link_event(
                link,
                LinkEvent::Failed(LinkError::Connect("refused".into())),
                &mut ids,
                now,
                &mut out,
            );
            rounds += out
                .iter()
                .filter(|e| matches!(e, PullEffect::Unavailable { not_found: false }))
                .count();
            // Through the backoff to the next attempt.
            while connects(&out).is_empty() {
                now = p.poll_timeout().unwrap();
                p.handle_timeout(&mut ids, now, &mut out);
            }
        }
        assert_eq!(p.failovers, 0);
        assert_eq!(rounds, 8, "every failed round is one answer");
        assert!(!out
            .iter()
            .any(|e| matches!(e, PullEffect::Note(PullNote::Failover { .. }))));
    }

    #[test]
    fn idle_counts_from_the_last_subscriber_and_demand_keeps_it() {
        let mut ids = LinkIds::new(1);
        let mut out = Vec::new();
        let mut p = Pull::new(origins(), "x".into(), 1500, 10_000, &mut ids, 0, &mut out);
        let a = connects(&out)[0].0;
        p.handle_in_use(true, 100);
        // Media keeps the media timeout away; with a subscriber there is no idle deadline.
        for t in (200..20_000).step_by(500) {
            p.handle_link_event(a, media(t as u32), &mut ids, t, &mut Vec::new());
        }
        assert_eq!(p.poll_timeout(), Some(19_700 + 1500));
        p.handle_in_use(false, 19_800);
        p.handle_link_event(a, media(20_000), &mut ids, 20_000, &mut Vec::new());
        assert_eq!(p.poll_timeout(), Some(21_500), "the media timeout first");
        // A playlist request at 25 s moves the idle deadline to 35 s.
        p.handle_demand(25_000);
        for t in (20_500..35_000).step_by(500) {
            p.handle_link_event(a, media(t as u32), &mut ids, t, &mut Vec::new());
        }
        let mut out = Vec::new();
        p.handle_timeout(&mut ids, 34_999, &mut out);
        assert!(!out.contains(&PullEffect::Idle));
        p.handle_timeout(&mut ids, 35_000, &mut out);
        assert_eq!(out, vec![PullEffect::Disconnect(a), PullEffect::Idle]);
    }

    #[test]
    fn demand_is_sent_once_a_second_per_stream() {
        let k = StreamKey::new("live", "x").unwrap();
        let mut d = DemandLimiter::new(1000, 10_000);
        assert!(d.handle_request(&k, 0));
        assert!(!d.handle_request(&k, 999));
        assert!(d.handle_request(&k, 1000));
        assert_eq!(d.poll_timeout(), Some(11_000));
        d.handle_timeout(11_000);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn stream_names_carry_the_query() {
        let k = StreamKey::new("live", "cam").unwrap();
        assert_eq!(upstream_stream_name(&k, Some("token=1")), "cam?token=1");
        assert_eq!(upstream_stream_name(&k, Some("")), "cam");
        assert_eq!(upstream_stream_name(&k, None), "cam");
    }
}
