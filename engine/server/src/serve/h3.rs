//! HTTP/3 requests in: each request the shard's QUIC endpoint reads off a connection is
//! answered by the HTTP/1.1 driver ([`crate::serve::http::serve`]) in a task of its own, over
//! the request stream ([`crate::net::quic::H3Stream`]), so every route, access check and hook
//! is the one HTTP/1.1 and HTTPS use, with the same bytes and headers.
//!
//! Must not: route, authorize or answer anything itself.

use std::rc::Rc;

use crate::net::conn::Conn;
use crate::net::quic::QuicEndpoint;
use crate::serve::listen;
use crate::shard::ShardHandle;

/// How often a shard looks whether its listeners were closed (a drain or a handover).
const WATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// Takes requests off `quic` until the shard stops. When the TCP listeners close (a drain,
/// an upgrade's handover) every connection gets GOAWAY: what it asked for is answered, then
/// it closes, and new connections are refused.
pub(crate) async fn serve_requests(shard: ShardHandle, quic: Rc<QuicEndpoint>) {
    // A QUIC connection counts against --max-connections and --max-connections-per-ip as a
    // TCP connection does; a refused one is answered CONNECTION_REFUSED.
    let s = shard.clone();
    quic.set_admission(Box::new(move |peer| match listen::admit(&s, peer) {
        Ok(permit) => Ok(permit.map(|p| Box::new(p) as Box<dyn std::any::Any>)),
        Err(refusal) => {
            listen::count_refusal(&s, refusal);
            Err(())
        }
    }));
    let (s, q) = (shard.clone(), Rc::clone(&quic));
    monoio::spawn(async move {
        while !s.machine().control.accepting_ended() {
            monoio::time::sleep(WATCH).await;
        }
        q.go_away();
    });
    loop {
        let stream = quic.accept().await;
        let peer = stream.peer();
        // No socket of its own: an abortive close resets the stream instead (its writer is
        // dropped before the response is whole).
        monoio::spawn(crate::serve::http::serve(
            shard.clone(),
            Conn::H3(Box::new(stream)),
            Some(peer),
            -1,
        ));
    }
}
