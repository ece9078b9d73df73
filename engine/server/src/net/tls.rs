//! TLS for `--https`, `--rtmps` and `rtmps://` origins: rustls, driven by hand from the
//! shard's runtime (rustls is sans-IO; this module moves its records to and from the socket).
//!
//! Owns the certificate store (the PEM files, swapped whole on SIGHUP: a session keeps the key
//! it shook hands with, new handshakes get the new one), the handshake, and the read and
//! write halves the connection drivers use. The write half takes a whole `writev` of shared
//! segment or frame pieces, encrypts up to [`WRITE_CHUNK`] of it into one ciphertext buffer and
//! sends that with one write: the encryption is the only per-viewer work added to plain TCP.
//!
//! kTLS is not used: this build machine's kernel has none, so there is nothing to fall back
//! from; encryption stays in user space on every kernel.
//!
//! Must not: read files on a shard (the store is loaded at start-up and by the signal thread),
//! hold the session borrowed across an await, or keep ciphertext for an idle connection
//! (buffers come from a shard-local pool for the length of one write).

use std::cell::RefCell;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::BufResult;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, Connection, RootCertStore, ServerConfig};

/// Plaintext taken per write: one ciphertext buffer of about this size, one socket write.
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;
/// TLS sessions kept for resumption, machine-wide (a few hundred bytes each); the oldest go
/// first.
const SESSION_CACHE: usize = 32_768;
/// Ciphertext read per socket read.
const READ_CHUNK: usize = 16 * 1024 + 512;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server certificate and key, from PEM files, replaceable while serving.
pub(crate) struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// One session cache for every shard and protocol (kept across certificate reloads): a
    /// client resumes on whichever shard its new connection lands, and over QUIC sends its
    /// first requests in 0-RTT. Stateful, because rustls takes early data only from a
    /// session it can use once (a replayed ClientHello finds it gone); the cache's lock is
    /// taken once per handshake, never on the data path.
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads `cert` (a PEM chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1 PEM).
    pub(crate) fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertStore>> {
        let current = RwLock::new(Arc::new(load_certified_key(cert, key)?));
        Ok(Arc::new(CertStore {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        }))
    }

    /// Reads the files again; on any error the old certificate stays.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        let fresh = Arc::new(load_certified_key(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// A server configuration using this store, with `alpn` protocols offered; one per shard
    /// and protocol, all resuming sessions from the store's one cache. `early_data`:
    /// TLS 1.3 0-RTT is accepted (QUIC's, which must say so with the largest size, RFC 9001
    /// §4.6.1); TLS over TCP takes none.
    pub(crate) fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        early_data: bool,
    ) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.session_storage = Arc::clone(&self.sessions);
        if early_data {
            config.max_early_data_size = u32::MAX;
        }
        Arc::new(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", cert.display());
    }
    let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing {}", key.display()))?
        .with_context(|| format!("{}: no private key in it", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| anyhow::anyhow!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(ck)
}

/// The client configuration for `rtmps://` origins: the system's CA bundle, plus `extra`
/// (`--upstream-ca`, e.g. a private CA).
pub(crate) fn client_config(extra: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let system = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    let mut files: Vec<PathBuf> = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(system.iter().map(PathBuf::from))
        .filter(|p| p.exists())
        .take(1)
        .collect();
    files.extend(extra.map(Path::to_path_buf));
    for file in &files {
        let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.with_context(|| format!("parsing {}", file.display()))?;
            // A bundle may hold certificates webpki cannot use; skip those, as browsers do.
            let _ = roots.add(cert);
        }
    }
    if let Some(extra) = extra {
        if roots.is_empty() {
            bail!("{}: no usable CA certificate", extra.display());
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

type Session = Rc<RefCell<Connection>>;

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The read half: ciphertext from `io`, plaintext out.
pub(crate) struct TlsRead<R> {
    io: R,
    tls: Session,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

/// The write half: plaintext in, ciphertext to `io`.
pub(crate) struct TlsWrite<W> {
    io: W,
    tls: Session,
}

impl<R: AsyncReadRent> TlsRead<R> {
    /// Feeds buffered ciphertext to the session, reading more from the socket when none is
    /// left. `Ok(false)`: the socket reached EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.pos >= self.buf.len() {
            if self.eof {
                return Ok(false);
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            if buf.capacity() < READ_CHUNK {
                buf.reserve(READ_CHUNK);
            }
            let (res, b) = self.io.read(buf).await;
            self.buf = b;
            self.pos = 0;
            if res? == 0 {
                self.eof = true;
                return Ok(false);
            }
        }
        let mut c = self.tls.borrow_mut();
        let mut rest = &self.buf[self.pos..];
        let before = rest.len();
        c.read_tls(&mut rest)?;
        self.pos += before - rest.len();
        c.process_new_packets().map_err(tls_error)?;
        Ok(true)
    }

    /// Plaintext into `dst`; `Ok(0)` at the end of the stream.
    async fn read_plain(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            match self.tls.borrow_mut().reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.fill().await? {
                // TCP EOF without close_notify: the end, as HTTP and RTMP peers mean it.
                return Ok(0);
            }
        }
    }
}

impl<W: AsyncWriteRent> TlsWrite<W> {
    /// Sends every record the session has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        loop {
            let mut out = out_pool::take();
            {
                let mut c = self.tls.borrow_mut();
                if !c.wants_write() {
                    out_pool::give(out);
                    break;
                }
                c.write_tls(&mut out)?;
            }
            let (res, out) = self.io.write_all(out).await;
            out_pool::give(out);
            res?;
        }
        Ok(())
    }

    /// Hands up to [`WRITE_CHUNK`] of `pieces` to the session; returns how much it took.
    fn encrypt(&mut self, pieces: &[&[u8]]) -> io::Result<usize> {
        let mut c = self.tls.borrow_mut();
        let mut taken = 0;
        for piece in pieces {
            let want = piece.len().min(WRITE_CHUNK - taken);
            let n = c.writer().write(&piece[..want])?;
            taken += n;
            if n < want || taken >= WRITE_CHUNK {
                break;
            }
        }
        Ok(taken)
    }
}

impl<R: AsyncReadRent> AsyncReadRent for TlsRead<R> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the buffer is ours for this call and `bytes_total` bytes long from
        // `write_ptr`; only the first `n` (written by rustls) are marked initialised.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
        match self.read_plain(dst).await {
            Ok(n) => {
                // SAFETY: rustls wrote `n` bytes at the start of the buffer.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives this call.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            // SAFETY: `n` bytes were written into the first iovec.
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<W: AsyncWriteRent> AsyncWriteRent for TlsWrite<W> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` points at `bytes_init` initialised bytes owned by `buf`.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = match self.encrypt(&[data]) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.flush_tls().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, bufs: T) -> BufResult<usize, T> {
        let iovs: Vec<&[u8]> = {
            // SAFETY: the iovecs describe `read_iovec_len` live buffers owned by `bufs`.
            let raw =
                unsafe { std::slice::from_raw_parts(bufs.read_iovec_ptr(), bufs.read_iovec_len()) };
            raw.iter()
                // SAFETY: each iovec points at `iov_len` readable bytes.
                .map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
                .collect()
        };
        let n = match self.encrypt(&iovs) {
            Ok(n) => n,
            Err(e) => return (Err(e), bufs),
        };
        drop(iovs);
        match self.flush_tls().await {
            Ok(()) => (Ok(n), bufs),
            Err(e) => (Err(e), bufs),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await?;
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.tls.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}

/// A TLS connection over `R`/`W`, not split: what the HTTP driver reads and writes.
pub(crate) struct TlsStream<R, W> {
    pub read: TlsRead<R>,
    pub write: TlsWrite<W>,
}

impl<R: AsyncReadRent, W: AsyncWriteRent> TlsStream<R, W> {
    fn new(io: (R, W), conn: Connection) -> Self {
        let tls = Rc::new(RefCell::new(conn));
        TlsStream {
            read: TlsRead {
                io: io.0,
                tls: Rc::clone(&tls),
                buf: Vec::new(),
                pos: 0,
                eof: false,
            },
            write: TlsWrite { io: io.1, tls },
        }
    }

    /// Runs the handshake to completion (the caller bounds it in time).
    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.write.flush_tls().await?;
            if !self.read.tls.borrow().is_handshaking() {
                return Ok(());
            }
            match self.read.fill().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the TLS handshake",
                    ))
                }
                Err(e) => {
                    // Send the alert rustls queued, so the peer learns why.
                    let _ = self.write.flush_tls().await;
                    return Err(e);
                }
            }
        }
    }
}

impl<R: AsyncReadRent, W: AsyncWriteRent> AsyncReadRent for TlsStream<R, W> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read.read(buf).await
    }
    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read.readv(buf).await
    }
}

impl<R: AsyncReadRent, W: AsyncWriteRent> AsyncWriteRent for TlsStream<R, W> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.write.write(buf).await
    }
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.write.writev(buf).await
    }
    async fn flush(&mut self) -> io::Result<()> {
        self.write.flush().await
    }
    async fn shutdown(&mut self) -> io::Result<()> {
        self.write.shutdown().await
    }
}

/// The server side of a handshake over `io`.
pub(crate) async fn accept<R: AsyncReadRent, W: AsyncWriteRent>(
    io: (R, W),
    config: Arc<ServerConfig>,
) -> io::Result<TlsStream<R, W>> {
    let conn = rustls::ServerConnection::new(config).map_err(tls_error)?;
    let mut s = TlsStream::new(io, Connection::Server(conn));
    s.handshake().await?;
    Ok(s)
}

/// The client side of a handshake with `host` over `io`.
pub(crate) async fn connect<R: AsyncReadRent, W: AsyncWriteRent>(
    io: (R, W),
    config: Arc<ClientConfig>,
    host: &str,
) -> io::Result<TlsStream<R, W>> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(tls_error)?;
    let mut s = TlsStream::new(io, Connection::Client(conn));
    s.handshake().await?;
    Ok(s)
}

/// Ciphertext buffers, shared by a shard's TLS connections: a buffer is taken for one write
/// and given back when the write completes, so an idle connection holds none and a busy one
/// reuses pages that are already mapped (allocating 64 KiB per write cost page faults and
/// page freeing: about 8 % of a shard serving segments over HTTPS).
mod out_pool {
    use std::cell::RefCell;

    /// Buffers kept per shard: more than the writes in flight at once on one shard seldom
    /// are; beyond it they are freed.
    const KEEP: usize = 64;
    /// A buffer grown past this (a burst of handshake or alert records) is not kept.
    const MAX_KEPT_CAPACITY: usize = 2 * super::WRITE_CHUNK;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take() -> Vec<u8> {
        // Room for a whole chunk's records (a 22-byte overhead per 16 KiB record) without
        // growing.
        FREE.with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(super::WRITE_CHUNK + 4096))
    }

    pub(super) fn give(mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        buf.clear();
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(buf);
            }
        });
    }
}
