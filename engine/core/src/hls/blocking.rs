//! LL-HLS requests that wait: blocking playlist reloads (`_HLS_msn`, `_HLS_part`) and parts
//! asked for before they exist (the preload hint). Each is parked here with a deadline of
//! three target durations; a snapshot that satisfies it releases it, the clock expires it.
//! The shard holds one [`Parked`] and drives it with its one timer ([`Parked::poll_timeout`]);
//! nothing here sleeps or polls.
//!
//! Must not: render or send anything (a released request is answered from the snapshot that
//! released it), or hold more than its cap of requests.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use super::llhls::LlSnapshot;

/// How far past the last part a request may ask (RFC 8216bis: the Advance Part Limit).
const ADVANCE_PART_LIMIT: u64 = 3;

/// `_HLS_skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Skip {
    #[default]
    No,
    /// `YES`: skip old segments.
    Yes,
    /// `v2`: skip old segments and date ranges (there are none).
    V2,
}

/// The LL-HLS directives of a playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u32>,
    pub skip: Skip,
}

/// Why a request's directives are refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    #[error("_HLS_skip takes YES or v2")]
    BadSkip,
    #[error("_HLS_msn/_HLS_part is too far ahead of the playlist")]
    TooFar,
}

impl Directives {
    /// Reads `_HLS_msn`, `_HLS_part` and `_HLS_skip` from a query; other parameters are the
    /// viewer's (a token) and are left alone.
    pub fn parse(query: Option<&str>) -> Result<Self, DirectiveError> {
        let mut d = Directives::default();
        for pair in query.unwrap_or("").split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "_HLS_msn" => {
                    d.msn = Some(
                        value
                            .parse()
                            .map_err(|_| DirectiveError::NotANumber("_HLS_msn"))?,
                    )
                }
                "_HLS_part" => {
                    d.part = Some(
                        value
                            .parse()
                            .map_err(|_| DirectiveError::NotANumber("_HLS_part"))?,
                    )
                }
                "_HLS_skip" => {
                    d.skip = match value {
                        "YES" => Skip::Yes,
                        "v2" => Skip::V2,
                        _ => return Err(DirectiveError::BadSkip),
                    }
                }
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err(DirectiveError::PartWithoutMsn);
        }
        Ok(d)
    }
}

/// The viewer's own part of a query: every parameter but the `_HLS_` directives (it goes on
/// the playlist's URIs, as a token must).
pub fn viewer_query(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("_HLS_"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What to do with a request for `(msn, part)` now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The snapshot holds it: answer now.
    Now,
    /// Park it until `deadline_ms`.
    Wait { deadline_ms: u64 },
}

/// Decides a request for segment `msn` (part `part`) against the current snapshot: answer,
/// wait (three target durations at most), or refuse as too far ahead.
pub fn decide(
    snap: &LlSnapshot,
    msn: u64,
    part: Option<u32>,
    now_ms: u64,
) -> Result<Decision, DirectiveError> {
    if snap.satisfies(msn, part) {
        return Ok(Decision::Now);
    }
    let next = snap.next_msn();
    if msn > next.saturating_add(2) {
        return Err(DirectiveError::TooFar);
    }
    if msn == next {
        let listed = snap.open_parts.len() as u64;
        if part.is_some_and(|p| u64::from(p) > listed + ADVANCE_PART_LIMIT) {
            return Err(DirectiveError::TooFar);
        }
    }
    Ok(Decision::Wait {
        deadline_ms: now_ms.saturating_add(3 * snap.target_duration_s * 1000),
    })
}

struct Entry<T> {
    id: u64,
    msn: u64,
    part: Option<u32>,
    deadline_ms: u64,
    token: T,
}

/// Parked requests of every stream on a shard, each a `token` the caller wakes.
pub struct Parked<K, T> {
    by_key: HashMap<K, Vec<Entry<T>>>,
    deadlines: BTreeSet<(u64, u64)>,
    /// Which stream each id waits on (for expiry).
    keys: HashMap<u64, K>,
    next_id: u64,
    max: usize,
}

impl<K: Hash + Eq + Clone, T> Parked<K, T> {
    /// At most `max` parked at once.
    pub fn new(max: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            deadlines: BTreeSet::new(),
            keys: HashMap::new(),
            next_id: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parks a request; gives the token back when the cap is reached.
    pub fn park(
        &mut self,
        key: K,
        msn: u64,
        part: Option<u32>,
        deadline_ms: u64,
        token: T,
    ) -> Result<(), T> {
        if self.keys.len() >= self.max {
            return Err(token);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.deadlines.insert((deadline_ms, id));
        self.keys.insert(id, key.clone());
        self.by_key.entry(key).or_default().push(Entry {
            id,
            msn,
            part,
            deadline_ms,
            token,
        });
        Ok(())
    }

    /// A new snapshot of `key` (`None`: the stream is gone): the requests it satisfies (all,
    /// when gone), to be answered from it.
    pub fn handle_snapshot(&mut self, key: &K, snap: Option<&LlSnapshot>) -> Vec<T> {
        let Some(entries) = self.by_key.get_mut(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let e = &entries[i];
            if snap.is_none_or(|s| s.satisfies(e.msn, e.part)) {
                let e = entries.swap_remove(i);
                self.deadlines.remove(&(e.deadline_ms, e.id));
                self.keys.remove(&e.id);
                out.push(e.token);
            } else {
                i += 1;
            }
        }
        if entries.is_empty() {
            self.by_key.remove(key);
        }
        out
    }

    /// The requests whose deadline has come: to be answered 503.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop_first();
            let Some(key) = self.keys.remove(&id) else {
                continue;
            };
            if let Some(entries) = self.by_key.get_mut(&key) {
                if let Some(at) = entries.iter().position(|e| e.id == id) {
                    out.push(entries.swap_remove(at).token);
                }
                if entries.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        out
    }

    /// When the next parked request expires.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// Every parked request (a drain answers them all).
    pub fn take_all(&mut self) -> Vec<T> {
        self.deadlines.clear();
        self.keys.clear();
        self.by_key
            .drain()
            .flat_map(|(_, v)| v.into_iter().map(|e| e.token))
            .collect()
    }
}
