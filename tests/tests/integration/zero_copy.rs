//! Zero-copy segment sends (issue 19). The same stream published to an engine that sends
//! segment bodies by reference (`--zero-copy on`, vmsplice + splice) and to one that copies
//! them (`--zero-copy off`, writev): every response is byte-identical, GET, HEAD and pipelined
//! keep-alive alike; `/healthz` names each shard's path; the counters show what left by
//! reference. The page-reuse hazard itself is tested in the engine (`zerocopy::tests`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tests::{http_get, parse_playlist, publish_and_wait_for_endlist, Engine};

/// Writes all `requests` at once on one connection and reads until the server closes it (the
/// last request says `Connection: close`).
fn pipelined(addr: SocketAddr, requests: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(requests.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Splits pipelined 200 responses (`head_only[i]` for a HEAD): per response, its
/// Content-Length and its body. Anything left over fails.
fn split_answers(mut all: &[u8], head_only: &[bool]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for &head in head_only {
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a whole head")
            + 4;
        let text = std::str::from_utf8(&all[..end])
            .unwrap()
            .to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200 "), "{text}");
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a Content-Length")
            .trim()
            .parse()
            .unwrap();
        let body_len = if head { 0 } else { len };
        out.push((len, all[end..end + body_len].to_vec()));
        all = &all[end + body_len..];
    }
    assert!(all.is_empty(), "{} bytes after the last answer", all.len());
    out
}

fn paths(engine: &Engine) -> Vec<String> {
    let body = http_get(engine.http, "/healthz").body;
    let text = String::from_utf8(body).unwrap();
    text.split("\"send_path\":\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn segment_responses_are_byte_identical_by_reference_and_by_copy() {
    let by_ref = Engine::start(&["--cores", "2", "--zero-copy", "on"]);
    let by_copy = Engine::start(&["--cores", "2", "--zero-copy", "off"]);
    assert_eq!(paths(&by_ref), ["splice", "splice"], "every shard splices");
    assert_eq!(paths(&by_copy), ["writev", "writev"]);

    let a = publish_and_wait_for_endlist(&by_ref, "live/zc");
    let b = publish_and_wait_for_endlist(&by_copy, "live/zc");
    let (segs_a, _) = parse_playlist(&a);
    let (segs_b, _) = parse_playlist(&b);
    assert_eq!(segs_a, segs_b, "the same segments, cut the same way");
    assert!(segs_a.len() >= 3, "{a}");

    // Every segment: GET, then HEAD, then GET again, pipelined on one connection; the last
    // request closes it. Both engines are asked on several connections, so both shards
    // answer some.
    let mut body_bytes = 0;
    for (i, (uri, _)) in segs_a.iter().enumerate() {
        let next = &segs_a[(i + 1) % segs_a.len()].0;
        let requests = format!(
            "GET /live/{uri} HTTP/1.1\r\nHost: t\r\n\r\n\
HEAD /live/{uri} HTTP/1.1\r\nHost: t\r\n\r\n\
GET /live/{next} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        );
        let got_a = pipelined(by_ref.http, &requests);
        let got_b = pipelined(by_copy.http, &requests);
        assert!(got_a.starts_with(b"HTTP/1.1 200 "), "{uri}");
        assert_eq!(
            got_a.len(),
            got_b.len(),
            "{uri}: the same length by reference and by copy"
        );
        assert!(
            got_a == got_b,
            "{uri}: the same bytes by reference and by copy"
        );
        let single = http_get(by_ref.http, &format!("/live/{uri}"));
        assert_eq!(single.status(), 200);
        assert_eq!(single.body[0], 0x47, "a TS segment");
        // This segment's body twice here (the pipelined GET and this one), and once more as
        // the `next` of the segment before it.
        body_bytes += 3 * single.body.len() as u64;
        // The pipelined answer: the GET's body, the HEAD's head alone (with the same length),
        // then the next segment, nothing more.
        let answers = split_answers(&got_a, &[false, true, false]);
        assert_eq!(answers[0].1, single.body, "{uri}: GET");
        assert_eq!(
            answers[1].0,
            single.body.len(),
            "{uri}: HEAD's Content-Length"
        );
        assert!(answers[1].1.is_empty(), "{uri}: HEAD has no body");
        let next_body = http_get(by_copy.http, &format!("/live/{next}")).body;
        assert_eq!(answers[2].1, next_body, "{uri}: the next GET");
    }
    let metrics = by_ref.metrics();
    assert_eq!(
        metrics.sum("zero_copy_bytes"),
        body_bytes,
        "every segment body left by reference, and nothing else"
    );
    assert_eq!(metrics.sum("zero_copy_fallbacks"), 0);
    assert_eq!(by_copy.metrics().sum("zero_copy_bytes"), 0, "copied");
}
