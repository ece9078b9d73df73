//! Listening sockets: what each serves ([`Service`]), SO_REUSEPORT listeners that every
//! shard binds at the same address, and claiming an address so that no other process shares
//! it ([`claim_endpoint`]).
//!
//! Must not: accept (the serving layer's accept loops do).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Holds an endpoint for this process while it runs: an abstract Unix socket named after
/// the address, which the kernel frees when the process exits, however it exits.
#[derive(Debug)]
pub(crate) struct PortLock(#[allow(dead_code)] std::os::unix::net::UnixListener);

/// Why an endpoint could not be claimed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
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
pub(crate) fn claim_endpoint(
    service: Service,
    addr: SocketAddr,
) -> Result<(std::net::TcpListener, Option<PortLock>), ClaimError> {
    let lock = lock_and_probe(service.name(), addr, false)?;
    let listener = bind_reuseport(addr).map_err(claim_error(service.name(), addr))?;
    Ok((listener, lock))
}

/// Binds shard 0's HTTP/3 socket at `addr`, making sure no other process has it, as
/// [`claim_endpoint`] does for TCP. A successor (`--upgrade-from`) shares the port with its
/// predecessor instead.
pub(crate) fn claim_udp(
    addr: SocketAddr,
    upgrading: bool,
) -> Result<(std::net::UdpSocket, Option<PortLock>), ClaimError> {
    let lock = if upgrading {
        None
    } else {
        lock_and_probe("http3", addr, true)?
    };
    let socket = crate::net::quic::bind_udp(addr).map_err(claim_error("http3", addr))?;
    Ok((socket, lock))
}

fn claim_error(service: &'static str, addr: SocketAddr) -> impl Fn(std::io::Error) -> ClaimError {
    move |source| match source.raw_os_error() {
        Some(libc::EADDRINUSE) => ClaimError::InUse {
            service,
            addr,
            port: addr.port(),
        },
        _ => ClaimError::Bind {
            service,
            addr,
            source,
        },
    }
}

/// Steps 1 and 2 of a claim: the address's lock (an abstract Unix socket
/// `edge-engine/tcp/ADDR` or `…/udp/ADDR`), then a probe bound without SO_REUSEPORT. A TCP
/// probe sets SO_REUSEADDR (a predecessor's TIME_WAIT connections do not count); a UDP probe
/// must not, or it would share the port with any socket that set it. `None` for port 0.
fn lock_and_probe(
    service: &'static str,
    addr: SocketAddr,
    udp: bool,
) -> Result<Option<PortLock>, ClaimError> {
    if addr.port() == 0 {
        return Ok(None);
    }
    use std::os::linux::net::SocketAddrExt as _;
    let bind_error = claim_error(service, addr);
    let kind = if udp { "udp" } else { "tcp" };
    let lock_name = format!("edge-engine/{kind}/{addr}");
    let lock_addr = std::os::unix::net::SocketAddr::from_abstract_name(lock_name.as_bytes())
        .map_err(&bind_error)?;
    let lock = std::os::unix::net::UnixListener::bind_addr(&lock_addr).map_err(&bind_error)?;
    let probe = if udp {
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
    } else {
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
    }
    .map_err(&bind_error)?;
    if !udp {
        probe.set_reuse_address(true).map_err(&bind_error)?;
    }
    probe.bind(&addr.into()).map_err(&bind_error)?;
    Ok(Some(PortLock(lock)))
}

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT and starts listening.
pub(crate) fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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
pub(crate) enum Service {
    Rtmp,
    Http,
    Rtmps,
    Https,
    /// RTMP on a private loopback port for an upgrade's successor to pull this engine's
    /// streams from ([`crate::upstream::predecessor`]). It is never handed over and stays open while
    /// the engine drains.
    Relay,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Rtmp => "rtmp",
            Service::Http => "http",
            Service::Rtmps => "rtmps",
            Service::Https => "https",
            Service::Relay => "relay",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Service> {
        [Service::Rtmp, Service::Http, Service::Rtmps, Service::Https]
            .into_iter()
            .find(|s| s.name() == name)
    }

    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Service::Rtmps | Service::Https)
    }

    pub(crate) fn is_rtmp(self) -> bool {
        matches!(self, Service::Rtmp | Service::Rtmps | Service::Relay)
    }
}
