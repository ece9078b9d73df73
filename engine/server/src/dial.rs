//! Outgoing TCP connections (origins, hooks): names resolved off the shard, every address
//! the name has tried in the resolver's order, each attempt bounded in time.
//!
//! Must not: call `getaddrinfo` on a shard, or wait on anything without a deadline.

use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use monoio::net::TcpStream;

/// Connects to `host:port` within `timeout` for the name and for each address.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addrs = match monoio::time::timeout(timeout, resolve(host, port)).await {
        Ok(resolved) => resolved?,
        Err(_) => {
            return Err(format!(
                "resolving {host}: no answer in {} ms",
                timeout.as_millis()
            ))
        }
    };
    // Every address the name has, in the resolver's order (an unreachable IPv6 address
    // before a working IPv4 one must not fail the connection).
    let mut failures = Vec::new();
    for addr in addrs {
        match monoio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => failures.push(format!("connect {addr}: {e}")),
            Err(_) => failures.push(format!(
                "connect {addr}: no answer in {} ms",
                timeout.as_millis()
            )),
        }
    }
    Err(failures.join("; "))
}

/// Resolves `host` with the system resolver on a thread of its own: `getaddrinfo` blocks, and
/// a shard that blocks stalls every viewer it serves. IP literals need no thread. The answer
/// comes back through a slot and a waker; a caller that gave up leaves the thread to finish
/// and drop it. Control path only (once per connect), so the slot's mutex is fine.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    // URLs write IPv6 literals in brackets (`rtmp://[::1]:1935/live`).
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    type Answer = Result<Vec<SocketAddr>, String>;
    let slot: Arc<(std::sync::Mutex<Option<Answer>>, atomic_waker::AtomicWaker)> = Arc::default();
    let (theirs, name) = (Arc::clone(&slot), host.to_string());
    std::thread::Builder::new()
        .name("edge-resolve".into())
        .spawn(move || {
            let answer = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("resolving {name}: {e}"))
                .map(|addrs| addrs.collect::<Vec<_>>())
                .and_then(|addrs| {
                    (!addrs.is_empty())
                        .then_some(addrs)
                        .ok_or(format!("{name} has no address"))
                });
            *theirs.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            theirs.1.wake();
        })
        .map_err(|e| format!("resolving {host}: no thread: {e}"))?;
    poll_fn(|cx| {
        slot.1.register(cx.waker());
        match slot.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn names_resolve_off_the_shard_and_literals_directly() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let literal = resolve("127.0.0.9", 1935).await.unwrap();
            assert_eq!(literal, ["127.0.0.9:1935".parse().unwrap()]);
            let v6 = resolve("::1", 80).await.unwrap();
            assert_eq!(v6, ["[::1]:80".parse().unwrap()]);
            let bracketed = resolve("[::1]", 80).await.unwrap();
            assert_eq!(bracketed, v6, "as URLs write it");
            // Through the resolver thread (/etc/hosts), woken back onto this runtime.
            let named = resolve("localhost", 1935).await.unwrap();
            assert!(
                named
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 1935),
                "{named:?}"
            );
            let bad = resolve("bad host name", 1935).await;
            assert!(bad.is_err(), "{bad:?}");
        });
    }
}
