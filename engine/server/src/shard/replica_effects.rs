//! Running what a [`Replica`](edge_core::replica::Replica) decided: subscriptions, joins,
//! fan-out of frames to the viewers' outlets, resyncs, ends. No decision is made here; a
//! viewer's queue applies its own overflow policy.

use std::rc::Rc;

use edge_core::media::Frame;
use edge_core::queue::PushOutcome;
use edge_core::replica::{FinishReason, ReplicaEffect};
use edge_core::StreamKey;
use tracing::{info, warn};

use super::Shard;
use crate::mesh::MeshMsg;
use crate::outlet::{Close, Outlet};
use crate::stats::Counter;

impl Shard {
    pub(super) fn run_replica_effects(
        self: &Rc<Self>,
        key: &StreamKey,
        effects: Vec<ReplicaEffect<Rc<Outlet>>>,
    ) {
        let now = self.now_ms();
        for e in effects {
            match e {
                ReplicaEffect::Subscribe { query } => {
                    let owner = self.owner_of(key);
                    if owner == self.id {
                        let me = self.id;
                        self.with_owner(key, true, |o, fx| o.handle_subscribe(me, query, now, fx));
                    } else {
                        self.send_control(
                            owner,
                            MeshMsg::Subscribe {
                                key: key.clone(),
                                from: self.id,
                                query,
                            },
                        );
                    }
                }
                ReplicaEffect::Unsubscribe => {
                    let owner = self.owner_of(key);
                    if owner == self.id {
                        let me = self.id;
                        self.with_owner(key, false, |o, fx| o.handle_unsubscribe(me, now, fx));
                    } else {
                        self.send_control(
                            owner,
                            MeshMsg::Unsubscribe {
                                key: key.clone(),
                                from: self.id,
                            },
                        );
                    }
                }
                ReplicaEffect::Join {
                    viewer,
                    needs_keyframe,
                } => {
                    viewer.start_join();
                    if let Some(r) = self.replicas.borrow().get(key) {
                        for f in r.join_frames() {
                            self.push(&viewer, f, now);
                        }
                    }
                    if needs_keyframe {
                        viewer.require_sync_point();
                    }
                }
                ReplicaEffect::Fanout(f) => {
                    if let Some(r) = self.replicas.borrow().get(key) {
                        for v in r.joined() {
                            self.push(v, &f, now);
                        }
                    }
                }
                ReplicaEffect::Resync {
                    viewer,
                    frames,
                    gop_empty,
                } => {
                    if gop_empty {
                        viewer.require_sync_point();
                    }
                    for f in frames.iter().filter(|f| !viewer.already_has(f)) {
                        self.push(&viewer, f, now);
                    }
                }
                ReplicaEffect::RequireKeyframe { viewer } => viewer.require_sync_point(),
                ReplicaEffect::Finish { viewer, reason } => {
                    if reason == FinishReason::NotFound {
                        info!(shard = %self.id, %key, viewer = viewer.id, "no publisher within play-wait; not found");
                    }
                    viewer.finish(reason);
                    self.viewer_gone(key, &viewer);
                }
                ReplicaEffect::Released => {
                    if self.replicas.borrow_mut().remove(key).is_some() {
                        self.stats().replicas.dec();
                    }
                }
            }
        }
    }

    pub(super) fn push(&self, v: &Outlet, f: &Frame, now: u64) {
        match v.push_frame(f, now) {
            PushOutcome::Queued => {}
            PushOutcome::Dropped => self.stats().frames_dropped.inc(),
            PushOutcome::Disconnect => {
                warn!(
                    shard = %self.id,
                    viewer = v.id,
                    "closing slow viewer: over its queue limit for {} ms",
                    self.config.queue.slow_viewer_ms
                );
                self.stats().slow_viewer_disconnects.inc();
                v.close(Close::Abort);
            }
        }
    }
}
