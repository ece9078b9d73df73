//! The shard's write pacer: holds its RTMP and HTTP-FLV viewers' writes for the window
//! edge-core's [`WriteBatching`] sets from the shard's load, and releases them together.
//!
//! Owns: the batching state machine, the wakers of the writers held now, the shard thread's
//! CPU clock between load samples, and the write counters and gauges. The outlet's writer
//! asks it before each write ([`WritePacer::hold`]) and waits for the release it names.
//!
//! Must not: decide a window or a release time itself (edge-core does), wake writers one by
//! one on timers of their own (one release wakes all that are held, so their sends reach the
//! kernel in one submission), or run anything per frame.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use edge_core::batching::{BatchEffect, BatchingConfig, Hold, WriteBatching, Writer};

use super::TimerKey;
use crate::machine::stats::{Counter, ShardStats, Stats};
use crate::net::clock::Clock;
use crate::net::timer::Timers;

pub(crate) struct WritePacer {
    machine: RefCell<WriteBatching>,
    /// Wakers of the writers held now, by the release they wait for (a writer that left
    /// early leaves a stale one: waking it is a no-op).
    held: RefCell<BTreeMap<u64, Vec<Waker>>>,
    /// Every release up to this time has come.
    released_through: Cell<u64>,
    /// The shard clock (ms) and the thread's CPU time (ns) at the last sample.
    last_sample: Cell<Option<(u64, u64)>>,
    timers: Rc<Timers<TimerKey>>,
    clock: Clock,
    stats: Arc<Stats>,
    shard: usize,
}

impl WritePacer {
    pub(super) fn new(
        config: BatchingConfig,
        clock: Clock,
        timers: Rc<Timers<TimerKey>>,
        stats: Arc<Stats>,
        shard: usize,
    ) -> Rc<Self> {
        let machine = WriteBatching::new(config, clock.now_ms());
        timers.arm(TimerKey::Batching, machine.poll_timeout());
        stats.shards[shard]
            .write_window_ms
            .store(machine.window_ms(), Ordering::Relaxed);
        Rc::new(Self {
            machine: RefCell::new(machine),
            held: RefCell::new(BTreeMap::new()),
            released_through: Cell::new(0),
            last_sample: Cell::new(None),
            timers,
            clock,
            stats,
            shard,
        })
    }

    fn counters(&self) -> &ShardStats {
        &self.stats.shards[self.shard]
    }

    /// A writer has something queued: `None` writes now; `Some(at)` waits until
    /// [`WritePacer::released`] says the release at `at` came.
    pub(crate) fn hold(&self, writer: Writer) -> Option<u64> {
        let hold = self.machine.borrow_mut().hold(self.clock.now_ms(), writer);
        match hold {
            Hold::Now => None,
            Hold::Until(at) => {
                self.timers.arm(TimerKey::Batching, Some(at));
                self.counters().viewer_writes_held.inc();
                Some(at)
            }
        }
    }

    /// Whether the release at `at` has come.
    pub(crate) fn released(&self, at: u64) -> bool {
        at <= self.released_through.get()
    }

    /// Registers a held writer's waker for the release at `at` (once per hold).
    pub(crate) fn park(&self, at: u64, waker: Waker) {
        self.held.borrow_mut().entry(at).or_default().push(waker);
    }

    /// Counts one write to a viewer (its bytes are counted by the writer).
    pub(crate) fn wrote(&self) {
        self.counters().viewer_writes.inc();
    }

    /// The timer fired: sample the load, release the held writers, as the window says.
    pub(super) fn handle_timeout(&self, now_ms: u64) {
        let mut fx = Vec::new();
        self.machine.borrow_mut().handle_timeout(now_ms, &mut fx);
        let mut i = 0;
        while let Some(&effect) = fx.get(i) {
            i += 1;
            match effect {
                BatchEffect::MeasureLoad => {
                    if let Some(load) = self.sample_load(now_ms) {
                        self.machine.borrow_mut().on_load(load, &mut fx);
                    }
                }
                BatchEffect::Release { through } => self.release(through),
            }
        }
        let machine = self.machine.borrow();
        let c = self.counters();
        c.write_window_ms
            .store(machine.window_ms(), Ordering::Relaxed);
        c.write_load_permille
            .store(u64::from(machine.load_permille()), Ordering::Relaxed);
        self.timers.arm(TimerKey::Batching, machine.poll_timeout());
    }

    fn release(&self, through: u64) {
        self.released_through
            .set(self.released_through.get().max(through));
        let due = {
            let mut held = self.held.borrow_mut();
            let later = held.split_off(&(through + 1));
            std::mem::replace(&mut *held, later)
        };
        if !due.is_empty() {
            self.counters().viewer_write_releases.inc();
        }
        for w in due.into_values().flatten() {
            w.wake();
        }
    }

    /// The thread's CPU use since the last sample, in permille of one CPU; `None` at the first
    /// sample or when the clock cannot be read.
    fn sample_load(&self, now_ms: u64) -> Option<u32> {
        let cpu_ns = thread_cpu_ns()?;
        let last = self.last_sample.replace(Some((now_ms, cpu_ns)));
        let (then_ms, then_ns) = last?;
        let wall_ns = now_ms.saturating_sub(then_ms).max(1) * 1_000_000;
        let permille = cpu_ns.saturating_sub(then_ns).saturating_mul(1000) / wall_ns;
        Some(permille.min(1000) as u32)
    }
}

/// This thread's CPU time (user and system), in ns.
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
