//! The flags: every setting as clap declares it (its help text, default, value parser and
//! topic), and the enum-like values as `ValueEnum`s. The file and the environment reach the
//! same declarations ([`super::file`]); [`Args::validate`](super) checks the values together.
//!
//! Must not: check one value against another (validation does), or read anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use edge_core::webrtc::audio::FrameMs;

use super::tables::{AppSettings, OriginSettings};

/// A thread-per-core io_uring live-streaming edge server.
///
/// Publish: rtmp://HOST:1935/{app}/{stream}. Play: the same URL over RTMP, or
/// http://HOST:8080/{app}/{stream}.flv. Health: /healthz, counters: /metrics.
#[derive(Debug, Parser, Clone)]
#[command(
    name = "edge-engine",
    version,
    args_override_self = true,
    after_help = "Every flag is also an environment variable (EDGE_ and its name in capitals: \
                  EDGE_PLAY_WAIT_MS) and a key of the --config file (play_wait_ms); flags win \
                  over the environment, which wins over the file.\n\
                  Subcommands: `edge-engine sign --help` mints signed play and publish URLs; \
                  `edge-engine convert-config OLD` prints an old `name = value` file as TOML.\n\
                  Every setting, commented: deploy/edge-engine.toml; at length: docs/CONFIG.md \
                  (README.md links every guide)."
)]
pub(crate) struct Args {
    /// Read settings from FILE (TOML: the long flag names as keys, [apps.NAME] and
    /// [[origins]] tables; see deploy/edge-engine.toml).
    #[arg(help_heading = "Configuration", long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Number of shards (one pinned thread each). Default: every available CPU, or the
    /// length of --cpu-list.
    #[arg(help_heading = "Listening and shards", long, value_name = "N")]
    pub cores: Option<usize>,

    /// CPUs to pin shards to, in shard order, e.g. `2-9,12`. Pair it with the NIC's IRQ
    /// layout (see tuning/).
    #[arg(help_heading = "Listening and shards", long, value_name = "LIST")]
    pub cpu_list: Option<String>,

    /// RTMP listen address (every shard binds it with SO_REUSEPORT). Port 0 picks a free port.
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:1935"
    )]
    pub rtmp: SocketAddr,

    /// HTTP listen address (HTTP-FLV, /healthz, /metrics, /api/v1/streams).
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub http: SocketAddr,

    /// Upstream origin `rtmp://HOST[:PORT]/APP` (edge mode), repeatable, in failover order.
    /// A stream nobody publishes here is pulled from `APP/{stream}` on the first healthy
    /// origin, once per machine, while it has viewers; publishes here are forwarded to it.
    /// `registry` (needs --registry) pulls from the node the registry places the stream on,
    /// before the static origins, and follows the stream when it moves.
    /// `http://HOST[:PORT]/PATH` or `https://…` is an HLS origin: `{app}/{stream}.m3u8`
    /// here is pulled from `PATH/{stream}.m3u8` there, and RTMP and HTTP-FLV viewers are fed
    /// from the same pull (its segments demuxed once per stream); HTTP origins fail over
    /// among themselves, in the order given.
    #[arg(help_heading = "Edge: origins and pulls", long, value_name = "URL")]
    pub origin: Vec<String>,

    /// The cluster's stream registry, `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`, or
    /// `rediss://…` for TLS (the server's certificate checked against HOST). Streams
    /// published here are registered (`edge:stream:{app}/{stream}`), this node's record and
    /// load are kept in `edge:node:{id}`, and plays for streams held elsewhere are redirected
    /// (--cluster-mode). Redis is reached from a thread of its own; when it is down, media
    /// flows on and registrations are made again when it is back.
    #[arg(help_heading = "Cluster (Redis registry)", long, value_name = "URL")]
    pub registry: Option<String>,

    /// The RTMP address other nodes and players reach this node at (registry records and
    /// redirects). Default: --rtmp, with 127.0.0.1 for an unspecified address.
    #[arg(
        help_heading = "Cluster (Redis registry)",
        long,
        value_name = "HOST:PORT"
    )]
    pub advertise_rtmp: Option<String>,

    /// The HTTP address other nodes and players reach this node at. Default: --http, with
    /// 127.0.0.1 for an unspecified address.
    #[arg(
        help_heading = "Cluster (Redis registry)",
        long,
        value_name = "HOST:PORT"
    )]
    pub advertise_http: Option<String>,

    /// What a play at an origin for a stream another node holds gets: `redirect` (RTMP
    /// NetConnection.Connect.Rejected with ex.redirect, SRS-style, and HTTP 302 for FLV and
    /// HLS playlists), or `pull` (this node pulls it from the holder, once per machine, and
    /// serves it as an edge would). Needs --registry; edges always pull.
    #[arg(help_heading = "Cluster (Redis registry)", long, value_name = "MODE", value_enum, default_value_t = ClusterMode::Redirect)]
    pub cluster_mode: ClusterMode,

    /// HLS origins: fetch every new segment the moment the origin lists it (`on`), so
    /// viewers here download it at local speed; `off` fetches a segment at its first request
    /// (collapsed: once per machine).
    #[arg(help_heading = "Edge: origins and pulls", long, value_name = "on|off", value_enum, default_value_t = OnOff::On)]
    pub hls_prefetch: OnOff,

    /// Edge mode: stop a pull this long after its last viewer left (RTMP, FLV, or the last
    /// HLS playlist request).
    #[arg(
        help_heading = "Edge: origins and pulls",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    pub upstream_idle_ms: u64,

    /// Edge mode: an origin that sends no media this long (or does not connect within it)
    /// is failed over to the next one.
    #[arg(
        help_heading = "Edge: origins and pulls",
        long,
        value_name = "MS",
        default_value_t = 1_500
    )]
    pub upstream_timeout_ms: u64,

    /// Per-viewer send queue limit. Over it, frames are dropped until the next keyframe.
    #[arg(help_heading = "Viewers, queues and limits", long, value_name = "BYTES", default_value_t = 2 << 20)]
    pub max_queue_bytes: usize,

    /// A viewer that stays over its queue limit this long is disconnected.
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    pub slow_viewer_ms: u64,

    /// How long players stay attached after their publisher leaves, waiting for a republish.
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    pub republish_grace_ms: u64,

    /// How long an RTMP or FLV player of a stream nobody publishes waits for a publisher
    /// (then StreamNotFound / 404). An edge answers sooner once every origin failed.
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "MS",
        default_value_t = 3_000
    )]
    pub play_wait_ms: u64,

    /// Connections the machine holds at most, all listeners together; over it a new
    /// connection is closed at once (0: no limit but the open-file limit).
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "N",
        default_value_t = 0
    )]
    pub max_connections: usize,

    /// Connections one source address (an IPv6 /64) holds at most; 0: no limit.
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "N",
        default_value_t = 0
    )]
    pub max_connections_per_ip: usize,

    /// Close a connection that sends nothing this long while it is not a player: RTMP before
    /// publish/play, a silent publisher, an idle HTTP keep-alive connection.
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "MS",
        default_value_t = 30_000
    )]
    pub idle_timeout_ms: u64,

    /// GOP cache bound per stream, in frames.
    #[arg(
        help_heading = "Viewers, queues and limits",
        long,
        value_name = "N",
        default_value_t = 1024
    )]
    pub gop_max_frames: usize,

    /// GOP cache bound per stream, in bytes.
    #[arg(help_heading = "Viewers, queues and limits", long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub gop_max_bytes: usize,

    /// HLS segment target: cut at the first keyframe after this much media.
    #[arg(help_heading = "HLS", long, value_name = "MS", default_value_t = 2000)]
    pub hls_segment_ms: u64,

    /// HLS playlist window, in segments.
    #[arg(help_heading = "HLS", long, value_name = "N", default_value_t = 6)]
    pub hls_window: usize,

    /// Low-Latency HLS (fMP4 parts, blocking reloads, preload hints) at
    /// `/{app}/{stream}/llhls.m3u8`, beside the TS playlist.
    #[arg(help_heading = "HLS", long, value_name = "on|off", value_enum, default_value_t = OnOff::On)]
    pub ll_hls: OnOff,

    /// LL-HLS part duration (PART-TARGET); players hold back three parts from live.
    #[arg(help_heading = "HLS", long, value_name = "MS", default_value_t = 200)]
    pub hls_part_ms: u64,

    /// Memory for HLS segments on the whole machine (split evenly over shards), in MiB.
    /// When full, ended streams' segments are evicted first, then new segments are refused.
    #[arg(help_heading = "HLS", long, value_name = "MIB", default_value_t = 1024)]
    pub cache_mb: usize,

    /// How HTTP responses leave: `vectored` (head and body pieces in one writev) or
    /// `separate` (the head with the first body piece in one writev, then one write per
    /// piece). Both send the body without copying it.
    #[arg(help_heading = "Viewers, queues and limits", long, value_name = "MODE", value_enum, default_value_t = HttpWrites::Separate)]
    pub http_writes: HttpWrites,

    /// Send HLS segment bodies by reference (`vmsplice` + `splice` from the segment arena)
    /// instead of copying them into socket buffers. `on` falls back to writev, per shard,
    /// when the kernel refuses or the arena is huge-TLB; `/healthz` says which path each
    /// shard runs. TLS connections always copy.
    #[arg(help_heading = "Viewers, queues and limits", long, value_name = "on|off", value_enum, default_value_t = OnOff::On)]
    pub zero_copy: OnOff,

    /// RTMP and HTTP-FLV viewers: the longest a shard holds a viewer's writes so the frames
    /// that arrive meanwhile leave in one writev (fewer sends per viewer, for up to this much
    /// more latency). The shard holds them only while it is busy (--write-coalesce-load), for
    /// a window that grows with the load up to this. 0 writes every frame at once.
    #[arg(help_heading = "Viewers, queues and limits", long, value_name = "MS", default_value_t = 150, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub write_coalesce_ms: u64,

    /// The shard's CPU use, in percent of one core (sampled every 100 ms, smoothed), at which
    /// it starts holding RTMP and HTTP-FLV viewers' writes (and doubles the window every
    /// 100 ms while it stays there);
    /// under two fifths of it, the window halves again. 0 holds every write for
    /// --write-coalesce-ms, whatever the load.
    #[arg(help_heading = "Viewers, queues and limits", long, value_name = "PERCENT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub write_coalesce_load: u32,

    /// Capacity of each cross-shard channel, in messages (about 80 bytes each; there are
    /// shards² channels).
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "N",
        default_value_t = 2048
    )]
    pub mesh_queue_len: usize,

    /// io_uring submission queue entries per shard.
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "N",
        default_value_t = 4096
    )]
    pub uring_entries: u32,

    /// Who may play: `none`, `token` or `hook`, or `APP=MODE` for one app (repeatable; the
    /// last bare MODE is the default for every other app).
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "[APP=]MODE",
        default_value = "none"
    )]
    pub play_auth: Vec<String>,

    /// Who may publish: as --play-auth.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "[APP=]MODE",
        default_value = "none"
    )]
    pub publish_auth: Vec<String>,

    /// A token key in hex (repeatable: a token signed by any of them is accepted, for key
    /// rotation).
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "HEX"
    )]
    pub token_key: Vec<String>,

    /// The query parameter that carries an EdgeAuth token.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "NAME",
        default_value = "token"
    )]
    pub token_param: String,

    /// Token format: `edgeauth` (Akamai EdgeAuth 2.0) or `secure-link` (nginx secure_link:
    /// `md5` and `expires` arguments over --secure-link-md5).
    #[arg(help_heading = "Access control (tokens, hooks)", long, value_name = "FORMAT", value_enum, default_value_t = TokenFormatArg::Edgeauth)]
    pub token_format: TokenFormatArg,

    /// The HMAC of EdgeAuth tokens (ours and --upstream-sign-key's): sha256, sha1 or md5.
    #[arg(help_heading = "Access control (tokens, hooks)", long, value_name = "ALG", value_enum, default_value_t = TokenAlg::Sha256)]
    pub token_alg: TokenAlg,

    /// secure-link mode: the hashed text as nginx's `secure_link_md5` writes it, naming
    /// `$secure_link_expires`, `$uri` (here `/{app}/{stream}`) and `$remote_addr`, with the
    /// secret in it, e.g. `$secure_link_expires$uri$remote_addr secret`.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "TEMPLATE"
    )]
    pub secure_link_md5: Option<String>,

    /// Seconds of clock difference tolerated at both ends of a token's validity.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "S",
        default_value_t = 30
    )]
    pub token_skew_s: u64,

    /// Hook POSTed (SRS http_hooks JSON) before a publish is accepted, under `hook` mode.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "URL"
    )]
    pub on_publish: Option<String>,

    /// Hook told when a publisher leaves.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "URL"
    )]
    pub on_unpublish: Option<String>,

    /// Hook POSTed before a play is accepted, under `hook` mode (RTMP, HTTP-FLV, HLS).
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "URL"
    )]
    pub on_play: Option<String>,

    /// Hook told when an RTMP or HTTP-FLV player leaves.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "URL"
    )]
    pub on_stop: Option<String>,

    /// Deadline of one hook call (connect, request, reply).
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "MS",
        default_value_t = 3000
    )]
    pub hook_timeout_ms: u64,

    /// What an on_play hook that fails (times out, is down, replies garbage) means: `deny`
    /// or `allow`. A failing on_publish always denies.
    #[arg(help_heading = "Access control (tokens, hooks)", long, value_name = "WHAT", value_enum, default_value_t = HookFailure::Deny)]
    pub play_hook_failure: HookFailure,

    /// How long an on_play allowance covers an HLS viewer's next playlist and segment
    /// requests (same address, stream and query); 0 asks the hook every request.
    #[arg(
        help_heading = "Access control (tokens, hooks)",
        long,
        value_name = "MS",
        default_value_t = 30_000
    )]
    pub hook_grant_ms: u64,

    /// This node's name (the `server_id` hooks are told).
    #[arg(help_heading = "Cluster (Redis registry)", long, value_name = "NAME")]
    pub node_id: Option<String>,

    /// Edge mode: sign every pull and forward URL with this key (hex), freshly at each
    /// connect, as an EdgeAuth token in --token-param with --token-alg; the viewer's own
    /// token is not passed on.
    #[arg(help_heading = "Edge: origins and pulls", long, value_name = "HEX")]
    pub upstream_sign_key: Option<String>,

    /// Lifetime of an --upstream-sign-key token (it is only checked at connect).
    #[arg(
        help_heading = "Edge: origins and pulls",
        long,
        value_name = "S",
        default_value_t = 300
    )]
    pub upstream_sign_ttl_s: u64,

    /// Also serve everything --http serves over HTTPS here (needs --tls-cert, --tls-key).
    #[arg(help_heading = "Listening and shards", long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,

    /// Also serve everything --http serves over HTTP/3 (QUIC, UDP) here, with the TLS
    /// certificate and key of HTTPS. HTTP and HTTPS responses then carry an `Alt-Svc` header
    /// naming its port.
    #[arg(help_heading = "Listening and shards", long, value_name = "ADDR")]
    pub http3: Option<SocketAddr>,

    /// HTTP/3 connections open at once on this node at most (spread over the shards); more
    /// are refused.
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "N",
        default_value_t = 10_000
    )]
    pub http3_max_connections: usize,

    /// Past this many HTTP/3 connections on the node, a new client proves its address with a
    /// Retry round trip before the node keeps any state for it (0: always).
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "N",
        default_value_t = 1_000
    )]
    pub http3_retry_above: usize,

    /// HTTP/3's congestion controller: `bbr` keeps its rate through random loss (a mobile
    /// path's), `cubic` cuts its window at every loss, as TCP does; `quinn-bbr` is
    /// quinn-proto's BBR, kept for comparison (it stalls new connections in ProbeRTT).
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "CC",
        value_enum,
        default_value_t = Http3Congestion::Bbr
    )]
    pub http3_congestion: Http3Congestion,

    /// The window a new HTTP/3 connection starts with, bytes (with `bbr` and `cubic`),
    /// paced over the round trip: a first segment of up to 128 KB in one round trip. RFC
    /// 9002's conservative 10 packets is 14720; quinn-proto's BBR starts at 240000.
    #[arg(
        help_heading = "Listening and shards",
        long,
        value_name = "BYTES",
        default_value_t = 131_072,
        value_parser = clap::value_parser!(u64).range(4_800..=16 << 20)
    )]
    pub http3_initial_window: u64,

    /// Serve WebRTC playback (WHEP, `POST /{app}/{stream}/whep`) with media over UDP here:
    /// shard N binds the port plus N (port 0: each shard an ephemeral port of its own), and
    /// a session's answer names the port of the shard that holds it.
    #[arg(help_heading = "WebRTC", long, value_name = "ADDR")]
    pub webrtc_udp: Option<SocketAddr>,

    /// An address WebRTC viewers reach this node at, `IP` or `IP:PORT` (repeatable): behind
    /// NAT, the public address; PORT is the public port of shard 0, the next shards' follow
    /// it. Without one, a session's answer names the address its offer was posted to.
    #[arg(help_heading = "WebRTC", long, value_name = "IP[:PORT]")]
    pub webrtc_candidate: Vec<String>,

    /// WebRTC sessions open at once on this node at most (spread over the shards); more offers
    /// get 503.
    #[arg(
        help_heading = "WebRTC",
        long,
        value_name = "N",
        default_value_t = 10_000
    )]
    pub webrtc_max_sessions: usize,

    /// What WebRTC viewers get of a stream's B-frames: `drop` (browsers' WebRTC decoders take
    /// none; the stream plays at its I and P frames' rate) or `keep` (every picture, for
    /// clients whose decoders reorder).
    #[arg(
        help_heading = "WebRTC",
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = WebrtcBframes::Drop
    )]
    pub webrtc_bframes: WebrtcBframes,

    /// How much audio each Opus packet to WebRTC viewers carries, in ms: 20, 40 or 60.
    /// Longer packets are fewer (20 ms audio is 50 packets a second per viewer, as many as a
    /// 600 kbit/s video's) and add their length to the audio's delay.
    #[arg(
        help_heading = "WebRTC",
        long,
        value_name = "MS",
        default_value = "20",
        value_parser = audio_frame_ms
    )]
    pub webrtc_audio_frame_ms: FrameMs,

    /// Also take RTMPS publishes and plays here (needs --tls-cert, --tls-key).
    #[arg(help_heading = "Listening and shards", long, value_name = "ADDR")]
    pub rtmps: Option<SocketAddr>,

    /// The certificate chain (PEM, leaf first); re-read on SIGHUP.
    #[arg(help_heading = "TLS", long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1); re-read on SIGHUP.
    #[arg(help_heading = "TLS", long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Close a TLS connection that has not finished its handshake in this long.
    #[arg(
        help_heading = "TLS",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    pub tls_handshake_timeout_ms: u64,

    /// An extra CA certificate (PEM) trusted for rtmps:// origins and a rediss:// registry,
    /// besides the system's.
    #[arg(help_heading = "Edge: origins and pulls", long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// The bearer token `POST /api/v1/drain` must carry (`Authorization: Bearer TOKEN`).
    /// Without it, the drain endpoint answers 403 and only SIGTERM drains.
    #[arg(help_heading = "Drain and upgrade", long, value_name = "TOKEN")]
    pub admin_token: Option<String>,

    /// Drain (first SIGTERM, or POST /api/v1/drain): keep accepting this long after
    /// /readyz turned 503, while load balancers take the node out; then close the listeners.
    #[arg(
        help_heading = "Drain and upgrade",
        long,
        value_name = "MS",
        default_value_t = 2_000
    )]
    pub drain_accept_ms: u64,

    /// Drain: exit this long after it began even if viewers or publishers remain (they are
    /// closed). The process exits 0 as soon as nothing is left, whichever comes first.
    #[arg(
        help_heading = "Drain and upgrade",
        long,
        value_name = "S",
        default_value_t = 300
    )]
    pub drain_timeout_s: u64,

    /// Exit 0 once the node has held no stream and no viewer for this long (scale to zero).
    /// A viewer waiting for a stream that has not started counts as present.
    #[arg(help_heading = "Drain and upgrade", long, value_name = "S")]
    pub exit_when_idle_s: Option<u64>,

    /// Serve zero-downtime upgrades on this Unix socket (created mode 0600): a new binary
    /// started with `--upgrade-from PATH` takes the listening sockets over, and this process
    /// then drains as for SIGTERM.
    #[arg(help_heading = "Drain and upgrade", long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,

    /// Start by taking the listening sockets over from the engine serving `--upgrade-socket`
    /// at SOCKET, instead of binding --rtmp/--http/--rtmps/--https (a service it does not
    /// hand over is bound as usual). Give `--upgrade-socket` too, to be upgradable in turn.
    #[arg(help_heading = "Drain and upgrade", long, value_name = "SOCKET")]
    pub upgrade_from: Option<PathBuf>,

    /// Serve the player's libraries (`hls.min.js` from hls.js, `mpegts.js` from mpegts.js)
    /// from DIR, read once at startup, at /player/hls.min.js and /player/mpegts.js, instead
    /// of having /player load them from --player-cdn. DIR may hold them flat or as `npm
    /// install hls.js mpegts.js` lays them out (`DIR` = node_modules).
    #[arg(help_heading = "Browser pages", long, value_name = "DIR")]
    pub player_assets: Option<PathBuf>,

    /// Where /player loads hls.js and mpegts.js from without --player-assets (their pinned
    /// versions are appended: `URL/hls.js@1.7.4/dist/hls.min.js`).
    #[arg(
        help_heading = "Browser pages",
        long,
        value_name = "URL",
        default_value = "https://cdn.jsdelivr.net/npm"
    )]
    pub player_cdn: String,

    /// Validate the configuration, print it, and exit.
    #[arg(help_heading = "Configuration", long)]
    pub check: bool,

    /// The file's `[apps.NAME]` tables.
    #[arg(skip)]
    pub apps: BTreeMap<String, AppSettings>,

    /// The file's `[[origins]]` tables.
    #[arg(skip)]
    pub origin_tables: Vec<OriginSettings>,
}

/// What WebRTC viewers get of B-frames (`--webrtc-bframes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WebrtcBframes {
    Drop,
    Keep,
}

/// `--webrtc-audio-frame-ms`: one of the Opus frame lengths (edge-core says which).
fn audio_frame_ms(s: &str) -> Result<FrameMs, String> {
    s.parse()
        .ok()
        .and_then(FrameMs::from_ms)
        .ok_or_else(|| "takes 20, 40 or 60".into())
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

/// What a play at an origin for a stream another node holds gets (`--cluster-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ClusterMode {
    /// RTMP `NetConnection.Connect.Rejected` with `ex.redirect`, HTTP 302.
    Redirect,
    /// This node pulls it from the holder.
    Pull,
}

/// How copied HTTP responses leave (`--http-writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HttpWrites {
    /// The head and every body piece in one writev.
    Vectored,
    /// The head with the first body piece, then a write per piece.
    Separate,
}

/// HTTP/3's congestion controller (`--http3-congestion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Http3Congestion {
    /// Paced by the measured bottleneck rate and round trip; random loss does not shrink it.
    Bbr,
    /// Loss-based, as Linux TCP's default: each loss cuts the window by 30 %.
    Cubic,
    /// quinn-proto's BBR (for comparison).
    QuinnBbr,
}

/// The token format (`--token-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TokenFormatArg {
    /// Akamai EdgeAuth 2.0.
    Edgeauth,
    /// nginx `secure_link` (`md5`, `expires`).
    SecureLink,
}

/// The HMAC of EdgeAuth tokens (`--token-alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TokenAlg {
    Sha256,
    Sha1,
    Md5,
}

/// What a failing on_play hook means (`--play-hook-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HookFailure {
    Deny,
    Allow,
}
