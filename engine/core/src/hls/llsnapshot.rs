//! What HTTP serves of a stream's LL-HLS, as the muxer ([`super::llhls`]) leaves it after each
//! part: the rendered playlists, the init segments, the segments and parts (shared bytes), and
//! the questions a request asks of them (is this part listed? which file is this name?).
//!
//! Must not: change after it is made (a snapshot is shared by every shard), or copy bytes.

use std::sync::Arc;

use bytes::Bytes;

/// A part or segment as a playlist names it: `(media sequence number, part index)`.
pub type PartId = (u64, u32);

/// The files of a stream's LL-HLS, relative to `/{app}/{stream}/`: the names the playlist
/// writes are parsed back here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LlFile {
    /// `llhls.m3u8`
    Playlist,
    /// `init-{id}.mp4`
    Init(u32),
    /// `seg-{seq}.m4s`
    Segment(u64),
    /// `part-{seq}.{index}.m4s`
    Part(u64, u32),
}

impl LlFile {
    pub fn parse(name: &str) -> Option<LlFile> {
        if name == "llhls.m3u8" {
            return Some(LlFile::Playlist);
        }
        if let Some(id) = name
            .strip_prefix("init-")
            .and_then(|n| n.strip_suffix(".mp4"))
        {
            return id.parse().ok().map(LlFile::Init);
        }
        let media = name.strip_suffix(".m4s")?;
        if let Some(seq) = media.strip_prefix("seg-") {
            return seq.parse().ok().map(LlFile::Segment);
        }
        let (seq, index) = media.strip_prefix("part-")?.split_once('.')?;
        Some(LlFile::Part(seq.parse().ok()?, index.parse().ok()?))
    }
}

/// One part: its CMAF chunks' bytes, as the store gave them (pieces of the segment arena in
/// the engine), in order.
#[derive(Debug, Clone)]
pub struct LlPart {
    pub pieces: Vec<Bytes>,
    pub duration_ms: u64,
    /// It starts with a keyframe (INDEPENDENT=YES).
    pub independent: bool,
}

impl LlPart {
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes in one buffer (a copy: for tests and tools, not for serving).
    pub fn joined(&self) -> Vec<u8> {
        self.pieces.concat()
    }
}

/// A finished segment: its parts, in order.
#[derive(Debug)]
pub struct LlSegment {
    pub seq: u64,
    pub duration_ms: u64,
    pub discontinuity: bool,
    /// EXT-X-PROGRAM-DATE-TIME, Unix ms.
    pub pdt_unix_ms: u64,
    /// The init segment it needs.
    pub init_id: u32,
    pub parts: Vec<LlPart>,
}

impl LlSegment {
    pub fn len(&self) -> usize {
        self.parts.iter().map(LlPart::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment's bytes: its parts' pieces, shared.
    pub fn pieces(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter().flat_map(|p| &p.pieces)
    }
}

/// A rendered playlist and where each URI in it ends (a viewer's query goes there).
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub text: Bytes,
    pub uri_ends: Vec<usize>,
}

impl Rendered {
    /// The playlist with `suffix` after every URI, as shared pieces around the one suffix.
    pub fn with_suffix(&self, suffix: &Bytes) -> Vec<Bytes> {
        with_suffix(&self.text, &self.uri_ends, suffix)
    }
}

/// `text` with `suffix` (a viewer's `?query`) at each of `uri_ends`, as pieces: slices of the
/// shared text with the one suffix between them, nothing copied. TS and LL-HLS playlists
/// both carry a viewer's token so.
pub fn with_suffix(text: &Bytes, uri_ends: &[usize], suffix: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(2 * uri_ends.len() + 1);
    let mut from = 0;
    for &end in uri_ends {
        out.push(text.slice(from..end));
        out.push(suffix.clone());
        from = end;
    }
    out.push(text.slice(from..));
    out
}

/// What HTTP serves of a stream's LL-HLS, rendered once per part.
#[derive(Debug)]
pub struct LlSnapshot {
    pub playlist: Rendered,
    /// The delta playlist (`_HLS_skip=YES`), when the playlist is long enough to skip any.
    pub delta: Option<Rendered>,
    /// The init segments the kept segments need, by id.
    pub inits: Vec<(u32, Bytes)>,
    /// Finished segments, oldest first (the window plus the extras).
    pub segments: Vec<Arc<LlSegment>>,
    /// The segment being written: its number and finished parts.
    pub open_seq: Option<u64>,
    pub open_parts: Vec<LlPart>,
    pub part_target_ms: u64,
    pub target_duration_s: u64,
    pub ended: bool,
}

impl LlSnapshot {
    /// The part the preload hint names: the one being written now.
    pub fn next_part(&self) -> Option<PartId> {
        let seq = self.open_seq?;
        Some((seq, self.open_parts.len() as u32))
    }

    /// The newest segment finished.
    pub fn last_complete(&self) -> Option<u64> {
        self.segments.last().map(|s| s.seq)
    }

    /// Whether this playlist satisfies a blocking reload for segment `msn` (and its part
    /// `part`): the segment is finished, or that part of it is listed.
    pub fn satisfies(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended || self.last_complete().is_some_and(|last| last >= msn) {
            return true;
        }
        match (self.open_seq, part) {
            (Some(open), _) if open > msn => true,
            (Some(open), Some(p)) if open == msn => (p as usize) < self.open_parts.len(),
            _ => false,
        }
    }

    /// The number the next segment will take (for "too far ahead").
    pub fn next_msn(&self) -> u64 {
        self.open_seq
            .or(self.last_complete().map(|s| s + 1))
            .unwrap_or(0)
    }

    pub fn segment(&self, seq: u64) -> Option<&Arc<LlSegment>> {
        self.segments.iter().find(|s| s.seq == seq)
    }

    pub fn part(&self, seq: u64, index: u32) -> Option<&LlPart> {
        if self.open_seq == Some(seq) {
            return self.open_parts.get(index as usize);
        }
        self.segment(seq)?.parts.get(index as usize)
    }

    pub fn init(&self, id: u32) -> Option<&Bytes> {
        self.inits.iter().find(|(i, _)| *i == id).map(|(_, b)| b)
    }
}
