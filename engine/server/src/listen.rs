//! Listening sockets and accept loops. Every shard binds the same address with SO_REUSEPORT
//! and accepts on its own; the kernel spreads connections by 4-tuple hash. Nothing is handed
//! between threads after accept.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{error, warn};

use crate::shard::Shard;
use crate::stats::Counter;

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT and starts listening.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Rtmp,
    Http,
}

/// Accepts until the shard stops. EMFILE/ENFILE and similar back off (never spin) and are
/// logged at most once per second with how many happened.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, service: Service) {
    let mut last_log_ms: Option<u64> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let s = Rc::clone(&shard);
                match service {
                    Service::Rtmp => {
                        shard.stats().rtmp_connections_accepted.inc();
                        monoio::spawn(crate::rtmp::serve(s, stream));
                    }
                    Service::Http => {
                        shard.stats().http_connections_accepted.inc();
                        monoio::spawn(crate::http::serve(s, stream));
                    }
                }
            }
            Err(e) => {
                shard.stats().accept_errors.inc();
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                let now = shard.now_ms();
                if last_log_ms.is_none_or(|t| now.saturating_sub(t) >= 1000) {
                    if resource {
                        warn!(
                            shard = %shard.id,
                            ?service,
                            "accept failed: {e} ({suppressed} more since last report); backing off"
                        );
                    } else {
                        error!(
                            shard = %shard.id,
                            ?service,
                            "accept failed: {e} ({suppressed} more since last report)"
                        );
                    }
                    last_log_ms = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                let pause = if resource { 50 } else { 5 };
                monoio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}
