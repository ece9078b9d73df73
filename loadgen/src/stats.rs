//! Measurements: one [`Stats`] per worker thread (no sharing while running), merged at the
//! end. Latencies are HDR histograms in microseconds; request latencies count from each
//! request's intended time, so a slow server cannot hide its tail by slowing the client down
//! (no coordinated omission).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Histogram names, in report order.
pub const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "frame_latency",
        "RTMP/FLV: publish to receive of each video frame",
    ),
    (
        "segment_latency",
        "HLS: publish of a segment's first frame to the segment fully received",
    ),
    (
        "segment_download",
        "HLS: segment request (intended time) to last byte",
    ),
    (
        "ttfb",
        "HLS: request (intended time) to first byte, playlists and segments",
    ),
    (
        "hls_startup",
        "HLS: viewer arrival to playback start (three target durations buffered)",
    ),
    (
        "playlist_reload_delay",
        "HLS: playlist response later than its intended reload time",
    ),
    (
        "part_latency",
        "LL-HLS: publish of a part's first frame to the part fully received",
    ),
    (
        "part_download",
        "LL-HLS: part request to last byte (a part asked for early waits for its frames)",
    ),
    (
        "blocking_reload",
        "LL-HLS: blocking playlist request to response (the wait for the next part)",
    ),
    (
        "llhls_startup",
        "LL-HLS: viewer arrival to playback start (PART-HOLD-BACK buffered)",
    ),
];

/// Error kinds counted.
pub const ERRORS: &[&str] = &["connect", "status", "timeout", "parse", "closed"];

/// One thread's figures.
#[derive(Debug, Clone)]
pub struct Stats {
    pub histograms: BTreeMap<&'static str, Histogram<u64>>,
    pub counters: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<&'static str, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        let histograms = HISTOGRAMS
            .iter()
            .map(|(name, _)| {
                // 1 µs to 1 hour, 3 significant digits.
                (
                    *name,
                    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                )
            })
            .collect();
        Self {
            histograms,
            counters: BTreeMap::new(),
            errors: ERRORS.iter().map(|e| (*e, 0)).collect(),
        }
    }
}

impl Stats {
    /// Records a latency in microseconds (clamped into the histogram's range).
    pub fn record(&mut self, histogram: &'static str, micros: u64) {
        if let Some(h) = self.histograms.get_mut(histogram) {
            h.saturating_record(micros.max(1));
        }
    }

    pub fn count(&mut self, counter: &'static str, n: u64) {
        *self.counters.entry(counter).or_default() += n;
    }

    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds another thread's figures.
    pub fn merge(&mut self, other: &Stats) {
        for (name, h) in &other.histograms {
            if let Some(mine) = self.histograms.get_mut(name) {
                // Same bounds on both sides: adding cannot fail.
                let _ = mine.add(h);
            }
        }
        for (k, v) in &other.counters {
            *self.counters.entry(k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// The final table: p50, p90, p99, p99.9 and max of every non-empty histogram, in ms.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "histogram (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, _) in HISTOGRAMS {
            let h = &self.histograms[name];
            if h.is_empty() {
                continue;
            }
            let q = |v: f64| h.value_at_quantile(v) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{:<22} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name,
                h.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                h.max() as f64 / 1000.0
            );
        }
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "counters: {}", counters.join(" "));
        let _ = writeln!(out, "errors:   {}", errors.join(" "));
        out
    }

    /// One histogram for the report: count, min, mean, quantiles and max, in microseconds
    /// (only the count when it is empty).
    pub fn histogram_report(&self, name: &str) -> HistogramReport {
        let h = &self.histograms[name];
        let q = |v: f64| (!h.is_empty()).then(|| h.value_at_quantile(v));
        HistogramReport {
            count: h.len(),
            min_us: (!h.is_empty()).then(|| h.min()),
            mean_us: (!h.is_empty()).then(|| (h.mean() * 10.0).round() / 10.0),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: (!h.is_empty()).then(|| h.max()),
        }
    }
}

/// One histogram in the JSON report, microseconds.
#[derive(Debug, serde::Serialize)]
pub struct HistogramReport {
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_histograms_counters_and_errors() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for v in 1..=99 {
            a.record("frame_latency", v * 1000);
        }
        b.record("frame_latency", 500_000);
        b.count("frames", 3);
        b.error("timeout");
        a.merge(&b);
        let h = &a.histograms["frame_latency"];
        assert_eq!(h.len(), 100);
        assert!(h.max() >= 499_000);
        assert_eq!(a.counters["frames"], 3);
        assert_eq!(a.total_errors(), 1);
        assert!(a.table().contains("frame_latency"));
        let empty = serde_json::to_string(&a.histogram_report("ttfb")).unwrap();
        assert_eq!(empty, "{\"count\":0}");
    }
}
