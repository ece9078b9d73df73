//! More viewers than sockets: HLS viewers of a worker thread share a bounded pool of
//! keep-alive connections. A request takes a free connection, else opens one while under the
//! limit — beyond the first [`GROW_FREELY`], at most one per [`GROW_EVERY`] and only while the
//! thread keeps its timers (lag under [`BUSY_LAG`]) — else it waits for a release; it gives
//! the connection back after the response. Waiting counts in the request's latency, which runs
//! from its intended time.
//!
//! Why growth is paced and gated: a request finds no free connection either because the server
//! is slow (more connections help) or because this thread has no CPU left to drive the ones it
//! has (more connections hurt: each costs a handshake and an accept, and stays). A pool that
//! opened one for every such request turned a passing burst into thousands of connections
//! exactly when the client was busiest, and the run collapsed. Measured (docs/BENCHMARKS.md):
//! 35,000 HLS viewers collapsed on 19,744 connections and played cleanly on 1,000.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::live::Live;

/// Connections a thread opens without pacing.
pub const GROW_FREELY: usize = 64;
/// Beyond those, at most one new connection per this long per thread.
pub const GROW_EVERY: Duration = Duration::from_millis(1);
/// Timers firing this late mean the thread is out of CPU: the pool does not grow then.
pub const BUSY_LAG: Duration = Duration::from_millis(5);

/// A thread's pools, one per HTTP server: the target's, and one for each server a redirect
/// sent its viewers to (a draining edge's 302s), each with the same bound.
pub struct Pools {
    max: usize,
    live: std::sync::Arc<Live>,
    by_addr: RefCell<Vec<Rc<Pool>>>,
}

impl Pools {
    pub fn new(max: usize, live: std::sync::Arc<Live>) -> Self {
        Self {
            max,
            live,
            by_addr: RefCell::new(Vec::new()),
        }
    }

    /// The pool for `addr`, made on first use.
    pub fn get(&self, addr: SocketAddr) -> Rc<Pool> {
        let mut pools = self.by_addr.borrow_mut();
        if let Some(p) = pools.iter().find(|p| p.addr == addr) {
            return Rc::clone(p);
        }
        let pool = Rc::new(Pool::new(addr, self.max, std::sync::Arc::clone(&self.live)));
        pools.push(Rc::clone(&pool));
        pool
    }
}

/// A thread's connections to one HTTP server.
pub struct Pool {
    addr: SocketAddr,
    /// The Host header for requests to it.
    host: String,
    live: std::sync::Arc<Live>,
    max: usize,
    open: Cell<usize>,
    /// When the pool may open its next paced connection.
    next_open: Cell<Instant>,
    /// How late the thread's latest timer fired (see [`Pool::note_lag`]).
    lag: Cell<Duration>,
    free: RefCell<Vec<TcpStream>>,
    waiters: RefCell<VecDeque<Waiter>>,
    /// Read buffers of finished exchanges, reused last-in first-out so the one taken next is
    /// still in cache; one per exchange in flight at most.
    buffers: RefCell<Vec<Vec<u8>>>,
}

/// Size of a read buffer: a 64 KB segment in about one read.
const BUFFER: usize = 64 * 1024;

/// A request waiting for a release. Its state is shared with the waiting future so that a
/// waiter that gave up (its growth slot came first) is skipped, not woken in place of another.
struct Waiter {
    waker: Waker,
    state: Rc<Cell<WaitState>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WaitState {
    Idle,
    Queued,
    Gone,
}

/// What acquiring gave: a pooled connection, or a reason it could not open one.
pub enum Acquired {
    Conn(TcpStream),
    ConnectFailed,
}

impl Pool {
    /// The server this pool connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn new(addr: SocketAddr, max: usize, live: std::sync::Arc<Live>) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            live,
            max: max.max(1),
            open: Cell::new(0),
            next_open: Cell::new(Instant::now()),
            lag: Cell::new(Duration::ZERO),
            free: RefCell::new(Vec::new()),
            waiters: RefCell::new(VecDeque::new()),
            buffers: RefCell::new(Vec::new()),
        }
    }

    /// Tells the pool how late a timer of this thread fired (a viewer's reload that was due
    /// in the future): the measure of whether the thread has CPU to spare.
    pub fn note_lag(&self, lag: Duration) {
        self.lag.set(lag);
    }

    /// The server's `host:port`, for the Host header.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    pub async fn acquire(&self) -> Acquired {
        loop {
            if let Some(c) = self.free.borrow_mut().pop() {
                return Acquired::Conn(c);
            }
            if self.open.get() < self.max {
                let now = Instant::now();
                let may_grow = now >= self.next_open.get() && self.lag.get() < BUSY_LAG;
                if self.open.get() < GROW_FREELY || may_grow {
                    if self.open.get() >= GROW_FREELY {
                        self.next_open.set(now + GROW_EVERY);
                    }
                    return self.connect().await;
                }
            }
            // Every connection is busy and will come back: growth is a chance a request gets
            // on arrival, not something waiters poll for (thousands of them would).
            self.released().await;
        }
    }

    async fn connect(&self) -> Acquired {
        self.open.set(self.open.get() + 1);
        match crate::net::connect(self.addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                self.live
                    .sockets
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Acquired::Conn(s)
            }
            Err(_) => {
                self.open.set(self.open.get() - 1);
                Acquired::ConnectFailed
            }
        }
    }

    /// Waits until a connection is free or one closed (a woken waiter that loses the race to
    /// another task queues again on its next poll, so no wake-up is lost; one that closed
    /// lowers `open`, and the next waiter may open a new one).
    async fn released(&self) {
        struct Leave(Rc<Cell<WaitState>>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.set(WaitState::Gone);
            }
        }
        let state = Rc::new(Cell::new(WaitState::Idle));
        let _leave = Leave(Rc::clone(&state));
        let open = self.open.get();
        poll_fn(|cx| {
            if !self.free.borrow().is_empty() || self.open.get() < open {
                return Poll::Ready(());
            }
            if state.get() == WaitState::Idle {
                state.set(WaitState::Queued);
                self.waiters.borrow_mut().push_back(Waiter {
                    waker: cx.waker().clone(),
                    state: Rc::clone(&state),
                });
            }
            Poll::Pending
        })
        .await;
    }

    /// A read buffer for one exchange.
    pub fn take_buffer(&self) -> Vec<u8> {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER))
    }

    /// Hands a read buffer back (one that lost its capacity to a timeout is not kept).
    pub fn give_buffer(&self, buf: Vec<u8>) {
        if buf.capacity() >= BUFFER {
            self.buffers.borrow_mut().push(buf);
        }
    }

    /// Returns a healthy connection, or forgets a broken one (`None`), and wakes the first
    /// request still waiting.
    pub fn release(&self, conn: Option<TcpStream>) {
        match conn {
            Some(c) => self.free.borrow_mut().push(c),
            None => {
                self.open.set(self.open.get() - 1);
                self.live
                    .sockets
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let mut waiters = self.waiters.borrow_mut();
        while let Some(w) = waiters.pop_front() {
            if w.state.get() == WaitState::Queued {
                w.state.set(WaitState::Idle);
                w.waker.wake();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 requests at once, each holding its connection 20 ms: all are served, the pool
    /// never passes its limit, and past the first GROW_FREELY it grows no faster than one
    /// connection per GROW_EVERY.
    #[test]
    fn growth_is_paced_and_no_waiter_is_forgotten() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                held.push(s);
            }
        });
        for max in [100, 1000] {
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
                .unwrap();
            let (served, most_open, beyond_pace) = rt.block_on(async move {
                let pool = Rc::new(Pool::new(addr, max, Default::default()));
                let served = Rc::new(Cell::new(0));
                let most_open = Rc::new(Cell::new(0));
                // The most connections open beyond what pacing allows at that moment.
                let beyond_pace = Rc::new(Cell::new(0i64));
                let start = Instant::now();
                let tasks: Vec<_> = (0..300)
                    .map(|_| {
                        let (pool, served, most_open, beyond_pace) = (
                            Rc::clone(&pool),
                            Rc::clone(&served),
                            Rc::clone(&most_open),
                            Rc::clone(&beyond_pace),
                        );
                        monoio::spawn(async move {
                            let Acquired::Conn(c) = pool.acquire().await else {
                                panic!("connect failed");
                            };
                            let open = pool.open();
                            most_open.set(most_open.get().max(open));
                            let paced = start.elapsed().as_micros() / GROW_EVERY.as_micros() + 1;
                            let beyond = open as i64 - (GROW_FREELY as i64 + paced as i64);
                            beyond_pace.set(beyond_pace.get().max(beyond));
                            monoio::time::sleep(Duration::from_millis(20)).await;
                            pool.release(Some(c));
                            served.set(served.get() + 1);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
                (served.get(), most_open.get(), beyond_pace.get())
            });
            assert_eq!(served, 300, "max {max}");
            assert!(most_open <= max, "max {max}: {most_open} open");
            assert!(
                beyond_pace <= 0,
                "max {max}: {beyond_pace} more than pacing allows"
            );
            assert!(
                most_open > GROW_FREELY,
                "max {max}: the pool grew past the free part"
            );
        }
    }
}
