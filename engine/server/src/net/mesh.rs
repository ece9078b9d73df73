//! The shard mesh: one bounded lock-free channel per ordered pair of shards, and one doorbell
//! per receiving shard.
//!
//! A sender pushes into `inbox[to].from[me]` (a crossbeam `ArrayQueue`) and rings the doorbell
//! only when the receiver was idle, so a busy shard pays no wake-up syscalls. Overflow never
//! blocks a sender; each message kind's policy is applied by the caller (see [`MeshMsg`]).
//!
//! A sender that must wait for room (a publisher's media, control messages in the outbox)
//! marks its channel ([`Mesh::wait_for_space`]); the receiver that drains a marked channel
//! rings the sender shard's space bell ([`Mesh::poll_space`]), so the wait ends on the event,
//! not on a timer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use edge_core::hls::hinted::HintEvent;
use edge_core::hls::llhls::{LlFile, LlSnapshot, PartId};
use edge_core::hls::HlsSnapshot;
use edge_core::media::TagInfo;
use edge_core::stream::{PublishError, PublisherId, StreamUpdate};
use edge_core::StreamKey;

pub use edge_core::ShardId;

/// What shards say to each other. Overflow policy per kind:
/// - `Update` (owner → replica): the replica shard is marked lagging and resynchronised with
///   a snapshot at the next chance; viewers there skip to the next keyframe.
/// - `Media`/`Metadata` (publisher shard → owner): the publisher's connection waits and
///   retries, which pushes back on the publisher over TCP. Nothing is dropped.
/// - control (`Subscribe`, `Unsubscribe`, `Demand`, `PublishRequest`, `PublishReply`,
///   `Unpublish`, `Hls`, which comes once per segment, the HLS pull's `HlsMiss`,
///   `HlsUnavailable` and `HlsSegment`, one per origin read of a segment, and LL-HLS's
///   `LlWant` and `LlHint`, one per chunk of a part some shard streams): queued in the
///   sender's outbox (FIFO, so a part's `Done` follows the `Hls` that lists it) until
///   accepted.
#[derive(Debug)]
pub enum MeshMsg {
    /// A shard has viewers of `key` and wants its updates. `query` is the first viewer's
    /// `?…`, carried upstream if this starts an edge pull.
    Subscribe {
        key: StreamKey,
        from: ShardId,
        query: Option<Arc<str>>,
    },
    /// Edge mode: HLS viewers on some shard want `key` (sent at most once a second per
    /// stream and shard); starts or keeps the owner's pull.
    Demand {
        key: StreamKey,
        query: Option<Arc<str>>,
    },
    /// A shard has no viewers of `key` left.
    Unsubscribe { key: StreamKey, from: ShardId },
    /// The owner's update for a replica.
    Update {
        key: StreamKey,
        update: StreamUpdate,
    },
    /// A publisher on shard `from` asks the owner for `key`.
    PublishRequest {
        key: StreamKey,
        publisher: PublisherId,
        from: ShardId,
        /// The publisher's `?…`, carried upstream when the publish is forwarded.
        query: Option<Arc<str>>,
    },
    /// The owner's answer.
    PublishReply {
        publisher: PublisherId,
        result: Result<(), PublishError>,
    },
    /// Publisher media for the owner, its header parsed once on the publisher's shard.
    Media {
        key: StreamKey,
        publisher: PublisherId,
        tag: TagInfo,
        timestamp: u32,
        body: Bytes,
    },
    /// Publisher `onMetaData` for the owner.
    Metadata {
        key: StreamKey,
        publisher: PublisherId,
        body: Bytes,
    },
    /// The publisher left: it unpublished, or its connection was lost.
    Unpublish {
        key: StreamKey,
        publisher: PublisherId,
        how: edge_core::stream::Departure,
    },
    /// The owner's latest HLS state for `key` (`None`: forget it), for every shard.
    Hls {
        key: StreamKey,
        snapshot: Option<Arc<HlsSnapshot>>,
    },
    /// HLS pull: a viewer here wants segment `seq` of `key`, which is not here.
    HlsMiss {
        key: StreamKey,
        seq: u64,
        from: ShardId,
    },
    /// HLS pull: `key`'s playlist cannot be loaded; requests get `status` for a while.
    HlsUnavailable { key: StreamKey, status: u16 },
    /// HLS pull: the download of segment `seq` of `key`, as it happens (owner → every shard).
    HlsSegment {
        key: StreamKey,
        seq: u64,
        event: SegmentEvent,
    },
    /// LL-HLS: requests on shard `from` want `part` of `key` as it is written (→ owner).
    LlWant {
        key: StreamKey,
        part: PartId,
        from: ShardId,
    },
    /// LL-HLS: bytes of that part, or its end (owner → that shard).
    LlHint {
        key: StreamKey,
        part: PartId,
        event: HintEvent,
    },
    /// LL-HLS relay (HLS-origin edge): viewers on some shard want `key` (at most once a
    /// second per stream and shard); starts or keeps the owner's relay.
    LlRelayDemand {
        key: StreamKey,
        query: Option<Arc<str>>,
    },
    /// LL-HLS relay: a viewer on shard `from` wants `file`, of which that shard has no record.
    LlRelayMiss {
        key: StreamKey,
        file: LlFile,
        from: ShardId,
    },
    /// LL-HLS relay: the playlist viewers are answered from (`None`: the relay ended).
    LlRelayState {
        key: StreamKey,
        snapshot: Option<Arc<LlSnapshot>>,
    },
    /// LL-HLS relay: the origin's playlist cannot be loaded; requests get `status` a while.
    LlRelayUnavailable { key: StreamKey, status: u16 },
    /// HTTP/3: a datagram this shard received for a QUIC connection of shard `to` (its
    /// connection ID names it; the client's address changed). Dropped if the queue is full,
    /// as a network would: QUIC sends it again.
    QuicDatagram { from: SocketAddr, data: Bytes },
    /// WebRTC: end this shard's session (a WHEP `DELETE` that reached another shard).
    WebRtcEnd(edge_core::webrtc::SessionId),
    /// LL-HLS relay: a file's download, as it happens (owner → every shard).
    LlRelayFile {
        key: StreamKey,
        file: LlFile,
        event: SegmentEvent,
    },
}

/// A step of a pulled segment's download.
#[derive(Debug, Clone)]
pub enum SegmentEvent {
    /// It started (again, from its first byte), with the origin's `Content-Length`.
    Start { content_length: Option<u64> },
    /// The next bytes (a piece of the owner's arena).
    Data(Bytes),
    /// Complete (the snapshot sent before this holds it).
    Done,
    /// Failed: requests get `status`.
    Failed { status: u16 },
}

struct Inbox {
    from: Box<[ArrayQueue<MeshMsg>]>,
    doorbell: AtomicWaker,
    /// Set by senders, cleared by the receiver before it drains.
    pending: AtomicBool,
    /// Per source: a sender waits for room in that channel.
    waiting: Box<[AtomicBool]>,
}

/// A sending shard's bell: some channel it waits on has room again.
struct SpaceBell {
    waker: AtomicWaker,
    rung: AtomicBool,
}

/// All channels of the machine. Shared by every shard behind an `Arc`.
pub struct Mesh {
    inboxes: Box<[Inbox]>,
    space: Box<[SpaceBell]>,
    shutdown: AtomicBool,
}

impl Mesh {
    pub fn new(shards: usize, capacity: usize) -> Self {
        let inboxes = (0..shards)
            .map(|_| Inbox {
                from: (0..shards).map(|_| ArrayQueue::new(capacity)).collect(),
                doorbell: AtomicWaker::new(),
                pending: AtomicBool::new(false),
                waiting: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            })
            .collect();
        let space = (0..shards)
            .map(|_| SpaceBell {
                waker: AtomicWaker::new(),
                rung: AtomicBool::new(false),
            })
            .collect();
        Self {
            inboxes,
            space,
            shutdown: AtomicBool::new(false),
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Shard `from` waits for room in its channel to `to`: the receiver will ring `from`'s
    /// space bell when it next drains it. Returns whether there is room already (then retry
    /// at once: the bell may not ring).
    pub fn wait_for_space(&self, from: ShardId, to: ShardId) -> bool {
        let inbox = &self.inboxes[to.0];
        inbox.waiting[from.0].store(true, Ordering::Release);
        !inbox.from[from.0].is_full()
    }

    /// Waits until a channel shard `me` waits on has room (or shutdown was requested).
    pub fn poll_space(&self, me: ShardId, cx: &mut Context<'_>) -> Poll<()> {
        let bell = &self.space[me.0];
        bell.waker.register(cx.waker());
        if bell.rung.swap(false, Ordering::AcqRel) || self.shutdown.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Sends without blocking; gives the message back when the channel is full.
    pub fn try_send(&self, from: ShardId, to: ShardId, msg: MeshMsg) -> Result<(), MeshMsg> {
        let inbox = &self.inboxes[to.0];
        inbox.from[from.0].push(msg)?;
        if !inbox.pending.swap(true, Ordering::AcqRel) {
            inbox.doorbell.wake();
        }
        Ok(())
    }

    /// Waits until shard `me` has messages or shutdown was requested.
    pub fn poll_ready(&self, me: ShardId, cx: &mut Context<'_>) -> Poll<()> {
        let inbox = &self.inboxes[me.0];
        inbox.doorbell.register(cx.waker());
        if inbox.pending.load(Ordering::Acquire) || self.shutdown.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Takes what is in shard `me`'s inbox now, at most `max` messages per source.
    pub fn drain(&self, me: ShardId, max: usize, mut f: impl FnMut(ShardId, MeshMsg)) {
        let inbox = &self.inboxes[me.0];
        inbox.pending.store(false, Ordering::Release);
        let mut left_over = false;
        for (src, q) in inbox.from.iter().enumerate() {
            let mut took = false;
            for _ in 0..max {
                match q.pop() {
                    Some(m) => {
                        took = true;
                        f(ShardId(src), m)
                    }
                    None => break,
                }
            }
            if took && inbox.waiting[src].swap(false, Ordering::AcqRel) {
                let bell = &self.space[src];
                bell.rung.store(true, Ordering::Release);
                bell.waker.wake();
            }
            left_over |= !q.is_empty();
        }
        if left_over {
            inbox.pending.store(true, Ordering::Release);
        }
    }

    /// Asks every shard to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for inbox in self.inboxes.iter() {
            inbox.doorbell.wake();
        }
        for bell in self.space.iter() {
            bell.waker.wake();
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

// Channel slots are sized by the largest message; keep it small (shards² channels exist).
const _: () = assert!(std::mem::size_of::<MeshMsg>() <= 80);

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn unsub(i: usize) -> MeshMsg {
        MeshMsg::Unsubscribe {
            key: StreamKey::new("a", &i.to_string()).unwrap(),
            from: ShardId(0),
        }
    }

    #[test]
    fn bounded_fifo_per_pair_and_doorbell() {
        let mesh = Mesh::new(2, 16);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(mesh.poll_ready(ShardId(1), &mut cx).is_pending());
        for i in 0..16 {
            mesh.try_send(ShardId(0), ShardId(1), unsub(i)).unwrap();
        }
        assert!(
            flag.0.load(Ordering::SeqCst),
            "first message rings the doorbell"
        );
        assert!(
            mesh.try_send(ShardId(0), ShardId(1), unsub(99)).is_err(),
            "channel is bounded"
        );
        let mut got = Vec::new();
        mesh.drain(ShardId(1), 10, |src, m| {
            if let MeshMsg::Unsubscribe { key, .. } = m {
                got.push((src, key.as_str().to_string()));
            }
        });
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], (ShardId(0), "a/0".to_string()));
        assert!(
            mesh.poll_ready(ShardId(1), &mut cx).is_ready(),
            "left-over messages keep it ready"
        );
        mesh.drain(ShardId(1), 10, |_, _| {});
        assert!(mesh.poll_ready(ShardId(1), &mut cx).is_pending());
    }

    /// A sender that waits for room is woken by the drain that makes it, not by a timer;
    /// a drain of a channel nobody waits on rings nothing.
    #[test]
    fn a_full_channel_rings_its_waiting_sender_when_drained() {
        let mesh = Mesh::new(2, 4);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        for i in 0..4 {
            mesh.try_send(ShardId(0), ShardId(1), unsub(i)).unwrap();
        }
        assert!(!mesh.wait_for_space(ShardId(0), ShardId(1)), "full");
        assert!(mesh.poll_space(ShardId(0), &mut cx).is_pending());
        mesh.drain(ShardId(1), 1, |_, _| {});
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the drain rang the sender's bell"
        );
        assert!(mesh.poll_space(ShardId(0), &mut cx).is_ready());
        assert!(mesh.try_send(ShardId(0), ShardId(1), unsub(9)).is_ok());
        flag.0.store(false, Ordering::SeqCst);
        assert!(mesh.poll_space(ShardId(0), &mut cx).is_pending());
        mesh.drain(ShardId(1), 10, |_, _| {});
        assert!(!flag.0.load(Ordering::SeqCst), "nobody waited");
    }
}
