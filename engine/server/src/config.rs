//! Command line and config file: parsed into a raw [`Args`], then validated into [`Config`].
//!
//! `--config FILE` holds `name = value` lines using the long flag names (`cores = 4`,
//! `origin = "rtmp://a/live"`); flags given on the command line override the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use edge_core::gop::GopLimits;
use edge_core::hls::HlsConfig;
use edge_core::queue::QueueLimits;
use edge_core::upstream::OriginUrl;

/// A thread-per-core io_uring live-streaming edge server.
///
/// Publish: rtmp://HOST:1935/{app}/{stream}. Play: the same URL over RTMP, or
/// http://HOST:8080/{app}/{stream}.flv. Health: /healthz, counters: /metrics.
#[derive(Debug, Parser, Clone)]
#[command(name = "edge-engine", version, args_override_self = true)]
pub struct Args {
    /// Read flags from FILE (`name = value` lines, long flag names); command-line flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Number of shards (one pinned thread each). Default: every available CPU, or the
    /// length of --cpu-list.
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,

    /// CPUs to pin shards to, in shard order, e.g. `2-9,12`. Pair it with the NIC's IRQ
    /// layout (see tuning/).
    #[arg(long, value_name = "LIST")]
    pub cpu_list: Option<String>,

    /// RTMP listen address (every shard binds it with SO_REUSEPORT). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:1935")]
    pub rtmp: SocketAddr,

    /// HTTP listen address (HTTP-FLV, /healthz, /metrics, /api/v1/streams).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub http: SocketAddr,

    /// Upstream origin `rtmp://HOST[:PORT]/APP` (edge mode), repeatable, in failover order.
    /// A stream nobody publishes here is pulled from `APP/{stream}` on the first healthy
    /// origin, once per machine, while it has viewers; publishes here are forwarded to it.
    #[arg(long, value_name = "URL")]
    pub origin: Vec<String>,

    /// Edge mode: stop a pull this long after its last viewer left (RTMP, FLV, or the last
    /// HLS playlist request).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub upstream_idle_ms: u64,

    /// Edge mode: an origin that sends no media this long (or does not connect within it)
    /// is failed over to the next one.
    #[arg(long, value_name = "MS", default_value_t = 1_500)]
    pub upstream_timeout_ms: u64,

    /// Per-viewer send queue limit. Over it, frames are dropped until the next keyframe.
    #[arg(long, value_name = "BYTES", default_value_t = 2 << 20)]
    pub max_queue_bytes: usize,

    /// A viewer that stays over its queue limit this long is disconnected.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub slow_viewer_ms: u64,

    /// How long players stay attached after their publisher leaves, waiting for a republish.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub republish_grace_ms: u64,

    /// How long a player that arrives before its publisher waits (then StreamNotFound / 404).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub play_wait_ms: u64,

    /// Close a connection that sends nothing this long while it is not a player: RTMP before
    /// publish/play, a silent publisher, an idle HTTP keep-alive connection.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,

    /// GOP cache bound per stream, in frames.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub gop_max_frames: usize,

    /// GOP cache bound per stream, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub gop_max_bytes: usize,

    /// HLS segment target: cut at the first keyframe after this much media.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub hls_segment_ms: u64,

    /// HLS playlist window, in segments.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub hls_window: usize,

    /// Memory for HLS segments on the whole machine (split evenly over shards), in MiB.
    /// When full, ended streams' segments are evicted first, then new segments are refused.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub cache_mb: usize,

    /// How HTTP responses leave: `vectored` (head and body pieces in one writev) or
    /// `separate` (the head with the first body piece in one writev, then one write per
    /// piece). Both send the body without copying it.
    #[arg(long, value_name = "MODE", default_value = "separate", value_parser = ["vectored", "separate"])]
    pub http_writes: String,

    /// Capacity of each cross-shard channel, in messages (about 80 bytes each; there are
    /// shards² channels).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub mesh_queue_len: usize,

    /// io_uring submission queue entries per shard.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub uring_entries: u32,

    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    pub check: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub cpus: Vec<Option<usize>>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub queue: QueueLimits,
    pub gop: GopLimits,
    pub republish_grace_ms: u64,
    pub play_wait_ms: u64,
    pub idle_timeout_ms: u64,
    pub hls: HlsConfig,
    pub cache_bytes_per_shard: usize,
    pub http_vectored: bool,
    pub mesh_queue_len: usize,
    pub uring_entries: u32,
    /// Edge mode when not empty, in failover order.
    pub origins: Vec<OriginUrl>,
    pub upstream_idle_ms: u64,
    pub upstream_timeout_ms: u64,
}

impl Config {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cpus.len()
    }
}

impl Args {
    /// Parses the process arguments, reading `--config` first.
    pub fn load() -> anyhow::Result<Args> {
        let cli: Vec<String> = std::env::args().collect();
        let first = Args::parse_from(&cli);
        let Some(path) = &first.config else {
            return Ok(first);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut argv = vec![cli[0].clone()];
        argv.extend(file_args(&text).with_context(|| format!("in {}", path.display()))?);
        argv.extend(cli.into_iter().skip(1));
        Ok(Args::try_parse_from(argv)?)
    }

    /// Checks every value and resolves defaults.
    pub fn validate(&self) -> anyhow::Result<Config> {
        let origins = self
            .origin
            .iter()
            .map(|u| OriginUrl::parse(u).map_err(|e| anyhow::anyhow!("--origin: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !(100..=600_000).contains(&self.upstream_timeout_ms) {
            bail!("--upstream-timeout-ms must be within 100..=600000");
        }
        if self.upstream_idle_ms > 3_600_000 {
            bail!("--upstream-idle-ms must be at most 3600000");
        }
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus: Vec<Option<usize>> = match (&self.cpu_list, self.cores) {
            (Some(list), cores) => {
                let list = edge_core::cpus::parse_cpu_list(list)?;
                if let Some(n) = cores {
                    if n != list.len() {
                        bail!(
                            "--cores {n} does not match the {} CPUs of --cpu-list",
                            list.len()
                        );
                    }
                }
                list.into_iter().map(Some).collect()
            }
            (None, Some(0)) => bail!("--cores must be at least 1"),
            (None, Some(n)) if n > 1024 => bail!("--cores {n}: at most 1024 shards"),
            // More shards than CPUs is allowed (tests, containers); extra shards are unpinned.
            (None, Some(n)) => (0..n).map(|i| (i < available).then_some(i)).collect(),
            (None, None) => (0..available).map(Some).collect(),
        };
        if self.max_queue_bytes < 4096 {
            bail!("--max-queue-bytes must be at least 4096");
        }
        if self.gop_max_frames == 0 || self.gop_max_bytes == 0 {
            bail!("--gop-max-frames and --gop-max-bytes must be positive");
        }
        if self.idle_timeout_ms == 0 {
            bail!("--idle-timeout-ms must be positive");
        }
        if !(100..=60_000).contains(&self.hls_segment_ms) {
            bail!("--hls-segment-ms must be within 100..=60000");
        }
        if !(1..=100).contains(&self.hls_window) {
            bail!("--hls-window must be within 1..=100");
        }
        if self.cache_mb == 0 {
            bail!("--cache-mb must be positive");
        }
        if self.mesh_queue_len < 16 {
            bail!("--mesh-queue-len must be at least 16");
        }
        if !(8..=32768).contains(&self.uring_entries) {
            bail!("--uring-entries must be within 8..=32768");
        }
        let shards = cpus.len();
        Ok(Config {
            cpus,
            rtmp: self.rtmp,
            http: self.http,
            queue: QueueLimits {
                max_queue_bytes: self.max_queue_bytes,
                slow_viewer_ms: self.slow_viewer_ms,
            },
            gop: GopLimits {
                max_frames: self.gop_max_frames,
                max_bytes: self.gop_max_bytes,
            },
            republish_grace_ms: self.republish_grace_ms,
            play_wait_ms: self.play_wait_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            hls: HlsConfig {
                segment_ms: self.hls_segment_ms,
                window: self.hls_window,
                keep_extra: 2,
            },
            cache_bytes_per_shard: (self.cache_mb << 20) / shards,
            http_vectored: self.http_writes == "vectored",
            mesh_queue_len: self.mesh_queue_len,
            uring_entries: self.uring_entries,
            origins,
            upstream_idle_ms: self.upstream_idle_ms,
            upstream_timeout_ms: self.upstream_timeout_ms,
        })
    }
}

/// Parses `2-9,12` into `[2, 3, ..., 9, 12]`.
fn file_args(text: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected `name = value`", n + 1);
        };
        let key = k.trim().replace('_', "-");
        let value = v.trim().trim_matches('"');
        if key == "config" {
            bail!("line {}: `config` cannot be nested", n + 1);
        }
        if value == "true" {
            out.push(format!("--{key}"));
        } else {
            out.push(format!("--{key}={value}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_edge_cores_strict_ones() {
        let a = Args::parse_from(["e", "--cpu-list", "1,1"]);
        assert!(a.validate().is_err(), "a CPU twice");
        let a = Args::parse_from(["e", "--cpu-list", "1,0"]);
        let c = a.validate().unwrap();
        assert_eq!(c.cpus, vec![Some(1), Some(0)]);
    }

    #[test]
    fn file_lines_become_flags() {
        let a = file_args("# c\ncores = 2\nrtmp = \"127.0.0.1:0\"\nplay_wait_ms=5\n").unwrap();
        assert_eq!(
            a,
            vec!["--cores=2", "--rtmp=127.0.0.1:0", "--play-wait-ms=5"]
        );
        assert!(file_args("nonsense").is_err());
    }

    #[test]
    fn validation() {
        let a = Args::parse_from(["e", "--cores", "3", "--rtmp", "127.0.0.1:0"]);
        assert_eq!(a.validate().unwrap().shards(), 3);
        let a = Args::parse_from(["e", "--cores", "2", "--cpu-list", "0-2"]);
        assert!(a.validate().is_err());
        let a = Args::parse_from([
            "e",
            "--origin",
            "rtmp://x/live",
            "--origin",
            "rtmp://y:19350/l",
        ]);
        let c = a.validate().unwrap();
        assert_eq!(c.origins.len(), 2);
        assert_eq!(c.origins[1].port, 19350);
        assert_eq!((c.upstream_idle_ms, c.upstream_timeout_ms), (10_000, 1_500));
        let a = Args::parse_from(["e", "--origin", "http://x/live"]);
        assert!(a.validate().is_err());
    }
}
