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

/// An origin: `rtmp://HOST[:PORT]/APP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
}

/// A URL that is not an RTMP origin.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an origin URL (rtmp://HOST[:PORT]/APP): {0}")]
pub struct OriginUrlError(pub String);

impl OriginUrl {
    pub fn parse(url: &str) -> Result<Self, OriginUrlError> {
        let err = || OriginUrlError(url.to_string());
        let rest = url.strip_prefix("rtmp://").ok_or_else(err)?;
        let (authority, app) = rest.split_once('/').ok_or_else(err)?;
        let app = app.trim_end_matches('/');
        if app.is_empty() || app.contains('/') || authority.is_empty() {
            return Err(err());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse().map_err(|_| err())?)
            }
            _ => (authority.to_string(), 1935),
        };
        if host.is_empty() {
            return Err(err());
        }
        Ok(Self {
            host,
            port,
            app: app.to_string(),
        })
    }
}

impl fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtmp://{}:{}/{}", self.host, self.port, self.app)
    }
}

/// Timing of the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTiming {
    /// No media for this long counts as a failure.
    pub media_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// How often a fallback pull probes the preferred origin.
    pub probe_ms: u64,
}

impl Default for UpstreamTiming {
    fn default() -> Self {
        Self {
            media_timeout_ms: 1500,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            probe_ms: 5000,
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

    /// When the active pull counts as failed without media (`None` while backing off).
    pub fn media_deadline(&self) -> Option<u64> {
        match self.state {
            State::Active { last_media_ms, .. } => {
                Some(last_media_ms.saturating_add(self.timing.media_timeout_ms))
            }
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
            if *origin != Some(0) && self.next_probe_ms.is_none() && !self.probing {
                self.next_probe_ms = Some(now_ms + self.timing.probe_ms);
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
        self.next_probe_ms = Some(now_ms + self.timing.probe_ms);
        Some(UpstreamAction::DropProbe)
    }

    /// When `handle_timeout` wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let state_deadline = match self.state {
            State::Active { last_media_ms, .. } => last_media_ms + self.timing.media_timeout_ms,
            State::Backoff { until_ms } => until_ms,
        };
        Some(
            self.next_probe_ms
                .map_or(state_deadline, |p| p.min(state_deadline)),
        )
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<UpstreamAction> {
        let mut actions = Vec::new();
        match self.state {
            State::Active { last_media_ms, .. }
                if now_ms >= last_media_ms + self.timing.media_timeout_ms =>
            {
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
            media_timeout_ms: 1500,
            backoff_initial_ms: 100,
            backoff_max_ms: 400,
            probe_ms: 5000,
        }
    }

    #[test]
    fn parses_origin_urls() {
        let u = OriginUrl::parse("rtmp://10.0.0.1:19350/live").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str()),
            ("10.0.0.1", 19350, "live")
        );
        assert_eq!(OriginUrl::parse("rtmp://origin/live/").unwrap().port, 1935);
        for bad in [
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
