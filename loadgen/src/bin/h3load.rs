//! h3load: HTTP/3 request load, as wrk is for HTTP/1.1 (and HTTPS): `--connections` QUIC
//! connections on one thread, each asking for `--url` again and again, one request at a
//! time, for `--duration`. Prints requests per second, body throughput and latency from
//! request to last byte; `--json FILE` writes them too. See `loadgen::h3get`.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use loadgen::h3get::{self, Load};

/// HTTP/3 request load: QUIC connections each requesting one URL again and again.
#[derive(Debug, Parser)]
#[command(name = "h3load", version)]
struct Args {
    /// https://HOST:PORT/PATH on an HTTP/3 (UDP) port.
    #[arg(long)]
    url: String,
    /// PEM file of the CA (or the self-signed certificate) to trust.
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// TLS server name and :authority (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Connections, each with one request at a time.
    #[arg(long, value_name = "N", default_value_t = 10)]
    connections: usize,
    /// How long, e.g. 10s.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = loadgen::cli::parse_duration)]
    duration: Duration,
    /// Take runs of datagrams coalesced by the kernel (UDP GRO), as a NIC's receive offload
    /// hands them over. On loopback the sender's kernel then delivers each run whole instead
    /// of datagram by datagram (as TCP delivers 64 KB at a time).
    #[arg(long)]
    gro: bool,
    /// Pin the thread to this CPU.
    #[arg(long, value_name = "CPU")]
    cpu: Option<usize>,
    /// Write the figures to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(rest) = args.url.strip_prefix("https://") else {
        bail!("--url must be https://HOST:PORT/PATH");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let target = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .context("no address")?;
    let host = args.server_name.clone().unwrap_or_else(|| {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string()
    });
    if let Some(cpu) = args.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    let load = Load {
        target,
        host,
        path: path.to_string(),
        connections: args.connections.max(1),
        duration: args.duration,
        gro: args.gro,
    };
    let o = h3get::run(&load, &args.ca)?;
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let ms = |q: f64| o.latency_us.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "requests {} ({:.0}/s), {:.1} MB/s of bodies, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
         not 200: {}, errors: {}, handshakes: {}, datagrams in {} ({} receives) out {}",
        o.requests,
        o.requests as f64 / secs,
        o.body_bytes as f64 / secs / 1e6,
        ms(0.5),
        ms(0.99),
        o.latency_us.max() as f64 / 1000.0,
        o.not_ok,
        o.errors,
        o.handshakes,
        o.datagrams_in,
        o.receives,
        o.datagrams_out
    );
    if let Some(file) = &args.json {
        let v = serde_json::json!({
            "requests": o.requests,
            "requests_per_s": o.requests as f64 / secs,
            "body_bytes": o.body_bytes,
            "seconds": secs,
            "latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "max": o.latency_us.max() as f64 / 1000.0 },
            "not_ok": o.not_ok,
            "errors": o.errors,
            "handshakes": o.handshakes,
            "datagrams_in": o.datagrams_in,
            "receives": o.receives,
            "datagrams_out": o.datagrams_out,
        });
        std::fs::write(file, v.to_string())?;
    }
    if let Some(e) = &o.first_error {
        eprintln!("first connection lost: {e}");
    }
    if o.requests == 0 || o.errors > 0 || o.not_ok > 0 {
        bail!(
            "{} requests, {} not 200, {} errors",
            o.requests,
            o.not_ok,
            o.errors
        );
    }
    Ok(())
}
