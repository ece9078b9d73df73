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

use crate::listen::Service;
use crate::stats::Stats;

/// How often the control loop looks at the node.
pub const TICK: Duration = Duration::from_millis(50);

/// What the shards and the control loop share.
#[derive(Default)]
pub struct Control {
    draining: AtomicBool,
    drain_requested: AtomicBool,
    /// The listeners were shut down by a drain: an accept loop that fails ends.
    closed: AtomicBool,
    /// The listeners are being shut down (set before the first, `closed` after the last): an
    /// accept that fails meanwhile is the shutdown's, not an error to report.
    closing: AtomicBool,
    /// A successor took the listeners over (`--upgrade-socket`): the shards stop accepting.
    handed_over: AtomicBool,
    listeners: Mutex<Listeners>,
    pub idle_seconds: AtomicU64,
    pub egress_bps: AtomicU64,
    pub ingest_bps: AtomicU64,
    /// This engine's relay listener (`--upgrade-socket` on an origin), told to a successor.
    pub relay_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

/// Every shard's listening sockets, and who may act on them.
#[derive(Default)]
struct Listeners {
    fds: Vec<(Service, RawFd)>,
    phase: Phase,
    /// A drain wanted them closed while a handover was under way.
    stop_pending: bool,
}

/// Where the listening sockets stand. Only `Serving` sockets are shut down, and a
/// handover starts only from `Serving`, so a socket a successor holds is never shut down.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Serving,
    HandingOver,
    HandedOver,
    Closed,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A listening socket (registered when bound, before it accepts).
    pub fn add_listener(&self, service: Service, fd: RawFd) {
        self.lock().fds.push((service, fd));
    }

    /// An accept loop that fails now ends instead of retrying: a drain shut the listeners
    /// down, or a successor holds them.
    pub fn accepting_ended(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.handed_over()
    }

    /// The listeners are being shut down, or are: a failed accept is expected.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// A successor holds the listeners: every shard cancels its accepts.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Starts handing the listeners to a successor: their descriptors, which stay open
    /// (the accept loops own them) until [`Control::finish_handover`] or
    /// [`Control::abort_handover`]. Refused once they are closed or handed over.
    pub fn begin_handover(&self) -> Result<Vec<(Service, RawFd)>, &'static str> {
        let mut l = self.lock();
        match l.phase {
            Phase::Serving => {
                l.phase = Phase::HandingOver;
                Ok(l.fds.clone())
            }
            Phase::HandingOver => Err("another handover is under way"),
            Phase::HandedOver => Err("the listeners were handed over already"),
            Phase::Closed => Err("a drain closed the listeners"),
        }
    }

    /// The successor accepts on the listeners: stop accepting here and drain.
    pub fn finish_handover(&self) {
        self.lock().phase = Phase::HandedOver;
        self.handed_over.store(true, Ordering::Release);
        self.request_drain();
    }

    /// The successor went away before it was ready: the listeners are ours again, and are
    /// shut down now if a drain asked for that meanwhile.
    pub fn abort_handover(&self) {
        let pending = {
            let mut l = self.lock();
            l.phase = Phase::Serving;
            std::mem::take(&mut l.stop_pending)
        };
        if pending {
            self.stop_accepting();
        }
    }

    /// Shuts every listening socket down: pending and new connections are refused, and the
    /// accept loops' waits end with an error. Listeners that a successor holds, or is being
    /// given, are left alone: they are its sockets.
    fn stop_accepting(&self) {
        let mut l = self.lock();
        match l.phase {
            Phase::Serving => {}
            Phase::HandingOver => {
                l.stop_pending = true;
                return;
            }
            Phase::HandedOver | Phase::Closed => return,
        }
        l.phase = Phase::Closed;
        self.closing.store(true, Ordering::Release);
        for (_, fd) in &l.fds {
            // SAFETY: shutdown(2) has no memory effects. Every listener is still open here:
            // one closes only when its accept loop ends, which needs `closed` or
            // `handed_over` (the first is set only after this loop, and `Serving` excludes
            // the second), or at process shutdown; and this runs once (the phase is now
            // `Closed`), so no descriptor number reused since is touched.
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
        self.closed.store(true, Ordering::Release);
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
        hls_held_total: stats.sum(|s| &s.drain_held),
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
    /// Each shard thread's CPU time (clock ticks) at `at`.
    cpu: Vec<Option<u64>>,
}

/// A shard thread's CPU time (user + system, in clock ticks) from
/// `/proc/self/task/TID/stat`. Read on the control thread, never on a shard.
fn thread_cpu_ticks(tid: u64) -> Option<u64> {
    if tid == 0 {
        return None;
    }
    stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// utime + stime from a `/proc/.../stat` line.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the fields after its
    // last `)` are plain. utime and stime are fields 14 and 15: the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

fn shard_cpu_ticks(stats: &Stats) -> Vec<Option<u64>> {
    stats
        .shards
        .iter()
        .map(|s| thread_cpu_ticks(s.tid.load(Ordering::Relaxed)))
        .collect()
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
        cpu: shard_cpu_ticks(stats),
    };
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as f64,
        _ => 100.0,
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
            info!("drain requested (admin API, or a successor took the listeners)");
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
            let cpu = shard_cpu_ticks(stats);
            for ((s, now), before) in stats.shards.iter().zip(&cpu).zip(&rates.cpu) {
                if let (Some(now), Some(before)) = (now, before) {
                    let busy =
                        now.saturating_sub(*before) as f64 / ticks_per_s / elapsed.as_secs_f64()
                            * 100.0;
                    s.busy_percent.store(busy.round() as u64, Ordering::Relaxed);
                }
            }
            rates = Rates {
                at: Instant::now(),
                out,
                inp,
                cpu,
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
        total: u64,
    }
    let a = activity(stats);
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    crate::stats::json_line(&Summary {
        streams_live: a.streams,
        publishers: a.publishers,
        viewers: Viewers {
            rtmp: a.rtmp_viewers,
            flv: a.flv_viewers,
            hls: a.hls_viewers,
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

    #[test]
    fn a_threads_cpu_time_is_read_past_a_name_with_spaces_and_parentheses() {
        let line = "4242 (edge (shard) 0) R 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(line), Some(168));
        assert_eq!(stat_cpu_ticks("4242 (x) R 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
        // This thread's own line parses.
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u64;
        assert!(thread_cpu_ticks(tid).is_some());
        assert_eq!(thread_cpu_ticks(0), None);
    }
}
