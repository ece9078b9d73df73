//! Whether each configured origin can be reached, for `/healthz`: a thread of its own
//! resolves and connects to every static origin's address every [`EVERY`], each attempt
//! bounded by [`CONNECT_TIMEOUT`], and keeps the last answer.
//!
//! Must not: run on a shard or make one wait (the shards only read the answers, under a
//! mutex the prober holds for a store); decide anything about pulls (their own failover
//! does, on what their connections see).

use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often every origin is tried.
pub(crate) const EVERY: Duration = Duration::from_secs(5);
/// How long one connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One origin's last answer.
pub(crate) struct OriginHealth {
    /// The origin as configured (`rtmp://…`, `http://…`).
    pub url: String,
    host: String,
    port: u16,
    /// The way out its pulls take (its `[[origins]]` table's), which the probe takes too.
    egress: crate::net::dial::Egress,
    last: Mutex<Option<Probe>>,
}

#[derive(Clone)]
struct Probe {
    at: Instant,
    /// `None`: it connected.
    error: Option<String>,
}

impl OriginHealth {
    pub(crate) fn new(
        url: String,
        host: String,
        port: u16,
        egress: crate::net::dial::Egress,
    ) -> Self {
        Self {
            url,
            host,
            port,
            egress,
            last: Mutex::new(None),
        }
    }

    /// The origin as `/healthz` shows it.
    fn report(&self) -> OriginReport<'_> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        OriginReport {
            url: &self.url,
            reachable: last.as_ref().map(|p| p.error.is_none()),
            checked_ms_ago: last.as_ref().map(|p| p.at.elapsed().as_millis() as u64),
            error: last.and_then(|p| p.error),
        }
    }

    /// One attempt: resolve, then connect to the first address that answers.
    fn probe(&self) {
        let error = match (self.host.as_str(), self.port).to_socket_addrs() {
            Err(e) => Some(format!("resolving {}: {e}", self.host)),
            Ok(addrs) => {
                let mut last = Some(format!("{} resolves to no address", self.host));
                for a in addrs {
                    match crate::net::dial::connect_blocking(a, &self.egress, CONNECT_TIMEOUT) {
                        Ok(_) => {
                            last = None;
                            break;
                        }
                        Err(e) => last = Some(format!("connecting to {a}: {e}")),
                    }
                }
                last
            }
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Probe {
            at: Instant::now(),
            error,
        });
    }
}

/// One origin in `/healthz`: `reachable` and `checked_ms_ago` are null until the first
/// attempt ends.
#[derive(serde::Serialize)]
struct OriginReport<'a> {
    url: &'a str,
    reachable: Option<bool>,
    checked_ms_ago: Option<u64>,
    error: Option<String>,
}

impl serde::Serialize for OriginHealth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.report().serialize(s)
    }
}

/// Starts the prober thread for `origins` (nothing when there are none).
pub(crate) fn start(origins: Arc<[OriginHealth]>) -> std::io::Result<()> {
    if origins.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("edge-origin-probe".into())
        .spawn(move || loop {
            for o in origins.iter() {
                o.probe();
            }
            std::thread::sleep(EVERY);
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_origin_is_reachable_and_a_closed_port_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = OriginHealth::new(
            "rtmp://127.0.0.1/live".into(),
            "127.0.0.1".into(),
            port,
            Default::default(),
        );
        let render = |o: &OriginHealth| serde_json::to_string(o).unwrap();
        assert!(render(&up).contains("\"reachable\":null"));
        up.probe();
        assert!(
            render(&up).contains("\"reachable\":true"),
            "{}",
            render(&up)
        );
        drop(l);
        up.probe();
        let text = render(&up);
        assert!(text.contains("\"reachable\":false"), "{text}");
        assert!(text.contains("connecting to 127.0.0.1:"), "{text}");
        let nowhere = OriginHealth::new(
            "rtmp://no such host/live".into(),
            "no such host".into(),
            1935,
            Default::default(),
        );
        nowhere.probe();
        assert!(render(&nowhere).contains("resolving no such host"));
    }
}
