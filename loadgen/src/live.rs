//! The run's shared clock and live counters: what every worker thread adds to and the
//! reporter reads each second, and what a task is given of its thread ([`Ctx`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::stats::Stats;

/// Counters every thread adds to, for the live line.
#[derive(Default)]
pub struct Live {
    pub viewers: AtomicU64,
    pub sockets: AtomicU64,
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub frames: AtomicU64,
    pub errors: AtomicU64,
    /// Worst latency seen this second (µs), reset by the reporter.
    pub worst_us: AtomicU64,
    /// This second's frame latencies (RTMP/FLV), for the live p99.
    pub frame_latency: LiveHistogram,
    /// This second's segment downloads (HLS), for the live p99.
    pub segment_download: LiveHistogram,
}

/// Latencies of the current second for the live line's p99, shared by all threads without a
/// lock: log-spaced buckets of atomics, four per doubling (so a reported p99 is at most 19 %
/// above the true one), emptied by the reporter each second. The final table uses the exact
/// per-thread HDR histograms instead.
pub struct LiveHistogram {
    buckets: [AtomicU64; LIVE_BUCKETS],
}

const LIVE_BUCKETS: usize = 4 * 40;

impl Default for LiveHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LiveHistogram {
    fn bucket(us: u64) -> usize {
        if us == 0 {
            return 0;
        }
        let log2 = 63 - us.leading_zeros() as usize;
        // The two bits after the leading one pick the quarter of the doubling.
        let quarter = ((u128::from(us) << 2) >> log2) as usize & 3;
        (log2 * 4 + quarter).min(LIVE_BUCKETS - 1)
    }

    /// The largest value bucket `b` holds.
    fn upper_bound(b: usize) -> u64 {
        let (log2, quarter) = (b / 4, (b % 4) as u64);
        // Bucket values have their leading one at `log2` and the next two bits = `quarter`.
        ((5 + quarter) << log2).div_ceil(4) - 1
    }

    pub fn record(&self, us: u64) {
        self.buckets[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The p99 (µs, bucket upper bound) of what was recorded since the last call; empties it.
    pub fn take_p99(&self) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total - total / 100;
        let mut seen = 0;
        counts.iter().enumerate().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| Self::upper_bound(b))
        })
    }
}

/// The run's clock, shared by all threads: viewers arrive from `go`, set once the published
/// streams are live, and everything stops `duration` after it.
pub struct Clock {
    go: std::sync::OnceLock<Instant>,
    duration: Duration,
}

impl Clock {
    pub fn new(duration: Duration) -> Self {
        Self {
            go: std::sync::OnceLock::new(),
            duration,
        }
    }

    /// Starts the arrivals now (once; later calls do nothing).
    pub fn go(&self) {
        let _ = self.go.set(Instant::now());
    }

    /// When arrivals start, once known.
    pub fn started(&self) -> Option<Instant> {
        self.go.get().copied()
    }

    /// When the run ends: `duration` after go; far away while go is not set.
    pub fn until(&self) -> Instant {
        self.started().map_or_else(
            || Instant::now() + Duration::from_secs(24 * 3600),
            |go| go + self.duration,
        )
    }

    /// Waits (on a monoio task) until arrivals start.
    pub async fn wait_go(&self) -> Instant {
        loop {
            if let Some(go) = self.started() {
                return go;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What a task needs from its thread.
#[derive(Clone)]
pub struct Ctx {
    pub stats: Rc<RefCell<Stats>>,
    pub live: std::sync::Arc<Live>,
    pub clock: std::sync::Arc<Clock>,
    /// Frames published within this long after a viewer joined are not in its latency.
    pub warmup_us: u64,
    /// `--verify light`: HLS segment bodies past the checked prefix are discarded unread.
    pub light: bool,
    /// `--webrtc-drop-every`.
    pub webrtc_drop_every: u64,
    /// Errors counted through this context: each viewer task has its own copy, so this is
    /// that viewer's (see [`Ctx::viewer_done`]).
    pub errors_here: std::cell::Cell<u64>,
}

impl Ctx {
    pub(crate) fn until(&self) -> Instant {
        self.clock.until()
    }

    pub(crate) fn latency(&self, histogram: &'static str, us: u64) {
        self.stats.borrow_mut().record(histogram, us);
        self.live.worst_us.fetch_max(us, Ordering::Relaxed);
        match histogram {
            "frame_latency" => self.live.frame_latency.record(us),
            "segment_download" => self.live.segment_download.record(us),
            _ => {}
        }
    }

    pub(crate) fn error(&self, kind: &'static str) {
        self.errors_here.set(self.errors_here.get() + 1);
        self.stats.borrow_mut().error(kind);
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A viewer's end: one that received no media and had no other error counts a
    /// `no_media` error (a stream nobody publishes is a failed run, not a quiet one).
    pub(crate) fn viewer_done(&self, got_media: bool) {
        if got_media {
            self.stats.borrow_mut().count("viewers_with_media", 1);
        } else if self.errors_here.get() == 0 {
            self.error("no_media");
        }
    }

    /// Whether the run's deadline is still ahead.
    pub(crate) fn running(&self) -> bool {
        Instant::now() < self.until()
    }

    /// Counts an error unless the run is over: a connection cut at the deadline is not one.
    pub(crate) fn error_while_running(&self, kind: &'static str) {
        if self.running() {
            self.error(kind);
        }
    }

    /// Records the time from `from` to `to` in `histogram`.
    pub(crate) fn span(&self, histogram: &'static str, from: Instant, to: Instant) {
        self.latency(histogram, to.duration_since(from).as_micros() as u64);
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::LiveHistogram;

    #[test]
    fn live_p99_is_within_a_bucket_above_the_true_one() {
        let h = LiveHistogram::default();
        assert_eq!(h.take_p99(), None);
        // 1..=10_000 µs: the true p99 is 9900.
        for us in 1..=10_000 {
            h.record(us);
        }
        let p99 = h.take_p99().unwrap();
        assert!((9_900..=9_900 * 119 / 100).contains(&p99), "{p99}");
        assert_eq!(h.take_p99(), None, "taking empties it");
        // One slow outlier in a hundred fast ones is the p99.
        for _ in 0..99 {
            h.record(1_000);
        }
        h.record(3_000_000);
        let p99 = h.take_p99().unwrap();
        assert!((1_000..=1_190).contains(&p99), "{p99}");
        // Every value lands in a bucket whose bound is not below it.
        for us in [1u64, 2, 3, 4, 5, 7, 8, 1023, 1024, 1_000_000_007] {
            let b = LiveHistogram::bucket(us);
            assert!(LiveHistogram::upper_bound(b) >= us, "{us}");
            assert!(b == 0 || LiveHistogram::upper_bound(b - 1) < us, "{us}");
        }
    }
}
