//! HTTP/3 requests in: each request the shard's QUIC endpoint reads off a connection is
//! answered by the HTTP/1.1 driver ([`crate::serve::http::serve`]) in a task of its own, over
//! the request stream ([`crate::net::quic::H3Stream`]), so every route, access check and hook
//! is the one HTTP/1.1 and HTTPS use, with the same bytes and headers.
//!
//! Must not: route, authorize or answer anything itself.

use std::rc::Rc;

use crate::net::conn::Conn;
use crate::net::quic::QuicEndpoint;
use crate::shard::ShardHandle;

/// Takes requests off `quic` until the shard stops.
pub(crate) async fn serve_requests(shard: ShardHandle, quic: Rc<QuicEndpoint>) {
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
