//! Drain and idle exit, carried out. The main thread runs the control loop
//! ([`run_control`]): signals arrive on a channel, every [`TICK`] it sums what the shards
//! hold and drives edge-core's [`Lifecycle`], and it does what that decides: raise the
//! draining flag, close the listeners, end the process. [`Control`] is what the shards see:
//! flags they read (`/readyz`, HLS migration, keep-alive) and the one request they may make
//! (`POST /api/v1/drain`), and the machine-level gauges the loop keeps.
//!
//! Must not: run on a shard, make a shard wait (shards only load and store atomics), or decide
//! when to stop (the [`Lifecycle`] does).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use edge_core::drain::{DrainConfig, Lifecycle, LifecycleEffect};
use tracing::{info, warn};

use crate::machine::control::Control;
use crate::machine::report::activity;
use crate::machine::stats::Stats;

/// How often the control loop looks at the node.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// How the control loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
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
pub(crate) fn run_control(
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
                control.set_draining();
                life.handle_drain(now_ms(), &mut fx);
            }
            Ok(sig) => {
                info!(signal = sig, "stopping now: closing listeners and sessions");
                return Stopped::Signal;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Stopped::Signal,
        }
        if control.take_drain_request() && !life.is_draining() {
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
                LifecycleEffect::Draining => control.set_draining(),
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
