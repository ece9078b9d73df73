//! UDP for the shards' datagram endpoints (HTTP/3's QUIC, WebRTC): binding, batched receives
//! with `recvmmsg`, `sendmsg` with segmentation offload, and the counters they keep.
//!
//! Owns: the system calls and their buffers. Must not: know a protocol, block (every socket
//! is non-blocking; a caller waits for readiness through its runtime), or allocate per
//! received datagram beyond the datagram's own buffer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};

/// The largest datagram we read: QUIC's packets here are at most 1,472 bytes (the endpoint's
/// `max_udp_payload_size`), WebRTC's 1,200; a larger one is dropped.
const RECV_BYTES: usize = 2048;

/// One series of an endpoint's `/metrics`: name, kind, help, and the counter of `C` it reads.
pub(crate) type Series<C> = (&'static str, &'static str, &'static str, fn(&C) -> &Count);

/// A counter read by `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Binds `addr` for UDP with SO_REUSEADDR and SO_REUSEPORT, non-blocking.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Room for bursts of a few hundred datagrams each way.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    // Path MTU discovery: datagrams go out with DF set, and QUIC probes for larger ones
    // than its 1,200-byte floor itself (up to 1,452), instead of the kernel fragmenting.
    set_dont_fragment(&socket, addr);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// IP_PMTUDISC_PROBE: the DF bit on every datagram, the kernel's path MTU cache ignored
/// (QUIC's own probes find the size). Best effort: without it MTU discovery stays off.
fn set_dont_fragment(socket: &Socket, addr: SocketAddr) {
    use std::os::fd::AsRawFd as _;
    let (level, name, value) = if addr.is_ipv4() {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    };
    // SAFETY: setsockopt on a socket we own, with an int-sized value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 32;

/// What one `recvmmsg` needs, kept between calls; the datagrams it read.
struct RecvBatch {
    /// [`RECV_BATCH`] slots of [`RECV_BYTES`], the kernel's to fill. Each datagram is then
    /// copied into a buffer of its own size: a fresh receive buffer per batch would be a
    /// large allocation, mapped and zeroed by the kernel each time (measured: 10 % of a
    /// shard's time in `clear_page` while it served 700 KB segments).
    slots: Box<[u8]>,
    out: Vec<(SocketAddr, BytesMut)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            slots: vec![0u8; RECV_BATCH * RECV_BYTES].into_boxed_slice(),
            out: Vec::with_capacity(RECV_BATCH),
        }
    }
}

impl RecvBatch {
    /// Reads what the socket holds, up to [`RECV_BATCH`] datagrams, without waiting
    /// (`WouldBlock` when it holds none). Truncated datagrams are dropped.
    fn receive(&mut self, fd: RawFd) -> io::Result<&mut Vec<(SocketAddr, BytesMut)>> {
        self.out.clear();
        let base = self.slots.as_mut_ptr();
        // SAFETY: plain data, zero is a valid value for each.
        let mut addrs: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..RECV_BATCH {
            iovs[i] = libc::iovec {
                // SAFETY: slot i lies within `slots`.
                iov_base: unsafe { base.add(i * RECV_BYTES) }.cast(),
                iov_len: RECV_BYTES,
            };
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every msghdr points at live buffers of the lengths it states.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, m) in msgs.iter().take(n as usize).enumerate() {
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            let len = (m.msg_len as usize).min(RECV_BYTES);
            let data = BytesMut::from(&self.slots[i * RECV_BYTES..i * RECV_BYTES + len]);
            // SAFETY: the kernel filled `msg_namelen` bytes of the address.
            let addr = unsafe { socket2::SockAddr::new(addrs[i], m.msg_hdr.msg_namelen) };
            if let Some(from) = addr.as_socket() {
                self.out.push((from, data));
            }
        }
        Ok(&mut self.out)
    }
}

/// Room for one control message carrying a u16 (a `UDP_SEGMENT` size).
type SegmentControl = [u64; 4];

/// Gives `msg` a `UDP_SEGMENT` control message of `size` bytes per datagram, in `control`
/// (which must outlive the send).
fn set_segment_size(
    msg: &mut libc::msghdr,
    control: &mut SegmentControl,
    size: usize,
) -> io::Result<()> {
    let size = u16::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: msg_control points at 32 bytes, more than msg_controllen, which fits one cmsg
    // with a u16; CMSG_FIRSTHDR and CMSG_DATA stay within them.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
    Ok(())
}

/// Whether a send's error says the kernel or device takes no segmentation offload (the
/// caller then sends one datagram per message).
pub(crate) fn offload_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
}

/// `sendmsg` on a non-blocking UDP socket, with a UDP_SEGMENT control message when
/// `segment` is given.
pub(crate) fn send_to(
    fd: RawFd,
    to: SocketAddr,
    data: &[u8],
    segment: Option<usize>,
) -> io::Result<()> {
    let addr = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = SegmentControl::default();
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(size) = segment.filter(|&s| s < data.len()) {
        set_segment_size(&mut msg, &mut control, size)?;
    }
    // SAFETY: `msg` is fully initialised and points at live buffers.
    let n = unsafe { libc::sendmsg(fd, &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives on `socket` (its descriptor `fd`) for as long as the shard runs: waits until it
/// has datagrams, then takes all it has, [`RECV_BATCH`] per `recvmmsg`, handing each to `each`,
/// and calls `burst` once they are handed: one wake-up for a burst, however many datagrams
/// it held. `counters` are the endpoint's (`recvmmsg` calls, datagrams).
pub(crate) async fn receive_loop(
    socket: &monoio::net::udp::UdpSocket,
    fd: RawFd,
    counters: (&Count, &Count),
    mut each: impl FnMut(SocketAddr, BytesMut),
    mut burst: impl FnMut(),
) {
    let (recv_calls, datagrams_in) = counters;
    let mut batch = RecvBatch::default();
    loop {
        if let Err(e) = socket.readable(false).await {
            tracing::debug!("udp readiness: {e}");
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        }
        loop {
            match batch.receive(fd) {
                Ok(datagrams) => {
                    recv_calls.inc();
                    datagrams_in.add(datagrams.len() as u64);
                    let full = datagrams.len() == RECV_BATCH;
                    for (from, data) in datagrams.drain(..) {
                        each(from, data);
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("udp receive: {e}");
                    break;
                }
            }
        }
        burst();
    }
}

/// Datagrams in one segmentation-offload send at most (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_SEGMENTS: usize = 64;
/// Bytes in one segmentation-offload send at most (an IPv4 datagram's payload, less room
/// for the headers).
const GSO_BYTES: usize = 65_000;

/// How many of `datagrams`, from the first, go in one segmentation-offload send: those to
/// the same address, all of the first one's size but the last (which may be shorter).
fn gso_run(datagrams: &[(SocketAddr, Vec<u8>)]) -> usize {
    let Some((to, first)) = datagrams.first() else {
        return 0;
    };
    let size = first.len();
    let mut total = size;
    let mut n = 1;
    for (addr, data) in &datagrams[1..] {
        if addr != to
            || data.len() > size
            || data.is_empty()
            || n == GSO_SEGMENTS
            || total + data.len() > GSO_BYTES
        {
            break;
        }
        n += 1;
        total += data.len();
        if data.len() < size {
            break;
        }
    }
    n
}

/// `sendmmsg` of up to 64 messages on a non-blocking socket, each to its own address: how
/// many datagrams the kernel took (`WouldBlock` when it took none). With `gso`, consecutive
/// datagrams to one address of one size (the last may be shorter) go as one message with a
/// `UDP_SEGMENT` control message: the kernel's send path runs once for them, not once each
/// (a WebRTC session's packets of a frame are such a run).
pub(crate) fn send_batch(
    fd: RawFd,
    datagrams: &[(SocketAddr, Vec<u8>)],
    gso: bool,
) -> io::Result<usize> {
    const MAX: usize = 64;
    // Each message: its first datagram's index and how many datagrams it carries.
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(MAX);
    let mut at = 0;
    while at < datagrams.len() && runs.len() < MAX {
        let n = if gso { gso_run(&datagrams[at..]) } else { 1 };
        runs.push((at, n));
        at += n;
    }
    let iov_count = at;
    let addrs: Vec<socket2::SockAddr> = runs
        .iter()
        .map(|&(i, _)| socket2::SockAddr::from(datagrams[i].0))
        .collect();
    let iovs: Vec<libc::iovec> = datagrams[..iov_count]
        .iter()
        .map(|(_, data)| libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        })
        .collect();
    let mut controls = vec![SegmentControl::default(); runs.len()];
    // SAFETY: plain data, zero is a valid value for each.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; runs.len()];
    for (m, (&(i, n), (addr, control))) in msgs
        .iter_mut()
        .zip(runs.iter().zip(addrs.iter().zip(controls.iter_mut())))
    {
        let h = &mut m.msg_hdr;
        h.msg_name = addr.as_ptr() as *mut libc::c_void;
        h.msg_namelen = addr.len();
        h.msg_iov = iovs[i..].as_ptr() as *mut libc::iovec;
        h.msg_iovlen = n as _;
        if n > 1 {
            set_segment_size(h, control, datagrams[i].1.len())?;
        }
    }
    // SAFETY: every msghdr points at live iovecs, addresses and control buffers of the
    // lengths it states; none of them moves before the call returns.
    let sent = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(runs[..sent as usize].iter().map(|&(_, n)| n).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_run_is_one_address_and_one_size_with_a_shorter_last() {
        let d = |port, len| (addr(port), vec![7u8; len]);
        let batch = vec![d(1, 100), d(1, 100), d(1, 40), d(1, 100), d(2, 100)];
        assert_eq!(gso_run(&batch), 3, "a shorter datagram ends the run");
        assert_eq!(gso_run(&batch[3..]), 1, "another address ends it");
        assert_eq!(gso_run(&[d(1, 40), d(1, 100)]), 1, "a longer one ends it");
        assert_eq!(gso_run(&vec![d(1, 100); 70]), GSO_SEGMENTS);
        assert_eq!(gso_run(&vec![d(1, 1200); 70]), GSO_BYTES / 1200);
        assert_eq!(gso_run(&[]), 0);
    }

    /// Every datagram arrives whole and in order, however the batch was cut into messages.
    #[test]
    fn a_batch_with_segmentation_offload_arrives_as_its_datagrams() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to, elsewhere) = (rx.local_addr().unwrap(), other.local_addr().unwrap());
        let mut batch = Vec::new();
        for i in 0..100u8 {
            let len = if i % 7 == 6 { 300 } else { 1100 };
            let to = if i % 30 == 29 { elsewhere } else { to };
            batch.push((to, vec![i; len]));
        }
        let mut sent = 0;
        while sent < batch.len() {
            sent += send_batch(tx.as_raw_fd(), &batch[sent..], true).unwrap();
        }
        let mut buf = [0u8; 2048];
        for (dest, data) in &batch {
            let socket = if *dest == to { &rx } else { &other };
            let (n, _) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &data[..]);
        }
    }
}
