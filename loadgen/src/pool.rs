//! More viewers than sockets: HLS viewers of a worker thread share a bounded pool of
//! keep-alive connections. A request takes a connection (opening one while under the limit,
//! else waiting for one), and gives it back after the response. Waiting counts in the
//! request's latency, which runs from its intended time.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Poll, Waker};

use monoio::net::TcpStream;

use crate::viewers::Live;

/// A thread's connections to one HTTP server.
pub struct Pool {
    addr: SocketAddr,
    live: std::sync::Arc<Live>,
    max: usize,
    open: Cell<usize>,
    free: RefCell<Vec<TcpStream>>,
    waiters: RefCell<VecDeque<Waker>>,
    /// Read buffers of finished exchanges, reused last-in first-out so the one taken next is
    /// still in cache; one per exchange in flight at most.
    buffers: RefCell<Vec<Vec<u8>>>,
}

/// Size of a read buffer: a 64 KB segment in about one read.
const BUFFER: usize = 64 * 1024;

/// What acquiring gave: a pooled connection, or a reason it could not open one.
pub enum Acquired {
    Conn(TcpStream),
    ConnectFailed,
}

impl Pool {
    pub fn new(addr: SocketAddr, max: usize, live: std::sync::Arc<Live>) -> Self {
        Self {
            addr,
            live,
            max: max.max(1),
            open: Cell::new(0),
            free: RefCell::new(Vec::new()),
            waiters: RefCell::new(VecDeque::new()),
            buffers: RefCell::new(Vec::new()),
        }
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
                self.open.set(self.open.get() + 1);
                return match crate::net::connect(self.addr).await {
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
                };
            }
            // Queue for the next release. A woken waiter that loses the race to another task
            // queues again on its next poll, so no wake-up is lost.
            poll_fn(|cx| {
                if !self.free.borrow().is_empty() || self.open.get() < self.max {
                    Poll::Ready(())
                } else {
                    self.waiters.borrow_mut().push_back(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        }
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

    /// Returns a healthy connection, or forgets a broken one (`None`).
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
        if let Some(w) = self.waiters.borrow_mut().pop_front() {
            w.wake();
        }
    }
}
