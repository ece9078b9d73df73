//! One shard's HLS state: the latest snapshot of every stream on the machine (requests are
//! answered from it on the shard that accepted them), and, for the streams this shard owns,
//! which ended ones may be evicted and when each is forgotten.
//!
//! An ended playlist stays for `linger_ms` (players still fetch its last segments); then,
//! unless the stream came back, [`HlsCatalog::handle_timeout`] says to forget it everywhere.
//! When segment memory runs short, the oldest ended stream goes first
//! ([`HlsCatalog::evict_oldest_ended`]).
//!
//! Must not: render, copy segments (snapshots are shared `Arc`s), or read a clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::HlsSnapshot;
use crate::media::StreamKey;

#[derive(Debug)]
pub struct HlsCatalog {
    snapshots: HashMap<StreamKey, Arc<HlsSnapshot>>,
    /// Owned streams whose HLS ended, oldest first, with when to forget them.
    ended: VecDeque<(StreamKey, u64)>,
    linger_ms: u64,
}

impl HlsCatalog {
    pub fn new(linger_ms: u64) -> Self {
        Self {
            snapshots: HashMap::new(),
            ended: VecDeque::new(),
            linger_ms,
        }
    }

    /// The snapshot a request for `key` is answered from.
    pub fn get(&self, key: &StreamKey) -> Option<&Arc<HlsSnapshot>> {
        self.snapshots.get(key)
    }

    /// Another shard's announcement.
    pub fn install(&mut self, key: StreamKey, snapshot: Arc<HlsSnapshot>) {
        self.snapshots.insert(key, snapshot);
    }

    /// A snapshot of a stream this shard owns; an ended one starts its linger.
    pub fn install_own(&mut self, key: StreamKey, snapshot: Arc<HlsSnapshot>, now_ms: u64) {
        self.ended.retain(|(k, _)| *k != key);
        if snapshot.ended {
            self.ended
                .push_back((key.clone(), now_ms.saturating_add(self.linger_ms)));
        }
        self.snapshots.insert(key, snapshot);
    }

    /// Forgets `key` here.
    pub fn remove(&mut self, key: &StreamKey) {
        self.snapshots.remove(key);
        self.ended.retain(|(k, _)| k != key);
    }

    /// When the oldest ended stream's linger is over.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.ended.iter().map(|(_, t)| *t).min()
    }

    /// Ended streams whose linger is over: forgotten here; the caller tells the others.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<StreamKey> {
        let mut gone = Vec::new();
        self.ended.retain(|(k, t)| {
            let over = now_ms >= *t;
            if over {
                gone.push(k.clone());
            }
            !over
        });
        for k in &gone {
            self.snapshots.remove(k);
        }
        gone
    }

    /// Forgets the oldest ended stream here to free its segments (the caller tells the
    /// others); `None` when no owned stream has ended.
    pub fn evict_oldest_ended(&mut self) -> Option<StreamKey> {
        let (key, _) = self.ended.pop_front()?;
        self.snapshots.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(ended: bool) -> Arc<HlsSnapshot> {
        Arc::new(HlsSnapshot {
            playlist: bytes::Bytes::from_static(b"#EXTM3U\n"),
            uri_ends: Vec::new(),
            segments: Vec::new(),
            target_duration_s: 2,
            ended,
            ll: None,
            ts_carries: true,
        })
    }

    #[test]
    fn ended_streams_linger_then_go_unless_they_come_back() {
        let (a, b) = (
            StreamKey::new("live", "a").unwrap(),
            StreamKey::new("live", "b").unwrap(),
        );
        let mut c = HlsCatalog::new(30_000);
        c.install_own(a.clone(), snap(true), 100);
        c.install_own(b.clone(), snap(true), 200);
        assert_eq!(c.poll_timeout(), Some(30_100));
        // b comes back: no longer ended, no linger.
        c.install_own(b.clone(), snap(false), 300);
        assert_eq!(c.handle_timeout(30_099), Vec::<StreamKey>::new());
        assert_eq!(c.handle_timeout(30_100), vec![a.clone()]);
        assert!(c.get(&a).is_none() && c.get(&b).is_some());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn eviction_takes_the_oldest_ended_stream() {
        let keys: Vec<StreamKey> = ["x", "y", "z"]
            .iter()
            .map(|n| StreamKey::new("live", n).unwrap())
            .collect();
        let mut c = HlsCatalog::new(30_000);
        c.install_own(keys[0].clone(), snap(false), 0);
        c.install_own(keys[1].clone(), snap(true), 1);
        c.install_own(keys[2].clone(), snap(true), 2);
        assert_eq!(c.evict_oldest_ended(), Some(keys[1].clone()));
        assert_eq!(c.evict_oldest_ended(), Some(keys[2].clone()));
        assert_eq!(c.evict_oldest_ended(), None, "live streams are not evicted");
        assert!(c.get(&keys[0]).is_some());
    }
}
