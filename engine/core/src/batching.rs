//! Adaptive write batching: how long a shard holds its RTMP and HTTP-FLV players' writes.
//!
//! Owns one shard's write window and the one release every held writer waits on. Takes
//! `now` and the shard's measured load, and says when to measure and when to release; it
//! never reads a clock, measures anything or wakes a writer itself.
//!
//! Each player's writes cost a send system call and a trip through the kernel's TCP path; at
//! a 600 kbit/s stream that is about 68 sends a second per player, and the sends are most of
//! a busy shard's CPU (docs/BENCHMARKS.md). Holding a player's frames for a window and
//! writing them in one `writev` cuts the sends to one per window, for up to a window of
//! latency. The window follows the load:
//!
//! - **The signal** is the share of the last [`SAMPLE_MS`] the shard's thread spent on a CPU
//!   (user and system: the sends themselves are system time), in permille, smoothed: half
//!   the new sample plus half the value before. It is what the batching saves, measured
//!   where it is spent. The smoothing keeps a keyframe's fan-out (one busy sample every GOP)
//!   from growing the window, and still lets a sustained overload grow it at once.
//! - **Grow**: a sample at or over `grow_at_permille` doubles the window (from
//!   [`MIN_WINDOW_MS`]), up to the ceiling (`--write-coalesce-ms`).
//! - **Shrink**: halving the window at most doubles the sends, so it halves only when the
//!   load is under two fifths of the growth threshold (twice it stays under four fifths), for
//!   [`SHRINK_SAMPLES`] samples in a row; below [`MIN_WINDOW_MS`] the window is 0. The gap
//!   between the two thresholds keeps a loaded shard at its window instead of see-sawing.
//! - **Release**: a held writer writes one window after its previous write, rounded up to
//!   the next [`SLOT_MS`] slot. Every writer due in a slot is released by one wake-up, which
//!   starts all their writes (the runtime submits them to the kernel together). A player
//!   writes at most once per window and no frame waits longer than a window and a slot. The
//!   players' own phases spread the releases over the window: a round of thousands of writes
//!   takes tens of milliseconds, so one release for all of them at once would add that much to
//!   the last one's latency, and hand the clients all their bytes at the same instant
//!   (measured: p99 frame latency 199 ms at a 150 ms window and 2,000 players, against
//!   154–157 with phases; docs/ARCHITECTURE.md).
//! - **Never held**: a writer still joining (the GOP burst), one with a backlog of
//!   [`BACKLOG_BYTES`] or more (holding it back would only slow it down) and a closing one.
//!   With the window at 0 nothing is held.

use std::collections::BTreeMap;

/// How often the load is sampled.
pub const SAMPLE_MS: u64 = 100;
/// Releases are rounded up to a multiple of this, so writers due close together share one.
pub const SLOT_MS: u64 = 5;
/// The smallest window; below it, writes leave at once.
pub const MIN_WINDOW_MS: u64 = 5;
/// Calm samples in a row before the window halves.
pub const SHRINK_SAMPLES: u32 = 5;
/// A writer with this much queued is never held.
pub const BACKLOG_BYTES: usize = 64 << 10;

/// A shard's batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// The largest window (`--write-coalesce-ms`); 0 never holds a write.
    pub ceiling_ms: u64,
    /// The shard's busy share, in permille, at which the window grows
    /// (`--write-coalesce-load`); 0 holds every write for the ceiling.
    pub grow_at_permille: u32,
}

/// What a writer with something queued is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    /// The join sequence (an HTTP-FLV response head, the GOP burst) has all been written;
    /// live frames follow.
    pub joined: bool,
    /// The connection is closing.
    pub closing: bool,
    pub queued_bytes: usize,
    /// When its previous write started (none yet: it is held a window from now).
    pub last_write_ms: Option<u64>,
}

/// Whether a writer writes now or waits for the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Now,
    /// Wait for a [`BatchEffect::Release`] through this time.
    Until(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEffect {
    /// Measure the shard's busy share since the last measurement and report it with
    /// [`WriteBatching::on_load`].
    MeasureLoad,
    /// Wake every writer held until this time or earlier.
    Release { through: u64 },
}

/// One shard's write window.
#[derive(Debug)]
pub struct WriteBatching {
    config: BatchingConfig,
    window_ms: u64,
    calm_samples: u32,
    next_sample_ms: u64,
    /// The releases writers wait for, with how many wait for each (at most one per slot of
    /// the ceiling).
    releases: BTreeMap<u64, usize>,
    /// The smoothed load.
    load_permille: u32,
}

impl WriteBatching {
    pub fn new(config: BatchingConfig, now_ms: u64) -> Self {
        Self {
            config,
            window_ms: if config.grow_at_permille == 0 {
                config.ceiling_ms
            } else {
                0
            },
            calm_samples: 0,
            next_sample_ms: now_ms + SAMPLE_MS,
            releases: BTreeMap::new(),
            load_permille: 0,
        }
    }

    /// The window now, in ms (0: writes leave at once).
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The smoothed load the window follows, in permille of one CPU.
    pub fn load_permille(&self) -> u32 {
        self.load_permille
    }

    /// Writers waiting for a release now.
    pub fn held(&self) -> usize {
        self.releases.values().sum()
    }

    /// A writer has something queued: write now, or wait for the release.
    pub fn hold(&mut self, now_ms: u64, writer: Writer) -> Hold {
        if self.window_ms == 0
            || !writer.joined
            || writer.closing
            || writer.queued_bytes >= BACKLOG_BYTES
        {
            return Hold::Now;
        }
        let due = writer.last_write_ms.unwrap_or(now_ms) + self.window_ms;
        if due <= now_ms {
            return Hold::Now;
        }
        let at = due.div_ceil(SLOT_MS) * SLOT_MS;
        *self.releases.entry(at).or_default() += 1;
        Hold::Until(at)
    }

    /// The next deadline: a load sample, or the release.
    pub fn poll_timeout(&self) -> Option<u64> {
        Some(match self.releases.keys().next() {
            Some(&r) => r.min(self.next_sample_ms),
            None => self.next_sample_ms,
        })
    }

    pub fn handle_timeout(&mut self, now_ms: u64, fx: &mut Vec<BatchEffect>) {
        if self.releases.keys().next().is_some_and(|&r| r <= now_ms) {
            self.release(now_ms, fx);
        }
        if self.next_sample_ms <= now_ms {
            // Samples missed while the shard was too busy to run its timer are skipped, not
            // replayed.
            self.next_sample_ms = now_ms + SAMPLE_MS;
            fx.push(BatchEffect::MeasureLoad);
        }
    }

    /// The shard's busy share over the interval since the last sample, in permille of one
    /// CPU.
    pub fn on_load(&mut self, sample_permille: u32, fx: &mut Vec<BatchEffect>) {
        self.load_permille = (self.load_permille + sample_permille.min(1000)).div_ceil(2);
        let load_permille = self.load_permille;
        let BatchingConfig {
            ceiling_ms,
            grow_at_permille,
        } = self.config;
        if grow_at_permille == 0 || ceiling_ms == 0 {
            return;
        }
        if load_permille >= grow_at_permille {
            self.calm_samples = 0;
            self.window_ms = (self.window_ms * 2).clamp(MIN_WINDOW_MS, ceiling_ms);
        } else if u64::from(load_permille) * 5 < u64::from(grow_at_permille) * 2 {
            self.calm_samples += 1;
            if self.calm_samples >= SHRINK_SAMPLES && self.window_ms > 0 {
                self.calm_samples = 0;
                self.window_ms /= 2;
                if self.window_ms < MIN_WINDOW_MS {
                    self.window_ms = 0;
                    if let Some(&last) = self.releases.keys().next_back() {
                        self.release(last, fx);
                    }
                }
            }
        } else {
            self.calm_samples = 0;
        }
    }

    /// Releases every writer held until `through` or earlier.
    fn release(&mut self, through: u64, fx: &mut Vec<BatchEffect>) {
        self.releases = self.releases.split_off(&(through + 1));
        fx.push(BatchEffect::Release { through });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOINED: Writer = Writer {
        joined: true,
        closing: false,
        queued_bytes: 1000,
        last_write_ms: None,
    };

    fn wrote_at(t: u64) -> Writer {
        Writer {
            last_write_ms: Some(t),
            ..JOINED
        }
    }

    fn batching(ceiling_ms: u64, grow_at_permille: u32) -> WriteBatching {
        WriteBatching::new(
            BatchingConfig {
                ceiling_ms,
                grow_at_permille,
            },
            0,
        )
    }

    /// Runs the timer from `from` to `to`, reporting `load` at every sample; returns the
    /// effects in order.
    fn run(b: &mut WriteBatching, from: u64, to: u64, load: u32) -> Vec<BatchEffect> {
        let mut all = Vec::new();
        let mut now = from;
        while let Some(at) = b.poll_timeout().filter(|&at| at <= to) {
            now = now.max(at);
            let mut fx = Vec::new();
            b.handle_timeout(now, &mut fx);
            for e in fx {
                all.push(e);
                if e == BatchEffect::MeasureLoad {
                    let mut more = Vec::new();
                    b.on_load(load, &mut more);
                    all.extend(more);
                }
            }
        }
        all
    }

    #[test]
    fn at_low_load_every_write_leaves_at_once() {
        let mut b = batching(150, 250);
        run(&mut b, 0, 10_000, 100);
        assert_eq!(b.window_ms(), 0);
        for t in (10_000..11_000).step_by(15) {
            assert_eq!(b.hold(t, JOINED), Hold::Now);
        }
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn under_load_the_window_grows_to_the_ceiling_and_shrinks_back() {
        let mut b = batching(150, 250);
        // Load over the threshold: the window doubles every sample, up to the ceiling.
        let mut windows = Vec::new();
        for i in 1..=8 {
            run(&mut b, (i - 1) * SAMPLE_MS, i * SAMPLE_MS, 600);
            windows.push(b.window_ms());
        }
        assert_eq!(windows, [5, 10, 20, 40, 80, 150, 150, 150]);
        // Batched, the shard is less busy, but not calm enough to halve the window: it holds.
        run(&mut b, 800, 5_000, 200);
        assert_eq!(b.window_ms(), 150);
        // Calm: halves once per SHRINK_SAMPLES calm samples, down to 0.
        let mut t = 5_000;
        let mut shrinking = vec![b.window_ms()];
        while b.window_ms() > 0 && t < 20_000 {
            run(&mut b, t, t + SAMPLE_MS, 50);
            t += SAMPLE_MS;
            if shrinking.last() != Some(&b.window_ms()) {
                shrinking.push(b.window_ms());
            }
        }
        assert_eq!(shrinking, [150, 75, 37, 18, 9, 0]);
        assert_eq!(b.hold(t, JOINED), Hold::Now);
    }

    #[test]
    fn a_busy_sample_interrupts_the_shrinking() {
        let mut b = batching(100, 250);
        run(&mut b, 0, 1_000, 900);
        assert_eq!(b.window_ms(), 100);
        run(&mut b, 1_000, 1_400, 50);
        run(&mut b, 1_400, 1_500, 700);
        run(&mut b, 1_500, 1_900, 50);
        assert_eq!(
            b.window_ms(),
            100,
            "the calm samples start again after the busy one"
        );
        run(&mut b, 1_900, 2_500, 50);
        assert_eq!(b.window_ms(), 50);
    }

    #[test]
    fn one_busy_sample_does_not_grow_the_window_a_sustained_load_does() {
        let mut b = batching(150, 250);
        run(&mut b, 0, 400, 600);
        assert_eq!(b.window_ms(), 40);
        // Batched, the shard settles between the thresholds (the smoothed load passes the
        // threshold once more on its way down).
        run(&mut b, 400, 3_000, 130);
        assert_eq!(b.window_ms(), 80);
        // A keyframe's fan-out: one busy sample.
        run(&mut b, 3_000, 3_100, 330);
        run(&mut b, 3_100, 4_000, 130);
        assert_eq!(b.window_ms(), 80);
        // The same load for two samples is a load.
        run(&mut b, 4_000, 4_200, 330);
        assert_eq!(b.window_ms(), 150);
    }

    #[test]
    fn writers_due_in_one_slot_share_its_release() {
        let config = BatchingConfig {
            ceiling_ms: 40,
            grow_at_permille: 0,
        };
        let mut b = WriteBatching::new(config, 1_000);
        assert_eq!(
            b.window_ms(),
            40,
            "a threshold of 0 holds for the ceiling at once"
        );
        // Each is held a window after its previous write, rounded up to a slot.
        assert_eq!(b.hold(1_003, wrote_at(1_000)), Hold::Until(1_040));
        assert_eq!(b.hold(1_003, wrote_at(1_002)), Hold::Until(1_045));
        assert_eq!(b.hold(1_010, wrote_at(1_001)), Hold::Until(1_045));
        // A window has passed since its last write: it writes now.
        assert_eq!(b.hold(1_003, wrote_at(960)), Hold::Now);
        assert_eq!(b.held(), 3);
        assert_eq!(b.poll_timeout(), Some(1_040));
        let mut fx = Vec::new();
        b.handle_timeout(1_040, &mut fx);
        assert_eq!(fx, [BatchEffect::Release { through: 1_040 }]);
        assert_eq!(b.held(), 2);
        assert_eq!(b.poll_timeout(), Some(1_045));
        fx.clear();
        b.handle_timeout(1_045, &mut fx);
        assert_eq!(fx, [BatchEffect::Release { through: 1_045 }]);
        assert_eq!(b.held(), 0);
        assert_eq!(
            b.poll_timeout(),
            Some(1_100),
            "only the next sample is left"
        );
    }

    /// One player of a stream with a frame every 15 ms, for 10 s at a 40 ms window: it
    /// writes at most once per window, and no frame waits longer than a window and a slot.
    #[test]
    fn a_held_player_writes_once_per_window_and_no_frame_waits_longer() {
        let config = BatchingConfig {
            ceiling_ms: 40,
            grow_at_permille: 0,
        };
        let mut b = WriteBatching::new(config, 0);
        let mut queued: Vec<u64> = Vec::new();
        let mut held: Option<u64> = None;
        let mut last_write = None;
        let (mut writes, mut frames, mut longest) = (0u64, 0u64, 0u64);
        for now in 0..10_000 {
            let mut fx = Vec::new();
            b.handle_timeout(now, &mut fx);
            let released = fx.iter().any(|e| {
                matches!((e, held), (BatchEffect::Release { through }, Some(at)) if at <= *through)
            });
            if now % 15 == 0 {
                queued.push(now);
            }
            let write = if released {
                held = None;
                true
            } else if held.is_none() && !queued.is_empty() {
                let writer = Writer {
                    last_write_ms: last_write,
                    ..JOINED
                };
                match b.hold(now, writer) {
                    Hold::Now => true,
                    Hold::Until(at) => {
                        held = Some(at);
                        false
                    }
                }
            } else {
                false
            };
            if write {
                writes += 1;
                frames += queued.len() as u64;
                longest = longest.max(now - queued[0]);
                queued.clear();
                last_write = Some(now);
            }
        }
        assert!(writes <= 10_000 / 40 + 1, "{writes} writes");
        assert!(writes >= 10_000 / 45 - 1, "{writes} writes");
        assert!(longest <= 40 + SLOT_MS, "a frame waited {longest} ms");
        assert_eq!(
            frames + queued.len() as u64,
            10_000 / 15 + 1,
            "every frame is written"
        );
    }

    #[test]
    fn a_join_a_backlog_and_a_close_are_never_held() {
        let mut b = batching(200, 0);
        let joining = Writer {
            joined: false,
            ..JOINED
        };
        let closing = Writer {
            closing: true,
            ..JOINED
        };
        let backlog = Writer {
            queued_bytes: BACKLOG_BYTES,
            ..JOINED
        };
        for w in [joining, closing, backlog] {
            assert_eq!(b.hold(5, w), Hold::Now, "{w:?}");
        }
        assert_eq!(b.held(), 0);
        assert_eq!(b.hold(5, JOINED), Hold::Until(205));
    }

    #[test]
    fn a_ceiling_of_zero_never_holds() {
        let mut b = batching(0, 0);
        run(&mut b, 0, 5_000, 1_000);
        assert_eq!(b.window_ms(), 0);
        assert_eq!(b.hold(5_000, JOINED), Hold::Now);
        assert_eq!(b.load_permille(), 1_000);
    }

    #[test]
    fn held_writers_are_released_when_the_window_closes() {
        let mut b = batching(5, 250);
        run(&mut b, 0, 100, 500);
        assert_eq!(b.window_ms(), 5);
        assert_eq!(b.hold(101, JOINED), Hold::Until(110));
        // The calm samples end the window before the release is due (the first one is still
        // half the busy one).
        let mut fx = Vec::new();
        for _ in 0..=SHRINK_SAMPLES {
            b.on_load(10, &mut fx);
        }
        assert_eq!(b.window_ms(), 0);
        assert_eq!(fx, [BatchEffect::Release { through: 110 }]);
        assert_eq!(b.held(), 0);
        assert_eq!(b.poll_timeout(), Some(200), "only the next sample is left");
    }

    #[test]
    fn a_late_timer_skips_the_samples_it_missed() {
        let mut b = batching(100, 250);
        let mut fx = Vec::new();
        b.handle_timeout(2_050, &mut fx);
        assert_eq!(fx, [BatchEffect::MeasureLoad]);
        assert_eq!(b.poll_timeout(), Some(2_150));
    }
}
