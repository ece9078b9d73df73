//! HTTP/3 for the tests: an independent client (aioquic, from PyPI, in the venv `.ci/run`
//! makes) and a UDP relay that can drop datagrams and change its source port mid-connection,
//! as a lossy path or a migrating client would.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::venv_python;

/// The venv's Python (aioquic is there), or `H3_PYTHON`.
fn python() -> String {
    if let Ok(p) = std::env::var("H3_PYTHON") {
        return p;
    }
    let venv =
        venv_python().expect("target/tools/venv is missing: .ci/run makes it (with aioquic)");
    venv.to_string_lossy().into_owned()
}

/// One HTTP/3 response: status, fields (no `:status`) in order, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H3Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl H3Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends `requests` (method, path) over one QUIC connection to `addr` with aioquic, trusting
/// `ca` for `localhost`; each answer, or the error (a reset stream) as `Err`, in order.
pub fn h3_requests(
    addr: SocketAddr,
    ca: &Path,
    requests: &[(&str, &str)],
) -> Vec<Result<H3Response, String>> {
    let list: Vec<(&str, &str, &str)> = requests.iter().map(|&(m, p)| (m, p, "")).collect();
    h3_requests_with_bodies(addr, ca, &list)
}

/// As [`h3_requests`], each request with a body (method, path, body; an empty body is
/// none: the HEADERS end the stream).
pub fn h3_requests_with_bodies(
    addr: SocketAddr,
    ca: &Path,
    requests: &[(&str, &str, &str)],
) -> Vec<Result<H3Response, String>> {
    h3_requests_in(None, addr, ca, requests)
}

/// As [`h3_requests_with_bodies`], the client run inside network namespace `netns` when
/// there is one.
pub fn h3_requests_in(
    netns: Option<&str>,
    addr: SocketAddr,
    ca: &Path,
    requests: &[(&str, &str, &str)],
) -> Vec<Result<H3Response, String>> {
    let v = run_client(netns, "h3get.py", addr, ca, &[], requests);
    let items = v.as_array().expect("a list");
    let (last, answers) = items.split_last().expect("the connection summary");
    assert_eq!(last["alpn"], "h3", "ALPN: {last}");
    answers.iter().map(answer).collect()
}

/// Runs the aioquic client `script` (in `tests/h3`, inside network namespace `netns` when
/// there is one) against `addr`, trusting `ca`, with `extra` arguments after the CA and the
/// requests (method, path, body; an empty body is none) on its standard input; its JSON.
fn run_client(
    netns: Option<&str>,
    script: &str,
    addr: SocketAddr,
    ca: &Path,
    extra: &[&str],
    requests: &[(&str, &str, &str)],
) -> serde_json::Value {
    let list: Vec<serde_json::Value> = requests
        .iter()
        .map(|(m, p, b)| {
            if b.is_empty() {
                serde_json::json!([m, p])
            } else {
                serde_json::json!([m, p, {}, b])
            }
        })
        .collect();
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(python());
            c
        }
        None => Command::new(python()),
    };
    let mut child = command
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("h3")
                .join(script),
        )
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .arg(ca)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::Value::Array(list).to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script}'s JSON: {e}"))
}

/// One resumed connection of [`h3_resumed`]: whether TLS resumed the session and the server
/// took its 0-RTT data, and the answers to the requests it sent before its handshake was
/// complete.
#[derive(Debug)]
pub struct Resumed {
    pub resumed: bool,
    pub early_data_accepted: bool,
    pub answers: Vec<Result<H3Response, String>>,
}

fn answer(r: &serde_json::Value) -> Result<H3Response, String> {
    if let Some(e) = r.get("error") {
        return Err(e.as_str().unwrap_or_default().to_string());
    }
    Ok(H3Response {
        status: r["status"].as_u64().unwrap() as u16,
        headers: r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        body: unhex(r["body"].as_str().unwrap()),
    })
}

/// 0-RTT with aioquic (`h3/h3early.py`): one connection to `addr` for a session ticket (it
/// sends the first request), then `resumes` connections that each resume with a ticket of
/// their own and send every request (method, path, body) before their handshake completes.
pub fn h3_resumed(
    addr: SocketAddr,
    ca: &Path,
    requests: &[(&str, &str, &str)],
    resumes: usize,
) -> (H3Response, Vec<Resumed>) {
    let v = run_client(
        None,
        "h3early.py",
        addr,
        ca,
        &[&resumes.to_string()],
        requests,
    );
    assert!(v.get("error").is_none(), "h3early.py: {v}");
    let first = answer(&v["first"]).expect("the first connection's answer");
    let resumed = v["resumed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Resumed {
            resumed: c["resumed"].as_bool().unwrap(),
            early_data_accepted: c["early_data_accepted"].as_bool().unwrap(),
            answers: c["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(answer)
                .collect(),
        })
        .collect();
    (first, resumed)
}

/// What the relay does to the datagrams that pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpPath {
    /// Drop every Nth datagram in each direction (deterministic loss).
    pub drop_every: Option<u64>,
    /// Move to a new source port towards the server after every N datagrams it sends back.
    pub rebind_every: Option<u64>,
    /// Hold every datagram this long in each direction (half the round trip it adds), in
    /// order.
    pub delay: Duration,
    /// Where the relay listens: 127.0.0.1 when `None`.
    pub listen: Option<std::net::IpAddr>,
}

/// A UDP relay in front of `upstream` (on 127.0.0.1 unless the path says where): one client.
pub struct UdpRelay {
    pub addr: SocketAddr,
    pub dropped: Arc<AtomicU64>,
    pub rebinds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

struct Shared {
    front: Arc<UdpSocket>,
    to_client_tx: mpsc::Sender<Held>,
    client: Mutex<Option<SocketAddr>>,
    back: Mutex<Arc<UdpSocket>>,
    upstream: SocketAddr,
    path: UdpPath,
    to_client: AtomicU64,
    to_server: AtomicU64,
    dropped: Arc<AtomicU64>,
    rebinds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

fn back_socket() -> Arc<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    Arc::new(s)
}

impl Shared {
    /// Counts a datagram on `counter`: its number, or 0 when the path loses it.
    fn lost(&self, counter: &AtomicU64) -> u64 {
        let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if self
            .path
            .drop_every
            .is_some_and(|d| count.is_multiple_of(d))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            0
        } else {
            count
        }
    }
}

/// A datagram held until its time, then sent from `via` to `to`.
struct Held {
    due: Instant,
    via: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Sends what `relay` hands it, each at its time: the path's one-way delay, in order (every
/// datagram is held equally long, so a FIFO is the schedule). Sends at once when there is no
/// delay.
fn delayed_sender(delay: Duration) -> mpsc::Sender<Held> {
    let (tx, rx) = mpsc::channel::<Held>();
    std::thread::spawn(move || {
        while let Ok(held) = rx.recv() {
            if !delay.is_zero() {
                std::thread::sleep(held.due.saturating_duration_since(Instant::now()));
            }
            let _ = held.via.send_to(&held.bytes, held.to);
        }
    });
    tx
}

/// Relays what the server sends on `back` to the client, until the relay stops.
fn server_to_client(shared: Arc<Shared>, back: Arc<UdpSocket>) {
    let mut buf = [0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = back.recv_from(&mut buf) else {
            continue;
        };
        let count = shared.lost(&shared.to_client);
        if count == 0 {
            continue;
        }
        if let Some(client) = *shared.client.lock().unwrap() {
            let _ = shared.to_client_tx.send(Held {
                due: Instant::now() + shared.path.delay,
                via: Arc::clone(&shared.front),
                to: client,
                bytes: buf[..n].to_vec(),
            });
        }
        if shared
            .path
            .rebind_every
            .is_some_and(|r| count.is_multiple_of(r))
        {
            let fresh = back_socket();
            *shared.back.lock().unwrap() = Arc::clone(&fresh);
            shared.rebinds.fetch_add(1, Ordering::Relaxed);
            let s = Arc::clone(&shared);
            std::thread::spawn(move || server_to_client(s, fresh));
        }
    }
}

impl UdpRelay {
    pub fn start(upstream: SocketAddr, path: UdpPath) -> UdpRelay {
        let ip = path.listen.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let front = Arc::new(UdpSocket::bind((ip, 0)).unwrap());
        front
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (dropped, rebinds) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let back = back_socket();
        let shared = Arc::new(Shared {
            front,
            to_client_tx: delayed_sender(path.delay),
            client: Mutex::new(None),
            back: Mutex::new(Arc::clone(&back)),
            upstream,
            path,
            to_client: AtomicU64::new(0),
            to_server: AtomicU64::new(0),
            dropped: Arc::clone(&dropped),
            rebinds: Arc::clone(&rebinds),
            stop: Arc::clone(&stop),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || server_to_client(s, back));
        let to_server = delayed_sender(path.delay);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !shared.stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = shared.front.recv_from(&mut buf) else {
                    continue;
                };
                *shared.client.lock().unwrap() = Some(from);
                if shared.lost(&shared.to_server) == 0 {
                    continue;
                }
                let _ = to_server.send(Held {
                    due: Instant::now() + shared.path.delay,
                    via: Arc::clone(&shared.back.lock().unwrap()),
                    to: shared.upstream,
                    bytes: buf[..n].to_vec(),
                });
            }
        });
        UdpRelay {
            addr,
            dropped,
            rebinds,
            stop,
        }
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
