//! Drain and idle exit, carried out. The main thread runs the control loop
//! ([`run_control`]): signals arrive on a channel, every [`TICK`] it sums what the shards
//! hold and drives edge-core's [`Lifecycle`], and it does what that decides: raise the
//! draining flag, close the listeners, end the process. [`Control`] is what the shards see:
//! flags they read (`/readyz`, HLS migration, keep-alive) and the one request they may make
//! (`POST /api/v1/drain`), and the machine-level gauges the loop keeps.
//!
//! Must not: run on a shard, make a shard wait (shards only load and store atomics), or decide
//! when to stop (the [`Lifecycle`] does).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edge_core::drain::{Activity, DrainConfig, Lifecycle, LifecycleEffect};
use tracing::{info, warn};

use crate::stats::Stats;

/// How often the control loop looks at the node.
pub const TICK: Duration = Duration::from_millis(50);

/// What the shards and the control loop share.
#[derive(Default)]
pub struct Control {
    draining: AtomicBool,
    drain_requested: AtomicBool,
    stopped_accepting: AtomicBool,
    /// Every shard's listening sockets, closed together when accepting stops.
    listeners: Mutex<Vec<RawFd>>,
    pub idle_seconds: AtomicU64,
    pub egress_bps: AtomicU64,
    pub ingest_bps: AtomicU64,
}

impl Control {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `POST /api/v1/drain`: readiness fails at once; the control loop starts the drain at
    /// its next tick.
    pub fn request_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.drain_requested.store(true, Ordering::Release);
    }

    /// A listening socket (registered when bound, before it accepts).
    pub fn add_listener(&self, fd: RawFd) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fd);
    }

    /// Accepting has stopped: an accept loop that fails now ends instead of retrying.
    pub fn stopped_accepting(&self) -> bool {
        self.stopped_accepting.load(Ordering::Acquire)
    }

    /// Shuts every listening socket down: pending and new connections are refused, and the
    /// accept loops' waits end with an error.
    fn stop_accepting(&self) {
        self.stopped_accepting.store(true, Ordering::Release);
        for fd in self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // SAFETY: shutdown(2) has no memory effects. Every listener is still open here:
            // one closes only when its accept loop ends, which is after this call (the loop
            // ends on the error this shutdown causes) or at process shutdown, and this runs
            // once, so no descriptor number reused since is touched.
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
    }
}

/// What the node holds, summed over the shards.
pub fn activity(stats: &Stats) -> Activity {
    Activity {
        streams: stats.sum(|s| &s.streams_owned),
        publishers: stats.sum(|s| &s.publishers),
        rtmp_viewers: stats.sum(|s| &s.rtmp_players),
        flv_viewers: stats.sum(|s| &s.flv_players),
        hls_viewers: stats.sum(|s| &s.hls_viewers),
    }
}

/// How the control loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT, or a second SIGTERM: at once.
    Signal,
    /// The lifecycle ended it (drained, drain timeout, idle).
    Lifecycle,
}

/// Byte counters turned into bits per second, once a second.
struct Rates {
    at: Instant,
    out: u64,
    inp: u64,
}

/// Runs until the process should stop. `signals` carries SIGINT, SIGTERM and SIGHUP;
/// `reload` is called for SIGHUP.
pub fn run_control(
    control: &Control,
    stats: &Stats,
    config: DrainConfig,
    signals: &Receiver<i32>,
    mut reload: impl FnMut(),
) -> Stopped {
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut life = Lifecycle::new(config, now_ms());
    let mut rates = Rates {
        at: Instant::now(),
        out: stats.sum(|s| &s.bytes_out),
        inp: stats.sum(|s| &s.bytes_in),
    };
    let mut fx = Vec::new();
    loop {
        match signals.recv_timeout(TICK) {
            Ok(libc::SIGHUP) => reload(),
            Ok(libc::SIGTERM) if !life.is_draining() => {
                info!(
                    accept_ms = config.accept_ms,
                    timeout_s = config.timeout_ms / 1000,
                    "SIGTERM: draining (a second SIGTERM or a SIGINT stops at once)"
                );
                control.draining.store(true, Ordering::Release);
                life.handle_drain(now_ms(), &mut fx);
            }
            Ok(sig) => {
                info!(signal = sig, "stopping now: closing listeners and sessions");
                return Stopped::Signal;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Stopped::Signal,
        }
        if control.drain_requested.swap(false, Ordering::AcqRel) && !life.is_draining() {
            info!("drain requested over the admin API");
            life.handle_drain(now_ms(), &mut fx);
        }
        let now = now_ms();
        let held = activity(stats);
        life.handle_tick(now, Some(held), &mut fx);
        control
            .idle_seconds
            .store(life.idle_ms(now) / 1000, Ordering::Relaxed);
        let elapsed = rates.at.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let (out, inp) = (stats.sum(|s| &s.bytes_out), stats.sum(|s| &s.bytes_in));
            let bps = |now: u64, before: u64| {
                (now.saturating_sub(before) as f64 * 8.0 / elapsed.as_secs_f64()) as u64
            };
            control
                .egress_bps
                .store(bps(out, rates.out), Ordering::Relaxed);
            control
                .ingest_bps
                .store(bps(inp, rates.inp), Ordering::Relaxed);
            rates = Rates {
                at: Instant::now(),
                out,
                inp,
            };
        }
        for e in fx.drain(..) {
            match e {
                LifecycleEffect::Draining => control.draining.store(true, Ordering::Release),
                LifecycleEffect::StopAccepting => {
                    info!(
                        streams = held.streams,
                        viewers = held.viewers(),
                        publishers = held.publishers,
                        "drain: listeners closed; waiting for the sessions left"
                    );
                    control.stop_accepting();
                }
                LifecycleEffect::Exit(reason) => {
                    if reason == edge_core::drain::ExitReason::DrainTimeout {
                        warn!(
                            viewers = held.viewers(),
                            publishers = held.publishers,
                            "drain timeout: closing the sessions left"
                        );
                    }
                    info!(reason = reason.as_str(), "exiting");
                    return Stopped::Lifecycle;
                }
            }
        }
    }
}

/// Every figure an autoscaler reads, as Prometheus gauges without a shard label.
pub fn render_prometheus(control: &Control, stats: &Stats, out: &mut String) {
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
         edge_viewers{{protocol=\"rtmp\"}} {}\nedge_viewers{{protocol=\"flv\"}} {}\nedge_viewers{{protocol=\"hls\"}} {}",
        a.rtmp_viewers, a.flv_viewers, a.hls_viewers
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
pub fn render_summary(control: &Control, stats: &Stats) -> String {
    let a = activity(stats);
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    format!(
        "{{\"streams_live\":{},\"publishers\":{},\"viewers\":{{\"rtmp\":{},\"flv\":{},\"hls\":{},\"total\":{}}},\
         \"egress_bits_per_second\":{},\"ingest_bits_per_second\":{},\"draining\":{},\"idle_seconds\":{}}}\n",
        a.streams,
        a.publishers,
        a.rtmp_viewers,
        a.flv_viewers,
        a.hls_viewers,
        a.viewers(),
        load(&control.egress_bps),
        load(&control.ingest_bps),
        control.is_draining(),
        load(&control.idle_seconds)
    )
}
