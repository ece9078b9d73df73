//! A WebRTC viewer's keyframe request (PLI, FIR) answered from the stream's cache: the
//! session is sent its stream's GOP again, from the keyframe up to where it was, as a viewer
//! joining now would be, and its timestamps move on by as much, so that what it is replayed
//! plays after what it had (an RTMP publisher cannot make a keyframe on request, and waiting
//! for the next one leaves the picture frozen for up to a GOP).
//!
//! Owns: whether a request is answered (once per keyframe: a viewer that keeps losing does
//! not fall a GOP further behind with each request), and how far the session's video (90 kHz)
//! and audio (48 kHz) timestamps move. Must not: know RTP, sessions or the cache (the caller
//! finds the GOP and replays it), or hold anything per unit.

/// RTP's video clock, per second.
pub const VIDEO_CLOCK: u64 = 90_000;
/// Opus's RTP clock, per second.
pub const AUDIO_CLOCK: u64 = 48_000;
/// Between the last picture a viewer had and the replayed keyframe: one frame at 25 a
/// second (the replayed pictures keep their own spacing after it).
pub const REPLAY_GAP: u64 = VIDEO_CLOCK / 25;

/// One session's keyframe requests and the shift its timestamps have taken.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rewind {
    wanted: bool,
    /// The keyframe (its source time) last replayed to this session.
    answered: Option<u64>,
    video: u64,
    audio: u64,
}

impl Rewind {
    /// The viewer asked for a keyframe.
    pub fn request(&mut self) {
        self.wanted = true;
    }

    /// A request waits for an answer.
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// The request is settled without a replay: a keyframe is going to the viewer anyway,
    /// or no whole GOP is at hand (it waits for the stream's next keyframe).
    pub fn settle(&mut self) {
        self.wanted = false;
    }

    /// Whether to replay the GOP whose keyframe has source time `keyframe` to a viewer whose
    /// last picture sent had `last_sent` (both on the video clock, before any shift). When it
    /// is, the session's timestamps move on so that the keyframe follows that picture by
    /// [`REPLAY_GAP`]; the request is settled either way.
    pub fn answer(&mut self, keyframe: u64, last_sent: u64) -> bool {
        let wanted = std::mem::take(&mut self.wanted);
        if !wanted || self.answered == Some(keyframe) || keyframe > last_sent {
            return false;
        }
        self.answered = Some(keyframe);
        let by = last_sent - keyframe + REPLAY_GAP;
        self.video += by;
        self.audio += by * AUDIO_CLOCK / VIDEO_CLOCK;
        true
    }

    /// A video source time as this session sends it.
    pub fn video_time(&self, source: u64) -> u64 {
        source + self.video
    }

    /// An audio source time (48 kHz) as this session sends it.
    pub fn audio_time(&self, source: u64) -> u64 {
        source + self.audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_mid_gop_moves_the_timestamps_past_what_the_viewer_had() {
        let mut r = Rewind::default();
        assert!(!r.answer(0, 9_000), "no request, no replay");
        r.request();
        assert!(r.wanted());
        // The GOP began at 90_000; the viewer had up to 180_000 (a second in).
        assert!(r.answer(90_000, 180_000));
        assert!(!r.wanted());
        // The keyframe now follows the last picture sent by one frame's gap.
        assert_eq!(r.video_time(90_000), 180_000 + REPLAY_GAP);
        // Audio moves by the same time on its own clock: 1.04 s.
        assert_eq!(r.audio_time(0), 49_920);
        // Later pictures keep their spacing.
        assert_eq!(r.video_time(183_600) - r.video_time(180_000), 3_600);
    }

    #[test]
    fn a_keyframe_is_replayed_once_however_often_the_viewer_asks() {
        let mut r = Rewind::default();
        r.request();
        assert!(r.answer(90_000, 120_000));
        let shifted = r.video_time(0);
        r.request();
        assert!(!r.answer(90_000, 150_000), "the same GOP again: it waits");
        assert!(!r.wanted(), "settled, not left pending");
        assert_eq!(r.video_time(0), shifted, "no further shift");
        // The next GOP's keyframe can be replayed.
        r.request();
        assert!(r.answer(270_000, 300_000));
        assert_eq!(
            r.video_time(0),
            shifted + 30_000 + REPLAY_GAP,
            "the shifts add up"
        );
    }

    #[test]
    fn a_keyframe_the_viewer_has_not_reached_is_not_replayed() {
        let mut r = Rewind::default();
        r.request();
        // The viewer is behind: the stream's GOP starts after its last picture.
        assert!(!r.answer(200_000, 150_000));
        assert_eq!(r.video_time(5), 5);
        r.request();
        r.settle();
        assert!(!r.wanted());
        assert!(!r.answer(0, 10), "a settled request is not answered later");
    }
}
