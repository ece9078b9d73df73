//! 32-bit RTMP timestamps, unwrapped to 64-bit stream time.
//!
//! RTMP timestamps are milliseconds modulo 2^32 (about 49.7 days). Each new value is read as
//! the candidate nearest to the previous one, so a wrap moves forward and the small backward
//! steps of interleaved audio and video stay small.

/// Unwraps a sequence of 32-bit timestamps into a monotonic-by-epoch 64-bit timeline.
#[derive(Debug, Default, Clone)]
pub struct TimestampUnwrapper {
    last: Option<u64>,
}

impl TimestampUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the 64-bit time for the wire value `ts`.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => u64::from(ts),
            Some(last) => {
                let epoch = last >> 32;
                let candidates = [epoch.wrapping_sub(1), epoch, epoch + 1]
                    .into_iter()
                    .filter(|&e| e <= u64::from(u32::MAX))
                    .map(|e| (e << 32) | u64::from(ts));
                // Nearest candidate; ties go to the later one.
                candidates
                    .min_by_key(|&c| (c.abs_diff(last), u64::MAX - c))
                    .unwrap_or(u64::from(ts))
            }
        };
        self.last = Some(ext);
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_forward_at_2_pow_32() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(u32::MAX - 20), u64::from(u32::MAX - 20));
        assert_eq!(u.unwrap(u32::MAX), u64::from(u32::MAX));
        assert_eq!(u.unwrap(13), (1u64 << 32) + 13);
        assert_eq!(u.unwrap(60), (1u64 << 32) + 60);
        // A small step back just after the wrap stays in the new epoch...
        assert_eq!(u.unwrap(40), (1u64 << 32) + 40);
        // ...and a small step back across it returns to the old one.
        assert_eq!(u.unwrap(u32::MAX - 5), u64::from(u32::MAX - 5));
    }

    #[test]
    fn interleaved_audio_video_steps_back_stay_small() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(1000), 1000);
        assert_eq!(u.unwrap(980), 980);
        assert_eq!(u.unwrap(1040), 1040);
        // No epoch below zero.
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(5), 5);
        assert_eq!(u.unwrap(u32::MAX), u64::from(u32::MAX));
    }
}
