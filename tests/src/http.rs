//! Plain HTTP/1.1 requests and responses over loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// An HTTP response read to its end. A chunked body is de-chunked.
#[derive(Debug)]
pub struct Response {
    pub head: String,
    pub body: Vec<u8>,
    /// Chunked: whether the last chunk came (`None`: not chunked).
    pub chunked: Option<bool>,
}

impl Response {
    /// The status code (0 when the head does not parse).
    pub fn status(&self) -> u16 {
        edge_core::http::parse_response_head(self.head.as_bytes())
            .ok()
            .flatten()
            .map_or(0, |h| h.status)
    }
}

/// `GET path` with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    try_http_get(addr, path).unwrap()
}

/// [`http_get`], with the error of a connect or request write instead of a panic.
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    Ok(split_response(&all))
}

/// Splits raw bytes at the end of the head (edge-core's response parser finds it; bytes
/// that are no response head are all head), and de-chunks a chunked body (as far as it
/// decodes).
pub fn split_response(all: &[u8]) -> Response {
    let end = match edge_core::http::parse_response_head(all) {
        Ok(Some(h)) => h.len,
        _ => all.len(),
    };
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    let is_chunked = head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked\r\n");
    if !is_chunked {
        return Response {
            head,
            body: all[end..].to_vec(),
            chunked: None,
        };
    }
    let mut body = Vec::new();
    let mut d = edge_core::http::Dechunker::default();
    let _ = d.decode(&all[end..], &mut body);
    Response {
        head,
        body,
        chunked: Some(d.done),
    }
}

/// Reads an HTTP-FLV response until `stop`, counting body bytes into `progress`. Returns
/// whether the server closed the connection first.
pub fn read_http_until(
    addr: SocketAddr,
    path: &str,
    progress: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<bool> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::spawn(move || {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.write_all(request.as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    progress.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    })
}
