//! The segment arena: one region per shard, backed by huge pages when the host has them
//! (MAP_HUGETLB, else transparent huge pages via `madvise`, else normal pages — chosen at
//! start, logged and exported), cut into fixed chunks of whole TS packets.
//!
//! The owner shard muxes segments straight into chunks ([`ArenaWriter`]); finished chunks
//! become `Bytes::from_owner` handles that any shard may hold. When the last handle drops —
//! on whatever thread — the chunk index goes back on a lock-free free list. The arena's size
//! is the shard's share of `--cache-mb`: when no chunk is free, the segment is refused.

use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use edge_core::hls::segmenter::SegmentStore;
use edge_core::hls::ts::{TsError, TsSink, PACKET};

/// Bytes per chunk: 1024 TS packets (188 KiB).
pub const CHUNK_BYTES: usize = PACKET * 1024;
const HUGE_PAGE: usize = 2 << 20;

/// How the arena's memory is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    HugeTlb,
    TransparentHugePages,
    Normal,
}

impl Backing {
    pub fn name(self) -> &'static str {
        match self {
            Backing::HugeTlb => "hugetlb",
            Backing::TransparentHugePages => "thp",
            Backing::Normal => "normal",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Backing::HugeTlb => 1,
            Backing::TransparentHugePages => 2,
            Backing::Normal => 3,
        }
    }
}

/// One shard's segment memory.
pub struct Arena {
    base: NonNull<u8>,
    len: usize,
    chunks: usize,
    free: ArrayQueue<u32>,
    pub backing: Backing,
}

// SAFETY: the region is plain memory owned by the arena for its whole life; each chunk is
// written only by the single writer that popped its index and is read-only once frozen into
// `Bytes`; the free list is a lock-free queue.
unsafe impl Send for Arena {}
// SAFETY: as above: shared access only reads frozen chunks or touches the atomic free list.
unsafe impl Sync for Arena {}

impl Arena {
    /// Maps `bytes` (rounded up to whole huge pages and chunks; at least one chunk).
    pub fn new(bytes: usize) -> std::io::Result<Arc<Arena>> {
        let chunks = bytes.div_ceil(CHUNK_BYTES).max(1);
        let len = (chunks * CHUNK_BYTES).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let (ptr, backing) = map(len)?;
        let free = ArrayQueue::new(chunks);
        for i in 0..chunks {
            // Capacity equals the count pushed: this cannot fail.
            let _ = free.push(i as u32);
        }
        Ok(Arc::new(Arena {
            base: ptr,
            len,
            chunks,
            free,
            backing,
        }))
    }

    pub fn chunks(&self) -> usize {
        self.chunks
    }

    pub fn free_chunks(&self) -> usize {
        self.free.len()
    }

    fn chunk_ptr(&self, idx: u32) -> *mut u8 {
        debug_assert!((idx as usize) < self.chunks);
        // SAFETY: idx < chunks, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(idx as usize * CHUNK_BYTES) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; no chunk outlives the arena because
        // every `Chunk` holds an `Arc<Arena>`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

fn map(len: usize) -> std::io::Result<(NonNull<u8>, Backing)> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: anonymous mappings with no address hint; results are checked.
    unsafe {
        // No MAP_NORESERVE here: the huge pages must be reserved now, or a later touch of a
        // page the pool cannot supply would be SIGBUS instead of this clean failure.
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags | libc::MAP_HUGETLB,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            return Ok((NonNull::new_unchecked(p.cast()), Backing::HugeTlb));
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let backing = if libc::madvise(p, len, libc::MADV_HUGEPAGE) == 0 {
            Backing::TransparentHugePages
        } else {
            Backing::Normal
        };
        Ok((NonNull::new_unchecked(p.cast()), backing))
    }
}

/// A frozen chunk: the owner behind a `Bytes`. Returns its index to the free list on drop.
struct Chunk {
    arena: Arc<Arena>,
    idx: u32,
    len: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the chunk was fully written before being frozen, `len` bytes are
        // initialised, and nobody writes it again until this owner returns the index.
        unsafe { std::slice::from_raw_parts(self.arena.chunk_ptr(self.idx), self.len) }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // The queue holds every index at most once, so there is always room.
        let _ = self.arena.free.push(self.idx);
    }
}

/// Writes one segment into arena chunks.
pub struct ArenaWriter {
    arena: Arc<Arena>,
    full: Vec<u32>,
    current: Option<(u32, usize)>,
}

impl ArenaWriter {
    fn freeze(mut self) -> Vec<Bytes> {
        // Move every index into a Chunk; the writer's Drop then has nothing to release.
        let full = std::mem::take(&mut self.full);
        let current = self.current.take();
        let arena = &self.arena;
        let mut pieces = Vec::with_capacity(full.len() + 1);
        for idx in full {
            pieces.push(Bytes::from_owner(Chunk {
                arena: Arc::clone(arena),
                idx,
                len: CHUNK_BYTES,
            }));
        }
        if let Some((idx, len)) = current {
            pieces.push(Bytes::from_owner(Chunk {
                arena: Arc::clone(arena),
                idx,
                len,
            }));
        }
        pieces
    }
}

impl Drop for ArenaWriter {
    /// A writer dropped unfinished (refused segment) gives its chunks back.
    fn drop(&mut self) {
        for idx in self
            .full
            .drain(..)
            .chain(self.current.take().map(|(i, _)| i))
        {
            let _ = self.arena.free.push(idx);
        }
    }
}

impl TsSink for ArenaWriter {
    fn put_packet(&mut self, packet: &[u8; PACKET]) -> Result<(), TsError> {
        let (idx, used) = match self.current {
            Some((idx, used)) if used + PACKET <= CHUNK_BYTES => (idx, used),
            current => {
                let idx = self.arena.free.pop().ok_or(TsError::StorageFull)?;
                if let Some((full, _)) = current {
                    self.full.push(full);
                }
                (idx, 0)
            }
        };
        // SAFETY: this writer popped `idx` and is its only user until freeze; `used + 188`
        // stays within the chunk (checked above); source and destination cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                packet.as_ptr(),
                self.arena.chunk_ptr(idx).add(used),
                PACKET,
            );
        }
        self.current = Some((idx, used + PACKET));
        Ok(())
    }
}

/// The segmenter's storage on a shard.
pub struct ArenaStore {
    pub arena: Arc<Arena>,
}

impl SegmentStore for ArenaStore {
    type Writer = ArenaWriter;

    fn writer(&mut self) -> Option<ArenaWriter> {
        // Refuse up front when not even one chunk is free.
        (self.arena.free_chunks() > 0).then(|| ArenaWriter {
            arena: Arc::clone(&self.arena),
            full: Vec::new(),
            current: None,
        })
    }

    fn finish(&mut self, w: ArenaWriter) -> Vec<Bytes> {
        w.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_return_to_the_free_list_from_any_thread() {
        let arena = Arena::new(3 * CHUNK_BYTES).unwrap();
        assert_eq!(arena.chunks(), 3);
        let mut store = ArenaStore {
            arena: Arc::clone(&arena),
        };
        let mut w = store.writer().unwrap();
        let mut packet = [0x47u8; PACKET];
        for i in 0..1500u32 {
            packet[1..5].copy_from_slice(&i.to_be_bytes());
            w.put_packet(&packet).unwrap();
        }
        let pieces = store.finish(w);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), CHUNK_BYTES);
        assert_eq!(pieces[1].len(), 476 * PACKET);
        assert_eq!(&pieces[1][1..5], &1024u32.to_be_bytes());
        assert_eq!(arena.free_chunks(), 1);
        std::thread::spawn(move || drop(pieces)).join().unwrap();
        assert_eq!(arena.free_chunks(), 3);
    }

    #[test]
    fn a_full_arena_refuses_and_an_abandoned_writer_gives_back() {
        let arena = Arena::new(CHUNK_BYTES).unwrap();
        let mut store = ArenaStore {
            arena: Arc::clone(&arena),
        };
        let mut w = store.writer().unwrap();
        let packet = [0x47u8; PACKET];
        for _ in 0..1024 {
            w.put_packet(&packet).unwrap();
        }
        assert_eq!(w.put_packet(&packet), Err(TsError::StorageFull));
        assert!(store.writer().is_none());
        drop(w);
        assert_eq!(arena.free_chunks(), 1);
    }
}
