//! Upstream planning for edge mode: which origin the owner shard pulls a stream from, when to
//! give up on it, and when to go back to the preferred one. Sans-IO: the engine reports what
//! happened (`handle_*`, with `now_ms`) and performs the [`UpstreamAction`]s it gets back.
//!
//! Failover, in steps:
//! 1. Start with the first origin (the preferred one).
//! 2. Connect failure, connection loss, "not found", or no media for `media_timeout_ms`:
//!    try the next origin at once. A redirect (SRS-style 302) connects to the given URL
//!    instead, without counting as a failure of the origin list.
//! 3. When every origin failed in a row, wait (exponential backoff, bounded) and start over.
//! 4. While playing from a fallback origin, probe the preferred one every `probe_ms`; when a
//!    probe delivers media, switch back to it.

use std::fmt;

/// An origin: `rtmp://HOST[:PORT]/APP` or `rtmps://HOST[:PORT]/APP` (RTMP over TLS, port 443
/// unless given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub tls: bool,
}

/// A URL that is not an RTMP origin.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an origin URL (rtmp[s]://HOST[:PORT]/APP): {0}")]
pub struct OriginUrlError(pub String);

impl OriginUrl {
    pub fn parse(url: &str) -> Result<Self, OriginUrlError> {
        let err = || OriginUrlError(url.to_string());
        let (rest, tls) = match url.strip_prefix("rtmps://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("rtmp://").ok_or_else(err)?, false),
        };
        let (authority, app) = rest.split_once('/').ok_or_else(err)?;
        let app = app.trim_end_matches('/');
        if app.is_empty() || app.contains('/') || authority.is_empty() {
            return Err(err());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse().map_err(|_| err())?)
            }
            _ => (authority.to_string(), if tls { 443 } else { 1935 }),
        };
        if host.is_empty() {
            return Err(err());
        }
        Ok(Self {
            host,
            port,
            app: app.to_string(),
            tls,
        })
    }
}

impl OriginUrl {
    /// The app `*` stands for each stream's own app (an upgrade's successor pulls
    /// `app/name` from its predecessor as it is); any other app is the origin's.
    pub fn for_stream(&self, key: &crate::media::StreamKey) -> OriginUrl {
        if self.app == "*" {
            OriginUrl {
                app: key.app().to_string(),
                ..self.clone()
            }
        } else {
            self.clone()
        }
    }
}

impl fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.app)
    }
}

/// Timing of the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTiming {
    /// No media for this long counts as a failure (`None`: media is not awaited, as for a
    /// forward, which sends it).
    pub media_timeout_ms: Option<u64>,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// How often a fallback probes the preferred origin (`None`: it stays where it is).
    pub probe_ms: Option<u64>,
}

impl Default for UpstreamTiming {
    fn default() -> Self {
        Self::pull(1500)
    }
}

impl UpstreamTiming {
    /// A pull: media must flow, and a fallback probes the preferred origin every 5 s.
    pub fn pull(media_timeout_ms: u64) -> Self {
        Self {
            media_timeout_ms: Some(media_timeout_ms),
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            probe_ms: Some(5000),
        }
    }

    /// A forward: it publishes, so there is no media to wait for, and once an origin took
    /// the publish it stays there (moving a live publish is a republish for every viewer).
    pub fn forward() -> Self {
        Self {
            media_timeout_ms: None,
            probe_ms: None,
            ..Self::pull(0)
        }
    }
}

/// Why an upstream connection ended. The engine's connection task says which; the owner
/// logs it and the planner weighs it ([`LinkError::failure`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Name resolution or TCP connect failed (or timed out).
    #[error("connect: {0}")]
    Connect(String),
    /// The origin closed the connection.
    #[error("the origin closed the connection")]
    Closed,
    #[error("read: {0}")]
    Read(String),
    #[error("write: {0}")]
    Write(String),
    /// The origin's bytes broke the protocol (or parsing them panicked).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An `onStatus` that means "not here": StreamNotFound, UnpublishNotify, BadName, …
    #[error("the origin answered {0}")]
    Refused(String),
    /// `_error` to createStream, play or publish.
    #[error("the origin refused a command")]
    CommandRefused,
    /// A forward's publish was never started.
    #[error("no NetStream.Publish.Start within {0} ms")]
    NoPublishStart(u64),
    /// An origin redirected a publish (forwards do not follow redirects).
    #[error("the origin redirects publishes to {0}")]
    PublishRedirected(String),
    /// The pull delivered no media for the media timeout.
    #[error("no media for {0} ms")]
    NoMedia(u64),
}

impl LinkError {
    /// Whether the origin said its stream ended (`UnpublishNotify`): an end, not a failure,
    /// for the viewers if nothing takes over.
    pub fn is_end_of_stream(&self) -> bool {
        matches!(self, LinkError::Refused(code) if code.ends_with("UnpublishNotify"))
    }

    /// What the planner makes of it.
    pub fn failure(&self) -> Failure {
        match self {
            LinkError::Connect(_) | LinkError::NoPublishStart(_) => Failure::ConnectFailed,
            LinkError::Closed
            | LinkError::Read(_)
            | LinkError::Write(_)
            | LinkError::Protocol(_) => Failure::ConnectionLost,
            LinkError::Refused(_) | LinkError::CommandRefused | LinkError::PublishRedirected(_) => {
                Failure::NotFound
            }
            LinkError::NoMedia(_) => Failure::MediaTimeout,
        }
    }
}

/// What an upstream connection reports to its stream's owner.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// `NetStream.Play.Start` or `NetStream.Publish.Start`.
    Started,
    Media {
        kind: crate::media::MediaKind,
        timestamp: u32,
        body: bytes::Bytes,
    },
    Metadata(bytes::Bytes),
    /// The connection is over; it reports nothing after this.
    Failed(LinkError),
    /// The origin sends us to another one (the connection is over).
    Redirect(OriginUrl),
}

/// Where an upstream connection stands, as `/api/v1/streams` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Playing,
    Publishing,
    /// Every origin failed; waiting before the next round.
    Backoff,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Playing => "playing",
            LinkState::Publishing => "publishing",
            LinkState::Backoff => "backoff",
        }
    }
}

/// Why an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ConnectFailed,
    ConnectionLost,
    NotFound,
    MediaTimeout,
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAction {
    /// Open the pull to this origin (index into the list, or `None` for a redirect target).
    Connect {
        origin: Option<usize>,
        url: OriginUrl,
    },
    /// Open a second pull to the preferred origin, to see whether it is back.
    Probe { url: OriginUrl },
    /// Switch viewers to the probe's connection and close the current one.
    PromoteProbe,
    /// Close the probe connection (it failed or is no longer needed).
    DropProbe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Connecting or playing from `origin`; `last_media_ms` starts at the attempt.
    Active {
        origin: Option<usize>,
        last_media_ms: u64,
    },
    /// Every origin failed; wait until `until_ms`.
    Backoff { until_ms: u64 },
}

/// The upstream plan of one stream.
#[derive(Debug)]
pub struct UpstreamPlanner {
    origins: Vec<OriginUrl>,
    timing: UpstreamTiming,
    state: State,
    /// Origins that failed since the last success, to know when a round is over.
    failed_in_round: usize,
    backoff_ms: u64,
    next_probe_ms: Option<u64>,
    probing: bool,
    pub failovers: u64,
}

impl UpstreamPlanner {
    /// Starts planning; the first action connects to the preferred origin.
    pub fn new(
        origins: Vec<OriginUrl>,
        timing: UpstreamTiming,
        now_ms: u64,
    ) -> (Self, UpstreamAction) {
        assert!(!origins.is_empty(), "edge mode needs at least one origin");
        let url = origins[0].clone();
        let planner = Self {
            origins,
            timing,
            state: State::Active {
                origin: Some(0),
                last_media_ms: now_ms,
            },
            failed_in_round: 0,
            backoff_ms: timing.backoff_initial_ms,
            next_probe_ms: None,
            probing: false,
            failovers: 0,
        };
        (
            planner,
            UpstreamAction::Connect {
                origin: Some(0),
                url,
            },
        )
    }

    /// The origin in use (`None` while backing off or on a redirect target).
    pub fn current(&self) -> Option<usize> {
        match self.state {
            State::Active { origin, .. } => origin,
            State::Backoff { .. } => None,
        }
    }

    /// Whether every origin failed and the planner waits before the next round.
    pub fn is_backing_off(&self) -> bool {
        matches!(self.state, State::Backoff { .. })
    }

    /// When the active pull counts as failed without media (`None` while backing off, or
    /// when media is not awaited).
    pub fn media_deadline(&self) -> Option<u64> {
        match self.state {
            State::Active { last_media_ms, .. } => self
                .timing
                .media_timeout_ms
                .map(|t| last_media_ms.saturating_add(t)),
            State::Backoff { .. } => None,
        }
    }

    /// Media arrived on the active pull.
    pub fn handle_media(&mut self, now_ms: u64) {
        if let State::Active {
            origin,
            last_media_ms,
        } = &mut self.state
        {
            *last_media_ms = now_ms;
            self.failed_in_round = 0;
            self.backoff_ms = self.timing.backoff_initial_ms;
            if let (true, Some(every)) = (
                *origin != Some(0) && self.next_probe_ms.is_none() && !self.probing,
                self.timing.probe_ms,
            ) {
                self.next_probe_ms = Some(now_ms + every);
            }
        }
    }

    /// The active pull failed.
    pub fn handle_failure(&mut self, _why: Failure, now_ms: u64) -> Option<UpstreamAction> {
        let State::Active { origin, .. } = self.state else {
            return None;
        };
        self.failovers += 1;
        self.failed_in_round += 1;
        self.next_probe_ms = None;
        if self.failed_in_round >= self.origins.len() {
            self.state = State::Backoff {
                until_ms: now_ms + self.backoff_ms,
            };
            self.backoff_ms = (self.backoff_ms * 2).min(self.timing.backoff_max_ms);
            self.failed_in_round = 0;
            return None;
        }
        let next = origin.map_or(0, |i| (i + 1) % self.origins.len());
        Some(self.connect(next, now_ms))
    }

    /// The origin answered with a redirect to another origin (the cluster's "302").
    pub fn handle_redirect(&mut self, url: OriginUrl, now_ms: u64) -> UpstreamAction {
        self.state = State::Active {
            origin: None,
            last_media_ms: now_ms,
        };
        UpstreamAction::Connect { origin: None, url }
    }

    /// The probe of the preferred origin delivered media: switch to it.
    pub fn handle_probe_media(&mut self, now_ms: u64) -> Option<UpstreamAction> {
        if !self.probing {
            return None;
        }
        self.probing = false;
        self.next_probe_ms = None;
        self.state = State::Active {
            origin: Some(0),
            last_media_ms: now_ms,
        };
        Some(UpstreamAction::PromoteProbe)
    }

    /// The probe failed; try again later.
    pub fn handle_probe_failure(&mut self, now_ms: u64) -> Option<UpstreamAction> {
        if !self.probing {
            return None;
        }
        self.probing = false;
        self.next_probe_ms = self.timing.probe_ms.map(|every| now_ms + every);
        Some(UpstreamAction::DropProbe)
    }

    /// When `handle_timeout` wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let state_deadline = match self.state {
            State::Active { .. } => self.media_deadline(),
            State::Backoff { until_ms } => Some(until_ms),
        };
        match (state_deadline, self.next_probe_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<UpstreamAction> {
        let mut actions = Vec::new();
        match self.state {
            State::Active { .. } if self.media_deadline().is_some_and(|d| now_ms >= d) => {
                if self.probing {
                    self.probing = false;
                    actions.push(UpstreamAction::DropProbe);
                }
                actions.extend(self.handle_failure(Failure::MediaTimeout, now_ms));
            }
            State::Backoff { until_ms } if now_ms >= until_ms => {
                actions.push(self.connect(0, now_ms))
            }
            _ => {}
        }
        if let Some(at) = self.next_probe_ms {
            if now_ms >= at
                && !self.probing
                && matches!(self.state, State::Active { origin, .. } if origin != Some(0))
            {
                self.probing = true;
                self.next_probe_ms = None;
                actions.push(UpstreamAction::Probe {
                    url: self.origins[0].clone(),
                });
            }
        }
        actions
    }

    fn connect(&mut self, i: usize, now_ms: u64) -> UpstreamAction {
        self.state = State::Active {
            origin: Some(i),
            last_media_ms: now_ms,
        };
        UpstreamAction::Connect {
            origin: Some(i),
            url: self.origins[i].clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Vec<OriginUrl> {
        ["rtmp://a:1935/live", "rtmp://b/live"]
            .iter()
            .map(|u| OriginUrl::parse(u).unwrap())
            .collect()
    }

    fn timing() -> UpstreamTiming {
        UpstreamTiming {
            backoff_max_ms: 400,
            ..UpstreamTiming::pull(1500)
        }
    }

    #[test]
    fn a_forward_waits_for_no_media_and_never_probes() {
        let (mut p, _) = UpstreamPlanner::new(origins(), UpstreamTiming::forward(), 0);
        assert_eq!(p.media_deadline(), None);
        assert_eq!(
            p.poll_timeout(),
            None,
            "nothing to wait for while connected"
        );
        assert!(p.handle_timeout(1_000_000).is_empty());
        // Failing over to the second origin and working there: no probe of the first.
        p.handle_failure(Failure::ConnectionLost, 10);
        p.handle_media(20);
        assert_eq!(p.poll_timeout(), None);
        assert!(p.handle_timeout(100_000).is_empty());
        // Both down in a row: back off, then start over.
        assert!(p.handle_failure(Failure::ConnectFailed, 30).is_some());
        assert_eq!(p.handle_failure(Failure::ConnectFailed, 40), None);
        assert_eq!(p.poll_timeout(), Some(140));
    }

    #[test]
    fn parses_origin_urls() {
        let u = OriginUrl::parse("rtmp://10.0.0.1:19350/live").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str()),
            ("10.0.0.1", 19350, "live")
        );
        assert_eq!(OriginUrl::parse("rtmp://origin/live/").unwrap().port, 1935);
        let s = OriginUrl::parse("rtmps://origin.example/live").unwrap();
        assert!(s.tls && s.port == 443 && !u.tls);
        assert_eq!(s.to_string(), "rtmps://origin.example:443/live");
        for bad in [
            "rtmpss://a/live",
            "http://a/live",
            "rtmp://a",
            "rtmp:///live",
            "rtmp://a:x/live",
            "rtmp://a/live/x",
        ] {
            assert!(OriginUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_timeout_fails_over_to_the_next_origin() {
        let (mut p, first) = UpstreamPlanner::new(origins(), timing(), 0);
        assert_eq!(
            first,
            UpstreamAction::Connect {
                origin: Some(0),
                url: origins()[0].clone()
            }
        );
        p.handle_media(100);
        assert_eq!(p.poll_timeout(), Some(1600));
        assert!(p.handle_timeout(1599).is_empty());
        let a = p.handle_timeout(1600);
        assert_eq!(
            a,
            vec![UpstreamAction::Connect {
                origin: Some(1),
                url: origins()[1].clone()
            }]
        );
        assert_eq!((p.current(), p.failovers), (Some(1), 1));
    }

    #[test]
    fn all_origins_down_backs_off_with_a_bound_then_starts_over() {
        let (mut p, _) = UpstreamPlanner::new(origins(), timing(), 0);
        assert!(matches!(
            p.handle_failure(Failure::ConnectFailed, 10),
            Some(UpstreamAction::Connect {
                origin: Some(1),
                ..
            })
        ));
        assert_eq!(
            p.handle_failure(Failure::NotFound, 20),
            None,
            "round over: back off"
        );
        assert_eq!(p.poll_timeout(), Some(120));
        assert!(matches!(
            p.handle_timeout(120)[..],
            [UpstreamAction::Connect {
                origin: Some(0),
                ..
            }]
        ));
        // Backoff doubles, bounded by backoff_max_ms.
        let mut t = 120;
        let mut waits = Vec::new();
        for _ in 0..4 {
            p.handle_failure(Failure::ConnectFailed, t);
            p.handle_failure(Failure::ConnectFailed, t);
            let until = p.poll_timeout().unwrap();
            waits.push(until - t);
            t = until;
            p.handle_timeout(t);
        }
        assert_eq!(waits, vec![200, 400, 400, 400]);
        // Success resets the backoff.
        p.handle_media(t + 1);
        p.handle_failure(Failure::ConnectionLost, t + 2);
        p.handle_failure(Failure::ConnectionLost, t + 3);
        assert_eq!(p.poll_timeout(), Some(t + 3 + 100));
    }

    #[test]
    fn a_fallback_probes_the_preferred_origin_and_switches_back() {
        let (mut p, _) = UpstreamPlanner::new(origins(), timing(), 0);
        p.handle_failure(Failure::ConnectionLost, 0);
        p.handle_media(10);
        assert_eq!(
            p.poll_timeout(),
            Some(1510),
            "media timeout comes before the probe"
        );
        for t in (500..5010).step_by(500) {
            p.handle_media(t);
            assert!(p.handle_timeout(t).is_empty(), "t={t}");
        }
        let a = p.handle_timeout(5010);
        assert_eq!(
            a,
            vec![UpstreamAction::Probe {
                url: origins()[0].clone()
            }]
        );
        // A failed probe is retried later; a working one is promoted.
        assert_eq!(
            p.handle_probe_failure(5100),
            Some(UpstreamAction::DropProbe)
        );
        p.handle_media(10_000);
        assert!(matches!(
            p.handle_timeout(10_100)[..],
            [UpstreamAction::Probe { .. }]
        ));
        assert_eq!(
            p.handle_probe_media(10_200),
            Some(UpstreamAction::PromoteProbe)
        );
        assert_eq!(p.current(), Some(0));
        p.handle_media(10_300);
        assert_eq!(
            p.poll_timeout(),
            Some(11_800),
            "no more probes on the preferred origin"
        );
    }

    #[test]
    fn redirects_follow_without_failing_the_list() {
        let (mut p, _) = UpstreamPlanner::new(origins(), timing(), 0);
        let target = OriginUrl::parse("rtmp://c:1936/live").unwrap();
        assert_eq!(
            p.handle_redirect(target.clone(), 5),
            UpstreamAction::Connect {
                origin: None,
                url: target
            }
        );
        assert_eq!(p.failovers, 0);
        // A failure of the redirect target goes back to the list.
        assert!(matches!(
            p.handle_failure(Failure::ConnectFailed, 10),
            Some(UpstreamAction::Connect {
                origin: Some(0),
                ..
            })
        ));
    }
}
