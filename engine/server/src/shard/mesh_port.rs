//! A shard's port on the mesh: control messages out (waiting in an outbox, in order, while a
//! channel is full), publisher media out (the publisher waits for room instead), messages in,
//! and the space bell that wakes whoever waits for room.
//!
//! Must not: decide anything about a message (the dispatcher hands it on), drop media, or
//! poll for room (a receiver that drains rings the bell).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use edge_core::ShardId;
use tracing::warn;

use crate::net::mesh::{Mesh, MeshMsg};

/// Control messages waiting for channel space, at most (beyond it they are dropped, logged).
const MAX_OUTBOX: usize = 65_536;
/// Mesh messages handled per source shard per wake-up.
const DRAIN_PER_SOURCE: usize = 1024;

pub(crate) struct MeshPort {
    me: ShardId,
    mesh: Arc<Mesh>,
    outbox: RefCell<VecDeque<(ShardId, MeshMsg)>>,
    /// Tasks here that wait for room in a channel (publishers' media), woken when the
    /// dispatcher hears the space bell.
    space_waiters: RefCell<Vec<Waker>>,
}

impl MeshPort {
    pub(crate) fn new(me: ShardId, mesh: Arc<Mesh>) -> Self {
        MeshPort {
            me,
            mesh,
            outbox: RefCell::new(VecDeque::new()),
            space_waiters: RefCell::new(Vec::new()),
        }
    }

    /// Every shard of the machine but this one.
    pub(crate) fn others(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.mesh.shards())
            .map(ShardId)
            .filter(move |&s| s != self.me)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.mesh.is_shutting_down()
    }

    /// Sends a control message; when the channel is full it waits in the outbox (FIFO).
    pub(crate) fn send_control(&self, to: ShardId, msg: MeshMsg) {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.is_empty() {
            if let Err(m) = self.mesh.try_send(self.me, to, msg) {
                outbox.push_back((to, m));
            }
        } else if outbox.len() < MAX_OUTBOX {
            outbox.push_back((to, msg));
        } else {
            warn!(shard = %self.me, %to, "mesh outbox full; dropping control message {msg:?}");
        }
    }

    /// The same control message to every other shard.
    pub(crate) fn broadcast(&self, msg: impl Fn() -> MeshMsg) {
        for to in self.others() {
            self.send_control(to, msg());
        }
    }

    /// Sends at once or not at all (an owner's update: a full channel makes `to` lag).
    pub(crate) fn try_send(&self, to: ShardId, msg: MeshMsg) -> Result<(), MeshMsg> {
        self.mesh.try_send(self.me, to, msg)
    }

    fn flush_outbox(&self) {
        let mut outbox = self.outbox.borrow_mut();
        while let Some((to, msg)) = outbox.pop_front() {
            if let Err(m) = self.mesh.try_send(self.me, to, msg) {
                outbox.push_front((to, m));
                break;
            }
        }
    }

    /// Sends publisher media to the owner, waiting while the channel is full: the publisher
    /// is pushed back over TCP instead of anything being dropped. The wait ends when the
    /// owner drains the channel (the dispatcher hears the space bell).
    pub(crate) async fn send_media(&self, to: ShardId, mut msg: MeshMsg) {
        loop {
            match self.mesh.try_send(self.me, to, msg) {
                Ok(()) => return,
                Err(m) => msg = m,
            }
            if self.mesh.is_shutting_down() {
                // Nobody drains any more: the message goes with the process.
                return;
            }
            if self.mesh.wait_for_space(self.me, to) {
                continue;
            }
            let mut registered = false;
            poll_fn(|cx| {
                if registered {
                    return Poll::Ready(());
                }
                registered = true;
                self.space_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            })
            .await;
        }
    }

    /// Waits until messages arrive or a channel this shard waits on has room; wakes the
    /// tasks waiting for room and sends the outbox on. `None` at shutdown, else the
    /// messages received (at most [`DRAIN_PER_SOURCE`] per source).
    pub(crate) async fn receive(&self) -> Option<Vec<MeshMsg>> {
        let head = self.outbox.borrow().front().map(|(to, _)| *to);
        let room = head.is_some_and(|to| self.mesh.wait_for_space(self.me, to));
        if !room {
            poll_fn(|cx| {
                let ready = self.mesh.poll_ready(self.me, cx);
                let space = self.mesh.poll_space(self.me, cx);
                if ready.is_ready() || space.is_ready() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
        for w in self.space_waiters.take() {
            w.wake();
        }
        if self.mesh.is_shutting_down() {
            return None;
        }
        self.flush_outbox();
        let mut batch = Vec::new();
        self.mesh
            .drain(self.me, DRAIN_PER_SOURCE, |_, m| batch.push(m));
        Some(batch)
    }

    /// Whether messages wait to be received.
    pub(crate) fn pending(&self) -> bool {
        let mut cx = std::task::Context::from_waker(Waker::noop());
        self.mesh.poll_ready(self.me, &mut cx).is_ready()
    }
}
