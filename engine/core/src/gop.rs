//! The join cache: frames from the latest keyframe, so a new viewer starts decoding at once.
//!
//! Bounded in frames and bytes. Overflow policy: a video GOP that outgrows either bound is
//! dropped whole and caching resumes at the next keyframe (a partial GOP would leave a hole
//! between the cache and the live edge); an audio-only stream keeps a sliding window.

use std::collections::VecDeque;

use crate::media::{Frame, MediaKind};

/// Limits of one stream's GOP cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

impl Default for GopLimits {
    fn default() -> Self {
        Self {
            max_frames: 1024,
            max_bytes: 8 << 20,
        }
    }
}

/// Frames from the latest sync point.
#[derive(Debug, Clone)]
pub struct GopCache {
    frames: VecDeque<Frame>,
    bytes: usize,
    limits: GopLimits,
    /// True when the current GOP was dropped for size: skip frames until the next keyframe.
    overflowed: bool,
}

impl GopCache {
    pub fn new(limits: GopLimits) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            limits,
            overflowed: false,
        }
    }

    /// Takes a non-header frame. `has_video` says whether the stream carries video at all.
    pub fn handle_frame(&mut self, frame: &Frame, has_video: bool) {
        debug_assert!(!frame.flags.header);
        let video_key = frame.kind == MediaKind::Video && frame.flags.sync_point;
        if video_key {
            self.clear();
        } else if has_video && (self.frames.is_empty() || self.overflowed) {
            // Nothing decodable to attach this frame to.
            return;
        }
        self.bytes += frame.cost_bytes();
        self.frames.push_back(frame.clone());
        if self.frames.len() > self.limits.max_frames || self.bytes > self.limits.max_bytes {
            if has_video {
                self.clear();
                self.overflowed = true;
            } else {
                while self.frames.len() > self.limits.max_frames
                    || self.bytes > self.limits.max_bytes
                {
                    if let Some(f) = self.frames.pop_front() {
                        self.bytes -= f.cost_bytes();
                    }
                }
            }
        }
    }

    /// Drops everything (republish, reset).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.overflowed = false;
    }

    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::FrameFlags;

    fn frame(kind: MediaKind, ts: u64, key: bool, len: usize) -> Frame {
        Frame::new(
            kind,
            ts,
            FrameFlags {
                sync_point: key,
                header: false,
            },
            Bytes::from(vec![0u8; len]),
        )
    }

    #[test]
    fn starts_at_latest_keyframe() {
        let mut g = GopCache::new(GopLimits::default());
        g.handle_frame(&frame(MediaKind::Video, 0, false, 10), true);
        assert!(g.is_empty(), "no keyframe yet");
        g.handle_frame(&frame(MediaKind::Video, 40, true, 10), true);
        g.handle_frame(&frame(MediaKind::Audio, 41, false, 10), true);
        g.handle_frame(&frame(MediaKind::Video, 80, false, 10), true);
        assert_eq!(g.len(), 3);
        g.handle_frame(&frame(MediaKind::Video, 120, true, 10), true);
        let ts: Vec<u64> = g.frames().map(|f| f.timestamp_ms).collect();
        assert_eq!(ts, vec![120]);
    }

    #[test]
    fn oversized_gop_is_dropped_until_next_keyframe() {
        let limits = GopLimits {
            max_frames: 3,
            max_bytes: 1 << 20,
        };
        let mut g = GopCache::new(limits);
        g.handle_frame(&frame(MediaKind::Video, 0, true, 10), true);
        for i in 1..3 {
            g.handle_frame(&frame(MediaKind::Video, i * 40, false, 10), true);
        }
        assert_eq!(g.len(), 3);
        g.handle_frame(&frame(MediaKind::Video, 120, false, 10), true);
        assert!(g.is_empty());
        g.handle_frame(&frame(MediaKind::Video, 160, false, 10), true);
        assert!(g.is_empty(), "stays empty until a keyframe");
        g.handle_frame(&frame(MediaKind::Video, 200, true, 10), true);
        assert_eq!(g.len(), 1);
        // Byte bound.
        let mut g = GopCache::new(GopLimits {
            max_frames: 100,
            max_bytes: 100,
        });
        g.handle_frame(&frame(MediaKind::Video, 0, true, 40), true);
        assert_eq!(g.len(), 1);
        g.handle_frame(&frame(MediaKind::Video, 40, false, 60), true);
        assert!(g.is_empty() && g.bytes() == 0);
    }

    #[test]
    fn audio_only_keeps_a_sliding_window() {
        let mut g = GopCache::new(GopLimits {
            max_frames: 4,
            max_bytes: 1 << 20,
        });
        for i in 0..10 {
            g.handle_frame(&frame(MediaKind::Audio, i * 23, true, 8), false);
        }
        let ts: Vec<u64> = g.frames().map(|f| f.timestamp_ms).collect();
        assert_eq!(ts, vec![138, 161, 184, 207]);
    }
}
