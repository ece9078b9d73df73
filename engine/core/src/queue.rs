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

use crate::media::{Frame, FrameFlags};

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

    /// When the viewer will be overdue if it does not catch up (`None` while it keeps up):
    /// the writer closes it then even if no frame arrives to notice.
    pub fn overdue_at_ms(&self) -> Option<u64> {
        self.over_since_ms
            .map(|since| since.saturating_add(self.limits.slow_viewer_ms))
    }

    /// Whether the viewer is overdue at `now_ms`.
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

/// Frames waiting for a forward's connection to the origin (the stream's own frames, shared,
/// in order), bounded in payload bytes. Overflow policy: everything queued is dropped and
/// queueing resumes at the next keyframe, so the origin's viewers see a skip and never a
/// picture that depends on one it did not get; the edge's own viewers see nothing of it.
#[derive(Debug)]
pub struct FrameQueue {
    frames: VecDeque<Frame>,
    bytes: usize,
    limit_bytes: usize,
    skip_to_sync_point: bool,
    dropped: u64,
}

impl FrameQueue {
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            limit_bytes,
            skip_to_sync_point: false,
            dropped: 0,
        }
    }

    /// Queues a live frame under the overflow policy; whether it was queued.
    pub fn push(&mut self, f: &Frame) -> bool {
        if self.skip_to_sync_point {
            if !f.flags.sync_point && !f.flags.header {
                self.dropped += 1;
                return false;
            }
            if f.flags.sync_point {
                self.skip_to_sync_point = false;
            }
        }
        let len = f.payload.len();
        if self.bytes + len > self.limit_bytes {
            self.dropped += self.frames.len() as u64;
            self.frames.clear();
            self.bytes = 0;
            if !f.flags.sync_point {
                self.skip_to_sync_point = true;
                self.dropped += 1;
                return false;
            }
        }
        self.bytes += len;
        self.frames.push_back(f.clone());
        true
    }

    /// A new session starts from these frames (the join: metadata, headers, the GOP) instead
    /// of whatever was queued.
    pub fn reset(&mut self, join: impl IntoIterator<Item = Frame>) {
        self.frames.clear();
        self.bytes = 0;
        self.skip_to_sync_point = false;
        for f in join {
            self.bytes += f.payload.len();
            self.frames.push_back(f);
        }
    }

    pub fn pop(&mut self) -> Option<Frame> {
        let f = self.frames.pop_front()?;
        self.bytes -= f.payload.len();
        Some(f)
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames dropped by the overflow policy so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flags: FrameFlags, n: usize) -> Frame {
        Frame::new(
            crate::media::MediaKind::Video,
            0,
            flags,
            Bytes::from(vec![0x27; n]),
        )
    }

    /// A forward whose origin does not keep up: its backlog overflows, drops to the next
    /// keyframe and resumes there; headers always pass.
    #[test]
    fn a_forward_backlog_overflows_to_the_next_keyframe() {
        let mut q = FrameQueue::new(100);
        assert!(q.push(&frame(KEY, 40)));
        assert!(q.push(&frame(INTER, 40)));
        // 120 > 100: the backlog goes, and this inter frame with it.
        assert!(!q.push(&frame(INTER, 40)));
        assert!(q.is_empty());
        assert_eq!(q.dropped(), 3);
        assert!(!q.push(&frame(INTER, 10)), "skipping to a keyframe");
        assert!(q.push(&frame(HEADER, 10)), "headers pass while skipping");
        assert!(q.push(&frame(KEY, 40)));
        assert!(q.push(&frame(INTER, 10)));
        assert_eq!(q.dropped(), 4);
        // A new session starts from the join frames, whatever was queued.
        let join = [frame(HEADER, 5), frame(KEY, 30)];
        q.reset(join.iter().cloned());
        assert_eq!(q.pop(), Some(join[0].clone()));
        assert_eq!(q.pop(), Some(join[1].clone()));
        assert_eq!(q.pop(), None);
    }

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
