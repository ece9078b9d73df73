//! The node's lifecycle, sans-IO: serving, draining, exiting. The engine's control thread
//! feeds it what the node holds ([`Activity`], summed over shards) and the clock; it answers
//! with what to do ([`LifecycleEffect`]).
//!
//! A drain, in steps:
//! 1. [`Lifecycle::handle_drain`] (SIGTERM, or `POST /api/v1/drain`): [`LifecycleEffect::Draining`]
//!    at once (readiness fails, the registry record says `draining`, HLS viewers are sent to a
//!    peer on a playlist request once the peer can continue where they are, see
//!    [`crate::migrate`]), accepting goes on for `accept_ms`.
//! 2. Then [`LifecycleEffect::StopAccepting`]: the listeners close, new connections are
//!    refused. Sessions already open stay. While HLS playlist requests are still being
//!    served here because the peer is not ready for them ([`Activity::hls_held_total`] grew
//!    within [`HELD_QUIET_MS`]), accepting goes on, for at most
//!    [`crate::migrate::GIVE_UP_MS`] more: those viewers' players may open new connections
//!    here until they are moved.
//! 3. [`LifecycleEffect::Exit`] once nothing is left ([`Activity::is_empty`]), or at
//!    `timeout_ms` after the drain began, whichever comes first.
//!
//! Without a drain, `exit_when_idle_ms` ends a node that has held no stream and no viewer
//! for that long (scale to zero).
//!
//! Must not: read a clock, touch sockets or signals, or decide anything per session.

/// The lifecycle's settings (`--drain-accept-ms`, `--drain-timeout-s`, `--exit-when-idle-s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainConfig {
    pub accept_ms: u64,
    pub timeout_ms: u64,
    pub exit_when_idle_ms: Option<u64>,
}

/// What the node holds now, summed over its shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Streams with an owner here: published, pulled, or waited for by a viewer.
    pub streams: u64,
    pub publishers: u64,
    pub rtmp_viewers: u64,
    pub flv_viewers: u64,
    pub hls_viewers: u64,
    pub webrtc_viewers: u64,
    /// Playlist requests served here in a drain because the peer was not ready for them
    /// (ever, summed over shards; it only grows). Not something the node holds.
    pub hls_held_total: u64,
}

impl Activity {
    pub fn viewers(&self) -> u64 {
        self.rtmp_viewers + self.flv_viewers + self.hls_viewers + self.webrtc_viewers
    }

    /// No stream, no publisher, no viewer (a viewer waiting for a stream holds its owner,
    /// so it counts as a stream).
    pub fn is_empty(&self) -> bool {
        self.streams == 0 && self.publishers == 0 && self.viewers() == 0
    }
}

/// Accepting outlasts `accept_ms` while a playlist request was held this recently.
pub const HELD_QUIET_MS: u64 = 5_000;

/// Why the node exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The drain finished: nothing was left.
    Drained,
    /// `--drain-timeout-s` passed with sessions still open.
    DrainTimeout,
    /// `--exit-when-idle-s` passed with nothing here.
    Idle,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Drained => "drained",
            ExitReason::DrainTimeout => "drain timeout",
            ExitReason::Idle => "idle",
        }
    }
}

/// What the engine must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEffect {
    /// The drain began: fail readiness, mark the node record, migrate HLS viewers.
    Draining,
    /// Close the listeners.
    StopAccepting,
    /// Stop the process, with status 0.
    Exit(ExitReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining { since_ms: u64, accepting: bool },
    Exited,
}

/// The node's lifecycle.
#[derive(Debug)]
pub struct Lifecycle {
    config: DrainConfig,
    phase: Phase,
    /// Since when the node has held nothing (ms), while it holds nothing.
    idle_since_ms: Option<u64>,
    /// The last [`Activity::hls_held_total`] seen, and when it last grew.
    held: (u64, Option<u64>),
}

impl Lifecycle {
    pub fn new(config: DrainConfig, now_ms: u64) -> Self {
        Self {
            config,
            phase: Phase::Serving,
            idle_since_ms: Some(now_ms),
            held: (0, None),
        }
    }

    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// How long the node has held nothing (ms); 0 while it holds something.
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        self.idle_since_ms.map_or(0, |t| now_ms.saturating_sub(t))
    }

    /// Begins a drain (a second request changes nothing: the engine ends a second signal
    /// at once by itself).
    pub fn handle_drain(&mut self, now_ms: u64, out: &mut Vec<LifecycleEffect>) {
        if self.phase != Phase::Serving {
            return;
        }
        self.phase = Phase::Draining {
            since_ms: now_ms,
            accepting: true,
        };
        out.push(LifecycleEffect::Draining);
        if self.config.accept_ms == 0 {
            self.handle_tick(now_ms, None, out);
        }
    }

    /// The clock moved, and this is what the node holds (`None`: unchanged since the last
    /// tick).
    pub fn handle_tick(
        &mut self,
        now_ms: u64,
        activity: Option<Activity>,
        out: &mut Vec<LifecycleEffect>,
    ) {
        if let Some(a) = activity {
            if a.hls_held_total > self.held.0 {
                self.held = (a.hls_held_total, Some(now_ms));
            }
            if a.is_empty() {
                self.idle_since_ms.get_or_insert(now_ms);
            } else {
                self.idle_since_ms = None;
            }
        }
        match self.phase {
            Phase::Serving => {
                let idle_for = self.idle_since_ms.map(|t| now_ms.saturating_sub(t));
                if let (Some(limit), Some(idle)) = (self.config.exit_when_idle_ms, idle_for) {
                    if idle >= limit {
                        self.exit(ExitReason::Idle, out);
                    }
                }
            }
            Phase::Draining {
                since_ms,
                accepting,
            } => {
                let elapsed = now_ms.saturating_sub(since_ms);
                let holding = self
                    .held
                    .1
                    .is_some_and(|t| t >= since_ms && now_ms.saturating_sub(t) < HELD_QUIET_MS);
                let extended =
                    holding && elapsed < self.config.accept_ms + crate::migrate::GIVE_UP_MS;
                if accepting && elapsed >= self.config.accept_ms && !extended {
                    self.phase = Phase::Draining {
                        since_ms,
                        accepting: false,
                    };
                    out.push(LifecycleEffect::StopAccepting);
                }
                if self.phase
                    == (Phase::Draining {
                        since_ms,
                        accepting: false,
                    })
                {
                    if self.idle_since_ms.is_some() {
                        self.exit(ExitReason::Drained, out);
                    } else if elapsed >= self.config.timeout_ms {
                        self.exit(ExitReason::DrainTimeout, out);
                    }
                }
            }
            Phase::Exited => {}
        }
    }

    fn exit(&mut self, reason: ExitReason, out: &mut Vec<LifecycleEffect>) {
        self.phase = Phase::Exited;
        out.push(LifecycleEffect::Exit(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(idle: Option<u64>) -> DrainConfig {
        DrainConfig {
            accept_ms: 2000,
            timeout_ms: 300_000,
            exit_when_idle_ms: idle,
        }
    }

    fn busy() -> Activity {
        Activity {
            streams: 1,
            rtmp_viewers: 3,
            ..Activity::default()
        }
    }

    #[test]
    fn a_drain_keeps_accepting_then_stops_and_exits_when_the_last_viewer_leaves() {
        let mut l = Lifecycle::new(config(None), 0);
        let mut out = Vec::new();
        l.handle_tick(100, Some(busy()), &mut out);
        l.handle_drain(1000, &mut out);
        assert_eq!(out, [LifecycleEffect::Draining]);
        assert!(l.is_draining());
        out.clear();
        l.handle_drain(1500, &mut out);
        l.handle_tick(2999, Some(busy()), &mut out);
        assert!(out.is_empty(), "still accepting: {out:?}");
        l.handle_tick(3000, None, &mut out);
        assert_eq!(out, [LifecycleEffect::StopAccepting]);
        out.clear();
        l.handle_tick(60_000, Some(busy()), &mut out);
        assert!(out.is_empty(), "viewers stay");
        l.handle_tick(60_050, Some(Activity::default()), &mut out);
        assert_eq!(out, [LifecycleEffect::Exit(ExitReason::Drained)]);
        out.clear();
        l.handle_tick(70_000, None, &mut out);
        assert!(out.is_empty(), "once");
    }

    #[test]
    fn accepting_outlasts_the_window_while_hls_viewers_wait_for_the_peer_and_not_forever() {
        let held = |n| Activity {
            hls_held_total: n,
            ..busy()
        };
        let mut out = Vec::new();
        // Held requests before the drain (none are) do not count; nor does a count that
        // does not grow.
        let mut l = Lifecycle::new(config(None), 0);
        l.handle_tick(0, Some(held(0)), &mut out);
        l.handle_drain(1000, &mut out);
        out.clear();
        l.handle_tick(2500, Some(held(4)), &mut out);
        l.handle_tick(3000, Some(held(4)), &mut out);
        assert!(out.is_empty(), "held 500 ms ago: still accepting");
        l.handle_tick(7400, Some(held(9)), &mut out);
        assert!(out.is_empty());
        l.handle_tick(12_399, Some(held(9)), &mut out);
        assert!(out.is_empty(), "quiet for 4,999 ms");
        l.handle_tick(12_400, Some(held(9)), &mut out);
        assert_eq!(out, [LifecycleEffect::StopAccepting], "quiet for 5 s");
        // Held forever: stops at accept_ms + GIVE_UP_MS.
        let mut l = Lifecycle::new(config(None), 0);
        let mut out = Vec::new();
        l.handle_drain(0, &mut out);
        out.clear();
        let limit = 2000 + crate::migrate::GIVE_UP_MS;
        let mut t = 0;
        let mut n = 0;
        while out.is_empty() {
            t += 500;
            n += 1;
            l.handle_tick(t, Some(held(n)), &mut out);
        }
        assert_eq!(t, limit);
        assert_eq!(out, [LifecycleEffect::StopAccepting]);
    }

    #[test]
    fn an_empty_node_still_waits_out_the_accept_window_and_a_full_one_times_out() {
        let mut l = Lifecycle::new(config(None), 0);
        let mut out = Vec::new();
        l.handle_drain(0, &mut out);
        l.handle_tick(1999, Some(Activity::default()), &mut out);
        assert_eq!(out, [LifecycleEffect::Draining], "load balancers take time");
        l.handle_tick(2000, None, &mut out);
        assert_eq!(
            out[1..],
            [
                LifecycleEffect::StopAccepting,
                LifecycleEffect::Exit(ExitReason::Drained)
            ]
        );

        let mut l = Lifecycle::new(config(None), 0);
        let mut out = Vec::new();
        l.handle_drain(0, &mut out);
        l.handle_tick(299_999, Some(busy()), &mut out);
        assert!(!out.contains(&LifecycleEffect::Exit(ExitReason::DrainTimeout)));
        l.handle_tick(300_000, None, &mut out);
        assert_eq!(
            out.last(),
            Some(&LifecycleEffect::Exit(ExitReason::DrainTimeout))
        );
    }

    #[test]
    fn an_idle_node_exits_after_the_idle_period_and_not_while_anything_is_here() {
        let mut l = Lifecycle::new(config(Some(10_000)), 0);
        let mut out = Vec::new();
        l.handle_tick(5000, Some(Activity::default()), &mut out);
        assert_eq!(l.idle_ms(5000), 5000, "idle since start");
        // A viewer waits for a stream that is not here yet: its owner counts.
        let waiting = Activity {
            streams: 1,
            ..Activity::default()
        };
        l.handle_tick(9000, Some(waiting), &mut out);
        l.handle_tick(30_000, Some(waiting), &mut out);
        assert!(out.is_empty());
        assert_eq!(l.idle_ms(30_000), 0);
        l.handle_tick(31_000, Some(Activity::default()), &mut out);
        l.handle_tick(40_999, None, &mut out);
        assert!(out.is_empty());
        l.handle_tick(41_000, None, &mut out);
        assert_eq!(out, [LifecycleEffect::Exit(ExitReason::Idle)]);
        // Without the flag, never.
        let mut l = Lifecycle::new(config(None), 0);
        l.handle_tick(u64::MAX / 2, Some(Activity::default()), &mut out);
        assert_eq!(out.len(), 1);
    }
}
