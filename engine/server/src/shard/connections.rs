//! What a shard gives its connections besides streams: TLS configurations with this
//! shard's own session caches, the machine's connection counts (admission), the zero-copy
//! sender of segment bodies, and the on_play allowances of its HLS viewers.
//!
//! Must not: hold a connection (handlers own theirs), or share a session cache between
//! shards.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use edge_core::access::Grants;
use edge_core::admission::Admission;
use edge_core::ShardId;

use crate::config::Config;
use crate::machine::stats::Stats;
use crate::net::arena::Arena;
use crate::net::listeners::Service;
use crate::net::zerocopy::{probe, SendPath, Sender};

/// HLS hook allowances remembered per shard, at most.
const MAX_GRANTS: usize = 65_536;

pub(crate) struct Connections {
    tls_http: Option<Arc<rustls::ServerConfig>>,
    tls_rtmp: Option<Arc<rustls::ServerConfig>>,
    /// The machine's connection counts, when --max-connections(-per-ip) is set.
    pub(crate) admission: Option<Arc<Mutex<Admission>>>,
    /// Sends segment bodies by reference, when this shard's send path is `splice`.
    pub(crate) zero_copy: Option<Sender>,
    /// Recent on_play allowances of HLS viewers.
    pub(crate) grants: RefCell<Grants>,
}

impl Connections {
    pub(crate) fn new(
        id: ShardId,
        config: &Config,
        stats: &Arc<Stats>,
        arena: &Arena,
        admission: Option<Arc<Mutex<Admission>>>,
    ) -> Self {
        Connections {
            tls_http: config
                .tls
                .as_ref()
                .map(|t| t.server_config(&[b"http/1.1"], false)),
            tls_rtmp: config.tls.as_ref().map(|t| t.server_config(&[], false)),
            admission,
            zero_copy: zero_copy_sender(id, config, stats, arena),
            grants: RefCell::new(Grants::new(config.access.hook_grant_ms, MAX_GRANTS)),
        }
    }

    /// The TLS configuration of a TLS service.
    pub(crate) fn tls_config(&self, service: Service) -> Option<Arc<rustls::ServerConfig>> {
        match service {
            Service::Https => self.tls_http.clone(),
            Service::Rtmps => self.tls_rtmp.clone(),
            Service::Rtmp | Service::Http | Service::Relay => None,
        }
    }
}

/// The shard's zero-copy sender, when `--zero-copy on` and the probe passes; the path it
/// runs goes into the stats either way (and into the log when it falls back).
fn zero_copy_sender(
    id: ShardId,
    config: &Config,
    stats: &Arc<Stats>,
    arena: &Arena,
) -> Option<Sender> {
    let sender = if !config.zero_copy {
        None
    } else {
        match probe(arena) {
            Ok(()) => Some(Sender::new(Arc::clone(&stats.arenas))),
            Err(reason) => {
                tracing::warn!(
                    shard = id.0,
                    "zero-copy sends off, segments are copied: {reason}"
                );
                None
            }
        }
    };
    let path = if sender.is_some() {
        SendPath::Splice
    } else {
        SendPath::Writev
    };
    stats.shards[id.0]
        .send_path
        .store(path.code(), std::sync::atomic::Ordering::Relaxed);
    sender
}
