//! Listening sockets and accept loops. Every shard binds the same address with SO_REUSEPORT
//! and accepts on its own; the kernel spreads connections by 4-tuple hash. Nothing is handed
//! between threads after accept. TLS listeners shake hands in the connection's own task,
//! bounded by `--tls-handshake-timeout-ms`, before the RTMP or HTTP driver sees it.
//! `--max-connections` and `--max-connections-per-ip` are applied here, at accept, against
//! one machine-wide table (edge-core's `Admission`, behind a mutex taken at accept and close
//! only); a refused connection is closed unanswered.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_core::admission::{Admission, Refusal};

use monoio::io::{CancelHandle, Splitable};
use monoio::net::{TcpListener, TcpStream};
use tracing::{debug, error, warn};

use crate::net::conn::Conn;
use crate::net::listeners::Service;
use crate::net::tls;

use crate::machine::stats::Counter;
use crate::shard::ShardHandle;

/// A connection counted against --max-connections(-per-ip): released when the connection's
/// task ends, however it ends.
pub(crate) struct Permit {
    table: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A poisoned table (a panic while it was held, which nothing in it can do) still
        // counts: the counts are plain integers.
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.release(self.ip);
    }
}

/// Counts a connection in `edge_connections_open` until its task ends.
struct Open(ShardHandle);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.stats().connections_open.dec();
    }
}

/// Counts a connection refused at `refusal`'s limit (TCP or QUIC).
pub(crate) fn count_refusal(shard: &ShardHandle, refusal: Refusal) {
    let stats = shard.stats();
    match refusal {
        Refusal::Total => stats.connections_refused_max.inc(),
        Refusal::PerIp => stats.connections_refused_per_ip.inc(),
    }
}

/// Counts `peer` in, or says which limit refuses it.
pub(crate) fn admit(shard: &ShardHandle, peer: SocketAddr) -> Result<Option<Permit>, Refusal> {
    let Some(table) = &shard.admission() else {
        return Ok(None);
    };
    let ip = peer.ip();
    table.lock().unwrap_or_else(|p| p.into_inner()).admit(ip)?;
    Ok(Some(Permit {
        table: Arc::clone(table),
        ip,
    }))
}

/// One accepted connection: the TLS handshake for TLS services, then its driver.
async fn serve(
    shard: ShardHandle,
    stream: TcpStream,
    peer: SocketAddr,
    service: Service,
    _permit: Option<Permit>,
) {
    shard.stats().connections_open.inc();
    let _open = Open(shard.clone());
    let _ = stream.set_nodelay(true);
    let fd = crate::net::conn::raw_fd(&stream);
    let conn = if service.is_tls() {
        let Some(config) = shard.tls_config(service) else {
            return;
        };
        let timeout = Duration::from_millis(shard.config().tls_handshake_timeout_ms);
        let stats = shard.stats();
        match monoio::time::timeout(timeout, tls::accept(stream.into_split(), config)).await {
            Ok(Ok(s)) => {
                stats.tls_handshakes.inc();
                Conn::Tls(Box::new(s))
            }
            Ok(Err(e)) => {
                stats.tls_handshake_failures.inc();
                debug!(shard = %shard.id(), %peer, service = service.name(), "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                stats.tls_handshake_failures.inc();
                stats.tls_handshake_timeouts.inc();
                debug!(shard = %shard.id(), %peer, service = service.name(), "TLS handshake timed out");
                // Dropping the halves closes the socket.
                return;
            }
        }
    } else {
        Conn::Tcp(stream)
    };
    if service.is_rtmp() {
        crate::serve::rtmp::serve(shard, conn, Some(peer), fd).await
    } else {
        crate::serve::http::serve(shard, conn, Some(peer), fd).await
    }
}

/// Accepts until the shard stops, a drain closes the listeners, or (with `cancel`, which
/// the upgrade watcher fires) a successor takes them over. EMFILE/ENFILE and similar back
/// off (never spin) and are logged at most once per second with how many happened.
pub(crate) async fn accept_loop(
    shard: ShardHandle,
    listener: TcpListener,
    service: Service,
    cancel: Option<CancelHandle>,
) {
    let mut last_log_ms: Option<u64> = None;
    let mut suppressed = 0u64;
    let mut last_refusal_log_ms: Option<u64> = None;
    let mut refusals_unlogged = 0u64;
    loop {
        // A cancelled accept that had already completed still returns its connection, which
        // is served: cancelling loses none.
        let accepted = match &cancel {
            Some(c) => listener.cancelable_accept(c.clone()).await,
            None => listener.accept().await,
        };
        match accepted {
            Ok((stream, peer)) => {
                let permit = match admit(&shard, peer) {
                    Ok(p) => p,
                    Err(refusal) => {
                        count_refusal(&shard, refusal);
                        // Dropped unanswered: the cheapest answer to a flood.
                        drop(stream);
                        let now = shard.now_ms();
                        if last_refusal_log_ms.is_none_or(|t| now.saturating_sub(t) >= 1000) {
                            warn!(
                                shard = %shard.id(),
                                %peer,
                                service = service.name(),
                                limit = refusal.as_str(),
                                "connection refused ({refusals_unlogged} more since last report)"
                            );
                            last_refusal_log_ms = Some(now);
                            refusals_unlogged = 0;
                        } else {
                            refusals_unlogged += 1;
                        }
                        continue;
                    }
                };
                if service.is_rtmp() {
                    shard.stats().rtmp_connections_accepted.inc();
                } else {
                    shard.stats().http_connections_accepted.inc();
                }
                monoio::spawn(serve(shard.clone(), stream, peer, service, permit));
            }
            // The relay outlives a drain and a handover: its successor pulls through it.
            Err(_) if service != Service::Relay && shard.machine().control.accepting_ended() => {
                // A drain shut the listener down, or a successor holds it; dropping it here
                // closes this process's descriptor.
                debug!(shard = %shard.id(), service = service.name(), "accepting ended (drain or upgrade)");
                return;
            }
            Err(_) if shard.machine().control.closing() => {
                // The drain is shutting the listeners down and has not set `closed` yet:
                // look again in a moment, when it has (the descriptor stays open till then).
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => {
                shard.stats().accept_errors.inc();
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                let now = shard.now_ms();
                if last_log_ms.is_none_or(|t| now.saturating_sub(t) >= 1000) {
                    if resource {
                        warn!(
                            shard = %shard.id(),
                            service = service.name(),
                            "accept failed: {e} ({suppressed} more since last report); backing off"
                        );
                    } else {
                        error!(
                            shard = %shard.id(),
                            service = service.name(),
                            "accept failed: {e} ({suppressed} more since last report)"
                        );
                    }
                    last_log_ms = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                let pause = if resource { 50 } else { 5 };
                monoio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}
