//! LL-HLS at an HLS-origin edge (`--origin http(s)://…` in front of an LL-HLS origin), both
//! sides of edge-core's [`LlRelay`]:
//! - on a stream's owner shard, the relay itself and its requests to the origin: one
//!   blocking playlist reload at a time, each file fetched once into this shard's arena, its
//!   pieces announced to every shard as they arrive;
//! - on every shard, what its viewers are answered from: the relayed playlist (an
//!   [`LlSnapshot`] the LL-HLS waits decide from), the files on their way or here (records of
//!   the owner's arena pieces, shared by every request), the requests waiting for a first
//!   playlist, and how often this shard tells the owner it has viewers.
//!
//! Must not: decide what to fetch or when (the relay does), fetch from a shard that does not
//! own the stream, copy a file per viewer, or keep records of files the playlist no longer
//! lists.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use edge_core::hls::llhls::{LlFile, LlSnapshot};
use edge_core::hls::llrelay::{LlRelay, LlRelayConfig, LlRelayEffect};
use edge_core::hls::pull::FetchTarget;
use edge_core::pull::DemandLimiter;
use edge_core::{ShardId, StreamKey};
use tracing::{debug, info};

use super::hls::NEGATIVE_MS;
use super::hlspull::{stream_body, BodyStep};
use super::pulled::{Inflight, Lookup, Progress};
use super::{Shard, TimerKey};
use crate::machine::stats::Counter;
use crate::net::mesh::{MeshMsg, SegmentEvent};

/// How often a shard tells an owner that its LL-HLS viewers still want a stream.
const DEMAND_EVERY_MS: u64 = 1000;
/// A failed playlist is loaded again after this long.
const RETRY_MS: u64 = 500;
/// Files on their way or here that one shard keeps records of at most.
const MAX_FILES: usize = 16_384;
/// The largest file accepted from an origin.
const MAX_FILE_BYTES: usize = 64 << 20;

pub(crate) struct LlRelays {
    /// Owner side: the relays of the streams this shard owns, and the query (a viewer's
    /// token) their origin requests carry.
    relays: RefCell<HashMap<StreamKey, (LlRelay, Option<String>)>>,
    /// Serving side: each relayed stream's playlist, as its owner published it.
    served: RefCell<HashMap<StreamKey, Arc<LlSnapshot>>>,
    files: RefCell<HashMap<(StreamKey, LlFile), Rc<Inflight>>>,
    /// Streams whose first playlist failed: the status, until when.
    unavailable: RefCell<HashMap<StreamKey, (u16, u64)>>,
    waiters: RefCell<HashMap<StreamKey, Vec<Waker>>>,
    demand: RefCell<DemandLimiter>,
}

impl LlRelays {
    pub(crate) fn new(idle_ms: u64) -> Self {
        Self {
            relays: RefCell::new(HashMap::new()),
            served: RefCell::new(HashMap::new()),
            files: RefCell::new(HashMap::new()),
            unavailable: RefCell::new(HashMap::new()),
            waiters: RefCell::new(HashMap::new()),
            demand: RefCell::new(DemandLimiter::new(DEMAND_EVERY_MS, idle_ms)),
        }
    }

    /// The relayed playlist requests for `key` are answered from.
    pub(crate) fn get(&self, key: &StreamKey) -> Option<Arc<LlSnapshot>> {
        self.served.borrow().get(key).cloned()
    }

    /// The owner published `key`'s playlist (`None`: the relay ended). Records of files it no
    /// longer lists go.
    pub(crate) fn install(&self, key: &StreamKey, snap: Option<Arc<LlSnapshot>>) {
        match snap {
            Some(snap) => {
                let oldest = snap.segments.first().map(|s| s.seq).or(snap.open_seq);
                if let Some(oldest) = oldest {
                    self.files.borrow_mut().retain(|(k, f), _| {
                        k != key
                            || match f {
                                LlFile::Part(msn, _) | LlFile::Segment(msn) => *msn >= oldest,
                                LlFile::Init(_) | LlFile::Playlist => true,
                            }
                    });
                }
                self.unavailable.borrow_mut().remove(key);
                self.served.borrow_mut().insert(key.clone(), snap);
            }
            None => {
                self.served.borrow_mut().remove(key);
                self.files.borrow_mut().retain(|(k, _), f| {
                    if k == key {
                        f.fail(404, 0);
                    }
                    k != key
                });
            }
        }
        self.wake(key);
    }

    /// `key`'s first playlist cannot be loaded: requests get `status` for a while.
    pub(crate) fn mark_unavailable(&self, key: &StreamKey, status: u16, now_ms: u64) {
        let mut map = self.unavailable.borrow_mut();
        if map.len() >= MAX_FILES {
            map.retain(|_, (_, until)| now_ms < *until);
        }
        if map.len() < MAX_FILES {
            map.insert(key.clone(), (status, now_ms + NEGATIVE_MS));
        }
        drop(map);
        self.wake(key);
    }

    pub(crate) fn unavailable(&self, key: &StreamKey, now_ms: u64) -> Option<u16> {
        match self.unavailable.borrow().get(key) {
            Some((status, until)) if now_ms < *until => Some(*status),
            _ => None,
        }
    }

    fn wake(&self, key: &StreamKey) {
        if let Some(ws) = self.waiters.borrow_mut().remove(key) {
            for w in ws {
                w.wake();
            }
        }
    }

    /// Waits (bounded) until `key` has a relayed playlist here, or its origin failed.
    pub(crate) async fn wait_first(&self, key: &StreamKey, now_ms: impl Fn() -> u64) {
        let ready = || self.get(key).is_some() || self.unavailable(key, now_ms()).is_some();
        super::hls::wait_first(&self.waiters, key, ready).await;
    }

    /// A viewer's request for `key`: whether to tell the owner now (once a second).
    pub(crate) fn should_tell(&self, key: &StreamKey, now_ms: u64) -> bool {
        let mut d = self.demand.borrow_mut();
        d.handle_timeout(now_ms);
        d.handle_request(key, now_ms)
    }

    /// The record of `file` of `key`, or a new one the owner must be asked to fill.
    pub(crate) fn lookup(&self, key: &StreamKey, file: LlFile) -> Lookup {
        let mut files = self.files.borrow_mut();
        let id = (key.clone(), file);
        if let Some(f) = files.get(&id) {
            // A failure is answered for a while, then asked again.
            if !matches!(f.progress(), Progress::Failed { .. }) {
                return Lookup::Known(Rc::clone(f));
            }
        }
        if files.len() >= MAX_FILES {
            return Lookup::Full;
        }
        let f = Rc::new(Inflight::new(Progress::Requested));
        files.insert(id, Rc::clone(&f));
        Lookup::Ask(f)
    }

    /// A step of a file's download, as the owner reports it.
    pub(crate) fn file_event(
        &self,
        key: &StreamKey,
        file: LlFile,
        event: SegmentEvent,
        now_ms: u64,
    ) {
        let mut files = self.files.borrow_mut();
        let until = now_ms + NEGATIVE_MS;
        super::pulled::apply(
            &mut files,
            (key.clone(), file),
            event,
            until,
            MAX_FILES,
            true,
        );
    }

    pub(crate) fn poll_timeout(&self, key: &StreamKey) -> Option<u64> {
        self.relays
            .borrow()
            .get(key)
            .and_then(|(r, _)| r.poll_timeout())
    }
}

// ----- the owner side -------------------------------------------------------------------------

/// A viewer's LL-HLS request for `key` on this shard: tells the owner (at most once a second)
/// that the relay is wanted, starting it.
pub(super) fn demand(shard: &Rc<Shard>, key: &StreamKey, query: Option<&str>) {
    let now = shard.now_ms();
    if !shard.ll_relays.should_tell(key, now) {
        return;
    }
    let msg = MeshMsg::LlRelayDemand {
        key: key.clone(),
        query: query.map(Arc::from),
    };
    shard.tell_owner(key, msg);
}

/// On the owner: `key`'s relay is wanted (created if it is not running).
pub(super) fn owner_demand(shard: &Rc<Shard>, key: &StreamKey, query: Option<&str>) {
    let now = shard.now_ms();
    {
        let mut relays = shard.ll_relays.relays.borrow_mut();
        if !relays.contains_key(key) {
            let config = LlRelayConfig {
                idle_ms: shard.config.upstream_idle_ms,
                retry_ms: RETRY_MS,
                negative_ms: NEGATIVE_MS,
            };
            let query = query.filter(|q| !q.is_empty()).map(str::to_string);
            relays.insert(key.clone(), (LlRelay::new(config, now), query));
            shard.counters().ll_hls_relays_started.inc();
            info!(shard = %shard.id, %key, "LL-HLS relay started");
        }
    }
    call(shard, key, |r, fx| r.handle_demand(now, fx));
}

/// On the owner: a viewer on shard `from` wants `file`, which that shard has no record of.
pub(super) fn miss(shard: &Rc<Shard>, key: &StreamKey, file: LlFile, from: ShardId) {
    let now = shard.now_ms();
    if !shard.ll_relays.relays.borrow().contains_key(key) {
        let failed = SegmentEvent::Failed { status: 404 };
        tell_file(shard, key, file, failed, Some(from));
        return;
    }
    call(shard, key, |r, fx| r.handle_miss(file, now, fx));
}

/// The relay's deadline (retry, idle).
pub(super) fn timeout(shard: &Rc<Shard>, key: &StreamKey) {
    let now = shard.now_ms();
    call(shard, key, |r, fx| r.handle_timeout(now, fx));
}

/// Calls `f` on `key`'s relay, runs its effects and re-arms its timer.
fn call(shard: &Rc<Shard>, key: &StreamKey, f: impl FnOnce(&mut LlRelay, &mut Vec<LlRelayEffect>)) {
    let mut fx = Vec::new();
    {
        let mut relays = shard.ll_relays.relays.borrow_mut();
        let Some((relay, _)) = relays.get_mut(key) else {
            return;
        };
        f(relay, &mut fx);
    }
    for e in fx {
        run(shard, key, e);
    }
    shard.timers.arm(
        TimerKey::LlRelay(key.clone()),
        shard.ll_relays.poll_timeout(key),
    );
}

fn run(shard: &Rc<Shard>, key: &StreamKey, effect: LlRelayEffect) {
    match effect {
        LlRelayEffect::FetchPlaylist { block } => fetch_playlist(shard, key, block),
        LlRelayEffect::FetchFile(file) => fetch_file(shard, key, file),
        LlRelayEffect::FileFailed { file, status } => {
            tell_file(shard, key, file, SegmentEvent::Failed { status }, None)
        }
        LlRelayEffect::Publish(snap) => publish(shard, key, Some(snap)),
        LlRelayEffect::Unavailable(status) => {
            shard
                .ll_relays
                .mark_unavailable(key, status, shard.now_ms());
            shard.port.broadcast(|| MeshMsg::LlRelayUnavailable {
                key: key.clone(),
                status,
            });
        }
        LlRelayEffect::Stop => {
            shard.ll_relays.relays.borrow_mut().remove(key);
            shard.timers.arm(TimerKey::LlRelay(key.clone()), None);
            info!(shard = %shard.id, %key, "LL-HLS relay idle; stopped");
            publish(shard, key, None);
        }
    }
}

/// The relayed playlist (or its end), here and on every other shard; the LL-HLS requests it
/// satisfies are released.
fn publish(shard: &Rc<Shard>, key: &StreamKey, snap: Option<Arc<LlSnapshot>>) {
    shard.ll_relays.install(key, snap.clone());
    shard.port.broadcast(|| MeshMsg::LlRelayState {
        key: key.clone(),
        snapshot: snap.clone(),
    });
    shard.release_ll(key, snap.map(Some));
}

/// A step of a file's download, here and on every other shard (or only shard `to`).
fn tell_file(
    shard: &Rc<Shard>,
    key: &StreamKey,
    file: LlFile,
    event: SegmentEvent,
    to: Option<ShardId>,
) {
    let now = shard.now_ms();
    let msg = |event: SegmentEvent| MeshMsg::LlRelayFile {
        key: key.clone(),
        file,
        event,
    };
    match to {
        Some(to) if to == shard.id => shard.ll_relays.file_event(key, file, event, now),
        Some(to) => shard.port.send_control(to, msg(event)),
        None => {
            shard.port.broadcast(|| msg(event.clone()));
            shard.ll_relays.file_event(key, file, event, now);
        }
    }
}

/// Where `name` (a file beside the playlist, or the playlist) is at the origin, with the
/// relay's query and `extra`.
fn target(
    shard: &Shard,
    key: &StreamKey,
    name: &str,
    extra: Option<String>,
) -> Option<FetchTarget> {
    let origin = shard.config.hls_origins.first()?;
    let query = shard
        .ll_relays
        .relays
        .borrow()
        .get(key)
        .and_then(|(_, q)| q.clone());
    let query: Vec<String> = query.into_iter().chain(extra).collect();
    let mut path = format!("{}/{}/{name}", origin.path, key.stream());
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    Some(FetchTarget {
        host: origin.host.clone(),
        port: origin.port,
        tls: origin.tls,
        path,
    })
}

fn fetch_playlist(shard: &Rc<Shard>, key: &StreamKey, block: Option<(u64, u32)>) {
    let extra = block.map(|(msn, part)| format!("_HLS_msn={msn}&_HLS_part={part}"));
    let Some(target) = target(shard, key, "llhls.m3u8", extra) else {
        return;
    };
    let blocking_s = block.and(shard.ll_relays.get(key).map(|s| s.target_duration_s));
    let deadlines = shard.pulls.deadlines(blocking_s);
    let pool = shard.pulls.origin_pool();
    let shard = Rc::clone(shard);
    let key = key.clone();
    shard.counters().ll_hls_relay_playlists.inc();
    monoio::spawn(async move {
        let (_, text) = super::hlspull::fetch_text(&pool, &target, deadlines).await;
        if let Err(e) = &text {
            debug!(shard = %shard.id, %key, %target, "LL-HLS playlist failed: {e:?}");
        }
        let now = shard.now_ms();
        call(&shard, &key, |r, fx| {
            r.handle_playlist(text.as_deref().map_err(|e| e.status()), now, fx)
        });
    });
}

fn fetch_file(shard: &Rc<Shard>, key: &StreamKey, file: LlFile) {
    let name = match file {
        LlFile::Init(id) => format!("init-{id}.mp4"),
        LlFile::Segment(seq) => format!("seg-{seq}.m4s"),
        LlFile::Part(seq, i) => format!("part-{seq}.{i}.m4s"),
        LlFile::Playlist => return,
    };
    let Some(target) = target(shard, key, &name, None) else {
        return;
    };
    let deadlines = shard.pulls.deadlines(None);
    let pool = shard.pulls.origin_pool();
    let shard = Rc::clone(shard);
    let key = key.clone();
    shard.counters().ll_hls_relay_files.inc();
    monoio::spawn(async move {
        // Parts are small (a few KB each, five a second): on the heap, as the origin's own
        // parts are, not a 188 KiB arena chunk each.
        let store = |b: &[u8], out: &mut Vec<Bytes>| {
            out.push(Bytes::copy_from_slice(b));
            Ok(())
        };
        let step = |s: BodyStep| {
            let event = match s {
                BodyStep::Start(content_length) => SegmentEvent::Start { content_length },
                BodyStep::Piece(piece) => SegmentEvent::Data(piece),
            };
            tell_file(&shard, &key, file, event, None);
        };
        let result = stream_body(&pool, &target, deadlines, MAX_FILE_BYTES, store, step).await;
        let now = shard.now_ms();
        match result {
            Ok(_) => {
                tell_file(&shard, &key, file, SegmentEvent::Done, None);
                call(&shard, &key, |r, _| r.handle_file_done(file, Ok(()), now));
            }
            Err(e) => {
                debug!(shard = %shard.id, %key, %target, "LL-HLS file failed: {e:?}");
                let status = e.status();
                tell_file(&shard, &key, file, SegmentEvent::Failed { status }, None);
                call(&shard, &key, |r, _| {
                    r.handle_file_done(file, Err(status), now)
                });
            }
        }
    });
}
