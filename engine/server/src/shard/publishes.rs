//! Publish requests a shard's publishers have made to their streams' owners and not yet had
//! answered: one slot each, filled by the owner's reply (here or over the mesh), waited on
//! with a deadline.
//!
//! Must not: decide a publish (the owner does), or wait without a deadline.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use edge_core::stream::{PublishError, PublisherId};

/// How long a publisher waits for the owner's answer.
const PUBLISH_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A one-shot slot for the owner's publish answer.
#[derive(Default)]
struct Reply {
    value: Cell<Option<Result<(), PublishError>>>,
    waker: Cell<Option<Waker>>,
}

#[derive(Default)]
pub(crate) struct Publishes {
    pending: RefCell<HashMap<PublisherId, Rc<Reply>>>,
}

impl Publishes {
    /// The owner answered `publisher`'s request.
    pub(crate) fn answered(&self, publisher: PublisherId, result: Result<(), PublishError>) {
        if let Some(slot) = self.pending.borrow_mut().remove(&publisher) {
            slot.value.set(Some(result));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// Sends the request with `send`, then waits for the answer; `None` when none came in
    /// [`PUBLISH_REPLY_TIMEOUT`].
    pub(crate) async fn request(
        &self,
        publisher: PublisherId,
        send: impl FnOnce(),
    ) -> Option<Result<(), PublishError>> {
        let slot = Rc::new(Reply::default());
        self.pending
            .borrow_mut()
            .insert(publisher, Rc::clone(&slot));
        send();
        let answer = monoio::time::timeout(
            PUBLISH_REPLY_TIMEOUT,
            poll_fn(|cx| match slot.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    slot.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }),
        )
        .await;
        self.pending.borrow_mut().remove(&publisher);
        answer.ok()
    }
}
