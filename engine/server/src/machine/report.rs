//! What `/metrics`, `/healthz`, `/api/v1/streams` and `/api/v1/summary` show of the
//! machine: the counters of every shard, the stream list, the drain's gauges, the
//! registry's status and the origins' reachability, rendered on the shard that serves the
//! request. JSON bodies are serialised from typed structs.
//!
//! Must not: change what it reads (it renders; the arena gauges are refreshed from the
//! arenas as they are read).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edge_core::drain::Activity;
use edge_core::owner::LinkView;

use super::control::Control;
use super::stats::{
    ShardStats, Stats, StreamView, ACTIONS, DENIAL_REASONS, HOOK_EVENTS, HOOK_OUTCOMES, METRICS,
    PROTOCOLS,
};

/// One stream in `/api/v1/streams`.
#[derive(serde::Serialize)]
struct StreamReport {
    key: String,
    owner_shard: usize,
    state: &'static str,
    source: &'static str,
    live_since_unix_ms: u64,
    /// Media from the publisher, or bytes from the pull.
    ingest_bytes: u64,
    viewers: StreamViewers,
    upstream: Option<LinkReport>,
    failovers: u64,
    forward: Option<LinkReport>,
    hls_pull: Option<HlsPullReport>,
}

/// Viewers by protocol.
#[derive(serde::Serialize)]
pub(crate) struct ViewerCounts {
    pub rtmp: u64,
    pub flv: u64,
    pub hls: u64,
    pub webrtc: u64,
}

/// A stream's viewers by protocol (LL-HLS apart from HLS).
#[derive(serde::Serialize)]
struct StreamViewers {
    rtmp: u64,
    flv: u64,
    hls: u64,
    llhls: u64,
    webrtc: u64,
}

/// An upstream link (a pull, or a forward).
#[derive(serde::Serialize)]
struct LinkReport {
    origin: String,
    state: &'static str,
    bytes: u64,
    since_unix_ms: u64,
}

/// A stream pulled from an HTTP origin.
#[derive(serde::Serialize)]
struct HlsPullReport {
    origin: String,
    origin_bytes: u64,
    origin_requests: u64,
    prefetches: u64,
    origin_errors: u64,
}

/// `/healthz`.
#[derive(serde::Serialize)]
struct HealthReport<'a> {
    status: &'static str,
    shards: Vec<ShardReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<RegistryHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origins: Option<&'a [crate::machine::origins::OriginHealth]>,
}

/// One shard in `/healthz`.
#[derive(serde::Serialize)]
struct ShardReport {
    shard: usize,
    cpu: Option<u64>,
    busy_percent: u64,
    /// How long RTMP and HTTP-FLV writes are held now (adaptive batching).
    write_window_ms: u64,
    driver: &'static str,
    cache_backing: &'static str,
    send_path: &'static str,
}

#[derive(serde::Serialize)]
struct RegistryHealth {
    reachable: bool,
}

/// A report as JSON, one line (what cannot fail to serialise: plain data).
pub(crate) fn json_line(value: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// One stream as `/api/v1/streams` shows it.
fn stream_report(view: &StreamView, viewers: [u64; PROTOCOLS]) -> StreamReport {
    let st = view.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let link = |l: &Option<LinkView>, bytes: &AtomicU64, since: u64| {
        l.as_ref().map(|l| LinkReport {
            origin: l.origin.to_string(),
            state: l.state.as_str(),
            bytes: bytes.load(Ordering::Relaxed),
            since_unix_ms: since,
        })
    };
    let hls_pull = view
        .hls_origin
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(|origin| HlsPullReport {
            origin,
            origin_bytes: view.upstream_bytes.load(Ordering::Relaxed),
            origin_requests: view.hls_origin_requests.load(Ordering::Relaxed),
            prefetches: view.hls_prefetches.load(Ordering::Relaxed),
            origin_errors: view.hls_origin_errors.load(Ordering::Relaxed),
        });
    StreamReport {
        key: view.key.as_str().to_string(),
        owner_shard: view.shard.0,
        state: st.view.phase.as_str(),
        source: st.view.source.as_str(),
        live_since_unix_ms: st.live_since_unix_ms,
        ingest_bytes: view.published_bytes.load(Ordering::Relaxed)
            + view.upstream_bytes.load(Ordering::Relaxed),
        viewers: StreamViewers {
            rtmp: viewers[0],
            flv: viewers[1],
            hls: viewers[2],
            llhls: viewers[3],
            webrtc: viewers[4],
        },
        upstream: link(
            &st.view.upstream,
            &view.upstream_bytes,
            st.upstream_since_unix_ms,
        ),
        failovers: st.view.failovers,
        forward: link(
            &st.view.forward,
            &view.forward_bytes,
            st.forward_since_unix_ms,
        ),
        hls_pull,
    }
}

fn render_access(out: &mut String, shards: &[ShardStats]) {
    let _ = writeln!(
        out,
        "# HELP edge_access_allowed_total Plays and publishes allowed by the access policy\n# TYPE edge_access_allowed_total counter"
    );
    for (shard, s) in shards.iter().enumerate() {
        for (a, action) in ACTIONS.iter().enumerate() {
            let v = s.access.allowed[a].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "edge_access_allowed_total{{shard=\"{shard}\",action=\"{action}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP edge_access_denied_total Plays and publishes refused, by reason\n# TYPE edge_access_denied_total counter"
    );
    for (shard, s) in shards.iter().enumerate() {
        for (a, action) in ACTIONS.iter().enumerate() {
            for (r, reason) in DENIAL_REASONS.iter().enumerate() {
                let v = s.access.denied[a][r].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "edge_access_denied_total{{shard=\"{shard}\",action=\"{action}\",reason=\"{reason}\"}} {v}"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP edge_hook_calls_total HTTP hook calls, by event and outcome\n# TYPE edge_hook_calls_total counter"
    );
    for (shard, s) in shards.iter().enumerate() {
        for (e, event) in HOOK_EVENTS.iter().enumerate() {
            for (o, outcome) in HOOK_OUTCOMES.iter().enumerate() {
                let v = s.access.hook_calls[e][o].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "edge_hook_calls_total{{shard=\"{shard}\",event=\"{event}\",outcome=\"{outcome}\"}} {v}"
                );
            }
        }
    }
}

/// `/api/v1/streams` body: every owned stream on the machine, by key.
pub(crate) fn streams(stats: &Stats) -> String {
    let mut views: Vec<Arc<StreamView>> = Vec::new();
    for m in stats.streams.iter() {
        let m = m.lock().unwrap_or_else(|e| e.into_inner());
        views.extend(m.values().cloned());
    }
    views.sort_by(|a, b| a.key.cmp(&b.key));
    let viewers = stats.all_viewers();
    let streams: Vec<StreamReport> = views
        .iter()
        .map(|v| stream_report(v, viewers.get(&v.key).copied().unwrap_or_default()))
        .collect();
    #[derive(serde::Serialize)]
    struct Streams {
        streams: Vec<StreamReport>,
    }
    json_line(&Streams { streams })
}

/// Prometheus text exposition, one series per shard.
pub(crate) fn prometheus(stats: &Stats) -> String {
    let mut out = String::with_capacity(4096);
    for (s, arena) in stats.shards.iter().zip(stats.arenas.iter()) {
        if let Some(a) = arena.get() {
            let chunk = crate::net::arena::CHUNK_BYTES as u64;
            s.cache_bytes_total
                .store(a.chunks() as u64 * chunk, Ordering::Relaxed);
            s.cache_bytes_free
                .store(a.free_chunks() as u64 * chunk, Ordering::Relaxed);
            s.arena_pages_dropped
                .store(a.dropped_pages_chunks(), Ordering::Relaxed);
        }
    }
    let values: Vec<Vec<u64>> = stats.shards.iter().map(|s| s.values()).collect();
    for (i, (name, kind, help)) in METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP edge_{name} {help}\n# TYPE edge_{name} {kind}");
        for (shard, v) in values.iter().enumerate() {
            let _ = writeln!(out, "edge_{name}{{shard=\"{shard}\"}} {}", v[i]);
        }
    }
    let quic = crate::net::quic::QuicCounters::METRICS;
    render_endpoint(&mut out, "http3", quic, &stats.shards, |s| &s.http3);
    let webrtc = crate::net::webrtc::RtcCounters::METRICS;
    render_endpoint(&mut out, "webrtc", webrtc, &stats.shards, |s| &s.webrtc);
    render_access(&mut out, &stats.shards);
    if let Some(r) = stats.registry.get() {
        r.render_prometheus(&mut out);
    }
    gauges(&stats.control, stats, &mut out);
    let _ = writeln!(
        out,
        "# HELP edge_shard_info Shard placement, io driver, segment memory backing and segment send path\n# TYPE edge_shard_info gauge"
    );
    for (shard, s) in stats.shards.iter().enumerate() {
        let _ = writeln!(
            out,
            "edge_shard_info{{shard=\"{shard}\",cpu=\"{}\",driver=\"{}\",cache_backing=\"{}\",send_path=\"{}\"}} 1",
            cpu_label(s.cpu.load(Ordering::Relaxed)),
            driver_name(s.driver.load(Ordering::Relaxed)),
            backing_name(s.cache_backing.load(Ordering::Relaxed)),
            crate::net::zerocopy::send_path_name(s.send_path.load(Ordering::Relaxed))
        );
    }
    out
}

/// `/healthz` body.
pub(crate) fn health(stats: &Stats) -> String {
    let shards = stats
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| ShardReport {
            shard: i,
            cpu: match s.cpu.load(Ordering::Relaxed) {
                u64::MAX => None,
                c => Some(c),
            },
            busy_percent: s.busy_percent.load(Ordering::Relaxed),
            write_window_ms: s.write_window_ms.load(Ordering::Relaxed),
            driver: driver_name(s.driver.load(Ordering::Relaxed)),
            cache_backing: backing_name(s.cache_backing.load(Ordering::Relaxed)),
            send_path: crate::net::zerocopy::send_path_name(s.send_path.load(Ordering::Relaxed)),
        })
        .collect();
    json_line(&HealthReport {
        status: "ok",
        shards,
        registry: stats.registry.get().map(|r| RegistryHealth {
            reachable: r.reachable.load(Ordering::Relaxed),
        }),
        // Each origin's reachability: the node stays alive (`status` is liveness), but
        // an operator and a load balancer see that its upstream is gone.
        origins: stats
            .origins
            .get()
            .map(|o| &o[..])
            .filter(|o| !o.is_empty()),
    })
}
fn cpu_label(c: u64) -> String {
    if c == u64::MAX {
        "none".into()
    } else {
        c.to_string()
    }
}

pub(crate) fn backing_name(b: u8) -> &'static str {
    match b {
        1 => "hugetlb",
        2 => "thp",
        3 => "normal",
        _ => "starting",
    }
}

pub(crate) fn driver_name(d: u8) -> &'static str {
    match d {
        1 => "io_uring",
        2 => "legacy",
        _ => "starting",
    }
}

/// A UDP endpoint's series (`edge_{prefix}_NAME`), one line per shard.
fn render_endpoint<C>(
    out: &mut String,
    prefix: &str,
    series: &[crate::net::udp::Series<C>],
    shards: &[ShardStats],
    counters: impl Fn(&ShardStats) -> &C,
) {
    use std::fmt::Write as _;
    for (name, kind, help, counter) in series {
        let _ = writeln!(
            out,
            "# HELP edge_{prefix}_{name} {help}\n# TYPE edge_{prefix}_{name} {kind}"
        );
        for (shard, s) in shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "edge_{prefix}_{name}{{shard=\"{shard}\"}} {}",
                counter(counters(s)).get()
            );
        }
    }
}

/// What the node holds, summed over the shards.
pub(crate) fn activity(stats: &Stats) -> Activity {
    Activity {
        streams: stats.sum(|s| &s.streams_owned),
        publishers: stats.sum(|s| &s.publishers),
        rtmp_viewers: stats.sum(|s| &s.rtmp_players),
        flv_viewers: stats.sum(|s| &s.flv_players),
        hls_viewers: stats.sum(|s| &s.hls_viewers),
        webrtc_viewers: stats.sum(|s| &s.webrtc_players),
        hls_held_total: stats.sum(|s| &s.drain_held),
    }
}

/// Every figure an autoscaler reads, as Prometheus gauges without a shard label.
fn gauges(control: &Control, stats: &Stats, out: &mut String) {
    use std::fmt::Write as _;
    let a = activity(stats);
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP edge_{name} {help}\n# TYPE edge_{name} gauge\nedge_{name} {v}"
        );
    };
    gauge(
        out,
        "streams_live",
        "Streams this node holds (published, pulled or awaited)",
        a.streams,
    );
    let _ = writeln!(
        out,
        "# HELP edge_viewers Viewers on this node by protocol (HLS: connections that fetched a playlist)\n\
         # TYPE edge_viewers gauge\n\
         edge_viewers{{protocol=\"rtmp\"}} {}\nedge_viewers{{protocol=\"flv\"}} {}\nedge_viewers{{protocol=\"hls\"}} {}\n\
         edge_viewers{{protocol=\"webrtc\"}} {}",
        a.rtmp_viewers, a.flv_viewers, a.hls_viewers, a.webrtc_viewers
    );
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    gauge(
        out,
        "egress_bits_per_second",
        "Bytes written to viewers, as bits per second over the last second",
        load(&control.egress_bps),
    );
    gauge(
        out,
        "ingest_bits_per_second",
        "Bytes read from publishers and pulls, as bits per second over the last second",
        load(&control.ingest_bps),
    );
    gauge(
        out,
        "draining",
        "1 while the node drains",
        u64::from(control.is_draining()),
    );
    gauge(
        out,
        "idle_seconds",
        "How long the node has held no stream and no viewer",
        load(&control.idle_seconds),
    );
}

/// `GET /api/v1/summary`: the same figures as JSON.
pub(crate) fn summary(stats: &Stats) -> String {
    let control = &stats.control;
    #[derive(serde::Serialize)]
    struct Summary {
        streams_live: u64,
        publishers: u64,
        viewers: Viewers,
        connections_open: u64,
        egress_bits_per_second: u64,
        ingest_bits_per_second: u64,
        draining: bool,
        idle_seconds: u64,
    }
    #[derive(serde::Serialize)]
    struct Viewers {
        rtmp: u64,
        flv: u64,
        hls: u64,
        webrtc: u64,
        total: u64,
    }
    let a = activity(stats);
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    json_line(&Summary {
        streams_live: a.streams,
        publishers: a.publishers,
        viewers: Viewers {
            rtmp: a.rtmp_viewers,
            flv: a.flv_viewers,
            hls: a.hls_viewers,
            webrtc: a.webrtc_viewers,
            total: a.viewers(),
        },
        connections_open: stats.sum(|s| &s.connections_open),
        egress_bits_per_second: load(&control.egress_bps),
        ingest_bits_per_second: load(&control.ingest_bps),
        draining: control.is_draining(),
        idle_seconds: load(&control.idle_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::stats::{AccessStats, Counter, Protocol};
    use edge_core::owner::{LinkView, OwnerView, Source};
    use edge_core::stream::MasterPhase;
    use edge_core::{ShardId, StreamKey};

    #[test]
    fn renders_one_series_per_shard() {
        let s = Stats::new(2);
        s.shards[1].rtmp_players.store(7, Ordering::Relaxed);
        s.shards[0].driver.store(1, Ordering::Relaxed);
        s.shards[0].cpu.store(u64::MAX, Ordering::Relaxed);
        let text = prometheus(&s);
        assert!(text.contains("edge_rtmp_players{shard=\"1\"} 7\n"));
        assert!(text.contains("edge_rtmp_players{shard=\"0\"} 0\n"));
        assert!(text.contains("edge_shard_info{shard=\"0\",cpu=\"none\",driver=\"io_uring\",cache_backing=\"starting\",send_path=\"starting\"} 1"));
        assert!(health(&s).starts_with("{\"status\":\"ok\""));
        s.shards[1].access.denied[0][AccessStats::reason_index("expired")].inc();
        let text = prometheus(&s);
        assert!(text.contains(
            "edge_access_denied_total{shard=\"1\",action=\"play\",reason=\"expired\"} 1\n"
        ));
        assert!(text.contains(
            "edge_hook_calls_total{shard=\"0\",event=\"on_stop\",outcome=\"timeout\"} 0\n"
        ));
    }

    #[test]
    fn renders_the_stream_list() {
        use edge_core::upstream::{LinkState, OriginUrl};
        let s = Stats::new(2);
        assert_eq!(streams(&s), "{\"streams\":[]}\n");
        let key = StreamKey::new("live", "\"x").unwrap();
        let v = Arc::new(StreamView::new(key.clone(), ShardId(1)));
        v.set(
            OwnerView {
                phase: MasterPhase::Live,
                source: Source::Upstream,
                upstream: Some(LinkView {
                    origin: OriginUrl::parse("rtmp://a:1935/live").unwrap(),
                    state: LinkState::Playing,
                    since_ms: 5,
                }),
                forward: None,
                failovers: 0,
            },
            20,
            |ms| 1000 + ms,
        );
        v.upstream_bytes.store(42, Ordering::Relaxed);
        s.add_stream(Arc::clone(&v));
        // Viewers are counted per shard and summed; a viewer that leaves is taken off.
        s.count_viewer(ShardId(0), &key, Protocol::Hls, true);
        s.count_viewer(ShardId(1), &key, Protocol::Hls, true);
        s.count_viewer(ShardId(1), &key, Protocol::Flv, true);
        s.count_viewer(ShardId(0), &key, Protocol::Rtmp, true);
        s.count_viewer(ShardId(0), &key, Protocol::Rtmp, false);
        // A stray leave (never joined) does not wrap.
        s.count_viewer(ShardId(1), &key, Protocol::Rtmp, false);
        assert_eq!(
            streams(&s),
            "{\"streams\":[{\"key\":\"live/\\\"x\",\"owner_shard\":1,\"state\":\"live\",\"source\":\"upstream\",\
             \"live_since_unix_ms\":1020,\"ingest_bytes\":42,\"viewers\":{\"rtmp\":0,\"flv\":1,\"hls\":2,\"llhls\":0,\"webrtc\":0},\"upstream\":{\"origin\":\"rtmp://a:1935/live\",\"state\":\"playing\",\"bytes\":42,\"since_unix_ms\":1005},\"failovers\":0,\"forward\":null,\"hls_pull\":null}]}\n"
        );
        s.remove_stream(ShardId(1), &key);
        assert_eq!(streams(&s), "{\"streams\":[]}\n");
        for shard in [0, 0, 1, 1] {
            s.count_viewer(ShardId(shard), &key, Protocol::Hls, false);
        }
        s.count_viewer(ShardId(1), &key, Protocol::Flv, false);
        assert!(s.viewers.iter().all(|m| m.lock().unwrap().is_empty()));
    }
}
