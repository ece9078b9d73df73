use std::io::Read;
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::time::Duration;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::*;
use crate::net::arena::{ArenaAppender, CHUNK_BYTES};

fn pattern(seed: u8) -> Vec<u8> {
    (0..CHUNK_BYTES)
        .map(|i| (i as u32).wrapping_mul(7).wrapping_add(u32::from(seed)) as u8)
        .collect()
}

/// A loopback pair whose receiver can queue `bytes` without reading: the server end (std,
/// for the runtime to adopt) and the client end.
fn pair(bytes: usize) -> (StdTcpStream, StdTcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client.set_recv_buffer_size(4 * bytes).unwrap();
    client.connect(&l.local_addr().unwrap().into()).unwrap();
    let (server, _) = l.accept().unwrap();
    socket2::SockRef::from(&server)
        .set_send_buffer_size(4 * bytes)
        .unwrap();
    (server, client.into())
}

fn arenas(arena: &Arc<Arena>) -> Arc<[OnceLock<Arc<Arena>>]> {
    let slot = OnceLock::new();
    let _ = slot.set(Arc::clone(arena));
    vec![slot].into()
}

fn read_exactly(client: &mut StdTcpStream, n: usize) -> Vec<u8> {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = vec![0u8; n];
    client.read_exact(&mut got).unwrap();
    got
}

/// Segment A goes out by reference and sits unread in the receiver's queue; A is evicted, its
/// only chunk is reused for segment B; the receiver then reads: every byte must be A's.
fn reuse_while_unread<D: monoio::Driver>(mut rt: monoio::Runtime<D>) {
    let arena = Arena::new(CHUNK_BYTES).unwrap();
    assert_eq!(arena.chunks(), 1);
    probe(&arena).expect("this host can splice (CI's can)");
    let sender = Sender::new(arenas(&arena));
    let (server, mut client) = pair(CHUNK_BYTES);
    let a = pattern(1);
    let mut w = ArenaAppender::new(Arc::clone(&arena));
    w.append(&a, &mut Vec::new()).unwrap();
    let segment_a = w.finish();
    let chunk_at = segment_a[0].as_ptr();
    let sent = rt.block_on(async {
        let s = TcpStream::from_std(server).unwrap();
        let sent = sender.send(&s, &segment_a).await.unwrap().unwrap();
        // Keep the server end open until the client has read.
        (sent, s)
    });
    assert_eq!(sent.0.bytes, CHUNK_BYTES);
    assert_eq!(sent.0.lent, CHUNK_BYTES, "sent by reference, not copied");
    drop(segment_a);
    assert_eq!(arena.free_chunks(), 1);
    assert_eq!(
        arena.dropped_pages_chunks(),
        1,
        "a lent chunk drops its pages"
    );
    let b = pattern(2);
    let mut w = ArenaAppender::new(Arc::clone(&arena));
    w.append(&b, &mut Vec::new()).unwrap();
    let segment_b = w.finish();
    assert_eq!(segment_b[0].as_ptr(), chunk_at, "the same chunk, rewritten");
    assert_eq!(&segment_b[0][..], &b[..]);
    let got = read_exactly(&mut client, CHUNK_BYTES);
    let wrong = got.iter().zip(&a).filter(|(x, y)| x != y).count();
    assert_eq!(
        wrong, 0,
        "{wrong} of {CHUNK_BYTES} bytes changed under the reader"
    );
    drop(sent);
}

#[test]
fn a_reader_that_has_not_read_keeps_the_original_bytes_when_the_chunk_is_reused_io_uring() {
    reuse_while_unread(
        RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap(),
    );
}

#[test]
fn a_reader_that_has_not_read_keeps_the_original_bytes_when_the_chunk_is_reused_legacy() {
    reuse_while_unread(
        RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap(),
    );
}

/// The control: the same scenario with the pages rewritten in place (no lend, so the chunk
/// keeps its pages) shows the reader the new bytes. This is the hazard the arena's page drop
/// removes, and why the test above can fail.
#[test]
fn without_dropping_the_pages_the_reader_sees_the_rewrite() {
    let arena = Arena::new(CHUNK_BYTES).unwrap();
    let (server, mut client) = pair(CHUNK_BYTES);
    let a = pattern(1);
    let mut w = ArenaAppender::new(Arc::clone(&arena));
    w.append(&a, &mut Vec::new()).unwrap();
    let segment_a = w.finish();
    let pipe = Pipe::new().unwrap();
    let mut queued = 0;
    let mut off = 0;
    let _nb = NonBlocking::set(server.as_raw_fd()).unwrap();
    while off < CHUNK_BYTES || queued > 0 {
        if off < CHUNK_BYTES {
            if let Ok(n) = vmsplice(pipe.w.as_raw_fd(), &segment_a[0][off..]) {
                off += n;
                queued += n;
            }
        }
        let n = splice(pipe.r.as_raw_fd(), server.as_raw_fd(), queued, false).unwrap();
        queued -= n;
    }
    drop(segment_a);
    assert_eq!(arena.dropped_pages_chunks(), 0, "never lent");
    let b = pattern(2);
    let mut w = ArenaAppender::new(Arc::clone(&arena));
    w.append(&b, &mut Vec::new()).unwrap();
    let _segment_b = w.finish();
    let got = read_exactly(&mut client, CHUNK_BYTES);
    let changed = got.iter().zip(&a).filter(|(x, y)| x != y).count();
    assert!(
        changed > CHUNK_BYTES / 2,
        "the kernel sent from the arena's pages by reference: the rewrite shows ({changed} bytes changed)"
    );
}

/// Heap head, arena pieces and a heap tail, twice on one connection: the bytes arrive in
/// order and whole, only the arena bytes are lent, and the pipe is reused.
#[test]
fn mixed_buffers_arrive_in_order_and_the_pipe_is_reused() {
    let arena = Arena::new(2 * CHUNK_BYTES).unwrap();
    let sender = Sender::new(arenas(&arena));
    let (server, mut client) = pair(4 * CHUNK_BYTES);
    let body: Vec<u8> = (0..CHUNK_BYTES + 5000).map(|i| (i % 253) as u8).collect();
    let mut w = ArenaAppender::new(Arc::clone(&arena));
    let mut pieces = Vec::new();
    w.append(&body[..777], &mut pieces).unwrap();
    w.append(&body[777..], &mut pieces).unwrap();
    let mut bufs = vec![Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n")];
    bufs.extend(pieces);
    bufs.push(Bytes::from_static(b"tail"));
    assert!(sender.applies(&bufs));
    assert!(!sender.applies(&bufs[..1]), "a heap buffer is not lent");
    let mut expected = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    expected.extend_from_slice(&body);
    expected.extend_from_slice(b"tail");
    let mut rt = RuntimeBuilder::<IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let s = TcpStream::from_std(server).unwrap();
        for _ in 0..2 {
            let sent = sender.send(&s, &bufs).await.unwrap().unwrap();
            assert_eq!(sent.bytes, expected.len());
            assert_eq!(sent.lent, body.len());
        }
        s
    });
    assert_eq!(sender.open.get(), 1, "one pipe, reused");
    assert_eq!(sender.pipes.borrow().len(), 1, "and back in the pool");
    let got = read_exactly(&mut client, 2 * expected.len());
    assert_eq!(&got[..expected.len()], &expected[..]);
    assert_eq!(&got[expected.len()..], &expected[..]);
    drop(s);
}

/// A peer that goes away mid-send: an error, not a hang, and the pipe (which may hold
/// bytes) is closed rather than pooled.
#[test]
fn a_peer_that_closes_is_an_error_and_its_pipe_is_not_pooled() {
    let arena = Arena::new(4 * CHUNK_BYTES).unwrap();
    let sender = Sender::new(arenas(&arena));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = StdTcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    let body = vec![0x47u8; 4 * CHUNK_BYTES];
    let mut w = ArenaAppender::new(Arc::clone(&arena));
    w.append(&body, &mut Vec::new()).unwrap();
    let bufs = w.finish();
    let mut rt = RuntimeBuilder::<IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = TcpStream::from_std(server).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(client);
        });
        let mut failed = false;
        for _ in 0..50 {
            if sender.send(&s, &bufs).await.unwrap().is_err() {
                failed = true;
                break;
            }
        }
        closer.join().unwrap();
        assert!(failed, "writing to a closed peer fails");
    });
    assert_eq!(sender.pipes.borrow().len(), sender.open.get());
}
