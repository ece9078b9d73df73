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

/// Binds shard 0's HTTP/3 socket at `addr`, making sure no other process has it, as
/// [`claim_endpoint`] does for TCP (a lock, then a probe bound without SO_REUSEPORT). A
/// successor (`--upgrade-from`) shares the port with its predecessor instead.
pub(crate) fn claim_udp(
    addr: SocketAddr,
    upgrading: bool,
) -> Result<(std::net::UdpSocket, Option<PortLock>), ClaimError> {
    let port = addr.port();
    let bind_error = |source: std::io::Error| match source.raw_os_error() {
        Some(libc::EADDRINUSE) => ClaimError::InUse {
            service: "http3",
            addr,
            port,
        },
        _ => ClaimError::Bind {
            service: "http3",
            addr,
            source,
        },
    };
    let lock = if port == 0 || upgrading {
        None
    } else {
        use std::os::linux::net::SocketAddrExt as _;
        let lock_name = format!("edge-engine/udp/{addr}");
        let lock_addr = std::os::unix::net::SocketAddr::from_abstract_name(lock_name.as_bytes())
            .map_err(bind_error)?;
        let lock = std::os::unix::net::UnixListener::bind_addr(&lock_addr).map_err(bind_error)?;
        let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(bind_error)?;
        probe.bind(&addr.into()).map_err(bind_error)?;
        drop(probe);
        Some(PortLock(lock))
    };
    let socket = crate::net::quic::bind_udp(addr).map_err(bind_error)?;
    Ok((socket, lock))
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
