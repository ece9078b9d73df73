//! The registry's connections to Redis: plain TCP (`redis://`) or TLS (`rediss://`, rustls
//! over a blocking socket). [`connect`] gives a write half for the session thread and a read
//! half for the one thread that reads replies; with TLS both halves share the rustls session
//! behind a mutex that is held for the encryption or decryption of one buffer, never across a
//! blocking read.
//!
//! Must not: run on a shard (every call here blocks), or hold the session lock while waiting
//! for the network to deliver.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The TLS handshake, at most.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// A TLS session shared by the two halves.
pub(super) struct Shared {
    sock: TcpStream,
    tls: Mutex<ClientConnection>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        self.tls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends whatever rustls has to send (with the lock held: the writes are small and
    /// bounded by the socket's write timeout).
    fn flush(&self, tls: &mut ClientConnection) -> io::Result<()> {
        let mut sock = &self.sock;
        while tls.wants_write() {
            tls.write_tls(&mut sock)?;
        }
        Ok(())
    }
}

/// The write half.
pub(super) enum Writer {
    Plain(TcpStream),
    Tls(Arc<Shared>),
}

/// The read half.
pub(super) enum Reader {
    Plain(TcpStream),
    Tls {
        shared: Arc<Shared>,
        /// Ciphertext read from the socket and not yet taken by rustls.
        pending: Vec<u8>,
        taken: usize,
    },
}

/// Connects to `host:port`, with TLS when `tls` is given (the server's name checked against
/// `host`).
pub(super) fn connect(
    host: &str,
    port: u16,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(Writer, Reader), String> {
    let sock = tcp(host, port)?;
    let Some(config) = tls else {
        let reader = sock.try_clone().map_err(|e| e.to_string())?;
        return Ok((Writer::Plain(sock), Reader::Plain(reader)));
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let mut conn =
        ClientConnection::new(Arc::clone(config), name).map_err(|e| format!("TLS: {e}"))?;
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut s = &sock;
    while conn.is_handshaking() {
        conn.complete_io(&mut s)
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
    }
    sock.set_read_timeout(None).map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        sock,
        tls: Mutex::new(conn),
    });
    Ok((
        Writer::Tls(Arc::clone(&shared)),
        Reader::Tls {
            shared,
            pending: Vec::new(),
            taken: 0,
        },
    ))
}

fn tcp(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                return Ok(s);
            }
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    Err(last)
}

impl Writer {
    pub(super) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(s) => s.write_all(bytes),
            Writer::Tls(shared) => {
                let mut tls = shared.lock();
                tls.writer().write_all(bytes)?;
                shared.flush(&mut tls)
            }
        }
    }

    /// Ends the connection (its reader sees the end).
    pub(super) fn shutdown(&self) {
        let _ = match self {
            Writer::Plain(s) => s.shutdown(Shutdown::Both),
            Writer::Tls(shared) => shared.sock.shutdown(Shutdown::Both),
        };
    }
}

impl Reader {
    /// Plaintext, as `Read::read`: `Ok(0)` when the connection ended.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Plain(s) => s.read(buf),
            Reader::Tls {
                shared,
                pending,
                taken,
            } => read_tls(shared, pending, taken, buf),
        }
    }

    pub(super) fn shutdown(&self) {
        let _ = match self {
            Reader::Plain(s) => s.shutdown(Shutdown::Both),
            Reader::Tls { shared, .. } => shared.sock.shutdown(Shutdown::Both),
        };
    }
}

/// Decrypted bytes into `buf`: what rustls holds, else the buffered ciphertext, else a
/// blocking read of the socket (without the lock).
fn read_tls(
    shared: &Shared,
    pending: &mut Vec<u8>,
    taken: &mut usize,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        {
            let mut tls = shared.lock();
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the connection ended all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if *taken < pending.len() {
                let mut rest = &pending[*taken..];
                let before = rest.len();
                tls.read_tls(&mut rest)?;
                *taken += before - rest.len();
                tls.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                shared.flush(&mut tls)?;
                continue;
            }
        }
        pending.resize(16 * 1024, 0);
        *taken = 0;
        let mut sock = &shared.sock;
        let n = sock.read(pending)?;
        pending.truncate(n);
        if n == 0 {
            return Ok(0);
        }
    }
}
