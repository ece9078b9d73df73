//! Zero-copy HTTP bodies: a response whose body lies in a segment arena leaves by reference.
//! The body's pages are `vmsplice`d into a pipe and the pipe is `splice`d to the socket, so
//! the kernel sends from the arena's own pages instead of copying them into socket buffers
//! (on loopback the receiver still copies once, out of those pages).
//!
//! Owns: each shard's pool of pipes, the probe that picks the shard's send path at start
//! (`splice`, or `writev` when the kernel refuses, the arena is huge-TLB, or
//! `--zero-copy off`), and the send itself.
//!
//! Must not: write or free arena memory. The page-reuse hazard (the kernel still reading a
//! chunk's pages after its segment was evicted and the chunk rewritten) is solved where
//! chunks are freed: [`Arena::lend`] marks what this module sends, and the arena drops a lent
//! chunk's pages before reuse. Must not block the shard either: the socket is non-blocking
//! only while a send runs (no other operation is in flight on it then, the HTTP driver being
//! sequential), and waiting for room goes through the runtime's poll. TLS connections never
//! come here: their bytes are encrypted copies.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::net::arena::{Arena, Backing};

/// Pipes per shard (two descriptors each). A send that finds none free falls back to writev.
pub(crate) const MAX_PIPES: usize = 1024;
/// Asked-for pipe capacity (64 page slots): one 64 KB segment and its head in one splice.
/// When the host refuses (an unprivileged user past `pipe-user-pages-soft`), the default.
const PIPE_BYTES: libc::c_int = 256 << 10;

/// How a shard sends HTTP bodies that lie in an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendPath {
    /// vmsplice + splice: by reference.
    Splice,
    /// writev: copied into socket buffers.
    Writev,
}

impl SendPath {
    pub(crate) fn code(self) -> u8 {
        match self {
            SendPath::Splice => 1,
            SendPath::Writev => 2,
        }
    }
}

pub(crate) fn send_path_name(code: u8) -> &'static str {
    match code {
        1 => "splice",
        2 => "writev",
        _ => "starting",
    }
}

/// A pipe, both ends non-blocking.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and owned by nothing else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on a descriptor we own; failure keeps the default size.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
        Ok(Pipe { r, w })
    }
}

/// Checks that `arena` may be lent and that this kernel can vmsplice into a pipe and splice
/// out of it. Never touches the arena's memory.
pub(crate) fn probe(arena: &Arena) -> Result<(), String> {
    if arena.backing == Backing::HugeTlb {
        return Err("the arena is huge-TLB (its pages cannot be dropped per chunk)".into());
    }
    probe_kernel()
}

/// Checks that this kernel can vmsplice into a pipe and splice out of it.
pub(crate) fn probe_kernel() -> Result<(), String> {
    let pipe = Pipe::new().map_err(|e| format!("pipe2: {e}"))?;
    let page = vec![0x47u8; 4096];
    vmsplice(pipe.w.as_raw_fd(), &page).map_err(|e| format!("vmsplice: {e}"))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    splice(pipe.r.as_raw_fd(), null.as_raw_fd(), page.len(), false)
        .map_err(|e| format!("splice: {e}"))?;
    Ok(())
}

/// One shard's zero-copy sender.
pub(crate) struct Sender {
    arenas: Arc<[OnceLock<Arc<Arena>>]>,
    pipes: RefCell<Vec<Pipe>>,
    /// Pipes that exist (free or lent to a send).
    open: Cell<usize>,
}

/// What one send did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Bytes written to the socket.
    pub bytes: usize,
    /// Of those, bytes sent by reference from an arena.
    pub lent: usize,
}

impl Sender {
    /// A sender that lends from any of `arenas` (every shard's, so that a replica's segments,
    /// which live in their owner's arena, leave by reference too).
    pub(crate) fn new(arenas: Arc<[OnceLock<Arc<Arena>>]>) -> Self {
        Self {
            arenas,
            pipes: RefCell::new(Vec::new()),
            open: Cell::new(0),
        }
    }

    fn arena_of(&self, b: &[u8]) -> Option<&Arc<Arena>> {
        self.arenas
            .iter()
            .filter_map(OnceLock::get)
            .find(|a| a.contains(b))
    }

    /// Whether `bufs` hold arena bytes worth sending by reference.
    pub(crate) fn applies(&self, bufs: &[Bytes]) -> bool {
        bufs.iter().any(|b| self.arena_of(b).is_some())
    }

    fn take_pipe(&self) -> Option<Pipe> {
        if let Some(p) = self.pipes.borrow_mut().pop() {
            return Some(p);
        }
        if self.open.get() >= MAX_PIPES {
            return None;
        }
        let p = Pipe::new().ok()?;
        self.open.set(self.open.get() + 1);
        Some(p)
    }

    fn give_back(&self, pipe: Option<Pipe>) {
        match pipe {
            Some(p) => self.pipes.borrow_mut().push(p),
            None => self.open.set(self.open.get() - 1),
        }
    }

    /// Sends `bufs` in order: arena bytes by reference, the rest (the head, heap bodies)
    /// copied into the pipe. `None` when no pipe is free (the caller writes instead).
    pub(crate) async fn send(
        &self,
        stream: &TcpStream,
        bufs: &[Bytes],
    ) -> Option<io::Result<Sent>> {
        let pipe = self.take_pipe()?;
        let mut loan = Loan {
            sender: self,
            pipe: Some(pipe),
            queued: 0,
        };
        Some(loan.run(stream, bufs).await)
    }
}

/// A pipe lent to one send: back to the pool when it was emptied, closed otherwise (an error
/// or a cancelled send leaves bytes in it).
struct Loan<'a> {
    sender: &'a Sender,
    pipe: Option<Pipe>,
    /// Bytes in the pipe, not yet on the socket.
    queued: usize,
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        let pipe = self.pipe.take().filter(|_| self.queued == 0);
        self.sender.give_back(pipe);
    }
}

impl Loan<'_> {
    async fn run(&mut self, stream: &TcpStream, bufs: &[Bytes]) -> io::Result<Sent> {
        let Some(pipe) = self.pipe.as_ref() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let (pr, pw) = (pipe.r.as_raw_fd(), pipe.w.as_raw_fd());
        let sock = stream.as_raw_fd();
        let _nonblocking = NonBlocking::set(sock)?;
        let mut sent = Sent::default();
        let (mut i, mut off) = (0, 0);
        loop {
            // Fill the pipe as far as it takes.
            while i < bufs.len() {
                let rest = &bufs[i][off..];
                let n = if rest.is_empty() {
                    Ok(0)
                } else if self.sender.arena_of(rest).is_some_and(|a| a.lend(rest)) {
                    let n = vmsplice(pw, rest);
                    if let Ok(n) = n {
                        sent.lent += n;
                    }
                    n
                } else {
                    write(pw, rest)
                };
                match n {
                    Ok(n) => {
                        self.queued += n;
                        off += n;
                        if off == bufs[i].len() {
                            i += 1;
                            off = 0;
                        } else {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if self.queued == 0 {
                return Ok(sent);
            }
            // Drain it to the socket; wait for room when the socket has none.
            match splice(pr, sock, self.queued, i < bufs.len()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.queued -= n;
                    sent.bytes += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable(false).await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Keeps a socket non-blocking while it lives, then puts its flags back.
struct NonBlocking {
    fd: RawFd,
    flags: libc::c_int,
}

impl NonBlocking {
    fn set(fd: RawFd) -> io::Result<Self> {
        // SAFETY: fcntl on a descriptor the caller's stream keeps open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if flags & libc::O_NONBLOCK == 0
            && unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, flags })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        if self.flags & libc::O_NONBLOCK == 0 {
            // SAFETY: as in `set`; the stream outlives this guard.
            unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
        }
    }
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Lends the pages under `data` to the pipe (no copy): the pipe, and later the socket,
/// reference them.
fn vmsplice(pipe_w: RawFd, data: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: the iovec describes live memory the caller keeps alive until the pipe is
    // drained or closed, and never rewrites while the kernel may reference it (the arena
    // drops lent pages instead, see crate::net::arena).
    cvt(unsafe { libc::vmsplice(pipe_w, &iov, 1, libc::SPLICE_F_NONBLOCK) })
}

/// Copies `data` into the pipe.
fn write(pipe_w: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: plain write from a live slice.
    cvt(unsafe { libc::write(pipe_w, data.as_ptr().cast(), data.len()) })
}

/// Moves up to `len` bytes from the pipe to `out` (non-blocking on both sides).
fn splice(pipe_r: RawFd, out: RawFd, len: usize, more: bool) -> io::Result<usize> {
    let mut flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    if more {
        flags |= libc::SPLICE_F_MORE;
    }
    // SAFETY: null offsets (pipes and sockets have none); descriptors are open.
    cvt(unsafe {
        libc::splice(
            pipe_r,
            std::ptr::null_mut(),
            out,
            std::ptr::null_mut(),
            len,
            flags,
        )
    })
}

#[cfg(test)]
mod tests;
