//! The per-viewer send queue, bounded in bytes.
//!
//! Overflow policy: a frame that does not fit is dropped, and so is every later frame until a
//! sync point (keyframe) fits again, so the viewer resumes on something decodable. Headers and
//! status messages are never dropped (they are few and small) — but a peer that keeps asking
//! for replies it never reads (a ping flood) cannot grow the queue past
//! [`SendQueue::hard_limit_bytes`]: past it, the viewer is disconnected. A viewer that stays in the
//! dropping state for `slow_viewer_ms` is reported for disconnection. The queue only holds
//! `Bytes` handles to shared buffers: queueing costs a reference count, never a copy.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::media::FrameFlags;

/// Limits of one viewer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_queue_bytes: usize,
    pub slow_viewer_ms: u64,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    Dropped,
    /// The viewer has been over its limit for `slow_viewer_ms`: close it.
    Disconnect,
}

/// One viewer's outgoing bytes.
#[derive(Debug)]
pub struct SendQueue {
    items: VecDeque<Bytes>,
    bytes: usize,
    limits: QueueLimits,
    /// Dropping until a sync point fits.
    dropping: bool,
    /// When the viewer first failed to keep up (cleared when it resumes).
    over_since_ms: Option<u64>,
    dropped_frames: u64,
}

impl SendQueue {
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            limits,
            dropping: false,
            over_since_ms: None,
            dropped_frames: 0,
        }
    }

    /// Queues a media frame's bytes, applying the overflow policy.
    pub fn push_frame(&mut self, bytes: Bytes, flags: FrameFlags, now_ms: u64) -> PushOutcome {
        if flags.header {
            return if self.push_control(bytes) {
                PushOutcome::Queued
            } else {
                PushOutcome::Disconnect
            };
        }
        let fits = self.bytes + bytes.len() <= self.limits.max_queue_bytes;
        if self.dropping && flags.sync_point && fits {
            self.dropping = false;
            self.over_since_ms = None;
        }
        if !self.dropping && fits {
            self.bytes += bytes.len();
            self.items.push_back(bytes);
            return PushOutcome::Queued;
        }
        if !fits {
            self.dropping = true;
            self.over_since_ms.get_or_insert(now_ms);
        }
        self.dropped_frames += 1;
        match self.over_since_ms {
            Some(since) if now_ms.saturating_sub(since) >= self.limits.slow_viewer_ms => {
                PushOutcome::Disconnect
            }
            _ => PushOutcome::Dropped,
        }
    }

    /// Queues bytes that must arrive (headers, status commands), past the frame limit but not
    /// past [`SendQueue::hard_limit_bytes`]. Returns false (nothing queued) when that would
    /// be exceeded: the caller disconnects the viewer.
    pub fn push_control(&mut self, bytes: Bytes) -> bool {
        if self.bytes + bytes.len() > self.hard_limit_bytes() {
            return false;
        }
        self.bytes += bytes.len();
        self.items.push_back(bytes);
        true
    }

    /// The most a queue ever holds: twice the frame limit plus 64 KiB for control messages.
    pub fn hard_limit_bytes(&self) -> usize {
        2 * self.limits.max_queue_bytes + 64 * 1024
    }

    /// Makes the viewer skip to the next sync point (upstream gap, republish). Not a sign of
    /// slowness: the slow-viewer clock does not start.
    pub fn require_sync_point(&mut self) {
        self.dropping = true;
    }

    /// Moves up to `max_items` buffers into `out` for one write; returns their total length.
    pub fn poll_batch(&mut self, max_items: usize, out: &mut Vec<Bytes>) -> usize {
        let mut total = 0;
        while out.len() < max_items {
            let Some(b) = self.items.pop_front() else {
                break;
            };
            self.bytes -= b.len();
            total += b.len();
            out.push(b);
        }
        total
    }

    /// Whether the viewer is overdue at `now_ms` (for a sweep when no frames arrive).
    pub fn is_overdue(&self, now_ms: u64) -> bool {
        matches!(self.over_since_ms, Some(s) if now_ms.saturating_sub(s) >= self.limits.slow_viewer_ms)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: FrameFlags = FrameFlags {
        sync_point: true,
        header: false,
    };
    const INTER: FrameFlags = FrameFlags {
        sync_point: false,
        header: false,
    };
    const HEADER: FrameFlags = FrameFlags {
        sync_point: false,
        header: true,
    };

    fn q() -> SendQueue {
        SendQueue::new(QueueLimits {
            max_queue_bytes: 100,
            slow_viewer_ms: 1000,
        })
    }

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn drops_until_a_keyframe_fits() {
        let mut q = q();
        assert_eq!(q.push_frame(b(60), KEY, 0), PushOutcome::Queued);
        assert_eq!(q.push_frame(b(60), INTER, 1), PushOutcome::Dropped);
        // Room again, but an inter frame cannot resume the viewer.
        let mut out = Vec::new();
        assert_eq!(q.poll_batch(8, &mut out), 60);
        assert_eq!(q.push_frame(b(10), INTER, 2), PushOutcome::Dropped);
        assert_eq!(q.push_frame(b(10), KEY, 3), PushOutcome::Queued);
        assert_eq!(q.push_frame(b(10), INTER, 4), PushOutcome::Queued);
        assert_eq!(q.dropped_frames(), 2);
        assert_eq!(q.queued_bytes(), 20);
    }

    #[test]
    fn headers_are_never_dropped() {
        let mut q = q();
        q.push_frame(b(100), KEY, 0);
        assert_eq!(q.push_frame(b(50), HEADER, 0), PushOutcome::Queued);
        assert_eq!(q.queued_bytes(), 150);
    }

    #[test]
    fn control_bytes_are_bounded_too() {
        let mut q = q();
        let hard = q.hard_limit_bytes();
        assert!(q.push_control(b(hard - 10)));
        assert!(
            !q.push_control(b(11)),
            "a reply flood cannot grow the queue without bound"
        );
        assert_eq!(q.push_frame(b(11), HEADER, 0), PushOutcome::Disconnect);
        assert!(q.push_control(b(10)));
        assert_eq!(q.queued_bytes(), hard);
    }

    #[test]
    fn slow_viewer_is_disconnected_after_the_limit() {
        let mut q = q();
        q.push_frame(b(100), KEY, 0);
        assert_eq!(q.push_frame(b(10), INTER, 500), PushOutcome::Dropped);
        assert!(!q.is_overdue(1499));
        assert_eq!(q.push_frame(b(10), INTER, 1499), PushOutcome::Dropped);
        assert_eq!(q.push_frame(b(10), INTER, 1500), PushOutcome::Disconnect);
        assert!(q.is_overdue(1500));
    }

    #[test]
    fn catching_up_resets_the_slow_clock() {
        let mut q = q();
        q.push_frame(b(100), KEY, 0);
        q.push_frame(b(10), INTER, 100);
        q.poll_batch(8, &mut Vec::new());
        assert_eq!(q.push_frame(b(10), KEY, 900), PushOutcome::Queued);
        q.push_frame(b(100), INTER, 1000);
        assert_eq!(q.push_frame(b(10), INTER, 1999), PushOutcome::Dropped);
        assert_eq!(q.push_frame(b(10), INTER, 2000), PushOutcome::Disconnect);
    }

    #[test]
    fn required_sync_point_does_not_start_the_slow_clock() {
        let mut q = q();
        q.require_sync_point();
        assert_eq!(q.push_frame(b(10), INTER, 0), PushOutcome::Dropped);
        assert_eq!(q.push_frame(b(10), INTER, 5000), PushOutcome::Dropped);
        assert_eq!(q.push_frame(b(10), KEY, 5001), PushOutcome::Queued);
    }

    #[test]
    fn batches_are_bounded() {
        let mut q = q();
        for _ in 0..5 {
            assert!(q.push_control(b(1)));
        }
        let mut out = Vec::new();
        assert_eq!(q.poll_batch(3, &mut out), 3);
        assert_eq!(out.len(), 3);
        assert!(!q.is_empty());
    }
}
