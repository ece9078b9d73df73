//! The publisher's side on its own shard: asking the owner for a stream (and waiting for the
//! answer, bounded), its media messages, its end.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use edge_core::media::TagInfo;
use edge_core::stream::{Departure, PublishError, PublisherId};
use edge_core::StreamKey;
use tracing::warn;

use super::{Reply, Shard, PUBLISH_REPLY_TIMEOUT};
use crate::mesh::MeshMsg;

impl Shard {
    pub(super) fn publish_answered(
        &self,
        publisher: PublisherId,
        result: Result<(), PublishError>,
    ) {
        if let Some(slot) = self.pending_publish.borrow_mut().remove(&publisher) {
            slot.value.set(Some(result));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// Asks the owner for `key`; resolves with its answer.
    pub async fn request_publish(
        &self,
        key: &StreamKey,
        publisher: PublisherId,
        query: Option<Arc<str>>,
    ) -> Result<(), PublishError> {
        let slot = Rc::new(Reply::default());
        self.pending_publish
            .borrow_mut()
            .insert(publisher, Rc::clone(&slot));
        let owner = self.owner_of(key);
        self.send_control(
            owner,
            MeshMsg::PublishRequest {
                key: key.clone(),
                publisher,
                from: self.id,
                query,
            },
        );
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
        self.pending_publish.borrow_mut().remove(&publisher);
        match answer {
            Ok(r) => r,
            Err(_) => {
                warn!(shard = %self.id, %key, %owner, "owner shard did not answer a publish in time");
                // Treat as busy; if the owner accepted late, the unpublish below releases it.
                self.unpublish(key, publisher, Departure::Unpublished);
                Err(PublishError::AlreadyPublishing)
            }
        }
    }

    /// The publisher left `key`: it unpublished, or (`Departure::Lost`) its connection ended
    /// without a word, which ends the stream as a failure if nobody takes over.
    pub fn unpublish(&self, key: &StreamKey, publisher: PublisherId, how: Departure) {
        self.send_control(
            self.owner_of(key),
            MeshMsg::Unpublish {
                key: key.clone(),
                publisher,
                how,
            },
        );
    }

    /// A publisher's media message for its owner, its header parsed once here.
    pub fn media_message(
        &self,
        key: &StreamKey,
        publisher: PublisherId,
        tag: TagInfo,
        timestamp: u32,
        body: Bytes,
    ) -> MeshMsg {
        MeshMsg::Media {
            key: key.clone(),
            publisher,
            tag,
            timestamp,
            body,
        }
    }
}
