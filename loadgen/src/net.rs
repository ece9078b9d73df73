//! Connecting from several loopback source addresses.
//!
//! Every connection to one server address needs its own local port, and the kernel's
//! ephemeral range (about 28 000 ports by default) is shared by everything connecting to that
//! address. Against a loopback target, connections rotate over `--source-addrs` addresses
//! 127.0.0.1, 127.0.0.2, …, multiplying the ports available; elsewhere the kernel picks.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use monoio::net::TcpStream;

static SOURCES: OnceLock<Vec<Ipv4Addr>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The source addresses for connections to `target`: `n` loopback addresses when the
/// target is loopback, none (the kernel's choice) otherwise.
pub fn sources_for(target: Option<SocketAddr>, n: usize) -> Vec<Ipv4Addr> {
    match target {
        Some(SocketAddr::V4(a)) if a.ip().is_loopback() && n > 1 => (1..=n.min(254) as u8)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect(),
        _ => Vec::new(),
    }
}

/// Sets the addresses connections rotate over (once, at start).
pub fn set_sources(addrs: Vec<Ipv4Addr>) {
    let _ = SOURCES.set(addrs);
}

/// Connects to `dst`, from the next source address if there are any.
pub async fn connect(dst: SocketAddr) -> io::Result<TcpStream> {
    let sources = SOURCES.get().map_or(&[][..], Vec::as_slice);
    let dst4 = match dst {
        SocketAddr::V4(d) if d.ip().is_loopback() && !sources.is_empty() => d,
        _ => return TcpStream::connect(dst).await,
    };
    let src = sources[NEXT.fetch_add(1, Ordering::Relaxed) % sources.len()];
    let std = start_connect(src, dst4)?;
    let stream = TcpStream::from_std(std)?;
    stream.writable(false).await?;
    // The connect's outcome, as a non-blocking connect reports it.
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(SO_ERROR) writes one int into `err` on our own open socket.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(stream)
}

/// A non-blocking socket bound to `src` with its connect to `dst` under way.
fn start_connect(src: Ipv4Addr, dst: std::net::SocketAddrV4) -> io::Result<std::net::TcpStream> {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket syscalls on a descriptor we create and own; the sockaddr structs
    // live across the calls that read them.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = std::net::TcpStream::from_raw_fd(fd);
        let local = sockaddr(src, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(*dst.ip(), dst.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(sock)
    }
}

/// Sets the receive buffer of `fd` to `bytes`, past `net.core.rmem_max` where the process may
/// (root: SO_RCVBUFFORCE), else as far as the limit allows. Best effort.
pub fn grow_receive_buffer(fd: std::os::fd::RawFd, bytes: usize) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a socket the caller owns, with an int-sized value.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_get_several_sources() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(sources_for(Some(lo), 3).len(), 3);
        assert_eq!(sources_for(Some(lo), 3)[2], Ipv4Addr::new(127, 0, 0, 3));
        assert!(sources_for(Some(lo), 1).is_empty());
        assert!(sources_for(Some(other), 8).is_empty());
    }

    #[test]
    fn connections_come_from_the_rotated_sources() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = listener.local_addr().unwrap();
        set_sources(sources_for(Some(dst), 4));
        let peers: Vec<std::net::IpAddr> = monoio::start::<monoio::LegacyDriver, _>(async move {
            let mut streams = Vec::new();
            for _ in 0..4 {
                streams.push(connect(dst).await.unwrap());
            }
            (0..4).map(|_| listener.accept().unwrap().1.ip()).collect()
        });
        let mut seen = peers.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "{peers:?}");
    }
}
