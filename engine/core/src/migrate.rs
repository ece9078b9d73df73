//! HLS migration in a drain, sans-IO: whether a draining node sends a stream's HLS viewers to
//! a peer now, or goes on serving them until the peer can continue where they are.
//!
//! A player moved by a 302 asks the peer for the segment number it would have asked here
//! next: nodes number a stream's segments alike ([`crate::hls::segmenter`]). A peer that
//! starts the stream only when the first viewer arrives has nothing older than its first
//! segment, so a viewer sent there at once would skip what it had not played yet (measured:
//! two segments per viewer with a cold peer). The node therefore asks the peer first.
//!
//! In steps, per stream and per peer:
//! 1. A playlist request in a drain makes a [`Migration`]. Whenever [`Migration::probe_due`]
//!    says so, the engine fetches the peer's playlist (with the viewer's query, so tokens
//!    pass) and reports the outcome to [`Migration::handle_probe`]. The first probe is also
//!    what makes a cold peer start the stream.
//! 2. [`Migration::decide`], with this node's newest segment, answers
//!    [`MigrationDecision::Redirect`] once the peer lists a segment at least [`MARGIN`]
//!    segments older than this node's newest (so a viewer up to that far behind finds its
//!    next segment there) and is at most one segment behind this node.
//! 3. A peer that answers with playlists that never qualify (numbers that differ, a stream
//!    restarted) is used anyway [`GIVE_UP_MS`] after the first probe: moving with a skip
//!    beats being cut off at the drain timeout. A peer whose last probe failed is never
//!    used; viewers are served here meanwhile.
//!
//! Must not: do I/O, read a clock, or keep anything per viewer.

use crate::ids::SegmentSeq;

/// How often a peer's playlist is fetched while a migration waits for it.
pub const PROBE_EVERY_MS: u64 = 1_000;
/// How long a probe may take before it counts as failed.
pub const PROBE_TIMEOUT_MS: u64 = 5_000;
/// Segments before this node's newest that the peer must still list.
pub const MARGIN: u64 = 2;
/// After this long answering, a peer is used even if its playlist never qualified.
pub const GIVE_UP_MS: u64 = 30_000;

/// What a probe of the peer's playlist found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPlaylist {
    /// A media playlist listing segments `first..=last`.
    Listed { first: SegmentSeq, last: SegmentSeq },
    /// A playlist with no segment yet.
    Empty,
    /// No playlist: unreachable, a timeout, or a status other than 200.
    Failed,
}

/// What to do with a playlist request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationDecision {
    Redirect,
    ServeHere,
}

/// One stream's migration to one peer.
#[derive(Debug, Clone)]
pub struct Migration {
    peer: String,
    /// When the first probe answered with a playlist.
    first_answer_ms: Option<u64>,
    last: Option<PeerPlaylist>,
    in_flight: bool,
    next_probe_ms: u64,
}

impl Migration {
    /// A migration to `peer` (its `host:port`), its first probe due now.
    pub fn new(peer: String, now_ms: u64) -> Self {
        Self {
            peer,
            first_answer_ms: None,
            last: None,
            in_flight: false,
            next_probe_ms: now_ms,
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether to start a probe now; if so, it counts as started (one at a time).
    pub fn probe_due(&mut self, now_ms: u64) -> bool {
        if self.in_flight || now_ms < self.next_probe_ms {
            return false;
        }
        self.in_flight = true;
        true
    }

    /// A probe's outcome.
    pub fn handle_probe(&mut self, found: PeerPlaylist, now_ms: u64) {
        self.in_flight = false;
        self.next_probe_ms = now_ms + PROBE_EVERY_MS;
        if found != PeerPlaylist::Failed && self.first_answer_ms.is_none() {
            self.first_answer_ms = Some(now_ms);
        }
        self.last = Some(found);
    }

    /// Redirect a playlist request now, or serve it here. `local_newest` is this node's
    /// newest segment of the stream (`None`: it has none).
    pub fn decide(&self, local_newest: Option<SegmentSeq>, now_ms: u64) -> MigrationDecision {
        let answered = match self.last {
            None | Some(PeerPlaylist::Failed) => return MigrationDecision::ServeHere,
            Some(found) => found,
        };
        let Some(newest) = local_newest else {
            // Nothing here to serve: the peer at least answers.
            return MigrationDecision::Redirect;
        };
        let covers = match answered {
            // The peer's numbers are its playlist's: any u64.
            PeerPlaylist::Listed { first, last } => {
                first.0.saturating_add(MARGIN) <= newest.0 && last.0.saturating_add(1) >= newest.0
            }
            PeerPlaylist::Empty | PeerPlaylist::Failed => false,
        };
        let gave_up = self
            .first_answer_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= GIVE_UP_MS);
        if covers || gave_up {
            MigrationDecision::Redirect
        } else {
            MigrationDecision::ServeHere
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MigrationDecision::{Redirect, ServeHere};

    fn listed(first: u64, last: u64) -> PeerPlaylist {
        PeerPlaylist::Listed {
            first: SegmentSeq(first),
            last: SegmentSeq(last),
        }
    }

    #[test]
    fn a_cold_peer_is_used_once_its_window_reaches_back_past_the_margin() {
        let mut m = Migration::new("10.0.0.2:8080".into(), 1_000);
        assert!(m.probe_due(1_000));
        assert!(!m.probe_due(1_000), "one probe at a time");
        // Before any answer, and while the peer has nothing: viewers stay.
        assert_eq!(m.decide(Some(SegmentSeq(40)), 1_500), ServeHere);
        m.handle_probe(PeerPlaylist::Empty, 2_000);
        assert_eq!(m.decide(Some(SegmentSeq(40)), 2_000), ServeHere);
        assert!(!m.probe_due(2_500));
        assert!(m.probe_due(3_000));
        // The peer's first segment is our newest: a viewer one behind would skip.
        m.handle_probe(listed(40, 40), 3_000);
        assert_eq!(m.decide(Some(SegmentSeq(40)), 3_000), ServeHere);
        assert_eq!(m.decide(Some(SegmentSeq(41)), 5_000), ServeHere);
        // Two segments later here, the peer lists 40..=42: covered.
        m.handle_probe(listed(40, 42), 7_000);
        assert_eq!(m.decide(Some(SegmentSeq(42)), 7_000), Redirect);
    }

    #[test]
    fn a_peer_that_falls_behind_or_fails_keeps_the_viewers_here() {
        let mut m = Migration::new("p".into(), 0);
        assert!(m.probe_due(0));
        m.handle_probe(listed(30, 38), 100);
        assert_eq!(m.decide(Some(SegmentSeq(40)), 100), ServeHere, "two behind");
        assert!(m.probe_due(1_100));
        m.handle_probe(listed(30, 39), 1_200);
        assert_eq!(
            m.decide(Some(SegmentSeq(40)), 1_200),
            Redirect,
            "one behind"
        );
        assert!(m.probe_due(2_200));
        m.handle_probe(PeerPlaylist::Failed, 2_300);
        assert_eq!(m.decide(Some(SegmentSeq(40)), 2_300), ServeHere);
        // Failing, even past the give-up time.
        assert_eq!(m.decide(Some(SegmentSeq(40)), 100 + GIVE_UP_MS), ServeHere);
    }

    #[test]
    fn a_peer_that_answers_but_never_qualifies_is_used_after_the_give_up_time() {
        let mut m = Migration::new("p".into(), 0);
        assert!(m.probe_due(0));
        // Numbered differently (say, restarted): far ahead of us.
        m.handle_probe(listed(900, 905), 500);
        assert_eq!(m.decide(Some(SegmentSeq(40)), 500), ServeHere);
        assert_eq!(
            m.decide(Some(SegmentSeq(40)), 500 + GIVE_UP_MS - 1),
            ServeHere
        );
        assert_eq!(m.decide(Some(SegmentSeq(40)), 500 + GIVE_UP_MS), Redirect);
    }

    #[test]
    fn regression_peer_numbers_at_u64_max_do_not_overflow() {
        let mut m = Migration::new("p".into(), 0);
        assert!(m.probe_due(0));
        m.handle_probe(listed(u64::MAX, u64::MAX), 10);
        assert_eq!(m.decide(Some(SegmentSeq(40)), 10), ServeHere);
        m.handle_probe(listed(0, u64::MAX), 20);
        assert_eq!(m.decide(Some(SegmentSeq(u64::MAX)), 20), Redirect);
    }

    #[test]
    fn without_a_local_segment_an_answering_peer_takes_the_viewer() {
        let mut m = Migration::new("p".into(), 0);
        assert_eq!(m.decide(None, 0), ServeHere);
        assert!(m.probe_due(0));
        m.handle_probe(PeerPlaylist::Empty, 10);
        assert_eq!(m.decide(None, 10), Redirect);
    }
}
