//! Origins that are not an engine: one that refuses or redirects every play, and a relay
//! as strict as SRS about `connect`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a [`FakeOrigin`] answers every play.
#[derive(Debug, Clone)]
pub enum FakeAnswer {
    /// `NetStream.Play.StreamNotFound`.
    NotFound,
    /// SRS-style: `onStatus(NetConnection.Connect.Rejected, ex: {code: 302, redirect: URL})`.
    Redirect(String),
}

/// A tiny RTMP origin on 127.0.0.1 that never has a stream: it records the stream names it is
/// asked to play and answers each play with `answer`.
pub struct FakeOrigin {
    pub addr: SocketAddr,
    pub plays: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeOrigin {
    pub fn start(answer: FakeAnswer) -> FakeOrigin {
        use edge_core::rtmp::server::{ServerConnection, ServerEvent};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let plays = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&plays);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut sock) = conn else { return };
                let (seen, answer) = (Arc::clone(&seen), answer.clone());
                std::thread::spawn(move || {
                    let mut s = ServerConnection::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match sock.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let mut events = Vec::new();
                        if s.handle_input(&buf[..n], &mut events).is_err() {
                            return;
                        }
                        for ev in events {
                            if let ServerEvent::PlayRequested {
                                stream, stream_id, ..
                            } = ev
                            {
                                seen.lock().unwrap().push(stream);
                                let wire = match &answer {
                                    FakeAnswer::NotFound => {
                                        s.send_status(
                                            stream_id,
                                            "error",
                                            "NetStream.Play.StreamNotFound",
                                            "not here",
                                        );
                                        None
                                    }
                                    FakeAnswer::Redirect(url) => Some(redirect_status(url)),
                                };
                                if let Some(w) = wire {
                                    let _ = sock.write_all(&w);
                                }
                            }
                        }
                        if let Some(out) = s.poll_transmit() {
                            if sock.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeOrigin { addr, plays }
    }

    pub fn url(&self) -> String {
        format!("rtmp://{}/live", self.addr)
    }
}

/// The chunk SRS sends to redirect a client to `tc_url`.
fn redirect_status(tc_url: &str) -> Vec<u8> {
    use rml_amf0::Amf0Value;
    let s = |v: &str| Amf0Value::Utf8String(v.into());
    let ex = HashMap::from([
        ("code".to_string(), Amf0Value::Number(302.0)),
        ("redirect".to_string(), s(tc_url)),
    ]);
    let info = HashMap::from([
        ("level".to_string(), s("error")),
        ("code".to_string(), s("NetConnection.Connect.Rejected")),
        ("description".to_string(), s("RTMP 302 Redirect")),
        ("ex".to_string(), Amf0Value::Object(ex)),
    ]);
    let body = rml_amf0::serialize(&vec![
        s("onStatus"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        Amf0Value::Object(info),
    ])
    .unwrap();
    edge_core::rtmp::chunk::serialize_message(
        edge_core::rtmp::chunk::CSID_DATA,
        0,
        20,
        0,
        &body,
        edge_core::rtmp::chunk::OUT_CHUNK_SIZE,
    )
    .to_vec()
}

/// Checks a `connect` command object the way SRS does: `tcUrl` is required and must be an
/// `rtmp://` or `rtmps://` URL with a host, `app` is required, and the tcUrl's path (before
/// any `?`) is the app (before any `?`). `Err` says what is wrong.
pub fn strict_connect_check(object: &edge_core::rtmp::amf::Amf0Value) -> Result<(), String> {
    use edge_core::rtmp::amf::prop_str;
    let tc_url = prop_str(object, "tcUrl").ok_or("invalid request without tcUrl")?;
    let app = prop_str(object, "app").ok_or("invalid request without app")?;
    let rest = tc_url
        .strip_prefix("rtmp://")
        .or_else(|| tc_url.strip_prefix("rtmps://"))
        .ok_or_else(|| format!("tcUrl {tc_url:?} is not an rtmp URL"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("tcUrl {tc_url:?} has no host"));
    }
    let base = |s: &str| {
        s.split('?')
            .next()
            .unwrap_or("")
            .trim_matches('/')
            .to_string()
    };
    if base(path) != base(app) {
        return Err(format!("app {app:?} does not match tcUrl {tc_url:?}"));
    }
    Ok(())
}

/// An origin as strict as SRS about `connect`: a relay on 127.0.0.1 in front of a real
/// origin (`upstream`) that reads each client's first command, refuses a connect that fails
/// [`strict_connect_check`] with `_error(NetConnection.Connect.Rejected)` and a close, and
/// otherwise passes every byte both ways untouched.
pub struct StrictOrigin {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    pub refused: Arc<std::sync::Mutex<Vec<String>>>,
}

impl StrictOrigin {
    pub fn start(upstream: SocketAddr) -> StrictOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (acc, refs) = (Arc::clone(&accepted), Arc::clone(&refused));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let (acc, refs) = (Arc::clone(&acc), Arc::clone(&refs));
                std::thread::spawn(move || strict_relay(client, upstream, &acc, &refs));
            }
        });
        StrictOrigin {
            addr,
            accepted,
            refused,
        }
    }

    pub fn url(&self, app: &str) -> String {
        format!("rtmp://{}/{app}", self.addr)
    }
}

fn strict_relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    accepted: &AtomicU64,
    refused: &std::sync::Mutex<Vec<String>>,
) {
    use edge_core::rtmp::message::Message;
    use edge_core::rtmp::reader::ChunkReader;
    let Ok(mut origin) = TcpStream::connect(upstream) else {
        return;
    };
    // Origin → client: untouched, from the first byte.
    let (Ok(mut from_origin), Ok(mut to_client)) = (origin.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_origin, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    // Client → origin: the handshake (C0, C1, C2) passes at once; the chunks after it are
    // held back until the connect is judged.
    let mut held = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut reader = ChunkReader::new();
    let mut handshake_left = 1 + 2 * 1536;
    let verdict = 'read: loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let skip = handshake_left.min(n);
        handshake_left -= skip;
        if origin.write_all(&buf[..skip]).is_err() {
            return;
        }
        held.extend_from_slice(&buf[skip..n]);
        let mut input = &buf[skip..n];
        loop {
            match reader.read_message(&mut input) {
                Ok(Some(m)) => {
                    if let Ok(Message::Command(c)) = Message::decode(&m) {
                        if c.name != "connect" {
                            break 'read Err(format!("{} before connect", c.name));
                        }
                        break 'read strict_connect_check(&c.object);
                    }
                }
                Ok(None) => break,
                Err(e) => break 'read Err(e.to_string()),
            }
        }
    };
    match verdict {
        Ok(()) => {
            accepted.fetch_add(1, Ordering::Relaxed);
            if origin.write_all(&held).is_ok() {
                let _ = std::io::copy(&mut client, &mut origin);
            }
        }
        Err(why) => {
            refused.lock().unwrap().push(why.clone());
            let mut w = edge_core::rtmp::amf::Writer::new();
            w.string("_error").number(1.0).null().begin_object();
            w.key("level").string("error");
            w.key("code").string("NetConnection.Connect.Rejected");
            w.key("description").string(&why);
            w.end_object();
            // The origin has answered the handshake already; the refusal follows it.
            std::thread::sleep(Duration::from_millis(50));
            let _ = client.write_all(&edge_core::rtmp::message::command_message(
                3,
                0,
                &w.finish(),
            ));
        }
    }
    let _ = origin.shutdown(std::net::Shutdown::Both);
    let _ = client.shutdown(std::net::Shutdown::Both);
}
