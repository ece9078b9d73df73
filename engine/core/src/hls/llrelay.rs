//! The LL-HLS relay of an HLS-origin edge, sans-IO: one per stream per machine, on the
//! stream's owner shard. It keeps **one** blocking playlist reload at the origin (for the
//! part the origin's preload hint names), fetches each part once (the hinted one while the
//! origin writes it, so its bytes stream through), and publishes the origin's playlist for
//! the edge's viewers, whose blocking reloads and part requests are then answered here.
//!
//! In steps:
//! 1. A viewer's `llhls.m3u8` request creates it ([`LlRelay::handle_demand`]): a plain load of
//!    the origin's playlist.
//! 2. Each playlist loaded ([`LlRelay::handle_playlist`]) is published as it is
//!    ([`LlRelayEffect::Publish`]: the text, with what [`super::blocking`] needs to decide
//!    requests); the init segments it names, the hinted part, and the parts newly listed
//!    since the last load (from the newest independent part, on the first) are fetched
//!    ([`LlRelayEffect::FetchFile`]), each at most once. Then at once the next blocking
//!    reload, for the hinted part: the origin answers when that part is complete.
//! 3. A file a viewer asks for that was not fetched (an older part, a whole segment) is
//!    fetched on its first request if the playlist lists it ([`LlRelay::handle_miss`]);
//!    otherwise it is a 404.
//! 4. A playlist that fails is retried after [`LlRelayConfig::retry_ms`]; until the first one
//!    loads, viewers get the origin's status ([`LlRelayEffect::Unavailable`]).
//! 5. No viewer request for [`LlRelayConfig::idle_ms`]: [`LlRelayEffect::Stop`].
//!
//! The origin's URIs must be the names edge-engine writes (`init-{n}.mp4`, `seg-{msn}.m4s`,
//! `part-{msn}.{i}.m4s`, relative): the edge serves the same names, so the playlist is
//! relayed as text. Another naming is refused (`ParseError::Names`).
//!
//! Must not: hold bytes (the engine's records do), touch sockets or read a clock, or keep more
//! than one playlist request at the origin.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::llsnapshot::{LlFile, LlPart, LlSegment, LlSnapshot, PartId, Rendered};

/// Settings of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlRelayConfig {
    /// No viewer request for this long ends the relay.
    pub idle_ms: u64,
    /// A failed playlist is loaded again after this long.
    pub retry_ms: u64,
    /// A failed file is answered with its status for this long, then fetched again.
    pub negative_ms: u64,
}

/// What the engine must do for a relay.
#[derive(Debug, Clone)]
pub enum LlRelayEffect {
    /// Load the origin's playlist; `block`: held by the origin until that part is listed
    /// (`_HLS_msn`, `_HLS_part`).
    FetchPlaylist { block: Option<PartId> },
    /// Fetch a file from the origin and stream it to every shard.
    FetchFile(LlFile),
    /// Requests for `file` get `status` (a 404 for a file the playlist does not list).
    FileFailed { file: LlFile, status: u16 },
    /// The playlist viewers are answered from, on every shard.
    Publish(Arc<LlSnapshot>),
    /// No playlist yet: playlist requests get `status`.
    Unavailable(u16),
    /// Idle: forget the relay everywhere.
    Stop,
}

impl PartialEq for LlRelayEffect {
    /// Published playlists are the same when they are the same snapshot.
    fn eq(&self, other: &Self) -> bool {
        use LlRelayEffect::*;
        match (self, other) {
            (FetchPlaylist { block: a }, FetchPlaylist { block: b }) => a == b,
            (FetchFile(a), FetchFile(b)) => a == b,
            (
                FileFailed { file, status },
                FileFailed {
                    file: f2,
                    status: s2,
                },
            ) => file == f2 && status == s2,
            (Publish(a), Publish(b)) => Arc::ptr_eq(a, b),
            (Unavailable(a), Unavailable(b)) => a == b,
            (Stop, Stop) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Fetching,
    Done,
    /// Requests get `status` until `until_ms`.
    Failed {
        status: u16,
        until_ms: u64,
    },
}

/// One stream's relay (module docs).
pub struct LlRelay {
    config: LlRelayConfig,
    published: Option<Arc<LlSnapshot>>,
    /// The part the origin's last playlist hints.
    hint: Option<PartId>,
    files: BTreeMap<LlFile, FileState>,
    /// A playlist request is at the origin.
    loading: bool,
    /// When to load again after a failure.
    retry_at: Option<u64>,
    last_demand_ms: u64,
    stopped: bool,
}

impl LlRelay {
    pub fn new(config: LlRelayConfig, now_ms: u64) -> Self {
        Self {
            config,
            published: None,
            hint: None,
            files: BTreeMap::new(),
            loading: false,
            retry_at: None,
            last_demand_ms: now_ms,
            stopped: false,
        }
    }

    /// The playlist published last.
    pub fn published(&self) -> Option<&Arc<LlSnapshot>> {
        self.published.as_ref()
    }

    /// A viewer's playlist request (on any shard): starts the relay, or keeps it.
    pub fn handle_demand(&mut self, now_ms: u64, out: &mut Vec<LlRelayEffect>) {
        self.last_demand_ms = now_ms;
        if !self.loading && self.retry_at.is_none() && !self.stopped && self.published.is_none() {
            self.loading = true;
            out.push(LlRelayEffect::FetchPlaylist { block: None });
        }
    }

    /// The origin's playlist arrived (its text), or failed (the status to give viewers).
    pub fn handle_playlist(
        &mut self,
        result: Result<&str, u16>,
        now_ms: u64,
        out: &mut Vec<LlRelayEffect>,
    ) {
        self.loading = false;
        if self.stopped {
            return;
        }
        let snap = match result.map(parse_ll_playlist) {
            Ok(Ok(snap)) => snap,
            failed => {
                if self.published.is_none() {
                    // A 404, or a playlist without LL-HLS (or with names this edge does not
                    // serve): the origin has no LL-HLS to relay, and a player falls back.
                    let status = match failed {
                        Err(404)
                        | Ok(Err(ParseError::NotLowLatency))
                        | Ok(Err(ParseError::Names(_))) => 404,
                        Err(504) => 504,
                        _ => 502,
                    };
                    out.push(LlRelayEffect::Unavailable(status));
                }
                self.retry_at = Some(now_ms + self.config.retry_ms);
                return;
            }
        };
        let first_load = self.published.is_none();
        // Inits first (a player needs one before any part), then parts oldest first.
        for (id, _) in &snap.inits {
            self.fetch(LlFile::Init(*id), out);
        }
        let listed = listed_parts(&snap);
        let from = if first_load {
            // What a player joins at: the newest independent part.
            independent_parts(&snap).last().copied()
        } else {
            self.hint
        };
        if let Some(from) = from {
            for id in listed.iter().filter(|id| **id >= from) {
                self.fetch(LlFile::Part(id.0, id.1), out);
            }
        }
        self.hint = snap.next_part();
        if let Some((msn, i)) = self.hint {
            self.fetch(LlFile::Part(msn, i), out);
            // And the part after it, which the origin holds until it is the hinted one and
            // then streams as it is written: its first bytes come without waiting for this
            // playlist's successor (half a round trip) and a request (another half).
            let (m, n) = next_after((msn, i), &snap);
            self.fetch(LlFile::Part(m, n), out);
        }
        // Files the playlist no longer lists go (their records everywhere follow the
        // published playlist).
        let oldest = snap.segments.first().map(|s| s.seq).or(snap.open_seq);
        if let Some(oldest) = oldest {
            self.files.retain(|f, _| match f {
                LlFile::Part(msn, _) | LlFile::Segment(msn) => *msn >= oldest,
                LlFile::Init(_) | LlFile::Playlist => true,
            });
        }
        let ended = snap.ended;
        let snap = Arc::new(snap);
        self.published = Some(Arc::clone(&snap));
        out.push(LlRelayEffect::Publish(snap));
        self.retry_at = None;
        if !ended {
            // The one blocking reload at the origin: for the hinted part.
            self.loading = true;
            out.push(LlRelayEffect::FetchPlaylist { block: self.hint });
        }
    }

    /// A viewer wants `file`, which its shard has no record of.
    pub fn handle_miss(&mut self, file: LlFile, now_ms: u64, out: &mut Vec<LlRelayEffect>) {
        self.last_demand_ms = now_ms;
        match self.files.get(&file).copied() {
            // Its bytes went to every shard, that one too (its request crossed them).
            Some(FileState::Fetching | FileState::Done) => return,
            Some(FileState::Failed { status, until_ms }) if now_ms < until_ms => {
                out.push(LlRelayEffect::FileFailed { file, status });
                return;
            }
            _ => {}
        }
        let listed = self.published.as_deref().is_some_and(|s| match file {
            LlFile::Init(id) => s.inits.iter().any(|(i, _)| *i == id),
            LlFile::Segment(msn) => s.segments.iter().any(|seg| seg.seq == msn),
            LlFile::Part(msn, i) => {
                s.part(msn, i).is_some()
                    || s.segments
                        .iter()
                        .any(|seg| seg.seq == msn && (i as usize) < seg.parts.len())
                    || s.next_part() == Some((msn, i))
            }
            LlFile::Playlist => false,
        });
        if listed {
            self.files.insert(file, FileState::Fetching);
            out.push(LlRelayEffect::FetchFile(file));
        } else {
            out.push(LlRelayEffect::FileFailed { file, status: 404 });
        }
    }

    /// A file's download ended: complete, or failed with `status`.
    pub fn handle_file_done(&mut self, file: LlFile, result: Result<(), u16>, now_ms: u64) {
        let state = match result {
            Ok(()) => FileState::Done,
            Err(status) => FileState::Failed {
                status,
                until_ms: now_ms + self.config.negative_ms,
            },
        };
        if let Some(s) = self.files.get_mut(&file) {
            *s = state;
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut Vec<LlRelayEffect>) {
        if self.stopped {
            return;
        }
        if now_ms.saturating_sub(self.last_demand_ms) >= self.config.idle_ms {
            self.stopped = true;
            out.push(LlRelayEffect::Stop);
            return;
        }
        if self.retry_at.is_some_and(|at| now_ms >= at) && !self.loading {
            self.retry_at = None;
            self.loading = true;
            out.push(LlRelayEffect::FetchPlaylist { block: self.hint });
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        if self.stopped {
            return None;
        }
        let idle = self.last_demand_ms + self.config.idle_ms;
        Some(self.retry_at.map_or(idle, |at| at.min(idle)))
    }

    fn fetch(&mut self, file: LlFile, out: &mut Vec<LlRelayEffect>) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.files.entry(file) {
            e.insert(FileState::Fetching);
            out.push(LlRelayEffect::FetchFile(file));
        }
    }
}

/// The part likely to follow `hint`: the next one in its segment, unless the segments so far
/// had no more parts than that (then the next segment's first). A wrong guess costs one
/// request the origin answers 404 (the part never came) or with the whole part.
fn next_after((msn, i): PartId, s: &LlSnapshot) -> PartId {
    let parts_per_segment = s.segments.iter().map(|seg| seg.parts.len()).max();
    match parts_per_segment {
        Some(n) if i as usize + 1 >= n => (msn + 1, 0),
        _ => (msn, i + 1),
    }
}

/// The parts a playlist lists, oldest first, and whether each is independent.
fn parts_of(s: &LlSnapshot) -> impl Iterator<Item = (PartId, bool)> + '_ {
    let closed = s.segments.iter().flat_map(|seg| {
        seg.parts
            .iter()
            .enumerate()
            .map(move |(i, p)| ((seg.seq, i as u32), p.independent))
    });
    let open = s.open_seq.into_iter().flat_map(move |seq| {
        s.open_parts
            .iter()
            .enumerate()
            .map(move |(i, p)| ((seq, i as u32), p.independent))
    });
    closed.chain(open)
}

fn listed_parts(s: &LlSnapshot) -> Vec<PartId> {
    parts_of(s).map(|(id, _)| id).collect()
}

fn independent_parts(s: &LlSnapshot) -> Vec<PartId> {
    parts_of(s).filter(|(_, i)| *i).map(|(id, _)| id).collect()
}

/// Why an origin's playlist cannot be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an M3U8 playlist")]
    NotM3u8,
    #[error("bad value on line {0}")]
    BadValue(usize),
    /// A URI that is not one of the names edge-engine writes.
    #[error("URI {0:?} is not an edge-engine LL-HLS name")]
    Names(String),
    #[error("no EXT-X-PART-INF: not an LL-HLS playlist")]
    NotLowLatency,
}

/// Reads an origin's LL-HLS playlist into what the edge serves and decides requests from:
/// the text as it is (with where each URI ends, for a viewer's query), the segments and parts
/// it lists (durations, INDEPENDENT; no bytes: the relay's records hold them), the open
/// segment and the hinted part.
pub fn parse_ll_playlist(text: &str) -> Result<LlSnapshot, ParseError> {
    if !text.starts_with("#EXTM3U") {
        return Err(ParseError::NotM3u8);
    }
    let mut uri_ends = Vec::new();
    let mut segments: Vec<Arc<LlSegment>> = Vec::new();
    let mut parts: Vec<LlPart> = Vec::new();
    let mut parts_seq: Option<u64> = None;
    let mut inits: Vec<(u32, Bytes)> = Vec::new();
    let mut init_id = 0;
    let mut extinf_ms: Option<u64> = None;
    let mut discontinuity = false;
    let mut hint: Option<PartId> = None;
    let (mut target_s, mut part_target_ms, mut ended) = (0, None, false);
    let mut at = 0;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let line_start = at;
        at += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let bad = || ParseError::BadValue(n + 1);
        // The quoted URI of a tag: its name, and where it ends in the text.
        let quoted_uri = || -> Result<(&str, usize), ParseError> {
            let from = line.find("URI=\"").ok_or_else(bad)? + 5;
            let len = line[from..].find('"').ok_or_else(bad)?;
            Ok((&line[from..from + len], line_start + from + len))
        };
        let name = |uri: &str| LlFile::parse(uri).ok_or_else(|| ParseError::Names(uri.into()));
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target_s = v.trim().parse().map_err(|_| bad())?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:PART-TARGET=") {
            let s: f64 = v.trim().parse().map_err(|_| bad())?;
            part_target_ms = Some(secs_ms(s).ok_or_else(bad)?);
        } else if line.starts_with("#EXT-X-MAP:") {
            let (uri, end) = quoted_uri()?;
            let LlFile::Init(id) = name(uri)? else {
                return Err(ParseError::Names(uri.into()));
            };
            init_id = id;
            if !inits.iter().any(|(i, _)| *i == id) {
                inits.push((id, Bytes::new()));
            }
            uri_ends.push(end);
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
            let (uri, end) = quoted_uri()?;
            let LlFile::Part(msn, index) = name(uri)? else {
                return Err(ParseError::Names(uri.into()));
            };
            // Parts in order: their segment's, numbered from 0, after the last segment.
            let after_last = segments.last().is_none_or(|s| msn > s.seq);
            if !after_last || index as usize != parts.len() {
                return Err(bad());
            }
            let duration = attrs
                .split(',')
                .find_map(|a| a.strip_prefix("DURATION="))
                .and_then(|d| d.parse::<f64>().ok())
                .and_then(secs_ms)
                .ok_or_else(bad)?;
            if parts_seq.is_some_and(|s| s != msn) {
                return Err(bad());
            }
            parts_seq = Some(msn);
            parts.push(LlPart {
                pieces: Vec::new(),
                duration_ms: duration,
                independent: attrs.contains("INDEPENDENT=YES"),
            });
            uri_ends.push(end);
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            let (uri, end) = quoted_uri()?;
            match name(uri)? {
                LlFile::Part(msn, i) if line.contains("TYPE=PART") => hint = Some((msn, i)),
                LlFile::Init(_) if line.contains("TYPE=MAP") => {}
                _ => return Err(ParseError::Names(uri.into())),
            }
            uri_ends.push(end);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let s: f64 = v
                .split(',')
                .next()
                .and_then(|d| d.trim().parse().ok())
                .ok_or_else(bad)?;
            extinf_ms = Some(secs_ms(s).ok_or_else(bad)?);
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            let LlFile::Segment(seq) = name(line)? else {
                return Err(ParseError::Names(line.into()));
            };
            let duration_ms = extinf_ms.take().ok_or_else(bad)?;
            if parts_seq.is_some_and(|s| s != seq) || segments.last().is_some_and(|s| seq <= s.seq)
            {
                return Err(bad());
            }
            segments.push(Arc::new(LlSegment {
                seq,
                duration_ms,
                discontinuity: std::mem::take(&mut discontinuity),
                pdt_unix_ms: 0,
                init_id,
                parts: std::mem::take(&mut parts),
            }));
            parts_seq = None;
            uri_ends.push(line_start + line.len());
        }
    }
    let part_target_ms = part_target_ms.ok_or(ParseError::NotLowLatency)?;
    if hint.is_some_and(|(msn, _)| segments.last().is_some_and(|s| msn <= s.seq)) {
        return Err(ParseError::BadValue(0));
    }
    // The open segment: the one its listed parts (or the hint) belong to.
    let open_seq = parts_seq
        .or(hint.map(|(msn, _)| msn))
        .filter(|s| segments.last().is_none_or(|last| *s > last.seq));
    Ok(LlSnapshot {
        playlist: Rendered {
            text: Bytes::copy_from_slice(text.as_bytes()),
            uri_ends,
        },
        delta: None,
        inits,
        segments,
        open_seq,
        open_parts: if open_seq.is_some() {
            parts
        } else {
            Vec::new()
        },
        part_target_ms,
        target_duration_s: target_s.max(1),
        ended,
    })
}

/// Seconds as a playlist writes them, in whole ms; `None` for nonsense.
fn secs_ms(s: f64) -> Option<u64> {
    (s.is_finite() && (0.0..=86_400.0).contains(&s)).then(|| (s * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::segmenter::{HlsConfig, Segmenter, VecStore};

    const CONFIG: LlRelayConfig = LlRelayConfig {
        idle_ms: 30_000,
        retry_ms: 500,
        negative_ms: 1_000,
    };

    /// The origin's playlists, as edge-engine renders them, after each part of 4 s of the
    /// synthetic stream (1 s segments).
    fn origin_playlists() -> Vec<Arc<LlSnapshot>> {
        let config = HlsConfig {
            segment_ms: 1000,
            window: 6,
            keep_extra: 2,
            part_ms: 200,
        };
        let mut s = Segmenter::new(config, VecStore, "x");
        s.set_wall_clock(1_765_000_000_000);
        let mut out: Vec<Arc<LlSnapshot>> = Vec::new();
        for (f, _) in crate::hls::tests::stream(4, 25) {
            if let Some(ll) = s.handle_frame(&f).unwrap().and_then(|h| h.ll.clone()) {
                if out.last().is_none_or(|l| !Arc::ptr_eq(l, &ll)) {
                    out.push(ll);
                }
            }
        }
        out
    }

    fn text(s: &LlSnapshot) -> &str {
        std::str::from_utf8(&s.playlist.text).unwrap()
    }

    #[test]
    fn an_origin_playlist_reads_back_as_what_the_origin_decides_from() {
        for origin in origin_playlists() {
            let got = parse_ll_playlist(text(&origin)).unwrap();
            assert_eq!(got.playlist.text, origin.playlist.text, "the text as it is");
            assert_eq!(
                got.playlist.uri_ends,
                origin.playlist.uri_ends,
                "{}",
                text(&origin)
            );
            assert_eq!(got.next_part(), origin.next_part());
            assert_eq!(got.open_seq, origin.open_seq);
            assert_eq!(got.last_complete(), origin.last_complete());
            assert_eq!(got.target_duration_s, origin.target_duration_s);
            assert_eq!(got.part_target_ms, origin.part_target_ms);
            let ids = |s: &LlSnapshot| s.inits.iter().map(|(i, _)| *i).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&origin));
            // Every part the origin lists, with its duration and INDEPENDENT.
            for seg in &got.segments {
                for (i, p) in seg.parts.iter().enumerate() {
                    let o = origin.part(seg.seq, i as u32).unwrap();
                    assert_eq!(
                        (p.duration_ms, p.independent),
                        (o.duration_ms, o.independent)
                    );
                }
            }
            for msn in 0..8 {
                for part in [None, Some(0), Some(3), Some(9)] {
                    assert_eq!(got.satisfies(msn, part), origin.satisfies(msn, part));
                }
            }
        }
    }

    #[test]
    fn other_names_and_plain_playlists_are_refused() {
        let other = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
#EXT-X-PART:DURATION=0.2,URI=\"fileSequence7.0.mp4\"\n";
        assert!(matches!(
            parse_ll_playlist(other),
            Err(ParseError::Names(_))
        ));
        let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg-1.m4s\n";
        assert_eq!(
            parse_ll_playlist(plain).unwrap_err(),
            ParseError::NotLowLatency
        );
        assert_eq!(parse_ll_playlist("nope").unwrap_err(), ParseError::NotM3u8);
        let bad = "#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=nan\n";
        assert!(parse_ll_playlist(bad).is_err());
        // A relay in front of an origin without LL-HLS says so: a 404 (players fall back).
        let mut r = LlRelay::new(CONFIG, 0);
        let mut out = Vec::new();
        r.handle_demand(0, &mut out);
        out.clear();
        r.handle_playlist(Ok(plain), 1, &mut out);
        assert_eq!(out, [LlRelayEffect::Unavailable(404)]);
    }

    /// One blocking reload at a time, each for the hinted part; each part fetched once,
    /// whatever the loads; the first load fetches from the newest independent part.
    #[test]
    fn one_reload_at_a_time_for_the_hinted_part_and_each_part_fetched_once() {
        let origin = origin_playlists();
        let mut r = LlRelay::new(CONFIG, 0);
        let mut out = Vec::new();
        r.handle_demand(0, &mut out);
        r.handle_demand(1, &mut out);
        assert_eq!(out, [LlRelayEffect::FetchPlaylist { block: None }]);
        let mut fetched = Vec::new();
        for (n, o) in origin.iter().enumerate().skip(5) {
            out.clear();
            r.handle_playlist(Ok(text(o)), 10 * n as u64, &mut out);
            let reloads: Vec<_> = out
                .iter()
                .filter(|e| matches!(e, LlRelayEffect::FetchPlaylist { .. }))
                .collect();
            assert_eq!(
                reloads,
                [&LlRelayEffect::FetchPlaylist {
                    block: o.next_part()
                }],
                "one reload, blocking for the hint"
            );
            assert!(out.iter().any(|e| matches!(e, LlRelayEffect::Publish(_))));
            for e in &out {
                if let LlRelayEffect::FetchFile(f) = e {
                    assert!(!fetched.contains(f), "{f:?} twice");
                    fetched.push(*f);
                }
            }
            // The hinted part is being fetched as soon as it is hinted, and the part after.
            let (msn, i) = o.next_part().unwrap();
            assert!(fetched.contains(&LlFile::Part(msn, i)));
            assert!(
                fetched.contains(&LlFile::Part(msn, i + 1))
                    || fetched.contains(&LlFile::Part(msn + 1, 0))
            );
        }
        // The first load fetched the init, and from the newest independent part on.
        assert_eq!(fetched[0], LlFile::Init(1));
        let first = &origin[5];
        let from = independent_parts(first).last().copied().unwrap();
        assert_eq!(fetched[1], LlFile::Part(from.0, from.1));
        // Every part listed after that was fetched, in order.
        let parts: Vec<_> = fetched
            .iter()
            .filter_map(|f| match f {
                LlFile::Part(m, i) => Some((*m, *i)),
                _ => None,
            })
            .collect();
        assert!(parts.windows(2).all(|w| w[0] < w[1]), "{parts:?}");
    }

    #[test]
    fn misses_fetch_what_is_listed_and_404_the_rest_failures_retry() {
        let origin = origin_playlists();
        let last = origin.last().unwrap();
        let mut r = LlRelay::new(CONFIG, 0);
        let mut out = Vec::new();
        r.handle_demand(0, &mut out);
        out.clear();
        r.handle_playlist(Ok(text(last)), 10, &mut out);
        out.clear();
        let old = last.segments[0].seq;
        r.handle_miss(LlFile::Segment(old), 20, &mut out);
        assert_eq!(out, [LlRelayEffect::FetchFile(LlFile::Segment(old))]);
        out.clear();
        r.handle_miss(LlFile::Segment(old), 21, &mut out);
        assert!(out.is_empty(), "fetched once");
        // Done: its bytes went to every shard, the asking one too.
        r.handle_file_done(LlFile::Segment(old), Ok(()), 22);
        r.handle_miss(LlFile::Segment(old), 23, &mut out);
        assert!(out.is_empty(), "not fetched again");
        r.handle_file_done(LlFile::Segment(old), Err(502), 24);
        out.clear();
        r.handle_miss(LlFile::Segment(old + 100), 22, &mut out);
        assert_eq!(
            out,
            [LlRelayEffect::FileFailed {
                file: LlFile::Segment(old + 100),
                status: 404
            }]
        );
        // A failed file: its status for a while, then fetched again.
        out.clear();
        r.handle_miss(LlFile::Segment(old), 40, &mut out);
        assert_eq!(
            out,
            [LlRelayEffect::FileFailed {
                file: LlFile::Segment(old),
                status: 502
            }]
        );
        out.clear();
        r.handle_miss(LlFile::Segment(old), 24 + CONFIG.negative_ms, &mut out);
        assert_eq!(out, [LlRelayEffect::FetchFile(LlFile::Segment(old))]);

        // A relay whose first playlist fails: viewers get the status, then it loads again.
        let mut r = LlRelay::new(CONFIG, 0);
        out.clear();
        r.handle_demand(0, &mut out);
        out.clear();
        r.handle_playlist(Err(404), 5, &mut out);
        assert_eq!(out, [LlRelayEffect::Unavailable(404)]);
        assert_eq!(r.poll_timeout(), Some(5 + CONFIG.retry_ms));
        out.clear();
        r.handle_timeout(5 + CONFIG.retry_ms, &mut out);
        assert_eq!(out, [LlRelayEffect::FetchPlaylist { block: None }]);
        // Idle: it stops.
        out.clear();
        r.handle_timeout(CONFIG.idle_ms, &mut out);
        assert_eq!(out, [LlRelayEffect::Stop]);
        assert_eq!(r.poll_timeout(), None);
    }
}
