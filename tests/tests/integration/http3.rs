//! HTTP/3 end to end (issue 33): an independent client (aioquic) against `--http3`, its
//! answers compared byte for byte and field for field with HTTPS's (rustls over TCP); access
//! control as over HTTP/1.1; a client whose source port keeps changing mid-download (its
//! datagrams land on the other shard and are routed back); a client on another host (a
//! network namespace) whose datagrams nftables drops at random, behind a delaying relay.

use std::time::Duration;

use tests::*;

const FIXTURE: &str = "bframes.flv";
const KEY: &str = "5eed0fa11c0ffee0123456789abcdef0";

/// 1 s segments that all stay listed, and a stream that ends soon after its publisher.
const ENDED_1S: [&str; 6] = [
    "--hls-segment-ms",
    "1000",
    "--hls-window",
    "100",
    "--republish-grace-ms",
    "300",
];

/// An engine as [`h3_engine`] with [`ENDED_1S`] and certificates named after `tag`, and
/// `live/{name}` published and ended there: its HLS and LL-HLS playlists.
fn ended_h3_stream(tag: &str, name: &str) -> (TestCerts, Engine, String, String) {
    let certs = TestCerts::generate(tag);
    let engine = h3_engine(&certs, &ENDED_1S);
    let (hls, ll) = ended_stream(&engine, name);
    (certs, engine, hls, ll)
}

/// `--https` and `--http3` on ephemeral ports with `certs`, plus `extra`.
fn h3_engine(certs: &TestCerts, extra: &[&str]) -> Engine {
    let listeners = [
        "--cores",
        "2",
        "--https",
        "127.0.0.1:0",
        "--http3",
        "127.0.0.1:0",
    ];
    Engine::start(&[&listeners[..], &certs.flags(), extra].concat())
}

/// An HTTP/1.1 response's header fields as HTTP/3 carries them: names lowercased, the
/// connection-specific ones left out (RFC 9114 §4.2).
fn h1_fields(head: &str) -> Vec<(String, String)> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "proxy-connection" | "upgrade"
            )
        })
        .collect()
}

/// Publishes the fixture to `live/{name}` and waits until both its playlists have ended
/// (they stay, unchanged, for the viewers' linger): URIs that answer the same every time.
fn ended_stream(engine: &Engine, name: &str) -> (String, String) {
    let mut publisher = ffmpeg_publish(
        &fixture(FIXTURE),
        &engine.rtmp_url(&format!("live/{name}")),
        &[],
    );
    assert!(publisher.wait().unwrap().success());
    let lists = || {
        let hls = http_get(engine.http, &format!("/live/{name}.m3u8"));
        let ll = http_get(engine.http, &format!("/live/{name}/llhls.m3u8"));
        (
            String::from_utf8_lossy(&hls.body).into_owned(),
            String::from_utf8_lossy(&ll.body).into_owned(),
        )
    };
    eventually("both playlists end", Duration::from_secs(30), || {
        let (hls, ll) = lists();
        hls.contains("#EXT-X-ENDLIST") && ll.contains("#EXT-X-ENDLIST")
    });
    lists()
}

#[test]
fn hls_and_ll_hls_over_http3_are_byte_identical_to_https() {
    let (certs, engine, hls, ll) = ended_h3_stream("h3", "h3");
    let (https, h3) = (engine.https.unwrap(), engine.http3.unwrap());
    let (segments, _) = parse_playlist(&hls);
    assert!(segments.len() >= 3, "{hls}");
    // The LL-HLS init segment and the first parts, by the URIs the playlist names.
    let ll_uris: Vec<String> = ll
        .lines()
        .filter_map(|l| l.split("URI=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect();
    let parts: Vec<&String> = ll_uris.iter().filter(|u| u.contains("part")).collect();
    assert!(parts.len() >= 4, "{ll}");
    let mut paths = vec![
        "/live/h3.m3u8".to_string(),
        "/live/h3/llhls.m3u8".to_string(),
        "/live/nothing.m3u8".to_string(),
        "/live/h3/llhls.m3u8?_HLS_skip=YES".to_string(),
    ];
    paths.extend(segments.iter().take(3).map(|(u, _)| format!("/live/{u}")));
    paths.extend(
        ll_uris
            .iter()
            .filter(|u| u.contains("init"))
            .take(1)
            .chain(parts.into_iter().take(4))
            .map(|u| format!("/live/h3/{u}")),
    );
    let mut requests: Vec<(&str, &str)> = paths.iter().map(|p| ("GET", p.as_str())).collect();
    let segment = format!("/live/{}", segments[0].0);
    requests.push(("HEAD", &segment));
    let answers = h3_requests(h3, &certs.ca, &requests);
    assert_eq!(answers.len(), requests.len());
    for (path, got) in paths.iter().zip(&answers) {
        let got = got.as_ref().unwrap_or_else(|e| panic!("{path}: {e}"));
        let want = https_get(https, &certs.ca, path);
        assert_eq!(got.status, want.status(), "{path}: status");
        assert_eq!(got.headers, h1_fields(&want.head), "{path}: header fields");
        assert_eq!(got.body.len(), want.body.len(), "{path}: body length");
        assert!(got.body == want.body, "{path}: bodies differ");
        if path.ends_with(".ts") {
            assert_eq!(got.status, 200);
            assert_eq!(got.body[0], 0x47, "{path}: a TS segment");
        }
    }
    assert_eq!(answers[2].as_ref().unwrap().status, 404);
    // HTTPS (and plain HTTP) responses announce the HTTP/3 port, so browsers move to it.
    let alt = format!("h3=\":{}\"; ma=86400", h3.port());
    let playlist = https_get(https, &certs.ca, "/live/h3.m3u8");
    assert!(
        playlist.head.contains(&format!("Alt-Svc: {alt}\r\n")),
        "{}",
        playlist.head
    );
    let plain = http_get(engine.http, "/healthz");
    assert!(
        plain.head.contains(&format!("Alt-Svc: {alt}\r\n")),
        "{}",
        plain.head
    );
    // HEAD: the GET's fields (its length too), no body.
    let head = answers.last().unwrap().as_ref().unwrap();
    let get = answers[paths.iter().position(|p| *p == segment).unwrap()]
        .as_ref()
        .unwrap();
    assert_eq!((head.status, &head.headers), (200, &get.headers));
    assert!(head.body.is_empty());

    let m = engine.metrics();
    assert_eq!(
        m.sum("http3_connections"),
        1,
        "one connection for every request"
    );
    assert_eq!(m.sum("http3_handshakes"), 1);
    assert_eq!(m.sum("http3_streams"), requests.len() as u64);
    assert!(m.sum("http3_datagrams_out") >= m.sum("http3_send_calls"));
    assert!(engine.stop().success());
}

#[test]
fn http3_applies_play_tokens_as_https_does() {
    let certs = TestCerts::generate("h3-token");
    let engine = h3_engine(&certs, &["--play-auth", "token", "--token-key", KEY]);
    let (https, h3) = (engine.https.unwrap(), engine.http3.unwrap());
    let publisher = publish_loop(&engine.rtmp_url("live/t"));
    let signed = {
        let (ok, out, err) = run_tool(
            engine_bin().to_str().unwrap(),
            &["sign", "--key", KEY, "--acl", "/live/t*", "--ttl", "60"],
            Duration::from_secs(10),
        );
        assert!(ok, "sign: {err}");
        out.trim().to_string()
    };
    engine.wait_for("a segment", Duration::from_secs(30), |m| {
        m.sum("hls_segments") >= 1
    });
    let refused = [
        "/live/t.m3u8",
        "/live/t.m3u8?token=exp=1~acl=/live/t*~hmac=00",
    ];
    let good = format!("/live/t.m3u8?token={signed}");
    let mut requests: Vec<(&str, &str)> = refused.iter().map(|p| ("GET", *p)).collect();
    requests.push(("GET", &good));
    let answers = h3_requests(h3, &certs.ca, &requests);
    for (path, got) in refused.iter().zip(&answers) {
        let got = got.as_ref().unwrap();
        let want = https_get(https, &certs.ca, path);
        assert_eq!((got.status, want.status()), (403, 403), "{path}");
        assert_eq!(got.body, want.body, "{path}: the refusal's reason");
    }
    let ok = answers[2].as_ref().unwrap();
    assert_eq!(ok.status, 200, "{good}");
    assert!(String::from_utf8_lossy(&ok.body).starts_with("#EXTM3U"));
    drop(publisher);
    assert!(engine.stop().success());
}

#[test]
fn a_client_that_changes_port_and_loses_datagrams_finishes_on_the_same_connection() {
    let certs = TestCerts::generate("h3-migrate");
    let engine = h3_engine(
        &certs,
        &[
            "--hls-segment-ms",
            "2000",
            "--hls-window",
            "100",
            "--republish-grace-ms",
            "300",
        ],
    );
    let (hls, _) = ended_stream(&engine, "m");
    let (segments, _) = parse_playlist(&hls);
    let paths: Vec<String> = segments.iter().map(|(u, _)| format!("/live/{u}")).collect();
    let requests: Vec<(&str, &str)> = paths.iter().map(|p| ("GET", p.as_str())).collect();
    // A new source port after every 4 datagrams from the server, and every 10th datagram
    // each way lost.
    let relay = UdpRelay::start(
        engine.http3.unwrap(),
        UdpPath {
            drop_every: Some(10),
            rebind_every: Some(4),
            ..UdpPath::default()
        },
    );
    let answers = h3_requests(relay.addr, &certs.ca, &requests);
    let mut total = 0;
    for (path, got) in paths.iter().zip(&answers) {
        let got = got.as_ref().unwrap_or_else(|e| panic!("{path}: {e}"));
        let want = http_get(engine.http, path);
        assert_eq!(got.status, 200, "{path}");
        assert!(got.body == want.body, "{path}: bodies differ");
        total += got.body.len();
    }
    let rebinds = relay.rebinds.load(std::sync::atomic::Ordering::Relaxed);
    // Each new port lands on either shard: 2^-20 that none of them reached the other one.
    assert!(rebinds >= 20, "{rebinds} rebinds for {total} bytes");
    assert!(relay.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let m = engine.metrics();
    // One connection throughout: every new port continued it.
    assert_eq!(m.sum("http3_connections"), 1, "{m:?}");
    // With two shards, a port's datagrams land on either: with this many new ports some
    // landed on the shard that does not hold the connection, and were passed to it.
    assert!(m.sum("http3_routed_out") >= 1, "{m:?}");
    assert!(m.sum("http3_routed_in") >= 1, "{m:?}");
    assert!(engine.stop().success());
}

#[test]
fn a_client_on_another_host_behind_random_loss_and_delay_downloads_every_byte() {
    let (certs, engine, hls, ll) = ended_h3_stream("h3-netns", "n");
    let (segments, _) = parse_playlist(&hls);
    let mut paths = vec!["/live/n.m3u8".to_string(), "/live/n/llhls.m3u8".to_string()];
    paths.extend(segments.iter().map(|(u, _)| format!("/live/{u}")));
    paths.extend(
        ll.lines()
            .filter_map(|l| l.split("URI=\"").nth(1))
            .filter_map(|r| r.split('"').next())
            .filter(|u| u.contains("part"))
            .map(|u| format!("/live/n/{u}")),
    );
    assert!(paths.len() >= 12, "{hls}\n{ll}");
    let requests: Vec<(&str, &str, &str)> = paths.iter().map(|p| ("GET", p.as_str(), "")).collect();
    // The client runs on another host (a network namespace over veth) whose nftables rules
    // drop 3 % of the UDP datagrams each way at random; the relay in front of the engine
    // holds each datagram 25 ms each way (a 50 ms round trip: the kernel here has no netem).
    let host = Netns::create("h3");
    host.drop_udp(3);
    let relay = UdpRelay::start(
        engine.http3.unwrap(),
        UdpPath {
            delay: Duration::from_millis(25),
            listen: Some(host.host_ip.into()),
            ..UdpPath::default()
        },
    );
    let answers = h3_requests_in(Some(&host.name), relay.addr, &certs.ca, &requests);
    let mut total = 0;
    for (path, got) in paths.iter().zip(&answers) {
        let got = got.as_ref().unwrap_or_else(|e| panic!("{path}: {e}"));
        let want = http_get(engine.http, path);
        assert_eq!(got.status, 200, "{path}");
        assert!(got.body == want.body, "{path}: bodies differ");
        total += got.body.len();
    }
    assert_eq!(answers.len(), paths.len());
    // The path lost datagrams (2^-40 or so that 3 % of well over a thousand spared all)...
    let dropped = host.dropped();
    assert!(dropped > 0, "no datagram dropped of {total} bytes");
    // ...and the engine found its own among them lost and sent them again (counted when the
    // connection ends: at the client's close, or its idle timeout if the close was lost).
    eventually(
        "the engine counts the packets it lost",
        Duration::from_secs(90),
        || engine.metrics().sum("http3_lost_packets") > 0,
    );
    assert_eq!(engine.metrics().sum("http3_connections"), 1);
    assert!(engine.stop().success());
}

#[test]
fn h3load_gets_every_byte_of_a_segment_again_and_again() {
    let (certs, engine, hls, _) = ended_h3_stream("h3-load", "l");
    let (segments, _) = parse_playlist(&hls);
    let path = format!("/live/{}", segments[1].0);
    let want = http_get(engine.http, &path).body.len() as u64;
    assert!(want > 10_000, "{path}: {want} bytes");
    let url = format!("https://{}{path}", engine.http3.unwrap());
    // Datagrams one by one, then runs of them coalesced by the kernel (UDP GRO) and split
    // again by h3load at their segment size.
    let mut total = 0;
    for gro in [false, true] {
        let report = std::env::temp_dir().join(format!("h3load-{}-{gro}.json", std::process::id()));
        let mut args = vec![
            "--url",
            &url,
            "--ca",
            certs.ca.to_str().unwrap(),
            "--server-name",
            "localhost",
            "--connections",
            "4",
            "--duration",
            "2s",
            "--json",
            report.to_str().unwrap(),
        ];
        if gro {
            args.push("--gro");
        }
        let (ok, out, err) = run_tool(
            h3load_bin().to_str().unwrap(),
            &args,
            Duration::from_secs(60),
        );
        assert!(ok, "h3load (gro {gro}): {out}{err}");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let _ = std::fs::remove_file(&report);
        let requests = r["requests"].as_u64().unwrap();
        assert!(requests >= 8, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(r["not_ok"], 0, "{r}");
        assert_eq!(r["handshakes"], 4, "{r}");
        // Every response had the segment's whole body: no more, no less.
        assert_eq!(r["body_bytes"].as_u64().unwrap(), requests * want, "{r}");
        let (datagrams, receives) = (
            r["datagrams_in"].as_u64().unwrap(),
            r["receives"].as_u64().unwrap(),
        );
        if gro {
            // The engine sends a segment's datagrams in offload batches: the kernel handed
            // them over in runs.
            assert!(receives < datagrams, "{r}");
        } else {
            assert_eq!(receives, datagrams, "{r}");
        }
        total += requests;
    }
    let m = engine.metrics();
    assert_eq!(m.sum("http3_connections"), 8, "{m:?}");
    assert!(m.sum("http3_streams") >= total, "{m:?}");
    assert!(engine.stop().success());
}

#[test]
fn a_returning_client_gets_its_first_answers_in_0rtt_and_only_safe_methods_are_served_early() {
    let (certs, engine, hls, _) = ended_h3_stream("h3-0rtt", "z");
    let (segments, _) = parse_playlist(&hls);
    let segment = format!("/live/{}", segments[0].0);
    let requests = [
        ("GET", "/live/z.m3u8", ""),
        ("GET", segment.as_str(), ""),
        // A WHEP offer is not safe to replay: refused in early data, whatever its body.
        ("POST", "/live/z/whep", "v=0\r\n"),
        ("HEAD", segment.as_str(), ""),
    ];
    // Four returning clients on an engine of two shards: each resumes wherever its new
    // connection lands (one session cache for the machine), 1 in 8 that all four land on the
    // shard that made their tickets.
    let (first, resumed) = h3_resumed(engine.http3.unwrap(), &certs.ca, &requests, 4);
    assert_eq!(first.status, 200);
    assert_eq!(resumed.len(), 4);
    let playlist = http_get(engine.http, "/live/z.m3u8").body;
    let body = http_get(engine.http, &segment).body;
    for (i, c) in resumed.iter().enumerate() {
        assert!(
            c.resumed && c.early_data_accepted,
            "connection {i}: resumed {}, early data accepted {}",
            c.resumed,
            c.early_data_accepted
        );
        let a: Vec<&H3Response> = c
            .answers
            .iter()
            .map(|a| a.as_ref().unwrap_or_else(|e| panic!("connection {i}: {e}")))
            .collect();
        assert_eq!(
            (a[0].status, &a[0].body),
            (200, &playlist),
            "connection {i}"
        );
        assert_eq!(a[1].status, 200, "connection {i}");
        assert!(a[1].body == body, "connection {i}: the segment differs");
        assert_eq!(a[2].status, 425, "connection {i}: {:?}", a[2]);
        assert!(
            String::from_utf8_lossy(&a[2].body).contains("too early"),
            "{:?}",
            a[2]
        );
        assert_eq!(a[3].status, 200, "connection {i}");
        assert_eq!(
            a[3].header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
    let m = engine.metrics();
    assert_eq!(m.sum("http3_resumed_0rtt"), 4, "{m:?}");
    // At least the four offers came early (each was refused as early); the GETs and HEADs
    // were answered from early data too.
    assert!(m.sum("http3_early_requests") >= 4, "{m:?}");
    // The same offer over HTTP/1.1 from a CDN that took it in early data says so with
    // `Early-Data: 1` (RFC 8470), and is refused the same way.
    let mut s = std::net::TcpStream::connect(engine.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /live/z/whep HTTP/1.1\r\nHost: t\r\nEarly-Data: 1\r\nContent-Type: application/sdp\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\nv=0\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let r = split_response(&all);
    assert_eq!(r.status(), 425, "{}", r.head);
    assert!(
        r.head.starts_with("HTTP/1.1 425 Too Early\r\n"),
        "{}",
        r.head
    );
    assert!(engine.stop().success());
}
