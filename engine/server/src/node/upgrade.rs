//! Zero-downtime upgrade: the listening sockets pass from the running engine to its
//! successor over a Unix seqpacket socket, each descriptor by SCM_RIGHTS, in edge-core's
//! [`handover`](edge_core::handover) format.
//!
//! - The running side ([`serve`], `--upgrade-socket PATH`) listens on PATH from a thread of
//!   its own and hands over at most once. When the successor says it is ready, the shards
//!   cancel their accepts (an accept that completed anyway still returns its connection, so
//!   none is lost) and the node drains as for SIGTERM.
//! - The successor ([`receive`], `--upgrade-from SOCKET`) takes the sockets before its
//!   shards start, accepts on them, and then confirms ([`Inherited::confirm`]).
//! - An origin also names its relay (an RTMP listener on loopback it keeps while it drains)
//!   and the streams it holds: the successor pulls those from the relay while their
//!   publishers stay here ([`crate::upstream::predecessor`]).
//!
//! The sockets themselves never close during the handover, so every connection in their
//! accept queues, and every SYN that arrives meanwhile, is accepted by one process or the
//! other: none is refused or reset.
//!
//! On a shard run only [`warm`] (a successor's start) and [`watch`] (a predecessor's
//! cancel).
//!
//! Must not: run anything else on a shard, or touch a listener beyond sending a duplicate of
//! its descriptor (the accept loops own them, and [`Control`] decides when they stop).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use edge_core::handover::{Message, MAX_LISTENERS, MAX_MESSAGE, MAX_STREAMS, VERSION};
use edge_core::StreamKey;
use socket2::{Domain, SockAddr, Socket, Type};
use tracing::{info, warn};

use crate::machine::control::Control;
use crate::machine::stats::Stats;
use crate::net::listeners::Service;

/// How long the running side waits for the successor's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long it waits for the successor's shards to start accepting.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long either side waits for one packet otherwise.
const PACKET_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one packet, with `fd` attached when given.
fn send(sock: &Socket, message: &Message, fd: Option<RawFd>) -> io::Result<()> {
    let data = message.encode();
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one cmsghdr carrying one int, aligned as cmsghdr needs.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; an all-zero one is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
        debug_assert!(space <= size_of::<[u64; 4]>());
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` writable bytes, aligned for cmsghdr, so
        // the first header and its data (CMSG_LEN(4) <= space) lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: msg and what it points at (data, control) outlive the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short packet"));
    }
    Ok(())
}

/// Receives one packet and the descriptor it carries, if any. More than one descriptor, or
/// a truncated packet or control block, is an error (and whatever came is closed).
fn recv(sock: &Socket, timeout: Duration) -> anyhow::Result<(Message, Option<OwnedFd>)> {
    sock.set_read_timeout(Some(timeout))?;
    let mut data = [0u8; MAX_MESSAGE + 1];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; an all-zero one is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>();
    // SAFETY: msg points at buffers that outlive the call and are as long as it says.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            bail!("timed out after {} ms", timeout.as_millis());
        }
        return Err(e.into());
    }
    // Take every descriptor first, so that an error below closes them.
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsghdrs; the
    // CMSG_* macros walk them within that length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let first = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(first.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        bail!("truncated packet");
    }
    if n == 0 {
        bail!("the peer closed the upgrade socket");
    }
    if fds.len() > 1 {
        bail!("{} descriptors in one packet", fds.len());
    }
    let message = Message::parse(&data[..n as usize])?;
    Ok((message, fds.pop()))
}

/// The peer runs as our user (or we are root).
fn same_user(sock: &Socket) -> io::Result<bool> {
    let mut cred = MaybeUninit::<libc::ucred>::zeroed();
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes a ucred of at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            cred.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised, and filled by a successful getsockopt.
    let cred = unsafe { cred.assume_init() };
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    Ok(me == 0 || cred.uid == me)
}

fn seqpacket() -> io::Result<Socket> {
    Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)
}

/// The running side: binds `path` (mode 0600) and answers one successor from a thread of
/// its own. `successor` is true in a process that itself came from `--upgrade-from`: the
/// path may still be bound by its predecessor, which is leaving.
pub(crate) fn serve(path: &Path, stats: Arc<Stats>, successor: bool) -> anyhow::Result<()> {
    let addr =
        SockAddr::unix(path).with_context(|| format!("--upgrade-socket {}", path.display()))?;
    if path.exists() {
        if !successor && seqpacket()?.connect(&addr).is_ok() {
            bail!(
                "--upgrade-socket {}: another engine answers there (start this one with --upgrade-from to take over)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale {}", path.display()))?;
    }
    let listener = seqpacket()?;
    listener
        .bind(&addr)
        .with_context(|| format!("binding --upgrade-socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.listen(4)?;
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("edge-upgrade".into())
        .spawn(move || loop {
            let sock = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("upgrade socket {shown}: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            match hand_over(&sock, &stats) {
                Ok(pid) => {
                    info!(
                        successor = pid,
                        "upgrade: the successor accepts on our listeners; draining"
                    );
                    // The successor binds the path anew; it is no longer ours to remove.
                    return;
                }
                Err(e) => warn!("upgrade: handover failed, still serving: {e:#}"),
            }
        })
        .context("spawning the upgrade thread")?;
    Ok(())
}

/// One handover, from the running side. Returns the successor's pid.
fn hand_over(sock: &Socket, stats: &Stats) -> anyhow::Result<u32> {
    let control: &Control = &stats.control;
    if !same_user(sock)? {
        bail!("the successor runs as another user");
    }
    let pid = match recv(sock, HELLO_TIMEOUT)? {
        (Message::Hello { version, pid }, None) if version == VERSION => pid,
        (Message::Hello { version, .. }, None) => {
            let reason = format!("protocol version {version}, this engine speaks {VERSION}");
            let _ = send(
                sock,
                &Message::Refused {
                    reason: reason.clone(),
                },
                None,
            );
            bail!(reason);
        }
        (other, _) => bail!("expected HELLO, got {other:?}"),
    };
    let fds = match control.begin_handover() {
        Ok(fds) => fds,
        Err(reason) => {
            let _ = send(
                sock,
                &Message::Refused {
                    reason: reason.into(),
                },
                None,
            );
            bail!(reason);
        }
    };
    let result = (|| -> anyhow::Result<()> {
        for (service, fd) in &fds {
            // SAFETY: the descriptor is open (the phase is HandingOver, so no accept loop
            // ends and closes it) and only borrowed for getsockname.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            let addr = socket2::SockRef::from(&borrowed)
                .local_addr()?
                .as_socket()
                .ok_or_else(|| anyhow!("a listener without an IP address"))?;
            let m = Message::Listener {
                service: service.name().to_string(),
                addr,
            };
            send(sock, &m, Some(*fd))?;
        }
        if let Some(&addr) = control.relay_addr.get() {
            send(sock, &Message::Relay { addr }, None)?;
            for key in stats.held_streams().into_iter().take(MAX_STREAMS) {
                let m = Message::Stream { key };
                // A name too long for one packet is not relayed (the successor would refuse
                // the whole handover); its viewers wait for the publisher to move over.
                if m.encode().len() > MAX_MESSAGE {
                    warn!("upgrade: a stream name too long to name in the handover is not relayed: {m:?}");
                    continue;
                }
                send(sock, &m, None)?;
            }
        }
        send(sock, &Message::End { count: fds.len() }, None)?;
        match recv(sock, READY_TIMEOUT)? {
            (Message::Ready, None) => Ok(()),
            (other, _) => bail!("expected READY, got {other:?}"),
        }
    })();
    if let Err(e) = result {
        control.abort_handover();
        return Err(e);
    }
    control.finish_handover();
    let _ = send(
        sock,
        &Message::Draining {
            pid: std::process::id(),
        },
        None,
    );
    Ok(pid)
}

/// Listening sockets taken over from a running engine, not yet confirmed.
pub(crate) struct Inherited {
    sock: Socket,
    pub listeners: Vec<(Service, SocketAddr, std::net::TcpListener)>,
    pub from: PathBuf,
    /// The predecessor's relay, and the streams it held (to pull from it).
    pub relay: Option<SocketAddr>,
    pub streams: Vec<StreamKey>,
}

/// The successor: takes the running engine's listening sockets over `path`.
pub(crate) fn receive(path: &Path) -> anyhow::Result<Inherited> {
    let sock = seqpacket()?;
    let addr = SockAddr::unix(path)?;
    sock.connect(&addr).with_context(|| {
        format!(
            "--upgrade-from {}: is an engine with --upgrade-socket running?",
            path.display()
        )
    })?;
    send(
        &sock,
        &Message::Hello {
            version: VERSION,
            pid: std::process::id(),
        },
        None,
    )?;
    let mut listeners = Vec::new();
    let (mut relay, mut streams) = (None, Vec::new());
    loop {
        let (message, fd) = recv(&sock, PACKET_TIMEOUT).context("--upgrade-from")?;
        match (message, fd) {
            (Message::Listener { service, addr }, Some(fd)) => {
                if listeners.len() >= MAX_LISTENERS {
                    bail!("--upgrade-from: more than {MAX_LISTENERS} listeners");
                }
                let service = Service::parse(&service)
                    .ok_or_else(|| anyhow!("--upgrade-from: unknown service {service}"))?;
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true)?;
                // The socket is what the message says it is.
                let local = l.local_addr()?;
                if local != addr {
                    bail!("--upgrade-from: a listener said {addr} but is bound to {local}");
                }
                listeners.push((service, addr, l));
            }
            (Message::Relay { addr }, None) if addr.ip().is_loopback() => relay = Some(addr),
            (Message::Relay { addr }, None) => {
                bail!("--upgrade-from: a relay off loopback ({addr})")
            }
            (Message::Stream { key }, None) if relay.is_some() => {
                if streams.len() >= MAX_STREAMS {
                    bail!("--upgrade-from: more than {MAX_STREAMS} streams");
                }
                streams.push(key);
            }
            (Message::End { count }, None) if count == listeners.len() => break,
            (Message::End { count }, None) => bail!(
                "--upgrade-from: END says {count} listeners, {} came",
                listeners.len()
            ),
            (Message::Refused { reason }, None) => {
                bail!("--upgrade-from: the running engine refused: {reason}")
            }
            (other, _) => bail!("--upgrade-from: unexpected {other:?}"),
        }
    }
    Ok(Inherited {
        sock,
        listeners,
        from: path.to_path_buf(),
        relay,
        streams,
    })
}

impl Inherited {
    /// Tells the running engine that this one accepts on the sockets; returns its pid once
    /// it drains.
    pub(crate) fn confirm(self) -> anyhow::Result<u32> {
        send(&self.sock, &Message::Ready, None)?;
        match recv(&self.sock, PACKET_TIMEOUT)? {
            (Message::Draining { pid }, None) => Ok(pid),
            (other, _) => bail!("expected DRAINING, got {other:?}"),
        }
    }
}

/// How long a successor's shard waits for the inherited streams' first playlists before it
/// accepts anyway (a stream that stalls must not hold the upgrade up).
const WARM_MAX: Duration = Duration::from_secs(5);

/// On a successor's shard, before it accepts: starts pulling each stream the predecessor
/// holds and waits (at most [`WARM_MAX`]) until this shard has its playlist, so that a viewer
/// whose request lands here is answered at once instead of waiting for a first segment. The
/// predecessor accepts everyone meanwhile. Returns how many were ready.
pub(crate) async fn warm(shard: &crate::shard::ShardHandle, inherited: &[StreamKey]) -> usize {
    for key in inherited {
        shard.hls_demand(key, None);
    }
    let all = async {
        for key in inherited {
            if shard.hls(key).is_none() {
                shard.wait_for_hls(key).await;
            }
        }
    };
    let _ = monoio::time::timeout(WARM_MAX, all).await;
    inherited.iter().filter(|k| shard.hls(k).is_some()).count()
}

/// How often a shard looks for a finished handover.
const WATCH: Duration = Duration::from_millis(20);

/// On a shard: cancels its accepts once a successor holds the listeners.
pub(crate) async fn watch(shard: crate::shard::ShardHandle, canceller: monoio::io::Canceller) {
    while !shard.machine().control.handed_over() {
        monoio::time::sleep(WATCH).await;
    }
    canceller.cancel();
}
