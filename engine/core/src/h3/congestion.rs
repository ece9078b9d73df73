//! QUIC congestion control for an edge's deliveries (`--http3-congestion bbr`): a model of
//! the path, its bottleneck rate and its round trip, both measured, that sets the window to
//! twice their product, after BBR (v1, with v2's loss bound). Sans-IO: the driver reports
//! packets sent, acknowledged and lost with the time, and reads the window. quinn-proto
//! paces each window over the smoothed round trip, so the window is also the rate.
//!
//! Why our own and not quinn-proto's `Bbr`: quinn's enters ProbeRTT (a window of four
//! packets for at least 200 ms) at the first acknowledgement that is not app-limited, as its
//! ProbeRTT clock starts out expired. An edge's connections are bursts (a segment, a part),
//! so that happened inside the first segments of nearly every connection: through a 150 ms
//! path with no loss, one segment in six took two or three round trips more
//! (docs/BENCHMARKS.md). Here there is no ProbeRTT at all: a viewer's bursts leave the path
//! idle in between, so the queue drains by itself, and the minimum round trip is renewed
//! from the last round's samples every 10 s instead of by emptying the pipe.
//!
//! 1. **Rounds.** A round ends when a packet sent after it began is acknowledged. Each round
//!    gives a delivery rate: the bytes acknowledged in it over its length (a round that
//!    begins after an idle spell starts its clock at the first send, not at the last ack).
//! 2. **Bandwidth:** the highest rate of the last 10 rounds. An app-limited round (the
//!    sender ran out of data) only counts when it beats that: it shows a floor, not the path.
//! 3. **Startup:** the window grows by each acknowledged byte (doubling per round) up to
//!    2.89 × the estimated bandwidth-delay product, until three rounds that were not
//!    app-limited brought less than 25 % more bandwidth, or a round was congested (4.).
//! 4. **Steady:** the window is 2 × the bandwidth-delay product, and at least the initial
//!    window unless congestion says otherwise (see `target`). Sparse random loss does
//!    not move it. A round with at least 3 lost packets that were more than 2 % of its
//!    bytes is congestion: the window is capped at 85 % of what it was, and each round
//!    that is not app-limited and not congested raises the cap by 1/8 until it no longer
//!    binds (BBRv2's bound on what is in flight, simplified). Persistent congestion
//!    (RFC 9002 §7.6: everything sent over a span of round trips lost) starts over from
//!    the minimum.
//! 5. **App-limited growth:** the window grows only on acknowledgements of a sender that
//!    had data and no window left, so an idle viewer's window does not creep up unused.
//!
//! Owns: the window, from the events above. Must not: read a clock, do I/O, send anything,
//! or let the window fall below four packets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Rounds the bandwidth filter remembers.
const BW_ROUNDS: u64 = 10;
/// How long the minimum round trip is trusted before the last round's minimum replaces it.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Startup ends after this many rounds (not app-limited) without [`FULL_BW_GROWTH`] more.
const FULL_BW_ROUNDS: u8 = 3;
const FULL_BW_GROWTH: f64 = 1.25;
/// Startup's window: this many bandwidth-delay products (BBR's 2/ln 2).
const STARTUP_GAIN: f64 = 2.89;
/// The window once the bandwidth is known: this many bandwidth-delay products.
const STEADY_GAIN: f64 = 2.0;
/// A round is congested with at least this many packets lost...
const CONGESTED_PACKETS: u64 = 3;
/// ...that were more than this share of its bytes (BBRv2's loss threshold).
const CONGESTED_SHARE: f64 = 0.02;
/// What a congested round leaves of the window, as a cap.
const CONGESTED_BACKOFF: f64 = 0.85;
/// How much a clean round raises that cap.
const CAP_GROWTH: f64 = 1.125;
/// The smallest window, in packets (RFC 9002 §7.2).
const MIN_WINDOW_PACKETS: u64 = 4;

/// Where the controller is in finding the path's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Growing the window each round until the bandwidth stops growing.
    Startup,
    /// The window follows the measured bandwidth-delay product.
    Steady,
}

/// One connection's congestion controller.
#[derive(Debug, Clone)]
pub struct Congestion {
    mtu: u64,
    initial_window: u64,
    window: u64,
    phase: Phase,
    /// The round in progress: it ends when a packet numbered past `round_end` is acked.
    round: u64,
    round_end: u64,
    round_started: Instant,
    round_acked: u64,
    round_lost: u64,
    round_app_limited: bool,
    round_min_rtt: Option<Duration>,
    /// Nothing was in flight at the last acknowledgement: the next send restarts the clock.
    idle: bool,
    max_sent: u64,
    /// (round, bytes per second): each round's rate that counted, the last [`BW_ROUNDS`].
    bw: VecDeque<(u64, u64)>,
    min_rtt: Option<Duration>,
    min_rtt_at: Instant,
    full_bw: u64,
    full_bw_rounds: u8,
    /// The bound congested rounds put on the window, while it binds.
    cap: Option<u64>,
}

impl Congestion {
    /// A controller for a new connection at `now`, with packets of `mtu` bytes and a first
    /// window of `initial_window` bytes (at least the minimum).
    pub fn new(now: Instant, mtu: u16, initial_window: u64) -> Congestion {
        let mtu = u64::from(mtu.max(1));
        Congestion {
            mtu,
            initial_window,
            window: initial_window.max(MIN_WINDOW_PACKETS * mtu),
            phase: Phase::Startup,
            round: 0,
            round_end: 0,
            round_started: now,
            round_acked: 0,
            round_lost: 0,
            round_app_limited: false,
            round_min_rtt: None,
            idle: true,
            max_sent: 0,
            bw: VecDeque::new(),
            min_rtt: None,
            min_rtt_at: now,
            full_bw: 0,
            full_bw_rounds: 0,
            cap: None,
        }
    }

    /// Bytes that may be in flight.
    pub fn window(&self) -> u64 {
        self.window
            .min(self.cap.unwrap_or(u64::MAX))
            .max(self.min_window())
    }

    /// The first window, as configured.
    pub fn initial_window(&self) -> u64 {
        self.initial_window
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The bottleneck rate estimate, bytes per second (0 before any round ended).
    pub fn bandwidth(&self) -> u64 {
        self.bw.iter().map(|&(_, b)| b).max().unwrap_or(0)
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Packets up to number `last_packet` were sent at `now`.
    pub fn handle_sent(&mut self, now: Instant, last_packet: u64) {
        if self.idle {
            self.idle = false;
            self.round_started = now;
        }
        self.max_sent = self.max_sent.max(last_packet);
    }

    /// `bytes` sent at `sent` were acknowledged at `now`; `app_limited`: the sender had run
    /// out of data before this acknowledgement (it was not held by the window).
    pub fn handle_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        self.round_acked += bytes;
        self.round_app_limited |= app_limited;
        let rtt = now.saturating_duration_since(sent);
        self.round_min_rtt = Some(self.round_min_rtt.map_or(rtt, |m| m.min(rtt)));
        if self.min_rtt.is_none_or(|m| rtt <= m) {
            self.min_rtt = Some(rtt);
            self.min_rtt_at = now;
        }
        if !app_limited {
            let cap = match self.phase {
                Phase::Startup => self.target(STARTUP_GAIN),
                Phase::Steady => self.target(STEADY_GAIN),
            };
            self.window = self.window.saturating_add(bytes).min(cap.max(self.window));
        }
    }

    /// `bytes` were declared lost; `persistent`: RFC 9002's persistent congestion.
    pub fn handle_loss(&mut self, bytes: u64, persistent: bool) {
        self.round_lost += bytes;
        if persistent {
            self.window = self.min_window();
            self.phase = Phase::Startup;
            self.bw.clear();
            self.full_bw = 0;
            self.full_bw_rounds = 0;
            self.cap = None;
        }
    }

    /// A batch of acknowledgements ended at `now` with `in_flight` bytes left, the largest
    /// packet number it acknowledged `largest_acked`.
    pub fn handle_end_acks(&mut self, now: Instant, in_flight: u64, largest_acked: Option<u64>) {
        if largest_acked.is_some_and(|l| l > self.round_end) {
            self.end_round(now);
        }
        self.idle = in_flight == 0;
    }

    /// The MTU the path was found to carry.
    pub fn handle_mtu(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu.max(1));
    }

    fn end_round(&mut self, now: Instant) {
        let length = now.saturating_duration_since(self.round_started);
        if self.round_acked > 0 && !length.is_zero() {
            let rate = (self.round_acked as f64 / length.as_secs_f64()) as u64;
            if !self.round_app_limited || rate > self.bandwidth() {
                self.bw.push_back((self.round, rate));
            }
        }
        while self
            .bw
            .front()
            .is_some_and(|&(r, _)| r + BW_ROUNDS <= self.round)
        {
            self.bw.pop_front();
        }
        let lost_packets = self.round_lost.div_ceil(self.mtu);
        let total = self.round_acked + self.round_lost;
        let congested = lost_packets >= CONGESTED_PACKETS
            && self.round_lost as f64 > CONGESTED_SHARE * total as f64;
        if congested {
            let cap = (self.window() as f64 * CONGESTED_BACKOFF) as u64;
            self.cap = Some(cap.max(self.min_window()));
            self.phase = Phase::Steady;
        } else if let Some(cap) = self.cap.filter(|_| !self.round_app_limited) {
            let raised = (cap as f64 * CAP_GROWTH) as u64;
            self.cap = (raised < self.window).then_some(raised);
        } else if self.phase == Phase::Startup && !self.round_app_limited {
            let bw = self.bandwidth();
            if bw as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
                self.full_bw = bw;
                self.full_bw_rounds = 0;
            } else {
                self.full_bw_rounds += 1;
                if self.full_bw_rounds >= FULL_BW_ROUNDS {
                    self.phase = Phase::Steady;
                }
            }
        }
        if now.saturating_duration_since(self.min_rtt_at) > MIN_RTT_WINDOW {
            if let Some(m) = self.round_min_rtt {
                self.min_rtt = Some(m);
                self.min_rtt_at = now;
            }
        }
        if self.phase == Phase::Steady {
            let target = self.target(STEADY_GAIN);
            self.window = self.window.min(target).max(self.min_window());
        }
        self.round += 1;
        self.round_end = self.max_sent;
        self.round_started = now;
        self.round_acked = 0;
        self.round_lost = 0;
        self.round_app_limited = false;
        self.round_min_rtt = None;
    }

    /// `gain` bandwidth-delay products, and at least the initial window (only congestion
    /// goes below it: quinn paces a window over the smoothed round trip, so where that is
    /// far above the minimum, as on loopback or behind a delayed ACK, a window sized by the
    /// minimum alone paces below the bandwidth, and the next estimates shrink it further);
    /// no bound while either is unknown (the first round).
    fn target(&self, gain: f64) -> u64 {
        let (bw, Some(rtt)) = (self.bandwidth(), self.min_rtt) else {
            return u64::MAX;
        };
        if bw == 0 {
            return u64::MAX;
        }
        let bdp = bw as f64 * rtt.as_secs_f64();
        ((gain * bdp) as u64).max(self.initial_window)
    }

    fn min_window(&self) -> u64 {
        MIN_WINDOW_PACKETS * self.mtu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u16 = 1200;

    /// A path of `rate` bytes per second and `rtt`, driven one round at a time: the sender
    /// sends what the window allows (or `burst` bytes, when app-limited), in MTU packets;
    /// what exceeds a round's capacity (plus a queue of one BDP) is lost, and `loss_every`
    /// drops every Nth packet besides.
    struct Path {
        now: Instant,
        rate: u64,
        rtt: Duration,
        next_packet: u64,
        loss_every: Option<u64>,
    }

    impl Path {
        fn new(rate: u64, rtt_ms: u64) -> Path {
            Path {
                now: Instant::now(),
                rate,
                rtt: Duration::from_millis(rtt_ms),
                next_packet: 0,
                loss_every: None,
            }
        }

        /// One round: returns (bytes sent, bytes lost).
        fn round(&mut self, cc: &mut Congestion, burst: Option<u64>) -> (u64, u64) {
            let window = cc.window();
            let (want, app_limited) = match burst {
                Some(b) if b < window => (b, true),
                _ => (window, false),
            };
            let packets = want.div_ceil(u64::from(MTU));
            let sent_at = self.now;
            let first = self.next_packet;
            self.next_packet += packets;
            cc.handle_sent(sent_at, self.next_packet - 1);
            let capacity = 2 * self.rate * self.rtt.as_millis() as u64 / 1000;
            // Sending faster than the path stretches the round (the queue) up to 2 × RTT.
            let delivered_bytes = want.min(capacity);
            let stretch =
                (want as f64 / (self.rate as f64 * self.rtt.as_secs_f64())).clamp(1.0, 2.0);
            let ack_at = sent_at + self.rtt.mul_f64(stretch);
            let mut lost = 0;
            let mut acked_bytes = 0;
            for i in 0..packets {
                let n = first + i;
                let over = (i + 1) * u64::from(MTU) > delivered_bytes;
                let random = self.loss_every.is_some_and(|e| n % e == e - 1);
                if over || random {
                    lost += u64::from(MTU);
                } else {
                    acked_bytes += u64::from(MTU);
                }
            }
            self.now = ack_at;
            cc.handle_ack(ack_at, sent_at, acked_bytes, app_limited);
            if lost > 0 {
                cc.handle_loss(lost, false);
            }
            cc.handle_end_acks(ack_at, 0, Some(self.next_packet - 1));
            (want, lost)
        }
    }

    /// A controller that found a 10 Mbit/s, 100 ms path (a BDP of 125 KB) from a first
    /// window of 12 packets.
    fn settled() -> (Path, Congestion) {
        let mut path = Path::new(1_250_000, 100);
        let mut cc = Congestion::new(path.now, MTU, 14_400);
        for _ in 0..30 {
            path.round(&mut cc, None);
        }
        (path, cc)
    }

    #[test]
    fn startup_finds_the_bottleneck_and_settles_at_twice_its_bdp() {
        let (_, cc) = settled();
        assert_eq!(cc.phase(), Phase::Steady);
        let bdp = 125_000.0;
        let w = cc.window() as f64;
        assert!(
            w >= 1.5 * bdp && w <= 2.5 * bdp,
            "window {w} for a BDP of {bdp}"
        );
    }

    #[test]
    fn random_loss_does_not_shrink_the_window() {
        let (mut path, mut cc) = settled();
        let before = cc.window();
        // About 1 %: one packet in a hundred, under three per round.
        path.loss_every = Some(100);
        for _ in 0..50 {
            path.round(&mut cc, None);
        }
        assert!(
            cc.window() as f64 >= 0.9 * before as f64,
            "{} after random loss, {before} before",
            cc.window()
        );
    }

    #[test]
    fn heavy_loss_caps_the_window_and_it_recovers_when_the_loss_stops() {
        let (mut path, mut cc) = settled();
        let before = cc.window();
        // 5 %: several packets every round, congestion by any reading.
        path.loss_every = Some(20);
        for _ in 0..20 {
            path.round(&mut cc, None);
        }
        let lossy = cc.window();
        assert!(
            (lossy as f64) < 0.5 * before as f64,
            "{lossy} under 5 % loss, {before} before"
        );
        path.loss_every = None;
        for _ in 0..40 {
            path.round(&mut cc, None);
        }
        assert!(
            cc.window() as f64 >= 0.9 * before as f64,
            "{} after the loss stopped, {before} before",
            cc.window()
        );
    }

    #[test]
    fn a_slower_bottleneck_brings_the_window_down() {
        let (mut path, mut cc) = settled();
        let before = cc.window();
        // The bottleneck falls to a quarter: the queue overflows every round.
        path.rate /= 4;
        for _ in 0..40 {
            path.round(&mut cc, None);
        }
        let after = cc.window();
        assert!(
            (after as f64) < 0.6 * before as f64,
            "{after} after the path slowed, {before} before"
        );
        assert!(after >= 4 * u64::from(MTU));
    }

    #[test]
    fn an_app_limited_viewer_keeps_its_window_and_never_collapses_it() {
        // Segments of 64 KB, one per round, for 30 s of rounds: the window never drops
        // (no ProbeRTT) and does not grow past what it needs.
        let mut path = Path::new(12_500_000, 150);
        let mut cc = Congestion::new(path.now, MTU, 64 << 10);
        let mut smallest = u64::MAX;
        for _ in 0..200 {
            let (sent, _) = path.round(&mut cc, Some(60_000));
            assert_eq!(sent, 60_000, "each segment in one window");
            smallest = smallest.min(cc.window());
        }
        assert!(smallest >= 64 << 10, "window fell to {smallest}");
        assert_eq!(cc.window(), 64 << 10, "grew while app-limited");
    }

    #[test]
    fn persistent_congestion_starts_over_from_the_minimum_window() {
        let (mut path, mut cc) = settled();
        cc.handle_loss(10 * u64::from(MTU), true);
        assert_eq!(cc.window(), 4 * u64::from(MTU));
        assert_eq!(cc.phase(), Phase::Startup);
        assert_eq!(cc.bandwidth(), 0);
        for _ in 0..30 {
            path.round(&mut cc, None);
        }
        assert!(cc.window() > 100_000, "recovered to {}", cc.window());
    }

    #[test]
    fn the_minimum_round_trip_follows_a_longer_path_after_ten_seconds() {
        let mut path = Path::new(1_250_000, 50);
        let mut cc = Congestion::new(path.now, MTU, 14_400);
        for _ in 0..20 {
            path.round(&mut cc, None);
        }
        assert!(cc.min_rtt().unwrap() < Duration::from_millis(60));
        path.rtt = Duration::from_millis(200);
        for _ in 0..80 {
            path.round(&mut cc, None);
        }
        assert!(cc.min_rtt().unwrap() >= Duration::from_millis(200));
    }
}
