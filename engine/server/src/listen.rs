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
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, error, warn};

use crate::conn::Conn;
use crate::tls;

use crate::shard::ShardHandle;
use crate::stats::Counter;

/// Holds an endpoint for this process while it runs: an abstract Unix socket named after
/// the address, which the kernel frees when the process exits, however it exits.
#[derive(Debug)]
pub struct PortLock(#[allow(dead_code)] std::os::unix::net::UnixListener);

/// Why an endpoint could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "{service} {addr}: address already in use by another process; \
         `ss -ltnp 'sport = :{port}'` shows which (to replace a running edge-engine without \
         a gap, start the new one with --upgrade-from)"
    )]
    InUse {
        service: &'static str,
        addr: SocketAddr,
        port: u16,
    },
    #[error("{service} {addr}: {source}")]
    Bind {
        service: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds shard 0's listener of `service` at `addr`, making sure no other process listens
/// there: SO_REUSEPORT, which lets this engine's shards share the port, would otherwise let a
/// second engine (or anything else that sets it) share it too, and the kernel would deal the
/// connections out between the two.
///
/// 1. Take the address's lock (an abstract Unix socket `edge-engine/tcp/ADDR`): two engines
///    starting at the same moment cannot both pass step 2.
/// 2. Bind a probe socket without SO_REUSEPORT (with SO_REUSEADDR, so a predecessor's
///    TIME_WAIT connections do not count): it fails while anyone listens on the address,
///    whatever options they set.
/// 3. Close the probe and bind the shard's SO_REUSEPORT listener; the other shards bind the
///    same address beside it.
///
/// Port 0 needs none of this: the kernel picks a port nobody holds. A successor
/// (`--upgrade-from`) does not claim the endpoints it inherits: sharing them is the handover.
pub fn claim_endpoint(
    service: Service,
    addr: SocketAddr,
) -> Result<(std::net::TcpListener, Option<PortLock>), ClaimError> {
    let (name, port) = (service.name(), addr.port());
    let in_use = || ClaimError::InUse {
        service: name,
        addr,
        port,
    };
    let bind_error = |source: std::io::Error| match source.raw_os_error() {
        Some(libc::EADDRINUSE) => in_use(),
        _ => ClaimError::Bind {
            service: name,
            addr,
            source,
        },
    };
    let lock = if port == 0 {
        None
    } else {
        use std::os::linux::net::SocketAddrExt as _;
        let lock_name = format!("edge-engine/tcp/{addr}");
        let lock_addr = std::os::unix::net::SocketAddr::from_abstract_name(lock_name.as_bytes())
            .map_err(bind_error)?;
        let lock = std::os::unix::net::UnixListener::bind_addr(&lock_addr).map_err(bind_error)?;
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(bind_error)?;
        probe.set_reuse_address(true).map_err(bind_error)?;
        probe.bind(&addr.into()).map_err(bind_error)?;
        drop(probe);
        Some(PortLock(lock))
    };
    let listener = bind_reuseport(addr).map_err(bind_error)?;
    Ok((listener, lock))
}

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT and starts listening.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Rtmp,
    Http,
    Rtmps,
    Https,
    /// RTMP on a private loopback port for an upgrade's successor to pull this engine's
    /// streams from ([`crate::predecessor`]). It is never handed over and stays open while
    /// the engine drains.
    Relay,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Rtmp => "rtmp",
            Service::Http => "http",
            Service::Rtmps => "rtmps",
            Service::Https => "https",
            Service::Relay => "relay",
        }
    }

    pub fn parse(name: &str) -> Option<Service> {
        [Service::Rtmp, Service::Http, Service::Rtmps, Service::Https]
            .into_iter()
            .find(|s| s.name() == name)
    }

    fn is_tls(self) -> bool {
        matches!(self, Service::Rtmps | Service::Https)
    }

    fn is_rtmp(self) -> bool {
        matches!(self, Service::Rtmp | Service::Rtmps | Service::Relay)
    }
}

/// A connection counted against --max-connections(-per-ip): released when the connection's
/// task ends, however it ends.
struct Permit {
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

/// Counts `peer` in, or says which limit refuses it.
fn admit(shard: &ShardHandle, peer: SocketAddr) -> Result<Option<Permit>, Refusal> {
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
    let fd = crate::conn::raw_fd(&stream);
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
        crate::rtmp::serve(shard, conn, Some(peer), fd).await
    } else {
        crate::http::serve(shard, conn, Some(peer), fd).await
    }
}

/// Accepts until the shard stops, a drain closes the listeners, or (with `cancel`, which
/// the upgrade watcher fires) a successor takes them over. EMFILE/ENFILE and similar back
/// off (never spin) and are logged at most once per second with how many happened.
pub async fn accept_loop(
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
                        let stats = shard.stats();
                        match refusal {
                            Refusal::Total => stats.connections_refused_max.inc(),
                            Refusal::PerIp => stats.connections_refused_per_ip.inc(),
                        }
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
