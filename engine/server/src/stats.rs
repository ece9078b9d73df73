//! Per-shard counters: plain relaxed atomics, each written by its own shard only, read by
//! whichever shard renders `/metrics` or `/healthz`. No lock anywhere.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

macro_rules! counters {
    ($($name:ident: $kind:literal, $help:literal;)*) => {
        /// One shard's counters, on its own cache lines.
        #[derive(Default)]
        #[repr(align(128))]
        pub struct ShardStats {
            $(pub $name: AtomicU64,)*
            /// 0 unknown, 1 io_uring, 2 legacy (epoll).
            pub driver: AtomicU8,
            /// 0 unknown, 1 hugetlb, 2 thp, 3 normal.
            pub cache_backing: AtomicU8,
            pub cpu: AtomicU64,
        }

        const METRICS: &[(&str, &str, &str)] = &[$((stringify!($name), $kind, $help),)*];

        impl ShardStats {
            fn values(&self) -> Vec<u64> {
                vec![$(self.$name.load(Ordering::Relaxed),)*]
            }
        }
    };
}

counters! {
    rtmp_connections_accepted: "counter", "RTMP connections accepted";
    http_connections_accepted: "counter", "HTTP connections accepted";
    rtmp_players: "gauge", "RTMP players attached";
    flv_players: "gauge", "HTTP-FLV players attached";
    publishers: "gauge", "Publishers connected to this shard";
    streams_owned: "gauge", "Streams whose owner (local origin) is this shard";
    replicas: "gauge", "Streams this shard keeps a replica of for its viewers";
    frames_in: "counter", "Media messages received from publishers";
    frames_dropped: "counter", "Frames dropped by viewer queue overflow";
    slow_viewer_disconnects: "counter", "Viewers closed for staying over their queue limit";
    bytes_out: "counter", "Bytes written to viewers";
    mesh_lagging: "counter", "Updates a replica shard missed because its channel was full";
    publish_rejected: "counter", "Publishes refused (BadName)";
    connection_errors: "counter", "Connections closed for a protocol error";
    accept_errors: "counter", "accept() failures (EMFILE, ENFILE, ...)";
    http_requests: "counter", "HTTP requests served";
    hls_segments: "counter", "HLS segments produced by streams this shard owns";
    hls_segments_refused: "counter", "HLS segments refused because the segment cache was full";
    hls_evictions: "counter", "Ended streams whose HLS segments were evicted for space";
    cache_bytes_total: "gauge", "Segment arena size";
    cache_bytes_free: "gauge", "Segment arena bytes free";
}

/// Counters of every shard, indexed by shard id.
pub struct Stats {
    pub shards: Box<[ShardStats]>,
}

impl Stats {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| ShardStats::default()).collect(),
        }
    }

    /// Prometheus text exposition, one series per shard.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let values: Vec<Vec<u64>> = self.shards.iter().map(|s| s.values()).collect();
        for (i, (name, kind, help)) in METRICS.iter().enumerate() {
            let _ = writeln!(out, "# HELP edge_{name} {help}\n# TYPE edge_{name} {kind}");
            for (shard, v) in values.iter().enumerate() {
                let _ = writeln!(out, "edge_{name}{{shard=\"{shard}\"}} {}", v[i]);
            }
        }
        let _ = writeln!(
            out,
            "# HELP edge_shard_info Shard placement, io driver and segment memory backing\n# TYPE edge_shard_info gauge"
        );
        for (shard, s) in self.shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "edge_shard_info{{shard=\"{shard}\",cpu=\"{}\",driver=\"{}\",cache_backing=\"{}\"}} 1",
                cpu_label(s.cpu.load(Ordering::Relaxed)),
                driver_name(s.driver.load(Ordering::Relaxed)),
                backing_name(s.cache_backing.load(Ordering::Relaxed))
            );
        }
        out
    }

    /// `/healthz` body.
    pub fn render_health(&self) -> String {
        let shards: Vec<String> = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{{\"shard\":{i},\"cpu\":{},\"driver\":\"{}\",\"cache_backing\":\"{}\"}}",
                    match s.cpu.load(Ordering::Relaxed) {
                        u64::MAX => "null".to_string(),
                        c => c.to_string(),
                    },
                    driver_name(s.driver.load(Ordering::Relaxed)),
                    backing_name(s.cache_backing.load(Ordering::Relaxed))
                )
            })
            .collect();
        format!("{{\"status\":\"ok\",\"shards\":[{}]}}\n", shards.join(","))
    }
}

fn cpu_label(c: u64) -> String {
    if c == u64::MAX {
        "none".into()
    } else {
        c.to_string()
    }
}

pub fn backing_name(b: u8) -> &'static str {
    match b {
        1 => "hugetlb",
        2 => "thp",
        3 => "normal",
        _ => "starting",
    }
}

pub fn driver_name(d: u8) -> &'static str {
    match d {
        1 => "io_uring",
        2 => "legacy",
        _ => "starting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_series_per_shard() {
        let s = Stats::new(2);
        s.shards[1].rtmp_players.store(7, Ordering::Relaxed);
        s.shards[0].driver.store(1, Ordering::Relaxed);
        s.shards[0].cpu.store(u64::MAX, Ordering::Relaxed);
        let text = s.render_prometheus();
        assert!(text.contains("edge_rtmp_players{shard=\"1\"} 7\n"));
        assert!(text.contains("edge_rtmp_players{shard=\"0\"} 0\n"));
        assert!(text.contains("edge_shard_info{shard=\"0\",cpu=\"none\",driver=\"io_uring\",cache_backing=\"starting\"} 1"));
        assert!(s.render_health().starts_with("{\"status\":\"ok\""));
    }
}
