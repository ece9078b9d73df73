//! The shard clock: milliseconds since the engine started, the one `now` every edge-core
//! state machine is given, and the `Instant` a timer for such a deadline sleeps until.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shared by every shard (one epoch per process), `Copy` so outlets can carry it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
    /// Unix time at the epoch, for what the API shows.
    epoch_unix_ms: u64,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Self {
            epoch: Instant::now(),
            epoch_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// When shard-clock time `ms` is (for sleeping until a deadline).
    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// The first shard-clock ms at or after `t` (a deadline that must not fire early).
    pub(crate) fn ms_after(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    /// Shard-clock `ms` as Unix time in ms.
    pub(crate) fn unix_ms(&self, ms: u64) -> u64 {
        self.epoch_unix_ms + ms
    }
}
