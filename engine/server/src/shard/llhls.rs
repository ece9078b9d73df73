//! LL-HLS requests waiting on this shard: blocking playlist reloads and parts asked for
//! before they exist (the preload hint). edge-core's [`Parked`] decides; this part holds
//! each request's waker, wakes the satisfied ones when a snapshot is installed here, and the
//! expired ones when the shard's one timer says so.
//!
//! Must not: sleep or poll (a parked request is woken, never re-checked on a clock), render
//! or send anything (the connection answers from the snapshot), or hold more than
//! [`MAX_PARKED`] requests.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use edge_core::hls::blocking::Parked;
use edge_core::hls::llhls::LlSnapshot;
use edge_core::StreamKey;

/// Requests a shard parks at most; past it, a request that would wait gets 503.
pub(crate) const MAX_PARKED: usize = 65_536;

/// How a parked request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A snapshot satisfies it (or the stream is gone): answer from what is installed now.
    Released,
    /// Three target durations passed: 503.
    TimedOut,
}

/// One parked request's waker and outcome.
#[derive(Default)]
pub(crate) struct Slot {
    waker: RefCell<Option<Waker>>,
    outcome: Cell<Option<Outcome>>,
}

impl Slot {
    fn finish(&self, outcome: Outcome) {
        self.outcome.set(Some(outcome));
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves when the request is released or expires.
    pub(crate) async fn wait(&self) -> Outcome {
        poll_fn(|cx| match self.outcome.get() {
            Some(o) => Poll::Ready(o),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

pub(crate) struct LlWaits {
    parked: RefCell<Parked<StreamKey, Rc<Slot>>>,
}

impl LlWaits {
    pub(crate) fn new() -> Self {
        Self {
            parked: RefCell::new(Parked::new(MAX_PARKED)),
        }
    }

    /// Parks a request for part `part` of segment `msn` of `key` until `deadline_ms`;
    /// `None` when [`MAX_PARKED`] are waiting.
    pub(crate) fn park(
        &self,
        key: &StreamKey,
        msn: u64,
        part: Option<u32>,
        deadline_ms: u64,
    ) -> Option<Rc<Slot>> {
        let slot = Rc::new(Slot::default());
        self.parked
            .borrow_mut()
            .park(key.clone(), msn, part, deadline_ms, Rc::clone(&slot))
            .ok()?;
        Some(slot)
    }

    /// `key`'s snapshot changed (`None`: the stream is gone here): wakes what it satisfies.
    pub(crate) fn released(&self, key: &StreamKey, snap: Option<&LlSnapshot>) {
        let slots = self.parked.borrow_mut().handle_snapshot(key, snap);
        for s in slots {
            s.finish(Outcome::Released);
        }
    }

    /// Wakes the requests whose deadline has come; how many.
    pub(crate) fn handle_timeout(&self, now_ms: u64) -> usize {
        let slots = self.parked.borrow_mut().handle_timeout(now_ms);
        for s in &slots {
            s.finish(Outcome::TimedOut);
        }
        slots.len()
    }

    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.parked.borrow().poll_timeout()
    }

    pub(crate) fn len(&self) -> usize {
        self.parked.borrow().len()
    }
}
