//! Test certificates (a CA and leaves, from openssl) and TLS clients that trust them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::*;

/// A test CA and a `localhost`/127.0.0.1 certificate it signed, made with openssl.
pub struct TestCerts {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_key: PathBuf,
}

impl TestCerts {
    /// A fresh CA and leaf in a directory of their own.
    pub fn generate(name: &str) -> TestCerts {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edge-tls-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = TestCerts {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
            dir,
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=edge-engine test CA",
            "-keyout",
            certs.ca_key.to_str().unwrap(),
            "-out",
            certs.ca.to_str().unwrap(),
        ]);
        certs.issue_leaf(&certs.cert.clone(), &certs.key.clone(), "1");
        certs
    }

    /// Issues another leaf from the same CA (serial `serial`) into `cert`/`key`.
    pub fn issue_leaf(&self, cert: &std::path::Path, key: &std::path::Path, serial: &str) {
        let csr = self.dir.join("leaf.csr");
        let ext = self.dir.join("leaf.ext");
        std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.ca.to_str().unwrap(),
            "-CAkey",
            self.ca_key.to_str().unwrap(),
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
    }

    /// `--tls-cert CERT --tls-key KEY` for an engine serving this leaf.
    pub fn flags(&self) -> [&str; 4] {
        [
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }

    /// The base64 SHA-256 of the leaf's public key (SubjectPublicKeyInfo), as Chromium's
    /// `--ignore-certificate-errors-spki-list` takes it; computed by openssl.
    pub fn spki_sha256(&self) -> String {
        let script = format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
            self.cert.display()
        );
        let (ok, out, err) = run_tool("sh", &["-c", &script], Duration::from_secs(30));
        assert!(ok, "{script}: {err}");
        out.trim().to_string()
    }

    /// The DER of the leaf in `cert`.
    pub fn leaf_der(cert: &std::path::Path) -> Vec<u8> {
        let pem = std::fs::read(cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .expect("a certificate")
            .unwrap()
            .to_vec();
        der
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str]) {
    let (ok, _, err) = run_tool("openssl", args, Duration::from_secs(30));
    assert!(ok, "openssl {args:?}: {err}");
}

/// A blocking TLS client connection (rustls) that trusts `ca`, for `localhost`.
pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects to `addr` over TLS, trusting only `ca`, and completes the handshake; the leaf
/// certificate the server showed comes back with the stream.
pub fn tls_connect(addr: SocketAddr, ca: &std::path::Path) -> (TlsClient, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with the engine");
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    (tls, leaf)
}

/// `GET path` over TLS (trusting `ca`) with `Connection: close`; the response as read until
/// the server ends the connection (with or without close_notify).
pub fn https_get(addr: SocketAddr, ca: &std::path::Path, path: &str) -> Response {
    let (mut tls, _) = tls_connect(addr, ca);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    split_response(&all)
}
