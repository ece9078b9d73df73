//! The forwarding of a publish made at an edge to an origin, sans-IO: which origin, which
//! connection, when to reconnect. The frames themselves wait in a
//! [`FrameQueue`](crate::queue::FrameQueue) the engine keeps beside the connection.
//!
//! A forward, in steps:
//! 1. A publish is accepted at the edge: connect to the first origin.
//! 2. The origin says `NetStream.Publish.Start`: [`ForwardEffect::Join`] (the connection
//!    gets the stream's join frames first), then live frames.
//! 3. A failure (connect, loss, refusal, no start): the next origin at once; when every
//!    origin failed in a row, bounded backoff. No probing back: a live publish stays on the
//!    origin that took it ([`UpstreamTiming::forward`]).
//! 4. The stream ends: the connection closes.
//!
//! Must not: hold frames, know viewers or sockets, read a clock.

use crate::ids::LinkId;
use crate::pull::LinkIds;
use crate::upstream::{
    LinkError, LinkEvent, LinkState, OriginUrl, UpstreamAction, UpstreamPlanner, UpstreamTiming,
};

/// What the owner of a forward must do.
#[derive(Debug, Clone, PartialEq)]
pub enum ForwardEffect {
    /// Open a publishing connection.
    Connect {
        link: LinkId,
        url: OriginUrl,
    },
    /// Close one (it may have ended already).
    Disconnect(LinkId),
    /// The origin took the publish: send it the join frames, then live frames.
    Join,
    Note(ForwardNote),
}

/// What happened, for the log and the counters.
#[derive(Debug, Clone, PartialEq)]
pub enum ForwardNote {
    Publishing { origin: OriginUrl },
    Failed { origin: OriginUrl, error: LinkError },
}

/// The forward's connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardLink {
    pub id: LinkId,
    pub url: OriginUrl,
    pub state: LinkState,
    pub since_ms: u64,
}

/// One stream's forward.
#[derive(Debug)]
pub struct Forward {
    planner: UpstreamPlanner,
    stream_name: String,
    link: Option<ForwardLink>,
    /// The origin last tried, while backing off.
    last_origin: OriginUrl,
    backoff_since_ms: u64,
}

impl Forward {
    pub fn new(
        origins: Vec<OriginUrl>,
        stream_name: String,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<ForwardEffect>,
    ) -> Self {
        let (planner, first) = UpstreamPlanner::new(origins, UpstreamTiming::forward(), now_ms);
        let last_origin = match &first {
            UpstreamAction::Connect { url, .. } => url.clone(),
            _ => unreachable!("a planner starts with a connect"),
        };
        let mut f = Self {
            planner,
            stream_name,
            link: None,
            last_origin,
            backoff_since_ms: now_ms,
        };
        f.run(Some(first), ids, now_ms, out);
        f
    }

    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The connection and its state; `None` while backing off.
    pub fn link(&self) -> Option<&ForwardLink> {
        self.link.as_ref()
    }

    /// What `/api/v1/streams` shows: the link, or the origin it backs off from.
    pub fn view(&self) -> (OriginUrl, LinkState, u64) {
        match &self.link {
            Some(l) => (l.url.clone(), l.state, l.since_ms),
            None => (
                self.last_origin.clone(),
                LinkState::Backoff,
                self.backoff_since_ms,
            ),
        }
    }

    /// Whether live frames go to the origin now.
    pub fn is_publishing(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.state == LinkState::Publishing)
    }

    pub fn has_link(&self, link: LinkId) -> bool {
        self.link.as_ref().is_some_and(|l| l.id == link)
    }

    /// A report from the forward's connection; whether it is still wanted.
    pub fn handle_link_event(
        &mut self,
        link: LinkId,
        ev: LinkEvent,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<ForwardEffect>,
    ) -> bool {
        if !self.has_link(link) {
            return false;
        }
        let error = match ev {
            LinkEvent::Started => {
                if let Some(l) = &mut self.link {
                    l.state = LinkState::Publishing;
                    l.since_ms = now_ms;
                    out.push(ForwardEffect::Note(ForwardNote::Publishing {
                        origin: l.url.clone(),
                    }));
                }
                out.push(ForwardEffect::Join);
                return true;
            }
            // An origin has nothing to send a publisher.
            LinkEvent::Media { .. } | LinkEvent::Metadata(_) => return true,
            LinkEvent::Failed(e) => e,
            LinkEvent::Redirect(url) => LinkError::PublishRedirected(url.to_string()),
        };
        let why = error.failure();
        if let Some(old) = self.link.take() {
            out.push(ForwardEffect::Disconnect(old.id));
            out.push(ForwardEffect::Note(ForwardNote::Failed {
                origin: old.url,
                error,
            }));
        }
        self.backoff_since_ms = now_ms;
        let next = self.planner.handle_failure(why, now_ms);
        self.run(next, ids, now_ms, out);
        false
    }

    /// When [`Forward::handle_timeout`] wants to run (the end of a backoff).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.planner.poll_timeout()
    }

    pub fn handle_timeout(&mut self, ids: &mut LinkIds, now_ms: u64, out: &mut Vec<ForwardEffect>) {
        if self.planner.poll_timeout().is_some_and(|t| now_ms >= t) {
            let next = self
                .planner
                .handle_timeout(now_ms)
                .into_iter()
                .find(|a| matches!(a, UpstreamAction::Connect { .. }));
            self.run(next, ids, now_ms, out);
        }
    }

    /// Closes the connection (the stream ended).
    pub fn stop(&mut self, out: &mut Vec<ForwardEffect>) {
        if let Some(l) = self.link.take() {
            out.push(ForwardEffect::Disconnect(l.id));
        }
    }

    fn run(
        &mut self,
        action: Option<UpstreamAction>,
        ids: &mut LinkIds,
        now_ms: u64,
        out: &mut Vec<ForwardEffect>,
    ) {
        if let Some(UpstreamAction::Connect { url, .. }) = action {
            let id = ids.allocate();
            self.last_origin = url.clone();
            if let Some(old) = self.link.replace(ForwardLink {
                id,
                url: url.clone(),
                state: LinkState::Connecting,
                since_ms: now_ms,
            }) {
                out.push(ForwardEffect::Disconnect(old.id));
            }
            out.push(ForwardEffect::Connect { link: id, url });
        }
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

    fn connect_of(out: &[ForwardEffect]) -> Option<(LinkId, String)> {
        out.iter().find_map(|e| match e {
            ForwardEffect::Connect { link, url } => Some((*link, url.host.clone())),
            _ => None,
        })
    }

    #[test]
    fn starts_joins_fails_over_backs_off_and_stops() {
        let mut ids = LinkIds::new(3);
        let mut out = Vec::new();
        let mut f = Forward::new(origins(), "cam".into(), &mut ids, 0, &mut out);
        let (a, host) = connect_of(&out).unwrap();
        assert_eq!(host, "a");
        assert!(!f.is_publishing());
        out.clear();
        assert!(f.handle_link_event(a, LinkEvent::Started, &mut ids, 10, &mut out));
        assert!(out.contains(&ForwardEffect::Join));
        assert!(f.is_publishing());
        assert_eq!(
            f.poll_timeout(),
            None,
            "a publishing forward waits for nothing"
        );
        out.clear();
        assert!(!f.handle_link_event(
            a,
            LinkEvent::Failed(LinkError::Closed),
            &mut ids,
            20,
            &mut out
        ));
        let (b, host) = connect_of(&out).unwrap();
        assert_eq!(host, "b");
        out.clear();
        let refused = LinkEvent::Failed(LinkError::Refused("NetStream.Publish.BadName".into()));
        f.handle_link_event(b, refused, &mut ids, 30, &mut out);
        assert_eq!(connect_of(&out), None, "both failed in a row: backoff");
        assert_eq!(f.view().1, LinkState::Backoff);
        assert_eq!(f.poll_timeout(), Some(130));
        out.clear();
        f.handle_timeout(&mut ids, 130, &mut out);
        let (c, host) = connect_of(&out).unwrap();
        assert_eq!(host, "a");
        out.clear();
        f.stop(&mut out);
        assert_eq!(out, vec![ForwardEffect::Disconnect(c)]);
        // Reports of links that are gone are not wanted.
        assert!(!f.handle_link_event(a, LinkEvent::Started, &mut ids, 200, &mut Vec::new()));
    }

    #[test]
    fn a_redirected_publish_counts_as_a_refusal() {
        let mut ids = LinkIds::new(3);
        let mut out = Vec::new();
        let mut f = Forward::new(origins(), "cam".into(), &mut ids, 0, &mut out);
        let (a, _) = connect_of(&out).unwrap();
        out.clear();
        let to = OriginUrl::parse("rtmp://c/live").unwrap();
        f.handle_link_event(a, LinkEvent::Redirect(to), &mut ids, 5, &mut out);
        assert_eq!(out[0], ForwardEffect::Disconnect(a));
        assert!(matches!(
            &out[1],
            ForwardEffect::Note(ForwardNote::Failed { error: LinkError::PublishRedirected(u), .. }) if u.contains("rtmp://c")
        ));
        assert_eq!(
            connect_of(&out).unwrap().1,
            "b",
            "not followed: the next origin"
        );
    }
}
