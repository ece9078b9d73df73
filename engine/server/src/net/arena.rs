//! The segment arena: one region per shard, backed by huge pages when the host has them
//! (MAP_HUGETLB, else transparent huge pages via `madvise`, else normal pages — chosen at
//! start, logged and exported), cut into fixed chunks of whole TS packets.
//!
//! The owner shard muxes segments straight into chunks ([`ArenaWriter`]); finished chunks
//! become `Bytes::from_owner` handles that any shard may hold. When the last handle drops —
//! on whatever thread — the chunk index goes back on a lock-free free list. The list is a
//! stack (LIFO): the chunk freed last, still mapped and warm in cache, is reused first, so
//! a lightly used arena touches only the pages it needs (a FIFO cycled through the whole
//! region, faulting in and zeroing every page: up to 35 % of ingest CPU in a flamegraph). The arena's size
//! is the shard's share of `--cache-mb`: when no chunk is free, the segment is refused.
//!
//! Zero-copy sends ([`crate::net::zerocopy`]) hand the kernel references to a chunk's pages, which
//! a socket buffer (or, on loopback, a receiver's queue) may hold long after the last
//! `Bytes` has dropped. So a chunk that was ever sent that way is marked, and freeing it
//! first drops its pages from the mapping (`MADV_DONTNEED`): the kernel keeps the old pages,
//! with the old bytes, for as long as it references them, and the next writer faults in
//! fresh zeroed ones. A chunk that was never sent by reference goes back warm. This needs
//! page-granular mappings, so a huge-TLB arena (whose pages cannot be dropped 188 KiB at a
//! time) is never sent from by reference.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use edge_core::hls::llhls::ChunkStore;
use edge_core::hls::segmenter::SegmentStore;
use edge_core::hls::ts::{TsError, TsSink, PACKET};

/// Bytes per chunk: 1024 TS packets (188 KiB).
pub(crate) const CHUNK_BYTES: usize = PACKET * 1024;
const HUGE_PAGE: usize = 2 << 20;

/// How the arena's memory is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backing {
    HugeTlb,
    TransparentHugePages,
    Normal,
}

impl Backing {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backing::HugeTlb => "hugetlb",
            Backing::TransparentHugePages => "thp",
            Backing::Normal => "normal",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Backing::HugeTlb => 1,
            Backing::TransparentHugePages => 2,
            Backing::Normal => 3,
        }
    }
}

/// One shard's segment memory.
pub(crate) struct Arena {
    base: NonNull<u8>,
    len: usize,
    chunks: usize,
    free: FreeStack,
    /// Per chunk: its pages may be referenced by the kernel (a zero-copy send).
    lent: Box<[AtomicBool]>,
    dropped: AtomicU64,
    pub backing: Backing,
}

// SAFETY: the region is plain memory owned by the arena for its whole life; each chunk is
// written only by the single writer that popped its index and is read-only once frozen into
// `Bytes`; the free list is lock-free atomics.
unsafe impl Send for Arena {}
// SAFETY: as above: shared access only reads frozen chunks or touches the atomic free list.
unsafe impl Sync for Arena {}

impl Arena {
    /// Maps `bytes` (rounded up to whole huge pages and chunks; at least one chunk).
    pub(crate) fn new(bytes: usize) -> std::io::Result<Arc<Arena>> {
        let chunks = bytes.div_ceil(CHUNK_BYTES).max(1);
        let len = (chunks * CHUNK_BYTES).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let (ptr, backing) = map(len)?;
        Ok(Arc::new(Arena {
            base: ptr,
            len,
            chunks,
            free: FreeStack::new(chunks),
            lent: (0..chunks).map(|_| AtomicBool::new(false)).collect(),
            dropped: AtomicU64::new(0),
            backing,
        }))
    }

    /// Whether `bytes` lie inside this arena.
    pub(crate) fn contains(&self, bytes: &[u8]) -> bool {
        let start = self.base.as_ptr() as usize;
        let p = bytes.as_ptr() as usize;
        p >= start && p + bytes.len() <= start + self.chunks * CHUNK_BYTES
    }

    /// Records that the kernel may keep references to the pages under `bytes` (which must
    /// lie inside this arena, see [`Arena::contains`]) after they are freed: the chunks they
    /// touch drop their pages when they are freed instead of being rewritten in place.
    /// Whether the arena allows it: a huge-TLB arena does not.
    pub(crate) fn lend(&self, bytes: &[u8]) -> bool {
        if self.backing == Backing::HugeTlb || !self.contains(bytes) || bytes.is_empty() {
            return false;
        }
        let off = bytes.as_ptr() as usize - self.base.as_ptr() as usize;
        let first = off / CHUNK_BYTES;
        let last = (off + bytes.len() - 1) / CHUNK_BYTES;
        for flag in &self.lent[first..=last] {
            flag.store(true, Ordering::Release);
        }
        true
    }

    /// Chunks freed so far whose pages were dropped because they had been lent.
    pub(crate) fn dropped_pages_chunks(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Gives chunk `idx` back; a lent chunk first loses its pages (see the module docs).
    fn release(&self, idx: u32) {
        if self.lent[idx as usize].swap(false, Ordering::AcqRel) {
            // SAFETY: the range is one whole chunk inside the mapping, page-aligned (a chunk
            // is 47 pages), and nobody reads or writes it now: its last owner is gone and it
            // is not on the free list yet.
            let rc = unsafe {
                libc::madvise(self.chunk_ptr(idx).cast(), CHUNK_BYTES, libc::MADV_DONTNEED)
            };
            if rc != 0 {
                // The pages may still be referenced; never rewrite this chunk.
                tracing::error!(
                    "segment arena: MADV_DONTNEED failed ({}); chunk {idx} retired",
                    std::io::Error::last_os_error()
                );
                return;
            }
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.free.push(idx);
    }

    pub(crate) fn chunks(&self) -> usize {
        self.chunks
    }

    pub(crate) fn free_chunks(&self) -> usize {
        self.free.len()
    }

    fn chunk_ptr(&self, idx: u32) -> *mut u8 {
        debug_assert!((idx as usize) < self.chunks);
        // SAFETY: idx < chunks, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(idx as usize * CHUNK_BYTES) }
    }
}

/// A lock-free LIFO of chunk indices (a Treiber stack over an index array). The head packs
/// the top index with a tag that changes on every update, so a pop racing with a pop and a
/// push of the same index (ABA) fails its compare-exchange instead of corrupting the list.
struct FreeStack {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
    len: AtomicUsize,
}

const NIL: u32 = u32::MAX;

impl FreeStack {
    /// A stack holding every index, 0 on top.
    fn new(n: usize) -> Self {
        let next: Box<[AtomicU32]> = (0..n)
            .map(|i| AtomicU32::new(if i + 1 < n { i as u32 + 1 } else { NIL }))
            .collect();
        Self {
            head: AtomicU64::new(pack(if n > 0 { 0 } else { NIL }, 0)),
            next,
            len: AtomicUsize::new(n),
        }
    }

    fn push(&self, idx: u32) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (top, tag) = unpack(head);
            self.next[idx as usize].store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(idx, tag.wrapping_add(1)),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(head);
            if top == NIL {
                return None;
            }
            // May be stale if another thread moved `top` meanwhile; then the tag has changed
            // and the exchange below fails.
            let next = self.next[top as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(next, tag.wrapping_add(1)),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    return Some(top);
                }
                Err(h) => head = h,
            }
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

fn pack(idx: u32, tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(idx)
}

fn unpack(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
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
        self.arena.release(self.idx);
    }
}

/// Writes one segment into arena chunks.
pub(crate) struct ArenaWriter {
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
            self.arena.release(idx);
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

/// A chunk shared by the pieces of a segment that is read while it is written (an HLS pull):
/// it returns to the free list once the appender and every piece have let go.
struct SharedChunk {
    arena: Arc<Arena>,
    idx: u32,
}

impl Drop for SharedChunk {
    fn drop(&mut self) {
        self.arena.release(self.idx);
    }
}

/// Bytes `start..start + len` of a shared chunk.
struct Piece {
    chunk: Arc<SharedChunk>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: these bytes were written before the piece was made, and the appender only
        // writes past them; the chunk is not reused while this piece holds it.
        unsafe {
            std::slice::from_raw_parts(
                self.chunk.arena.chunk_ptr(self.chunk.idx).add(self.start),
                self.len,
            )
        }
    }
}

/// Writes a segment of any bytes into arena chunks, handing out each appended range as a
/// piece at once, so it can be sent while the rest arrives.
pub(crate) struct ArenaAppender {
    arena: Arc<Arena>,
    chunks: Vec<Arc<SharedChunk>>,
    /// Bytes written in the last chunk.
    used: usize,
    len: usize,
}

/// The arena has no free chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArenaFull;

impl ArenaAppender {
    pub(crate) fn new(arena: Arc<Arena>) -> Self {
        Self {
            arena,
            chunks: Vec::new(),
            used: CHUNK_BYTES,
            len: 0,
        }
    }

    /// Bytes appended so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `data` in and appends the pieces it now fills (one per chunk touched) to
    /// `out`.
    pub(crate) fn append(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), ArenaFull> {
        while !data.is_empty() {
            if self.used == CHUNK_BYTES {
                let idx = self.arena.free.pop().ok_or(ArenaFull)?;
                self.chunks.push(Arc::new(SharedChunk {
                    arena: Arc::clone(&self.arena),
                    idx,
                }));
                self.used = 0;
            }
            let Some(chunk) = self.chunks.last() else {
                return Err(ArenaFull);
            };
            let n = data.len().min(CHUNK_BYTES - self.used);
            // SAFETY: this appender is the chunk's only writer, `used + n` stays within it,
            // and no piece covers these bytes yet.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.arena.chunk_ptr(chunk.idx).add(self.used),
                    n,
                );
            }
            out.push(Bytes::from_owner(Piece {
                chunk: Arc::clone(chunk),
                start: self.used,
                len: n,
            }));
            self.used += n;
            self.len += n;
            data = &data[n..];
        }
        Ok(())
    }

    /// The whole segment, one piece per chunk.
    pub(crate) fn finish(self) -> Vec<Bytes> {
        let last = self.chunks.len().saturating_sub(1);
        self.chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let len = if i == last { self.used } else { CHUNK_BYTES };
                Bytes::from_owner(Piece {
                    chunk: Arc::clone(c),
                    start: 0,
                    len,
                })
            })
            .collect()
    }
}

/// The segmenter's storage on a shard.
#[derive(Clone)]
pub(crate) struct ArenaStore {
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

    /// An LL-HLS segment's chunks go into arena chunks too, each handed out as it is written
    /// (a part streams while it is muxed, and is served by reference like a TS segment).
    fn chunks(&mut self) -> Option<Box<dyn ChunkStore>> {
        Some(Box::new(ArenaAppender::new(Arc::clone(&self.arena))))
    }
}

impl ChunkStore for ArenaAppender {
    fn append(&mut self, bytes: &[u8]) -> Option<Vec<Bytes>> {
        let mut pieces = Vec::with_capacity(1);
        ArenaAppender::append(self, bytes, &mut pieces).ok()?;
        Some(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LL-HLS chunks are pieces of the arena (what the zero-copy path sends by reference and
    /// `--cache-mb` counts), packed into its chunks across a stream's segments; a full arena
    /// says so (the muxer then uses the heap and the engine makes room).
    #[test]
    fn ll_hls_chunks_are_arena_pieces_packed_until_full() {
        let arena = Arena::new(2 * CHUNK_BYTES).unwrap();
        let mut store = ArenaStore {
            arena: Arc::clone(&arena),
        };
        let mut chunks = store.chunks().expect("the arena stores chunks");
        let a = chunks.append(&[1u8; 1000]).unwrap();
        let b = chunks.append(&[2u8; 500]).unwrap();
        assert_eq!(arena.free_chunks(), 1, "one arena chunk holds both");
        assert!(a.iter().chain(&b).all(|p| arena.contains(p)));
        assert_eq!((a.concat(), b.concat()), (vec![1u8; 1000], vec![2u8; 500]));
        // Across the chunk boundary: two pieces, the bytes whole.
        let c = chunks.append(&vec![3u8; CHUNK_BYTES]).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.concat(), vec![3u8; CHUNK_BYTES]);
        assert_eq!(arena.free_chunks(), 0);
        assert!(chunks.append(&[4u8; CHUNK_BYTES]).is_none(), "full");
        drop((a, b, c, chunks));
        assert_eq!(arena.free_chunks(), 2, "freed with the last piece");
    }

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
    fn free_list_is_lifo_and_survives_threads() {
        let stack = FreeStack::new(4);
        assert_eq!(stack.pop(), Some(0));
        assert_eq!(stack.pop(), Some(1));
        stack.push(0);
        assert_eq!(stack.pop(), Some(0), "last freed, first reused");
        let stack = Arc::new(FreeStack::new(64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&stack);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(i) = s.pop() {
                            s.push(i);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stack.len(), 64);
        let mut all: Vec<u32> = std::iter::from_fn(|| stack.pop()).collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..64).collect::<Vec<u32>>(),
            "every index exactly once"
        );
    }

    #[test]
    fn appended_pieces_are_readable_at_once_and_chunks_return_after_the_last_piece() {
        let arena = Arena::new(2 * CHUNK_BYTES).unwrap();
        let mut a = ArenaAppender::new(Arc::clone(&arena));
        let data: Vec<u8> = (0..2 * CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
        let mut pieces = Vec::new();
        a.append(&data[..100], &mut pieces).unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(
            &pieces[0][..],
            &data[..100],
            "readable before the rest is written"
        );
        a.append(&data[100..], &mut pieces).unwrap();
        let streamed: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(streamed, data);
        assert_eq!(a.len(), data.len());
        assert_eq!(arena.free_chunks(), 0);
        assert_eq!(a.append(b"x", &mut Vec::new()), Err(ArenaFull));
        let whole = a.finish();
        assert_eq!(whole.len(), 2);
        let joined: Vec<u8> = whole.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, data);
        drop(pieces);
        assert_eq!(
            arena.free_chunks(),
            0,
            "the finished segment still holds both"
        );
        std::thread::spawn(move || drop(whole)).join().unwrap();
        assert_eq!(arena.free_chunks(), 2);
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
