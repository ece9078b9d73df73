//! The command line, parsed into [`Args`] and validated into a [`Plan`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

/// Load generator for live-streaming servers: publishes RTMP streams carrying SEI latency
/// probes, and runs RTMP, HTTP-FLV and HLS viewers that measure them.
#[derive(Debug, Parser, Clone)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// Number of viewers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub viewers: usize,

    /// Viewer protocol: rtmp, flv, hls or llhls, or a mix such as `hls=0.8,flv=0.2`.
    #[arg(long, value_name = "P", default_value = "rtmp")]
    pub protocol: String,

    /// How much of each HLS segment a viewer checks. `full`: every packet's sync byte, the
    /// packet count and the first frame's probe. `light`: the status, the Content-Length, the
    /// sync bytes of the packets up to the first frame's probe (which must be there), and the
    /// byte count; the rest of the body is discarded in the kernel (recv with MSG_TRUNC), so
    /// the client is not the limit at scale. For WebRTC viewers, `light` leaves nine in ten
    /// viewers' media encrypted: once connected, they read only the RTP headers (frames by
    /// their marker bit, packets lost by sequence number), and every tenth viewer decrypts
    /// and measures frame latency. Scale runs say which mode they used.
    #[arg(long, value_name = "MODE", default_value = "full", value_parser = ["full", "light"])]
    pub verify: String,

    /// WebRTC viewers that decrypt drop every Nth RTP datagram they receive, before their
    /// client sees it (0: none), and count those dropped (`rtp_dropped`) and those that came
    /// again later (`rtp_recovered`, the engine's answer to the client's NACK): loss without
    /// a lossy network, for the retransmission test.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub webrtc_drop_every: u64,

    /// Number of streams; viewers spread over them.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub streams: usize,

    /// Watch (or with --publish, publish) this stream, `APP/NAME`, instead of
    /// `APP/PREFIX0`…; repeatable, viewers spread over them.
    #[arg(long = "stream", value_name = "APP/NAME", conflicts_with_all = ["streams", "stream_prefix", "app"])]
    pub stream: Vec<String>,

    /// How viewers spread over streams: uniform or zipf (s = 1).
    #[arg(long, value_name = "D", default_value = "uniform", value_parser = ["uniform", "zipf"])]
    pub spread: String,

    /// Application name in stream URLs.
    #[arg(long, default_value = "live")]
    pub app: String,

    /// Stream names are PREFIX0, PREFIX1, ...
    #[arg(long, value_name = "PREFIX", default_value = "load")]
    pub stream_prefix: String,

    /// Viewer arrivals per second (0: all at once).
    #[arg(long, value_name = "PER_S", default_value_t = 0.0)]
    pub ramp: f64,

    /// How long to run after the first viewer starts, e.g. 15s, 2m.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Leave each viewer's first TIME out of the frame-latency histogram (its frames are still
    /// counted and checked for gaps): separates steady state from the join burst.
    #[arg(long, value_name = "TIME", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Publish the streams too (RTMP, to the RTMP target).
    #[arg(long)]
    pub publish: bool,

    /// FLV file the publisher loops (default: the --bitrate rendition).
    #[arg(long, value_name = "FILE", conflicts_with = "bitrate")]
    pub source: Option<PathBuf>,

    /// Bundled rendition the publisher loops (built into the binary): 200k (320×240, 2 s
    /// GOP), 360k (the test fixture, 320×240, 1 s GOP) or 600k (640×360, 2 s GOP); H.264
    /// High with B-frames + AAC.
    #[arg(long, value_name = "RATE", default_value = "360k", value_parser = ["200k", "360k", "600k"])]
    pub bitrate: String,

    /// Servers: an rtmp://HOST:PORT URL for RTMP, an http://HOST:PORT URL for FLV and HLS.
    /// Repeatable.
    #[arg(long, value_name = "URL")]
    pub target: Vec<String>,

    /// Publish to this rtmp://HOST:PORT instead of the RTMP --target: an origin, while the
    /// viewers watch an edge that pulls from it.
    #[arg(long, value_name = "URL", requires = "publish")]
    pub publish_target: Option<String>,

    /// Start the workspace's edge-engine on loopback instead of using --target.
    #[arg(long, conflicts_with = "target")]
    pub spawn: bool,

    /// Extra arguments for the spawned engine, e.g. "--cores 1 --cpu-list 0".
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub engine_args: String,

    /// Most HLS connections in all (shared by HLS viewers; RTMP and FLV viewers hold one
    /// socket each). Default: what the open-file limit leaves after the RTMP/FLV sockets. They
    /// open on demand: past 64 per thread, at most one a millisecond, and only while the
    /// thread keeps its timers.
    #[arg(long, value_name = "M")]
    pub connections: Option<usize>,

    /// Against a loopback target, connect from this many source addresses (127.0.0.1,
    /// 127.0.0.2, …) in turn, so the ephemeral ports of one address do not run out. 1: the
    /// kernel's choice.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub source_addrs: usize,

    /// Worker threads (each a pinned monoio runtime).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cores: usize,

    /// CPUs to pin the worker threads to, e.g. `1` or `2-3`.
    #[arg(long, value_name = "LIST")]
    pub cpu_list: Option<String>,

    /// Write every figure, the configuration and the machine to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Exit non-zero when errors exceed this fraction of viewers.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub max_error_rate: f64,
}

/// A viewer protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtmp,
    Flv,
    Hls,
    /// LL-HLS: blocking reloads and parts.
    LlHls,
    /// WebRTC by WHEP.
    WebRtc,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Flv => "flv",
            Protocol::Hls => "hls",
            Protocol::LlHls => "llhls",
            Protocol::WebRtc => "webrtc",
        }
    }

    /// Fetched through the thread's shared connection pool (HLS), not a socket of its own.
    pub fn pooled(self) -> bool {
        self == Protocol::Hls
    }

    /// Played from playlists (HLS, LL-HLS): with `--publish`, viewers wait for them.
    pub fn playlists(self) -> bool {
        matches!(self, Protocol::Hls | Protocol::LlHls)
    }
}

/// The validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub args: Args,
    /// Protocol of each viewer, in arrival order.
    pub viewer_protocols: Vec<Protocol>,
    /// Stream index of each viewer, into `streams`.
    pub viewer_streams: Vec<usize>,
    /// The streams, as (app, name): `--stream`s, or `--app`/`PREFIXn`.
    pub streams: Vec<(String, String)>,
    pub rtmp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// `--publish-target`, where given.
    pub publish_to: Option<SocketAddr>,
    pub cpus: Vec<Option<usize>>,
    /// HLS pool size of each worker thread.
    pub connections_per_thread: usize,
}

/// Parses `15s`, `2m`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| format!("bad duration `{s}`"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `rtmp`, or `hls=0.8,flv=0.2`, into weights.
pub fn parse_mix(s: &str) -> anyhow::Result<Vec<(Protocol, f64)>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (name, weight) = match part.split_once('=') {
            Some((n, w)) => (
                n.trim(),
                w.trim().parse::<f64>().context("protocol weight")?,
            ),
            None => (part.trim(), 1.0),
        };
        let p = match name {
            "rtmp" => Protocol::Rtmp,
            "flv" => Protocol::Flv,
            "hls" => Protocol::Hls,
            "llhls" => Protocol::LlHls,
            "webrtc" => Protocol::WebRtc,
            other => bail!("unknown protocol `{other}` (rtmp, flv, hls, llhls, webrtc)"),
        };
        if weight.is_nan() || weight <= 0.0 {
            bail!("protocol weight must be positive");
        }
        out.push((p, weight));
    }
    Ok(out)
}

/// Deterministic assignment: protocols by largest remainder, streams uniform or Zipf(1).
fn assign(
    n: usize,
    mix: &[(Protocol, f64)],
    streams: usize,
    zipf: bool,
) -> (Vec<Protocol>, Vec<usize>) {
    let total: f64 = mix.iter().map(|(_, w)| w).sum();
    let mut protocols = Vec::with_capacity(n);
    let mut credit = vec![0.0; mix.len()];
    for _ in 0..n {
        for (c, (_, w)) in credit.iter_mut().zip(mix) {
            *c += w / total;
        }
        let (best, _) = credit
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one protocol");
        credit[best] -= 1.0;
        protocols.push(mix[best].0);
    }
    let weights: Vec<f64> = (1..=streams)
        .map(|k| if zipf { 1.0 / k as f64 } else { 1.0 })
        .collect();
    let wsum: f64 = weights.iter().sum();
    let mut credit = vec![0.0; streams];
    let mut stream_of = Vec::with_capacity(n);
    for _ in 0..n {
        for (c, w) in credit.iter_mut().zip(&weights) {
            *c += w / wsum;
        }
        let (best, _) = credit
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one stream");
        credit[best] -= 1.0;
        stream_of.push(best);
    }
    (protocols, stream_of)
}

/// The renditions `--bitrate` names, built into the binary (no path of the build machine
/// is needed at run time).
const RENDITIONS: [(&str, &[u8]); 3] = [
    ("200k", include_bytes!("../fixtures/200k.flv")),
    ("360k", include_bytes!("../../tests/fixtures/bframes.flv")),
    ("600k", include_bytes!("../fixtures/600k.flv")),
];

/// What the publisher loops: a file, or a bundled rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    File(PathBuf),
    Bundled(&'static str),
}

impl SourceSpec {
    /// Its bytes.
    pub fn read(&self) -> anyhow::Result<std::borrow::Cow<'static, [u8]>> {
        match self {
            SourceSpec::File(path) => Ok(std::fs::read(path)
                .with_context(|| format!("reading {}", path.display()))?
                .into()),
            SourceSpec::Bundled(rate) => RENDITIONS
                .iter()
                .find(|(r, _)| r == rate)
                .map(|(_, bytes)| (*bytes).into())
                .with_context(|| format!("no bundled rendition {rate}")),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::File(p) => p.display().fmt(f),
            SourceSpec::Bundled(rate) => write!(f, "bundled {rate} rendition"),
        }
    }
}

impl Args {
    /// What the publisher loops: --source, else the --bitrate rendition.
    pub fn source_spec(&self) -> SourceSpec {
        match &self.source {
            Some(path) => SourceSpec::File(path.clone()),
            None => SourceSpec::Bundled(
                RENDITIONS
                    .iter()
                    .find(|(r, _)| *r == self.bitrate)
                    .map_or("360k", |(r, _)| r),
            ),
        }
    }

    /// The streams, as (app, name).
    fn stream_names(&self) -> anyhow::Result<Vec<(String, String)>> {
        if self.stream.is_empty() {
            return Ok((0..self.streams)
                .map(|i| (self.app.clone(), format!("{}{i}", self.stream_prefix)))
                .collect());
        }
        self.stream
            .iter()
            .map(|s| match s.trim_matches('/').split_once('/') {
                Some((app, name)) if !app.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok((app.to_string(), name.to_string()))
                }
                _ => bail!("--stream {s}: use APP/NAME, e.g. live/x"),
            })
            .collect()
    }

    /// Validates into a plan. Targets for `--spawn` are filled in by the caller.
    pub fn plan(self) -> anyhow::Result<Plan> {
        if self.streams == 0 {
            bail!("--streams must be at least 1");
        }
        if self.cores == 0 {
            bail!("--cores must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            bail!("--max-error-rate is a fraction in 0..=1");
        }
        if !(1..=254).contains(&self.source_addrs) {
            bail!("--source-addrs must be within 1..=254");
        }
        if self.viewers == 0 && !self.publish {
            bail!("nothing to do: give --viewers N and/or --publish");
        }
        let mix = parse_mix(&self.protocol)?;
        let streams = self.stream_names()?;
        let (viewer_protocols, viewer_streams) =
            assign(self.viewers, &mix, streams.len(), self.spread == "zipf");
        let mut rtmp = None;
        let mut http = None;
        for t in &self.target {
            if let Some(rest) = t.strip_prefix("rtmp://") {
                rtmp = Some(resolve(rest.split('/').next().unwrap_or(""), 1935)?);
            } else if let Some(rest) = t.strip_prefix("http://") {
                http = Some(resolve(rest.split('/').next().unwrap_or(""), 80)?);
            } else {
                bail!("--target {t}: use rtmp://HOST:PORT or http://HOST:PORT");
            }
        }
        let publish_to = match &self.publish_target {
            Some(t) => match t.strip_prefix("rtmp://") {
                Some(rest) => Some(resolve(rest.split('/').next().unwrap_or(""), 1935)?),
                None => bail!("--publish-target {t}: use rtmp://HOST:PORT"),
            },
            None => None,
        };
        let cpus = match &self.cpu_list {
            Some(list) => {
                let cpus = edge_core::cpus::parse_cpu_list(list)?;
                if cpus.len() != self.cores {
                    bail!(
                        "--cores {} does not match the {} CPUs of --cpu-list",
                        self.cores,
                        cpus.len()
                    );
                }
                cpus.into_iter().map(Some).collect()
            }
            None => vec![None; self.cores],
        };
        let streaming = viewer_protocols.iter().filter(|p| !p.pooled()).count();
        let hls = viewer_protocols.len() - streaming;
        let mut nofile = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) };
        let budget = (nofile.rlim_cur as usize).saturating_sub(streaming + streams.len() + 256);
        let connections = self.connections.unwrap_or(budget).min(hls.max(1));
        if connections == 0 {
            bail!("no file descriptors left for HLS connections (raise the open-file limit or lower --connections)");
        }
        if streaming + connections + streams.len() + 64 > nofile.rlim_cur as usize {
            bail!(
                "{streaming} RTMP/FLV sockets + {connections} HLS connections exceed the open-file limit {}",
                nofile.rlim_cur
            );
        }
        let connections_per_thread = connections.div_ceil(self.cores);
        Ok(Plan {
            connections_per_thread,
            args: self,
            viewer_protocols,
            viewer_streams,
            streams,
            rtmp,
            http,
            publish_to,
            cpus,
        })
    }
}

fn resolve(hostport: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let with_port = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {with_port}"))?
        .next()
        .with_context(|| format!("{with_port} has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_and_spreads_are_exact_and_deterministic() {
        let mix = parse_mix("hls=0.8,flv=0.2").unwrap();
        let (p, s) = assign(10, &mix, 2, false);
        assert_eq!(p.iter().filter(|p| **p == Protocol::Hls).count(), 8);
        assert_eq!(s.iter().filter(|s| **s == 0).count(), 5);
        let (_, z) = assign(300, &parse_mix("rtmp").unwrap(), 3, true);
        let counts: Vec<usize> = (0..3)
            .map(|i| z.iter().filter(|s| **s == i).count())
            .collect();
        assert_eq!(counts, vec![164, 82, 54], "Zipf(1): 6/11, 3/11, 2/11");
        assert!(parse_mix("dash").is_err());
        assert!(parse_mix("hls=0").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn bitrate_selects_a_bundled_rendition_of_that_rate() {
        for (rate, kbps) in [("200k", 200), ("360k", 360), ("600k", 600)] {
            let args = Args::parse_from(["loadgen", "--publish", "--bitrate", rate]);
            assert_eq!(args.source_spec(), SourceSpec::Bundled(rate));
            let source = crate::viewers::Source::load(&args.source_spec()).unwrap();
            let got = source.kbps();
            // Within 10 % of the name: what a rendition is called is what it sends.
            assert!(got.abs_diff(kbps) * 10 <= kbps, "{rate}: {got} kbit/s");
        }
        let args = Args::parse_from(["loadgen", "--publish", "--source", "x.flv"]);
        assert_eq!(args.source_spec(), SourceSpec::File(PathBuf::from("x.flv")));
        assert!(
            Args::try_parse_from(["loadgen", "--source", "x.flv", "--bitrate", "200k"]).is_err()
        );
        assert!(Args::try_parse_from(["loadgen", "--bitrate", "1m"]).is_err());
    }

    #[test]
    fn named_streams_replace_the_numbered_ones() {
        let plan = |a: &[&str]| {
            Args::try_parse_from(a)
                .map_err(|e| e.to_string())?
                .plan()
                .map_err(|e| e.to_string())
        };
        let p = plan(&[
            "loadgen",
            "--viewers",
            "4",
            "--stream",
            "live/x",
            "--stream",
            "tv/y",
        ])
        .unwrap();
        assert_eq!(
            p.streams,
            vec![("live".into(), "x".into()), ("tv".into(), "y".into())]
        );
        let on = |i| p.viewer_streams.iter().filter(|s| **s == i).count();
        assert_eq!((on(0), on(1)), (2, 2), "spread over both");
        let p = plan(&["loadgen", "--viewers", "1", "--streams", "2"]).unwrap();
        assert_eq!(
            p.streams,
            vec![
                ("live".into(), "load0".into()),
                ("live".into(), "load1".into())
            ]
        );
        assert!(plan(&["loadgen", "--viewers", "1", "--stream", "x"]).is_err());
        assert!(plan(&[
            "loadgen",
            "--viewers",
            "1",
            "--stream",
            "live/x",
            "--streams",
            "2"
        ])
        .is_err());
    }
}
