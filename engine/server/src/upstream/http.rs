//! Requests to HTTP origins, for the HLS pull: one keep-alive pool per shard (the owner
//! shard of each pulled stream makes its requests), HTTPS with the same TLS client stack as
//! `rtmps://` origins, and a deadline on every wait: connect (name resolution and TLS
//! included), first byte of the response, and each read after it.
//!
//! Body bytes go to the caller as they arrive, so it can hand them on while the rest is
//! still on the way.
//!
//! Must not: decide what a failure means for a stream (edge-core's `hls::pull` does), keep
//! a connection whose response was not read to its end, or wait without a deadline.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edge_core::hls::pull::{FetchError, FetchTarget};
use edge_core::http::{parse_response_head, ResponseHead};
use edge_core::httpc::{request, BodyReader};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use tracing::debug;

use crate::net::conn::Conn;
use crate::net::contain;
use crate::net::dial;
use crate::net::tls;

/// Idle connections kept per origin address.
const IDLE_PER_ORIGIN: usize = 8;
/// The read buffer's size.
const READ_BUF: usize = 64 * 1024;

type Address = (String, u16, bool);

/// Timeouts of one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub connect: Duration,
    /// From the request's write to the response's first byte.
    pub first_byte: Duration,
    /// Between two reads of the body.
    pub idle: Duration,
}

/// What a request delivers to its caller.
pub(crate) enum Delivery<'a> {
    Head(&'a ResponseHead),
    Body(&'a [u8]),
}

/// How to reach one origin address when its `[[origins]]` table says more than the
/// defaults: the way out, and the connect deadline.
#[derive(Debug, Clone)]
pub(crate) struct OriginRoute {
    pub egress: dial::Egress,
    pub connect_timeout: Option<Duration>,
}

/// A shard's connections to HTTP origins.
pub(crate) struct OriginPool {
    idle: RefCell<HashMap<Address, Vec<Conn>>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    routes: HashMap<Address, OriginRoute>,
}

impl OriginPool {
    /// A pool; `routes` are the origins with settings of their own, by (host, port, TLS).
    pub(crate) fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        routes: HashMap<(String, u16, bool), OriginRoute>,
    ) -> Self {
        Self {
            idle: RefCell::new(HashMap::new()),
            tls,
            routes,
        }
    }

    /// GETs `target`, calling `deliver` with the head and then each run of body bytes.
    /// `Err` for a failure to connect or read, a deadline passed, or a body that ended
    /// early; `deliver`'s own error stops the request. A status other than 200 is the
    /// caller's to judge (its head is delivered).
    pub(crate) async fn get(
        &self,
        target: &FetchTarget,
        deadlines: Deadlines,
        mut deliver: impl FnMut(Delivery<'_>) -> Result<(), FetchError>,
    ) -> Result<(), FetchError> {
        let address = (target.host.clone(), target.port, target.tls);
        // A kept connection the origin has closed fails before its first byte: once more on
        // a new one.
        let pooled = self.take(&address);
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect(target, deadlines.connect).await?,
        };
        match self.exchange(conn, target, deadlines, &mut deliver).await {
            Err(Attempt::Stale) if reused => {
                debug!(%target, "kept origin connection was closed; reconnecting");
                let conn = self.connect(target, deadlines.connect).await?;
                match self.exchange(conn, target, deadlines, &mut deliver).await {
                    Ok(Some(conn)) => self.keep(address, conn),
                    Ok(None) => {}
                    Err(Attempt::Stale) => return Err(FetchError::Failed),
                    Err(Attempt::Failed(e)) => return Err(e),
                }
            }
            Err(Attempt::Stale) => return Err(FetchError::Failed),
            Err(Attempt::Failed(e)) => return Err(e),
            Ok(Some(conn)) => self.keep(address, conn),
            Ok(None) => {}
        }
        Ok(())
    }

    fn take(&self, address: &Address) -> Option<Conn> {
        self.idle.borrow_mut().get_mut(address)?.pop()
    }

    fn keep(&self, address: Address, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(address).or_default();
        if list.len() < IDLE_PER_ORIGIN {
            list.push(conn);
        }
    }

    async fn connect(&self, target: &FetchTarget, timeout: Duration) -> Result<Conn, FetchError> {
        let route = self
            .routes
            .get(&(target.host.clone(), target.port, target.tls));
        let timeout = route.and_then(|r| r.connect_timeout).unwrap_or(timeout);
        let default = dial::Egress::default();
        let egress = route.map_or(&default, |r| &r.egress);
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = dial::connect_via(host, target.port, timeout, egress)
            .await
            .map_err(|e| {
                debug!(%target, "origin connect failed: {e}");
                if e.contains("no answer") {
                    FetchError::Timeout
                } else {
                    FetchError::Failed
                }
            })?;
        if !target.tls {
            return Ok(Conn::Tcp(tcp));
        }
        let config = self.tls.as_ref().ok_or(FetchError::Failed)?;
        match monoio::time::timeout(
            timeout,
            tls::connect(tcp.into_split(), Arc::clone(config), host),
        )
        .await
        {
            Ok(Ok(s)) => Ok(Conn::Tls(Box::new(s))),
            Ok(Err(e)) => {
                debug!(%target, "TLS with the origin failed: {e}");
                Err(FetchError::Failed)
            }
            Err(_) => Err(FetchError::Timeout),
        }
    }

    /// One request and its response; the connection back when it can be kept.
    async fn exchange(
        &self,
        mut conn: Conn,
        target: &FetchTarget,
        deadlines: Deadlines,
        deliver: &mut impl FnMut(Delivery<'_>) -> Result<(), FetchError>,
    ) -> Result<Option<Conn>, Attempt> {
        let req = request("GET", &target.authority(), &target.path);
        let (written, _) = conn.write_all(req).await;
        if written.is_err() {
            return Err(Attempt::Stale);
        }
        let mut pending: Vec<u8> = Vec::with_capacity(READ_BUF);
        let mut buf = Vec::with_capacity(READ_BUF);
        let mut out = Vec::with_capacity(READ_BUF);
        let mut state: Option<(ResponseHead, BodyReader)> = None;
        loop {
            // Whatever is buffered first: the head, then body bytes.
            if state.is_none() {
                // Parsing a peer's bytes: a panic ends this request, not the shard.
                let parsed = contain::peer_input(|| parse_response_head(&pending))
                    .map_err(|_| Attempt::Failed(FetchError::Failed))?;
                match parsed {
                    Ok(Some(head)) => {
                        pending.drain(..head.len);
                        deliver(Delivery::Head(&head)).map_err(Attempt::Failed)?;
                        let body = BodyReader::new(&head, false);
                        state = Some((head, body));
                    }
                    Ok(None) => {}
                    Err(_) => return Err(Attempt::Failed(FetchError::Failed)),
                }
            }
            if let Some((head, body)) = &mut state {
                out.clear();
                let used = contain::peer_input(|| body.read(&pending, &mut out))
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(Attempt::Failed(FetchError::Failed))?;
                pending.drain(..used);
                if !out.is_empty() {
                    deliver(Delivery::Body(&out)).map_err(Attempt::Failed)?;
                }
                if body.done() {
                    let keep = body.reusable(head) && pending.is_empty();
                    return Ok(keep.then_some(conn));
                }
            }
            let wait = if state.is_none() && pending.is_empty() {
                deadlines.first_byte
            } else {
                deadlines.idle
            };
            let Ok((res, b)) = monoio::time::timeout(wait, conn.read(buf)).await else {
                return Err(Attempt::Failed(FetchError::Timeout));
            };
            buf = b;
            match res {
                Ok(0) | Err(_) => {
                    if let Some((_, body)) = &mut state {
                        if body.closed() {
                            return Ok(None);
                        }
                        return Err(Attempt::Failed(FetchError::Failed));
                    }
                    return Err(if pending.is_empty() {
                        Attempt::Stale
                    } else {
                        Attempt::Failed(FetchError::Failed)
                    });
                }
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    buf.clear();
                }
            }
        }
    }
}

enum Attempt {
    /// Nothing came back: the connection was closed before the request reached the origin.
    Stale,
    Failed(FetchError),
}
