//! A TCP relay for tests: it holds every byte for a fixed time in each direction (a round
//! trip of twice that; this kernel has no netem), and records the source address of every
//! connection and the head line of every HTTP request that passes towards the server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A relay on 127.0.0.1 in front of `upstream`.
pub struct DelayRelay {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl DelayRelay {
    /// Relays to `upstream`, holding each byte `one_way` in each direction.
    pub fn start(upstream: SocketAddr, one_way: Duration) -> DelayRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (seen, from) = (Arc::clone(&requests), Arc::clone(&peers));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                if let Ok(peer) = client.peer_addr() {
                    from.lock().unwrap().push(peer);
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(client, server, one_way, Some(Arc::clone(&seen)));
                pipe(s2, c2, one_way, None);
            }
        });
        DelayRelay {
            addr,
            requests,
            peers,
        }
    }

    /// The source address of every connection accepted so far, in order.
    pub fn source_ips(&self) -> Vec<String> {
        let peers = self.peers.lock().unwrap();
        peers.iter().map(|p| p.ip().to_string()).collect()
    }

    /// The request lines seen so far (`GET /live/x.m3u8 HTTP/1.1`), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// GET requests per path (without the query) seen so far.
    pub fn gets_by_path(&self) -> std::collections::HashMap<String, usize> {
        let mut by_path = std::collections::HashMap::new();
        for line in self.requests() {
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("GET"), "{line}");
            let target = words.next().unwrap_or("");
            let path = target.split('?').next().unwrap_or("").to_string();
            *by_path.entry(path).or_insert(0) += 1;
        }
        by_path
    }

    /// The base URL of `path` through the relay.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

/// Copies `from` to `to`, each piece written `delay` after it was read; records request
/// lines when `log` is given.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    log: Option<Arc<Mutex<Vec<String>>>>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(log) = &log {
                head.extend_from_slice(&buf[..n]);
                // Requests have no body here: each ends at its blank line.
                while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&head[..end]).to_string();
                    log.lock()
                        .unwrap()
                        .push(text.lines().next().unwrap_or("").to_string());
                    head.drain(..end + 4);
                }
            }
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    std::thread::spawn(move || {
        for (at, bytes) in rx {
            let due = at + delay;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
