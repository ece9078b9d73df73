//! The owner's side of streaming a part while it is written: which shards asked for the part
//! the LL-HLS muxer is writing now (a preload hint), and what each must be sent as the part
//! grows and closes.
//!
//! A shard whose viewers ask for the hinted part asks the owner once ([`HintFanout::
//! handle_want`]); the owner answers with the chunks written so far, then after every frame
//! ([`HintFanout::handle_progress`]) with the new ones, and with `Done` once the part is
//! complete (after the snapshot that lists it, so the shard has it too). A part that is
//! complete already, not kept, or not begun gets `Gone`: the shard answers from its snapshot,
//! or parks the request as for any part that does not exist yet.
//!
//! Only the part being written is followed: the muxer writes one part at a time and the
//! playlist hints only that one. The bytes sent are the muxer's chunks (shared, not copied)
//! and, after the part closes, the rest of the joined part from where its chunks stopped: a
//! shard's bytes are the part's bytes, in order, whatever it joined.
//!
//! Must not: hold chunks (the muxer holds the open part's), send anything for a part nobody
//! asked for, or follow more than one part.

use bytes::Bytes;

use super::llhls::PartState;
use super::llsnapshot::PartId;
use crate::ids::ShardId;

/// What a shard is told about a part it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintEvent {
    /// The part's next bytes.
    Data(Bytes),
    /// The part is complete (the snapshot sent before this lists it).
    Done,
    /// The part will not be streamed: complete already, not kept, or not begun.
    Gone,
}

/// One message for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintSend {
    pub to: ShardId,
    pub part: PartId,
    pub event: HintEvent,
}

struct Want {
    part: PartId,
    shards: Vec<ShardId>,
    /// Chunks of the open part sent, and their bytes.
    chunks_sent: usize,
    bytes_sent: usize,
}

/// One stream's followed part (module docs).
#[derive(Default)]
pub struct HintFanout {
    want: Option<Want>,
}

impl HintFanout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a part is followed (the owner then calls [`HintFanout::handle_progress`]
    /// after every frame).
    pub fn is_following(&self) -> bool {
        self.want.is_some()
    }

    /// Shard `from` asks for `part`, which is in `state` now.
    pub fn handle_want(
        &mut self,
        from: ShardId,
        part: PartId,
        state: PartState<'_>,
        out: &mut Vec<HintSend>,
    ) {
        let PartState::Open(chunks) = state else {
            out.push(HintSend {
                to: from,
                part,
                event: HintEvent::Gone,
            });
            return;
        };
        // Another part followed until now has been left behind unnoticed: let its shards go.
        if self.want.as_ref().is_some_and(|w| w.part != part) {
            self.release(HintEvent::Gone, out);
        }
        let want = self.want.get_or_insert_with(|| Want {
            part,
            shards: Vec::new(),
            chunks_sent: 0,
            bytes_sent: 0,
        });
        // Bring the shards already here up to date, then the new one to the same point.
        send_chunks(want, chunks, out);
        if !want.shards.contains(&from) {
            for c in &chunks[..want.chunks_sent] {
                out.push(HintSend {
                    to: from,
                    part,
                    event: HintEvent::Data(c.clone()),
                });
            }
            want.shards.push(from);
        }
    }

    /// After a frame (or anything that may close the part): the new chunks, or the rest and
    /// `Done` once the part is complete. `state_of` tells where a part is now.
    pub fn handle_progress<'a>(
        &mut self,
        state_of: impl FnOnce(PartId) -> PartState<'a>,
        out: &mut Vec<HintSend>,
    ) {
        let Some(want) = &mut self.want else { return };
        match state_of(want.part) {
            PartState::Open(chunks) => send_chunks(want, chunks, out),
            PartState::Closed(pieces) => {
                // What is past the bytes sent: the rest of the part's pieces.
                let mut skip = want.bytes_sent;
                for piece in pieces {
                    let rest = piece.slice(skip.min(piece.len())..);
                    skip = skip.saturating_sub(piece.len());
                    if rest.is_empty() {
                        continue;
                    }
                    for &to in &want.shards {
                        out.push(HintSend {
                            to,
                            part: want.part,
                            event: HintEvent::Data(rest.clone()),
                        });
                    }
                }
                self.release(HintEvent::Done, out);
            }
            PartState::Unknown => self.release(HintEvent::Gone, out),
        }
    }

    /// The stream's LL-HLS is gone (ended without the part, or torn down).
    pub fn handle_gone(&mut self, out: &mut Vec<HintSend>) {
        self.release(HintEvent::Gone, out);
    }

    fn release(&mut self, event: HintEvent, out: &mut Vec<HintSend>) {
        if let Some(want) = self.want.take() {
            for to in want.shards {
                out.push(HintSend {
                    to,
                    part: want.part,
                    event: event.clone(),
                });
            }
        }
    }
}

/// The chunks past those sent, to every shard following.
fn send_chunks(want: &mut Want, chunks: &[Bytes], out: &mut Vec<HintSend>) {
    for c in chunks.iter().skip(want.chunks_sent) {
        for &to in &want.shards {
            out.push(HintSend {
                to,
                part: want.part,
                event: HintEvent::Data(c.clone()),
            });
        }
        want.bytes_sent += c.len();
    }
    want.chunks_sent = want.chunks_sent.max(chunks.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(out: &[HintSend], to: usize) -> Vec<u8> {
        out.iter()
            .filter(|s| s.to == ShardId(to))
            .filter_map(|s| match &s.event {
                HintEvent::Data(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn events(out: &[HintSend], to: usize) -> Vec<&HintEvent> {
        out.iter()
            .filter(|s| s.to == ShardId(to))
            .map(|s| &s.event)
            .collect()
    }

    #[test]
    fn shards_get_the_chunks_so_far_then_each_new_one_then_done() {
        let mut f = HintFanout::new();
        let mut out = Vec::new();
        let chunks = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")];
        f.handle_want(ShardId(1), (7, 2), PartState::Open(&chunks[..1]), &mut out);
        assert_eq!(data(&out, 1), b"ab");
        out.clear();
        f.handle_progress(|_| PartState::Open(&chunks), &mut out);
        assert_eq!(data(&out, 1), b"cd");
        // A second shard joins late: everything so far, nothing twice.
        out.clear();
        f.handle_want(ShardId(0), (7, 2), PartState::Open(&chunks), &mut out);
        assert_eq!((data(&out, 0), data(&out, 1)), (b"abcd".to_vec(), vec![]));
        // Nothing new: nothing sent.
        out.clear();
        f.handle_progress(|_| PartState::Open(&chunks), &mut out);
        assert!(out.is_empty());
        // The part closes with an audio chunk after the last picture: the rest, then Done.
        out.clear();
        let whole = [Bytes::from_static(b"abc"), Bytes::from_static(b"def")];
        f.handle_progress(
            |p| {
                assert_eq!(p, (7, 2));
                PartState::Closed(&whole)
            },
            &mut out,
        );
        for shard in [0, 1] {
            assert_eq!(data(&out, shard), b"ef");
            assert_eq!(events(&out, shard).last(), Some(&&HintEvent::Done));
        }
        assert!(!f.is_following());
    }

    #[test]
    fn a_part_that_is_complete_unknown_or_dropped_is_gone() {
        let mut f = HintFanout::new();
        let mut out = Vec::new();
        let whole = [Bytes::from_static(b"x")];
        f.handle_want(ShardId(1), (7, 1), PartState::Closed(&whole), &mut out);
        f.handle_want(ShardId(0), (9, 0), PartState::Unknown, &mut out);
        assert_eq!(events(&out, 1), [&HintEvent::Gone]);
        assert_eq!(events(&out, 0), [&HintEvent::Gone]);
        assert!(!f.is_following());
        // A followed part the muxer no longer knows (a cut before it began) lets go.
        out.clear();
        f.handle_want(ShardId(1), (7, 2), PartState::Open(&[]), &mut out);
        assert!(out.is_empty(), "nothing written yet, nothing sent");
        f.handle_progress(|_| PartState::Unknown, &mut out);
        assert_eq!(events(&out, 1), [&HintEvent::Gone]);
        // And the end of the stream lets go of a followed part.
        out.clear();
        f.handle_want(ShardId(1), (8, 0), PartState::Open(&[]), &mut out);
        f.handle_gone(&mut out);
        assert_eq!(events(&out, 1), [&HintEvent::Gone]);
    }

    #[test]
    fn a_want_for_a_newer_part_lets_the_shards_of_the_old_one_go() {
        let mut f = HintFanout::new();
        let mut out = Vec::new();
        f.handle_want(ShardId(1), (7, 2), PartState::Open(&[]), &mut out);
        f.handle_want(ShardId(0), (7, 3), PartState::Open(&[]), &mut out);
        assert_eq!(
            out,
            [HintSend {
                to: ShardId(1),
                part: (7, 2),
                event: HintEvent::Gone
            }]
        );
    }
}
