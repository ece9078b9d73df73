//! A shard's one timer: a heap of deadlines (shard-clock ms) by key, armed from the state
//! machines' `poll_timeout()`, and one task that sleeps until the earliest and says which
//! keys are due. No fixed ticks: with nothing due, the task sleeps until something is armed.
//!
//! Arming keeps the earliest deadline per key; a later one replaces nothing (the earlier
//! entry fires, the key's state machine finds nothing due and re-arms for the later one).
//! Stale heap entries are skipped when popped.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::poll_fn;
use std::hash::Hash;
use std::task::{Poll, Waker};

use crate::net::clock::Clock;

pub(crate) struct Timers<K: Ord + Hash + Clone> {
    heap: RefCell<BinaryHeap<Reverse<(u64, K)>>>,
    /// The deadline each key is armed for.
    armed: RefCell<HashMap<K, u64>>,
    /// An earlier deadline than the task sleeps for was armed.
    changed: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl<K: Ord + Hash + Clone> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: RefCell::new(BinaryHeap::new()),
            armed: RefCell::new(HashMap::new()),
            changed: Cell::new(false),
            waker: Cell::new(None),
        }
    }
}

impl<K: Ord + Hash + Clone> Timers<K> {
    /// Arms `key` for `at` (a state machine's `poll_timeout()`); `None` arms nothing.
    pub(crate) fn arm(&self, key: K, at: Option<u64>) {
        let Some(at) = at else { return };
        let mut armed = self.armed.borrow_mut();
        if armed.get(&key).is_some_and(|&t| t <= at) {
            return;
        }
        armed.insert(key.clone(), at);
        let mut heap = self.heap.borrow_mut();
        let earliest = heap.peek().is_none_or(|Reverse((t, _))| at < *t);
        heap.push(Reverse((at, key)));
        if earliest {
            self.changed.set(true);
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// The keys whose deadline is at or before `now_ms`, each once; they are disarmed.
    pub(crate) fn pop_due(&self, now_ms: u64) -> Vec<K> {
        let mut due = Vec::new();
        let mut heap = self.heap.borrow_mut();
        let mut armed = self.armed.borrow_mut();
        while let Some(Reverse((t, _))) = heap.peek() {
            if *t > now_ms {
                break;
            }
            let Some(Reverse((t, key))) = heap.pop() else {
                break;
            };
            if armed.get(&key) == Some(&t) {
                armed.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// The earliest deadline armed (perhaps a stale one: waking for it early is harmless).
    pub(crate) fn next(&self) -> Option<u64> {
        self.heap.borrow().peek().map(|Reverse((t, _))| *t)
    }

    /// Sleeps until the earliest deadline, or until an earlier one is armed.
    pub(crate) async fn wait(&self, clock: &Clock) {
        let next = self.next();
        self.changed.set(false);
        let rearmed = poll_fn(|cx| {
            if self.changed.take() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        });
        match next {
            Some(t) => monoio::select! {
                _ = monoio::time::sleep_until(clock.instant_at(t).into()) => {}
                _ = rearmed => {}
            },
            None => rearmed.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_per_key_and_stale_entries_skipped() {
        let t: Timers<&str> = Timers::default();
        t.arm("a", Some(100));
        t.arm("a", Some(200)); // later: nothing changes
        t.arm("b", Some(150));
        t.arm("b", Some(50)); // earlier: replaces
        t.arm("c", None);
        assert_eq!(t.pop_due(49), Vec::<&str>::new());
        assert_eq!(t.pop_due(100), vec!["b", "a"]);
        // b's stale entry at 150 is skipped; nothing is armed any more.
        assert_eq!(t.pop_due(1000), Vec::<&str>::new());
        t.arm("a", Some(300));
        assert_eq!(t.pop_due(300), vec!["a"]);
    }
}
