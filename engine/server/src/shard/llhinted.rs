//! LL-HLS parts streamed on this shard while their owner writes them: a request for the part
//! the playlist hints (it does not exist yet) gets each CMAF chunk as the owner's muxer
//! writes it, chunked, instead of waiting for the whole part. One record per part here, its
//! bytes so far shared by every request for it (pieces of the owner's chunks, never
//! copied); the first request asks the owner ([`edge_core::hls::hinted`] decides what it
//! sends).
//!
//! Must not: ask the owner twice for one part (unless its answer is overdue), keep a record
//! after its part is done or gone (later requests are answered from the snapshot), or hold
//! more than [`MAX_HINTED`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_core::hls::hinted::HintEvent;
use edge_core::hls::llhls::PartId;
use edge_core::StreamKey;

use super::pulled::{Inflight, Lookup, Progress};

/// Parts being streamed on one shard at most (a stream has one at a time).
const MAX_HINTED: usize = 4_096;
/// A record the owner has not finished after this long is dropped (the owner's answer was
/// lost with its state): the next request asks again. Parts last a fraction of a second.
const STALE_MS: u64 = 30_000;

/// A part's bytes so far, and when it was first asked for (shard clock).
type Record = (Rc<Inflight>, u64);

#[derive(Default)]
pub(crate) struct LlHinted {
    parts: RefCell<HashMap<(StreamKey, PartId), Record>>,
}

impl LlHinted {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn lookup(&self, key: &StreamKey, part: PartId, now_ms: u64) -> Lookup {
        let mut parts = self.parts.borrow_mut();
        let id = (key.clone(), part);
        match parts.get(&id) {
            Some((p, asked)) if now_ms.saturating_sub(*asked) < STALE_MS => {
                return Lookup::Known(Rc::clone(p))
            }
            Some(_) => {
                if let Some((p, _)) = parts.remove(&id) {
                    p.fail(GONE, 0);
                }
            }
            None => {}
        }
        if parts.len() >= MAX_HINTED {
            parts.retain(|_, (p, asked)| {
                let fresh = now_ms.saturating_sub(*asked) < STALE_MS;
                if !fresh {
                    p.fail(GONE, 0);
                }
                fresh
            });
            if parts.len() >= MAX_HINTED {
                return Lookup::Full;
            }
        }
        let p = Rc::new(Inflight::new(Progress::Requested));
        parts.insert(id, (Rc::clone(&p), now_ms));
        Lookup::Ask(p)
    }

    /// The owner's news of a part: its next bytes, its end, or that it will not come.
    pub(crate) fn event(&self, key: &StreamKey, part: PartId, event: HintEvent) {
        let id = (key.clone(), part);
        let mut parts = self.parts.borrow_mut();
        match event {
            HintEvent::Data(bytes) => {
                if let Some((p, _)) = parts.get(&id) {
                    if p.progress() == Progress::Requested {
                        p.start(None);
                    }
                    p.push(bytes);
                }
            }
            HintEvent::Done => {
                if let Some((p, _)) = parts.remove(&id) {
                    if p.progress() == Progress::Requested {
                        p.start(None);
                    }
                    p.finish();
                }
            }
            HintEvent::Gone => {
                if let Some((p, _)) = parts.remove(&id) {
                    p.fail(GONE, 0);
                }
            }
        }
    }

    /// `key`'s HLS is gone here: its streamed parts end (cut short, if begun).
    pub(crate) fn forget(&self, key: &StreamKey) {
        self.parts.borrow_mut().retain(|(k, _), (p, _)| {
            if k == key {
                p.fail(GONE, 0);
            }
            k != key
        });
    }
}

/// The status a part that will not be streamed fails with: the request then waits for the
/// whole part as any early part request does (nothing of it was sent).
pub(crate) const GONE: u16 = 0;
