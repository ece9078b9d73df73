//! Command line, environment and config file: parsed into a raw [`Args`] ([`file`]), then
//! validated into [`Config`].
//!
//! `--config FILE` is TOML: top-level keys are the long flag names (`cores = 4`,
//! `origin = ["rtmp://a/live"]`), `[apps.NAME]` tables set one app's policy and
//! `[[origins]]` tables one origin's path ([`tables`]). Precedence: defaults < file <
//! `EDGE_…` environment variables < flags. `deploy/edge-engine.toml` documents every key.

pub(crate) mod access;
mod args;
pub(crate) mod convert;
mod file;
pub(crate) mod player;
pub(crate) mod tables;

pub(crate) use args::{
    Args, ClusterMode, HookFailure, Http3Congestion, HttpWrites, OnOff, TokenAlg, TokenFormatArg,
    WebrtcBframes,
};
pub(crate) use file::{warnings, Loaded};
pub(crate) use tables::{AppPolicies, OriginPath, StreamPolicy};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use edge_core::access::{Mode, ModeByApp, Policy};
use edge_core::gop::GopLimits;
use edge_core::hls::pull::HttpOrigin;
use edge_core::hls::HlsConfig;
use edge_core::queue::QueueLimits;
use edge_core::token::{self, HashAlg, TokenConfig, TokenFormat};
use edge_core::upstream::OriginUrl;

use crate::net::tls::CertStore;
use access::{AccessConfig, HookUrl, Hooks, OnFailure, UpstreamSign};

/// A validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub cpus: Vec<Option<usize>>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub queue: QueueLimits,
    pub idle_timeout_ms: u64,
    pub connection_limits: edge_core::admission::Limits,
    pub cache_bytes_per_shard: usize,
    pub http_vectored: bool,
    pub zero_copy: bool,
    /// RTMP and HTTP-FLV viewers' adaptive write batching.
    pub batching: edge_core::batching::BatchingConfig,
    pub mesh_queue_len: usize,
    pub uring_entries: u32,
    /// Edge mode when not empty, in failover order.
    pub origins: Vec<OriginUrl>,
    /// HLS origins (`--origin http(s)://…`), in failover order.
    pub hls_origins: Vec<HttpOrigin>,
    /// `--hls-prefetch on`.
    pub hls_prefetch: bool,
    pub upstream_idle_ms: u64,
    pub upstream_timeout_ms: u64,
    pub access: AccessConfig,
    pub https: Option<SocketAddr>,
    /// HTTP/3 over QUIC (UDP), every shard on the same port.
    pub http3: Option<SocketAddr>,
    pub http3_max_connections: usize,
    pub http3_retry_above: usize,
    pub http3_congestion: Http3Congestion,
    /// A new HTTP/3 connection's first window, bytes.
    pub http3_initial_window: u64,
    /// WebRTC playback (WHEP): shard N's UDP socket is this port plus N.
    pub webrtc_udp: Option<SocketAddr>,
    /// Addresses named in WHEP answers (`--webrtc-candidate`), port `None`: the bound one.
    pub webrtc_candidates: Vec<(std::net::IpAddr, Option<u16>)>,
    pub webrtc_max_sessions: usize,
    pub webrtc_bframes: WebrtcBframes,
    /// `--webrtc-audio-frame-ms`.
    pub webrtc_audio_frame: edge_core::webrtc::audio::FrameMs,
    pub rtmps: Option<SocketAddr>,
    /// Loaded when --https or --rtmps is given.
    pub tls: Option<Arc<CertStore>>,
    pub tls_handshake_timeout_ms: u64,
    /// Loaded when an origin is rtmps://.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// `--registry`, checked.
    pub registry: Option<RegistryConfig>,
    /// `--origin registry` was given.
    pub origin_registry: bool,
    /// `--cluster-mode pull` on an origin: it pulls what the registry places elsewhere.
    pub cluster_pull: bool,
    /// `--admin-token`.
    pub admin_token: Option<String>,
    /// `--drain-accept-ms`, `--drain-timeout-s`, `--exit-when-idle-s`.
    pub drain: edge_core::drain::DrainConfig,
    /// `--upgrade-socket`.
    pub upgrade_socket: Option<PathBuf>,
    /// `--upgrade-from`.
    pub upgrade_from: Option<PathBuf>,
    /// The console and player pages, and `--player-assets`, loaded.
    pub player: Arc<crate::config::player::PlayerAssets>,
    /// Each app's stream policy (HLS, GOP cache, grace, play wait).
    pub apps: AppPolicies,
    /// The `[[origins]]` tables' own settings.
    pub origin_paths: Vec<OriginPath>,
}

/// The registry settings.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
    pub host: String,
    pub port: u16,
    pub login: edge_core::registry::Login,
    /// `rediss://`: the client configuration (system CAs and --upstream-ca).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub node_id: String,
    /// Given addresses; the listen addresses (ports resolved) fill in the rest at start.
    pub advertise_rtmp: Option<String>,
    pub advertise_http: Option<String>,
}

impl RegistryConfig {
    /// The advertised RTMP and HTTP addresses, given the bound listen addresses.
    pub(crate) fn advertised(&self, rtmp: SocketAddr, http: SocketAddr) -> (String, String) {
        (
            advertise(self.advertise_rtmp.as_deref(), rtmp),
            advertise(self.advertise_http.as_deref(), http),
        )
    }
}

/// A parsed `--registry` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub login: edge_core::registry::Login,
    /// `rediss://`.
    pub tls: bool,
}

/// Parses `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
pub(crate) fn parse_redis_url(url: &str) -> anyhow::Result<RedisUrl> {
    let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => bail!("{url}: a redis:// or rediss:// URL"),
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (authority, db) = match rest.split_once('/') {
        Some((a, "")) => (a, 0),
        Some((a, d)) => (
            a,
            d.parse()
                .map_err(|_| anyhow!("{url}: bad database {d:?}"))?,
        ),
        None => (rest, 0),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| anyhow!("{url}: bad port {p:?}"))?)
        }
        _ => (authority, 6379),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{url}: no host");
    }
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some(("", p)) => (None, Some(p.to_string())),
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (None, Some(a.to_string())),
        },
    };
    Ok(RedisUrl {
        host: host.to_string(),
        port,
        login: edge_core::registry::Login {
            username,
            password,
            db,
        },
        tls,
    })
}

/// An advertised address: the one given, else the listen address with a usable host.
fn advertise(given: Option<&str>, listen: SocketAddr) -> String {
    match given {
        Some(a) => a.to_string(),
        None if listen.ip().is_unspecified() => format!("127.0.0.1:{}", listen.port()),
        None => listen.to_string(),
    }
}

fn check_advertised(given: &Option<String>, flag: &str) -> anyhow::Result<Option<String>> {
    match given {
        Some(a) if !edge_core::cluster::check_address(a) => bail!("{flag} {a:?}: give HOST:PORT"),
        _ => Ok(given.clone()),
    }
}

impl Config {
    /// Number of shards.
    pub(crate) fn shards(&self) -> usize {
        self.cpus.len()
    }

    /// Edge mode: streams come from origins (static RTMP or HTTP ones, or the registry's).
    pub(crate) fn is_edge(&self) -> bool {
        !self.origins.is_empty() || !self.hls_origins.is_empty() || self.origin_registry
    }

    /// Streams that are not published here are pulled (an edge, or an origin in
    /// `--cluster-mode pull`).
    pub(crate) fn pulls(&self) -> bool {
        self.is_edge() || self.cluster_pull
    }

    /// Owners follow the registry's placement of their streams.
    pub(crate) fn follows_registry(&self) -> bool {
        self.origin_registry || self.cluster_pull
    }

    /// The `[[origins]]` settings of an RTMP origin, if it has a table.
    pub(crate) fn rtmp_origin_path(&self, url: &OriginUrl) -> Option<&OriginPath> {
        self.origin_paths.iter().find(|p| p.is_rtmp(url))
    }

    /// The `[[origins]]` settings of an HTTP origin, if it has a table.
    pub(crate) fn http_origin_path(&self, host: &str, port: u16, tls: bool) -> Option<&OriginPath> {
        self.origin_paths
            .iter()
            .find(|p| p.is_http(host, port, tls))
    }
}

impl Args {
    /// Checks every value and resolves defaults.
    pub(crate) fn validate(&self) -> anyhow::Result<Config> {
        let origin_registry = self.origin.iter().any(|o| o == "registry");
        let is_http = |o: &&String| o.starts_with("http://") || o.starts_with("https://");
        let origins = self
            .origin
            .iter()
            .filter(|o| *o != "registry" && !is_http(o))
            .map(|u| OriginUrl::parse(u).map_err(|e| anyhow::anyhow!("--origin: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let hls_origins = self
            .origin
            .iter()
            .filter(is_http)
            .map(|u| HttpOrigin::parse(u).map_err(|e| anyhow::anyhow!("--origin: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if origin_registry && self.registry.is_none() {
            bail!("--origin registry needs --registry");
        }
        let pull_mode = self.cluster_mode == ClusterMode::Pull;
        if pull_mode && self.registry.is_none() {
            bail!("--cluster-mode pull needs --registry");
        }
        let cluster_pull = pull_mode && origins.is_empty() && !origin_registry;
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
        if self.idle_timeout_ms == 0 {
            bail!("--idle-timeout-ms must be positive");
        }
        if self.ll_hls == OnOff::On && !(50..=self.hls_segment_ms).contains(&self.hls_part_ms) {
            bail!(
                "--hls-part-ms {} must be within 50..={} (--hls-segment-ms)",
                self.hls_part_ms,
                self.hls_segment_ms
            );
        }
        let stream_policy = StreamPolicy {
            hls: HlsConfig {
                segment_ms: self.hls_segment_ms,
                window: self.hls_window,
                keep_extra: 2,
                part_ms: match self.ll_hls {
                    OnOff::On => self.hls_part_ms,
                    OnOff::Off => 0,
                },
            },
            gop: GopLimits {
                max_frames: self.gop_max_frames,
                max_bytes: self.gop_max_bytes,
            },
            republish_grace_ms: self.republish_grace_ms,
            play_wait_ms: self.play_wait_ms,
        };
        stream_policy.check().map_err(|e| anyhow!("--{e}"))?;
        let apps = AppPolicies::new(stream_policy, &self.apps)?;
        if self.cache_mb == 0 {
            bail!("--cache-mb must be positive");
        }
        if self.mesh_queue_len < 16 {
            bail!("--mesh-queue-len must be at least 16");
        }
        if !(8..=32768).contains(&self.uring_entries) {
            bail!("--uring-entries must be within 8..=32768");
        }
        let access = self.access()?;
        let origin_paths = self
            .origin_tables
            .iter()
            .map(|t| OriginPath::new(t, |k| self.upstream_sign(k)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(CertStore::load(cert, key)?),
            (None, None)
                if self.https.is_some() || self.rtmps.is_some() || self.http3.is_some() =>
            {
                bail!("--https, --rtmps and --http3 need --tls-cert and --tls-key")
            }
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let webrtc_candidates = self
            .webrtc_candidate
            .iter()
            .map(|c| parse_candidate(c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !webrtc_candidates.is_empty() && self.webrtc_udp.is_none() {
            bail!("--webrtc-candidate needs --webrtc-udp");
        }
        if self.webrtc_max_sessions == 0 {
            bail!("--webrtc-max-sessions must be positive");
        }
        if self.http3_max_connections == 0 {
            bail!("--http3-max-connections must be positive");
        }
        if !(100..=600_000).contains(&self.tls_handshake_timeout_ms) {
            bail!("--tls-handshake-timeout-ms must be within 100..=600000");
        }
        let upstream_tls = if origins.iter().any(|o| o.tls)
            || hls_origins.iter().any(|o| o.tls)
            || self.upstream_ca.is_some()
        {
            Some(crate::net::tls::client_config(self.upstream_ca.as_deref())?)
        } else {
            None
        };
        let registry = match &self.registry {
            None => None,
            Some(url) => {
                let url = parse_redis_url(url).context("--registry")?;
                let node_id = access.node_id.clone();
                edge_core::cluster::check_node_id(&node_id).context("--node-id")?;
                let tls = match (url.tls, &upstream_tls) {
                    (false, _) => None,
                    (true, Some(c)) => Some(Arc::clone(c)),
                    (true, None) => Some(crate::net::tls::client_config(None)?),
                };
                Some(RegistryConfig {
                    host: url.host,
                    port: url.port,
                    login: url.login,
                    tls,
                    node_id,
                    advertise_rtmp: check_advertised(&self.advertise_rtmp, "--advertise-rtmp")?,
                    advertise_http: check_advertised(&self.advertise_http, "--advertise-http")?,
                })
            }
        };
        let admin_token = match &self.admin_token {
            Some(t) if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                bail!("--admin-token: at least 16 printable characters, no spaces")
            }
            t => t.clone(),
        };
        if self.drain_accept_ms > 600_000 {
            bail!("--drain-accept-ms must be at most 600000");
        }
        if !(1..=86_400).contains(&self.drain_timeout_s) {
            bail!("--drain-timeout-s must be within 1..=86400");
        }
        for (flag, path) in [
            ("--upgrade-socket", &self.upgrade_socket),
            ("--upgrade-from", &self.upgrade_from),
        ] {
            // sun_path holds 107 bytes and a terminating NUL.
            if let Some(p) = path {
                if p.as_os_str().is_empty() || p.as_os_str().len() > 107 {
                    bail!("{flag} must be a path of 1 to 107 bytes");
                }
            }
        }
        if self.exit_when_idle_s == Some(0) {
            bail!("--exit-when-idle-s must be at least 1");
        }
        let drain = edge_core::drain::DrainConfig {
            accept_ms: self.drain_accept_ms,
            timeout_ms: self.drain_timeout_s * 1000,
            exit_when_idle_ms: self.exit_when_idle_s.map(|s| s.saturating_mul(1000)),
        };
        let player = Arc::new(crate::config::player::PlayerAssets::load(
            self.player_assets.as_deref(),
            &self.player_cdn,
            self.registry.is_some(),
        )?);
        let shards = cpus.len();
        if let Some(addr) = self.webrtc_udp {
            if addr.port() != 0 && usize::from(addr.port()) + shards > 65_536 {
                bail!("--webrtc-udp {addr}: the ports of {shards} shards run past 65535");
            }
        }
        Ok(Config {
            cpus,
            rtmp: self.rtmp,
            http: self.http,
            queue: QueueLimits {
                max_queue_bytes: self.max_queue_bytes,
                slow_viewer_ms: self.slow_viewer_ms,
            },
            idle_timeout_ms: self.idle_timeout_ms,
            connection_limits: edge_core::admission::Limits {
                total: self.max_connections,
                per_ip: self.max_connections_per_ip,
            },
            cache_bytes_per_shard: (self.cache_mb << 20) / shards,
            http_vectored: self.http_writes == HttpWrites::Vectored,
            zero_copy: self.zero_copy == OnOff::On,
            batching: edge_core::batching::BatchingConfig {
                ceiling_ms: self.write_coalesce_ms,
                grow_at_permille: self.write_coalesce_load * 10,
            },
            mesh_queue_len: self.mesh_queue_len,
            uring_entries: self.uring_entries,
            origins,
            hls_origins,
            hls_prefetch: self.hls_prefetch == OnOff::On,
            upstream_idle_ms: self.upstream_idle_ms,
            upstream_timeout_ms: self.upstream_timeout_ms,
            access,
            https: self.https,
            http3: self.http3,
            http3_max_connections: self.http3_max_connections,
            http3_retry_above: self.http3_retry_above,
            http3_congestion: self.http3_congestion,
            http3_initial_window: self.http3_initial_window,
            webrtc_udp: self.webrtc_udp,
            webrtc_candidates,
            webrtc_max_sessions: self.webrtc_max_sessions,
            webrtc_bframes: self.webrtc_bframes,
            webrtc_audio_frame: self.webrtc_audio_frame_ms,
            rtmps: self.rtmps,
            tls,
            tls_handshake_timeout_ms: self.tls_handshake_timeout_ms,
            upstream_tls,
            registry,
            origin_registry,
            cluster_pull,
            admin_token,
            drain,
            upgrade_socket: self.upgrade_socket.clone(),
            upgrade_from: self.upgrade_from.clone(),
            player,
            apps,
            origin_paths,
        })
    }

    /// The HMAC of EdgeAuth tokens.
    fn hash_alg(&self) -> HashAlg {
        match self.token_alg {
            TokenAlg::Sha256 => HashAlg::Sha256,
            TokenAlg::Sha1 => HashAlg::Sha1,
            TokenAlg::Md5 => HashAlg::Md5,
        }
    }

    /// A signer of upstream URLs with key `hex` (the node's algorithm, parameter and TTL).
    fn upstream_sign(&self, hex: &str) -> anyhow::Result<UpstreamSign> {
        Ok(UpstreamSign {
            key: token::parse_hex_key(hex).context("not hex")?,
            alg: self.hash_alg(),
            param: self.token_param.clone(),
            ttl_s: self.upstream_sign_ttl_s.max(1),
        })
    }

    /// The access flags, checked together.
    fn access(&self) -> anyhow::Result<AccessConfig> {
        let (mut play, mut publish) = (ModeByApp::default(), ModeByApp::default());
        for (app, t) in &self.apps {
            if let Some(m) = t.play_auth {
                play.set(app, m.into());
            }
            if let Some(m) = t.publish_auth {
                publish.set(app, m.into());
            }
        }
        let play = play
            .parse_over(&self.play_auth)
            .map_err(|e| anyhow!("--play-auth {e}"))?;
        let publish = publish
            .parse_over(&self.publish_auth)
            .map_err(|e| anyhow!("--publish-auth {e}"))?;
        let alg = self.hash_alg();
        let keys = self
            .token_key
            .iter()
            .map(|k| token::parse_hex_key(k).ok_or_else(|| anyhow!("--token-key: not hex")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if self.token_param.is_empty() || self.token_param.contains(['&', '=', '?']) {
            bail!("--token-param must be a plain parameter name");
        }
        let tokens = match self.token_format {
            TokenFormatArg::SecureLink => {
                if !keys.is_empty() {
                    bail!("--token-key is for --token-format edgeauth; secure-link's secret is in --secure-link-md5");
                }
                let template = self
                    .secure_link_md5
                    .clone()
                    .context("--token-format secure-link needs --secure-link-md5")?;
                Some(TokenFormat::SecureLink { template })
            }
            _ if keys.is_empty() => None,
            _ => Some(TokenFormat::EdgeAuth {
                alg,
                keys,
                param: self.token_param.clone(),
            }),
        };
        let uses_tokens = play.uses(Mode::Token) || publish.uses(Mode::Token);
        if uses_tokens && tokens.is_none() {
            bail!("token mode needs --token-key (or --token-format secure-link with --secure-link-md5)");
        }
        let hook = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|u| HookUrl::parse(u).map_err(|e| anyhow!("--{flag}: {e}")))
                .transpose()
        };
        let hooks = Hooks {
            on_publish: hook("on-publish", &self.on_publish)?,
            on_unpublish: hook("on-unpublish", &self.on_unpublish)?,
            on_play: hook("on-play", &self.on_play)?,
            on_stop: hook("on-stop", &self.on_stop)?,
        };
        if play.uses(Mode::Hook) && hooks.on_play.is_none() {
            bail!("--play-auth hook needs --on-play");
        }
        if publish.uses(Mode::Hook) && hooks.on_publish.is_none() {
            bail!("--publish-auth hook needs --on-publish");
        }
        if !(10..=60_000).contains(&self.hook_timeout_ms) {
            bail!("--hook-timeout-ms must be within 10..=60000");
        }
        let upstream_sign = match &self.upstream_sign_key {
            None => None,
            Some(k) => Some(self.upstream_sign(k).context("--upstream-sign-key")?),
        };
        let node_id = match &self.node_id {
            Some(n) if n.is_empty() => bail!("--node-id must not be empty"),
            Some(n) => n.clone(),
            None => hostname().unwrap_or_else(|| "edge-engine".into()),
        };
        Ok(AccessConfig {
            policy: Policy {
                play,
                publish,
                tokens: tokens.map(|format| TokenConfig {
                    format,
                    skew_s: self.token_skew_s,
                }),
            },
            hooks,
            hook_timeout: std::time::Duration::from_millis(self.hook_timeout_ms),
            play_hook_failure: match self.play_hook_failure {
                HookFailure::Allow => OnFailure::Allow,
                HookFailure::Deny => OnFailure::Deny,
            },
            hook_grant_ms: self.hook_grant_ms,
            node_id,
            upstream_sign,
        })
    }
}

/// The host's name (for --node-id's default), from the kernel.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// `IP` or `IP:PORT` (`[IPv6]:PORT`), a `--webrtc-candidate`.
fn parse_candidate(s: &str) -> anyhow::Result<(std::net::IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok((ip, None));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok((a.ip(), Some(a.port()))),
        _ => bail!("--webrtc-candidate {s}: expected IP or IP:PORT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn cpu_lists_are_edge_cores_strict_ones() {
        let a = Args::parse_from(["e", "--cpu-list", "1,1"]);
        assert!(a.validate().is_err(), "a CPU twice");
        let a = Args::parse_from(["e", "--cpu-list", "1,0"]);
        let c = a.validate().unwrap();
        assert_eq!(c.cpus, vec![Some(1), Some(0)]);
    }

    #[test]
    fn the_audio_frame_is_one_opus_takes() {
        use edge_core::webrtc::audio::FrameMs;
        let frame = |args: &[&str]| {
            let a = Args::try_parse_from([&["e"], args].concat()).map_err(|e| e.to_string())?;
            Ok::<_, String>(a.validate().unwrap().webrtc_audio_frame)
        };
        assert_eq!(frame(&[]), Ok(FrameMs::Ms20));
        assert_eq!(frame(&["--webrtc-audio-frame-ms", "60"]), Ok(FrameMs::Ms60));
        for refused in ["30", "0", "sixty"] {
            let e = frame(&["--webrtc-audio-frame-ms", refused]).unwrap_err();
            assert!(e.contains("takes 20, 40 or 60"), "{refused}: {e}");
        }
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
        let u = parse_redis_url("redis://u:p@r.example:6380/3").unwrap();
        let (host, port, login) = (u.host, u.port, u.login);
        assert_eq!(
            (host.as_str(), port, login.db, u.tls),
            ("r.example", 6380, 3, false)
        );
        assert_eq!(
            (login.username.as_deref(), login.password.as_deref()),
            (Some("u"), Some("p"))
        );
        let RedisUrl { port, login, .. } = parse_redis_url("redis://:secret@127.0.0.1").unwrap();
        assert_eq!(
            (port, login.username, login.password.as_deref()),
            (6379, None, Some("secret"))
        );
        let u = parse_redis_url("rediss://[::1]:6390").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 6390, true));
        assert!(parse_redis_url("http://x").is_err());
        assert!(parse_redis_url("redis://x/y").is_err());
        let a = Args::parse_from(["e", "--origin", "registry"]);
        assert!(a.validate().is_err(), "--origin registry needs --registry");
        let a = Args::parse_from(["e", "--origin", "ftp://x/live"]);
        assert!(a.validate().is_err());
        let a = Args::parse_from([
            "e",
            "--origin",
            "http://x:8080/hls",
            "--origin",
            "rtmp://y/live",
        ]);
        let c = a.validate().unwrap();
        assert_eq!(
            (c.hls_origins.len(), c.origins.len(), c.hls_prefetch),
            (1, 1, true)
        );
        assert_eq!(c.hls_origins[0].to_string(), "http://x:8080/hls");
        let a = Args::parse_from(["e", "--origin", "http://x/a?b"]);
        assert!(a.validate().is_err());
    }
}
