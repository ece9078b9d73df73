//! Typed ids for what crosses module boundaries: shards, HLS segments, upstream links and
//! viewers. Plain integers inside, so they cost nothing; types, so a shard index is never
//! passed where a segment number belongs.

use std::fmt;

/// A shard: `0..shards`, one per pinned core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

impl ShardId {
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An HLS media sequence number (`{stream}-{seq}.ts`, `EXT-X-MEDIA-SEQUENCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SegmentSeq(pub u64);

impl SegmentSeq {
    pub fn next(self) -> SegmentSeq {
        SegmentSeq(self.0.saturating_add(1))
    }
}

impl fmt::Display for SegmentSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One upstream connection (a pull, a probe, a forward) of one stream's owner: `owner` is
/// the owner state's machine-unique instance, `n` counts its links. A report from a link
/// that is no longer the stream's (a cancelled one, or one of a freed and recreated stream)
/// never matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId {
    pub owner: u64,
    pub n: u32,
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{}", self.owner, self.n)
    }
}

/// A viewer connection (machine-unique, the engine's connection id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewerId(pub u64);
