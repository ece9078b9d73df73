//! Outgoing TCP connections (origins, hooks): names resolved off the shard, every address
//! the name has tried in the resolver's order, each attempt bounded in time, and leaving by
//! the egress path an origin was given (source address, interface, firewall mark).
//!
//! Must not: call `getaddrinfo` on a shard, or wait on anything without a deadline.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The way out to one origin (`[[origins]]` `bind`, `interface`, `mark`); the default is the
/// routing table's choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Egress {
    /// The local address to connect from.
    pub bind: Option<IpAddr>,
    /// `SO_BINDTODEVICE`: only through this interface.
    pub interface: Option<String>,
    /// `SO_MARK`, for `ip rule fwmark` routing.
    pub mark: Option<u32>,
}

impl Egress {
    /// Whether the routing table chooses alone.
    pub(crate) fn is_default(&self) -> bool {
        self == &Egress::default()
    }
}

/// Connects to `host:port` within `timeout` for the name and for each address.
pub(crate) async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    connect_via(host, port, timeout, &Egress::default()).await
}

/// As [`connect`], leaving by `egress`. With a source address, only the name's addresses of
/// its family are tried.
pub(crate) async fn connect_via(
    host: &str,
    port: u16,
    timeout: Duration,
    egress: &Egress,
) -> Result<TcpStream, String> {
    let addrs = match monoio::time::timeout(timeout, resolve(host, port)).await {
        Ok(resolved) => resolved?,
        Err(_) => {
            return Err(format!(
                "resolving {host}: no answer in {} ms",
                timeout.as_millis()
            ))
        }
    };
    // Every address the name has, in the resolver's order (an unreachable IPv6 address
    // before a working IPv4 one must not fail the connection).
    let mut failures = Vec::new();
    for addr in addrs {
        match monoio::time::timeout(timeout, connect_one(addr, egress)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => failures.push(format!("connect {addr}: {e}")),
            Err(_) => failures.push(format!(
                "connect {addr}: no answer in {} ms",
                timeout.as_millis()
            )),
        }
    }
    Err(failures.join("; "))
}

/// A blocking connection attempt by `egress`, for threads that are not shards (the origin
/// prober).
pub(crate) fn connect_blocking(
    addr: SocketAddr,
    egress: &Egress,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let socket = egress_socket(addr, egress)?;
    socket.connect_timeout(&SockAddr::from(addr), timeout)?;
    Ok(socket.into())
}

/// A TCP socket for `addr` with `egress`'s options set and its source address bound.
fn egress_socket(addr: SocketAddr, egress: &Egress) -> io::Result<Socket> {
    if egress.bind.is_some_and(|b| b.is_ipv4() != addr.is_ipv4()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not reachable from bind address",
        ));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(name) = &egress.interface {
        socket
            .bind_device(Some(name.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
    }
    if let Some(mark) = egress.mark {
        socket
            .set_mark(mark)
            .map_err(|e| io::Error::new(e.kind(), format!("mark {mark}: {e}")))?;
    }
    if let Some(ip) = egress.bind {
        socket
            .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(|e| io::Error::new(e.kind(), format!("bind {ip}: {e}")))?;
    }
    Ok(socket)
}

/// One connection attempt; a socket of our own when the egress is not the default, since
/// the options must be set before `connect`.
async fn connect_one(addr: SocketAddr, egress: &Egress) -> io::Result<TcpStream> {
    if egress.is_default() {
        return TcpStream::connect(addr).await;
    }
    let socket = egress_socket(addr, egress)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    // Writable once the handshake ends, either way; SO_ERROR says which.
    stream.writable(false).await?;
    // SAFETY: the fd is the stream's, alive for this borrow; ManuallyDrop leaves it open.
    let view = std::mem::ManuallyDrop::new(unsafe { Socket::from_raw_fd(stream.as_raw_fd()) });
    match view.take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

/// Resolves `host` with the system resolver on a thread of its own: `getaddrinfo` blocks, and
/// a shard that blocks stalls every viewer it serves. IP literals need no thread. The answer
/// comes back through a slot and a waker; a caller that gave up leaves the thread to finish
/// and drop it. Control path only (once per connect), so the slot's mutex is fine.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    // URLs write IPv6 literals in brackets (`rtmp://[::1]:1935/live`).
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    type Answer = Result<Vec<SocketAddr>, String>;
    let slot: Arc<(std::sync::Mutex<Option<Answer>>, atomic_waker::AtomicWaker)> = Arc::default();
    let (theirs, name) = (Arc::clone(&slot), host.to_string());
    std::thread::Builder::new()
        .name("edge-resolve".into())
        .spawn(move || {
            let answer = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("resolving {name}: {e}"))
                .map(|addrs| addrs.collect::<Vec<_>>())
                .and_then(|addrs| {
                    (!addrs.is_empty())
                        .then_some(addrs)
                        .ok_or(format!("{name} has no address"))
                });
            *theirs.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            theirs.1.wake();
        })
        .map_err(|e| format!("resolving {host}: no thread: {e}"))?;
    poll_fn(|cx| {
        slot.1.register(cx.waker());
        match slot.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::{connect_via, resolve, Egress};
    use std::time::Duration;

    #[test]
    fn an_egress_source_address_is_the_one_the_peer_sees() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let bound = Egress {
            bind: Some("127.0.0.2".parse().unwrap()),
            ..Egress::default()
        };
        rt.block_on(async {
            let s = connect_via("127.0.0.1", port, Duration::from_secs(10), &bound)
                .await
                .unwrap();
            assert_eq!(s.local_addr().unwrap().ip().to_string(), "127.0.0.2");
            let plain = super::connect("127.0.0.1", port, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(plain.local_addr().unwrap().ip().to_string(), "127.0.0.1");
            // A refused connection is an error, not a stream.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let dead = closed.local_addr().unwrap().port();
            drop(closed);
            let e = connect_via("127.0.0.1", dead, Duration::from_secs(10), &bound)
                .await
                .unwrap_err();
            assert!(e.contains("refused"), "{e}");
            // An IPv4 source cannot reach an IPv6 address.
            let e = connect_via("::1", port, Duration::from_secs(10), &bound)
                .await
                .unwrap_err();
            assert!(e.contains("not reachable from bind address"), "{e}");
        });
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn names_resolve_off_the_shard_and_literals_directly() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let literal = resolve("127.0.0.9", 1935).await.unwrap();
            assert_eq!(literal, ["127.0.0.9:1935".parse().unwrap()]);
            let v6 = resolve("::1", 80).await.unwrap();
            assert_eq!(v6, ["[::1]:80".parse().unwrap()]);
            let bracketed = resolve("[::1]", 80).await.unwrap();
            assert_eq!(bracketed, v6, "as URLs write it");
            // Through the resolver thread (/etc/hosts), woken back onto this runtime.
            let named = resolve("localhost", 1935).await.unwrap();
            assert!(
                named
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 1935),
                "{named:?}"
            );
            let bad = resolve("bad host name", 1935).await;
            assert!(bad.is_err(), "{bad:?}");
        });
    }
}
