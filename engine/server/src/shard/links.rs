//! A shard's upstream connections to RTMP origins (pulls, probes, forwards): what each one
//! is for, how it is set up (the origin's own connect timeout, signing key and egress path,
//! a fresh token per connection), and stopping them.
//!
//! Must not: decide when to connect or to which origin (the owner does), or run the
//! connection (`upstream` does, in a task of its own).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use edge_core::owner::LinkRole;
use edge_core::upstream::OriginUrl;
use edge_core::{LinkId, ShardId, StreamKey};

use crate::config::Config;
use crate::machine::stats::{Stats, StreamView};
use crate::upstream::rtmp::{self as upstream, Cancel, ForwardQueue, LinkParams, LinkSink};

/// A running upstream connection task.
struct LinkTask {
    key: StreamKey,
    cancel: Rc<Cancel>,
}

#[derive(Default)]
pub(crate) struct Links {
    tasks: RefCell<HashMap<LinkId, LinkTask>>,
}

impl Links {
    /// Starts the connection task `params` describes; a forward's queue (the frames
    /// waiting for it, at most `queue_bytes`) is returned for its owner.
    pub(crate) fn start(
        &self,
        role: LinkRole,
        params: LinkParams,
        sink: Rc<dyn LinkSink>,
        queue_bytes: usize,
    ) -> Option<Rc<ForwardQueue>> {
        let cancel = Cancel::new();
        let (link, key) = (params.link, params.key.clone());
        let queue = match role {
            LinkRole::Pull | LinkRole::Probe => {
                monoio::spawn(upstream::run_pull(sink, params, Rc::clone(&cancel)));
                None
            }
            LinkRole::Forward => {
                let queue = ForwardQueue::new(queue_bytes);
                let task =
                    upstream::run_forward(sink, params, Rc::clone(&queue), Rc::clone(&cancel));
                monoio::spawn(task);
                Some(queue)
            }
        };
        self.tasks
            .borrow_mut()
            .insert(link, LinkTask { key, cancel });
        queue
    }

    /// Stops one connection.
    pub(crate) fn stop(&self, link: LinkId) {
        if let Some(t) = self.tasks.borrow_mut().remove(&link) {
            t.cancel.cancel();
        }
    }

    /// Stops every connection of `key`.
    pub(crate) fn stop_stream(&self, key: &StreamKey) {
        self.tasks.borrow_mut().retain(|_, t| {
            let mine = t.key == *key;
            if mine {
                t.cancel.cancel();
            }
            !mine
        });
    }
}

/// Everything one connection to `url` needs. Signed here, once per connection: a reconnect
/// or a failover carries a fresh token, never a viewer's that may have expired since.
#[allow(clippy::too_many_arguments)]
pub(crate) fn link_params(
    config: &Config,
    stats: &Arc<Stats>,
    shard: ShardId,
    key: &StreamKey,
    link: LinkId,
    url: OriginUrl,
    stream_name: String,
    view: Arc<StreamView>,
) -> LinkParams {
    let path = config.rtmp_origin_path(&url);
    let sign = path
        .and_then(|p| p.sign.as_ref())
        .or(config.access.upstream_sign.as_ref());
    let stream_name = match sign {
        Some(sign) => {
            let viewer_query = stream_name.split_once('?').map(|(_, q)| q);
            sign.stream_name(&url.app, key, viewer_query)
        }
        None => stream_name,
    };
    let connect_ms = path
        .and_then(|p| p.connect_timeout_ms)
        .unwrap_or(config.upstream_timeout_ms);
    LinkParams {
        key: key.clone(),
        link,
        stream_name,
        timeout: Duration::from_millis(config.upstream_timeout_ms),
        connect_timeout: Duration::from_millis(connect_ms),
        egress: path.map(|p| p.egress.clone()).unwrap_or_default(),
        url,
        tls: config.upstream_tls.clone(),
        view,
        stats: Arc::clone(stats),
        shard,
    }
}
