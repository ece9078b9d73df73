//! TLS end to end (issue 14): `--rtmps` and `--https` listeners in front of ffmpeg and a
//! rustls client, handshakes that stall or are garbage, SIGHUP certificate reload under a
//! live session, and an edge pulling from an `rtmps://` origin that it must verify. The test
//! certificates come from openssl (a throwaway CA and a `localhost`/127.0.0.1 leaf).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tests::*;

const FIXTURE: &str = "bframes.flv";

/// `--https` and `--rtmps` on ephemeral ports with `certs`, plus `extra`.
fn tls_engine(certs: &TestCerts, extra: &[&str]) -> Engine {
    let listeners = [
        "--cores",
        "2",
        "--https",
        "127.0.0.1:0",
        "--rtmps",
        "127.0.0.1:0",
    ];
    Engine::start(&[&listeners[..], &certs.flags(), extra].concat())
}

#[test]
fn ffmpeg_publishes_over_rtmps_and_plays_https_flv_rtmps_and_hls_identically() {
    let certs = TestCerts::generate("ffmpeg");
    let engine = tls_engine(&certs, &["--republish-grace-ms", "300"]);
    let (https, rtmps) = (engine.https.unwrap(), engine.rtmps.unwrap());
    let source = fixture_md5(FIXTURE);
    let players: Vec<_> = (0..4)
        .map(|i| {
            let url = if i % 2 == 0 {
                format!("https://{https}/live/tls.flv")
            } else {
                format!("rtmps://{rtmps}/live/tls")
            };
            std::thread::spawn(move || (url.clone(), framemd5(&url, Duration::from_secs(60))))
        })
        .collect();
    engine.wait_for("4 waiting TLS players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") + m.sum("flv_players") == 4
    });
    let mut publisher =
        ffmpeg_publish(&fixture(FIXTURE), &format!("rtmps://{rtmps}/live/tls"), &[]);
    // HLS over HTTPS while it is live: the playlist and a segment, byte for byte what the
    // plain listener serves.
    engine.wait_for("a first segment", Duration::from_secs(30), |m| {
        m.sum("hls_segments") >= 1
    });
    let playlist = https_get(https, &certs.ca, "/live/tls.m3u8");
    assert_eq!(playlist.status(), 200, "{}", playlist.head);
    let text = String::from_utf8(playlist.body.clone()).unwrap();
    let (segments, _) = parse_playlist(&text);
    let (uri, _) = segments.first().expect("a segment in the playlist").clone();
    let path = format!("/live/{uri}");
    let over_tls = https_get(https, &certs.ca, &path);
    let plain = http_get(engine.http, &path);
    assert_eq!((over_tls.status(), plain.status()), (200, 200));
    assert!(
        over_tls.body.len() > 188 && over_tls.body[0] == 0x47,
        "a TS segment"
    );
    assert_eq!(
        over_tls.body, plain.body,
        "{path}: HTTPS and HTTP bodies differ"
    );

    assert!(
        publisher.wait().unwrap().success(),
        "ffmpeg published over RTMPS"
    );
    for p in players {
        let (url, (lines, err)) = p.join().unwrap();
        assert_eq!(lines.len(), source.len(), "{url}: packet count");
        assert_eq!(lines, source, "{url}: packets differ from the source");
        // ffmpeg's RTMP player writes its teardown after the engine has ended the stream
        // and closed (close_notify, then FIN): that write may fail. Nothing else may.
        let unexpected: Vec<&str> = err
            .lines()
            .filter(|l| {
                !(url.starts_with("rtmps:")
                    && (l.contains("Error in the push function") || l.contains("Broken pipe")))
            })
            .collect();
        assert!(unexpected.is_empty(), "{url}: {err}");
    }
    let m = engine.metrics();
    // 4 players, the publisher, the playlist and the segment at least.
    assert!(m.sum("tls_handshakes") >= 7, "{m:?}");
    assert_eq!(m.sum("tls_handshake_failures"), 0, "{m:?}");
    assert!(engine.stop().success());
}

/// True once the peer has closed `s` (EOF or reset), false if it is still open at the
/// read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an alert, then the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn stalled_and_garbage_handshakes_are_closed_and_counted_and_others_are_served() {
    let certs = TestCerts::generate("stall");
    let engine = tls_engine(&certs, &["--tls-handshake-timeout-ms", "400"]);
    let (https, rtmps) = (engine.https.unwrap(), engine.rtmps.unwrap());
    // Twenty sockets that connect and say nothing, on both TLS listeners.
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|i| {
            let s = TcpStream::connect(if i % 2 == 0 { https } else { rtmps }).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        })
        .collect();
    let m = engine.wait_for("20 handshake timeouts", Duration::from_secs(30), |m| {
        m.sum("tls_handshake_timeouts") == 20
    });
    assert_eq!(m.sum("tls_handshake_failures"), 20, "timeouts are failures");
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(closed(s), "silent socket {i} was closed by the engine");
    }
    // Plain HTTP sent to the HTTPS port: not a ClientHello, so refused at once.
    let mut garbage = TcpStream::connect(https).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    garbage
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(closed(&mut garbage), "garbage is closed");
    let m = engine.wait_for("the garbage counted", Duration::from_secs(10), |m| {
        m.sum("tls_handshake_failures") == 21
    });
    assert_eq!(m.sum("tls_handshake_timeouts"), 20);
    assert_eq!(m.sum("tls_handshakes"), 0);
    // The listeners still serve a real client.
    let ok = https_get(https, &certs.ca, "/healthz");
    assert_eq!(ok.status(), 200, "{}", ok.head);
    let m = engine.metrics();
    assert_eq!(m.sum("tls_handshakes"), 1);
}

/// Reads at least `n` more bytes of the open HTTP-FLV response on `tls`.
fn read_more(tls: &mut TlsClient, n: usize) -> usize {
    let mut got = 0;
    let mut buf = [0u8; 16 * 1024];
    while got < n {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    got
}

#[test]
fn sighup_reloads_the_certificate_without_touching_open_sessions() {
    let certs = TestCerts::generate("reload");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let engine = Engine::start_logged(
        &[
            "--cores",
            "2",
            "--https",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        "info",
    );
    let https = engine.https.unwrap();
    let _publisher = publish_loop(&engine.rtmp_url("live/hup"));
    let old_leaf = TestCerts::leaf_der(&certs.cert);
    // A viewer on the old certificate, receiving.
    let (mut viewer, shown) = tls_connect(https, &certs.ca);
    assert_eq!(shown, old_leaf);
    write!(
        viewer,
        "GET /live/hup.flv HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    viewer.flush().unwrap();
    assert!(
        read_more(&mut viewer, 64 * 1024) >= 64 * 1024,
        "the FLV session flows"
    );

    // A new leaf written beside the old one and renamed over it, as certbot and
    // cert-manager do, then SIGHUP.
    let (new_cert, new_key) = (certs.dir.join("new.pem"), certs.dir.join("new.key"));
    certs.issue_leaf(&new_cert, &new_key, "2");
    let new_leaf = TestCerts::leaf_der(&new_cert);
    assert_ne!(new_leaf, old_leaf);
    std::fs::rename(&new_key, &certs.key).unwrap();
    std::fs::rename(&new_cert, &certs.cert).unwrap();
    let hup = || {
        let (ok, _, err) = run_tool(
            "kill",
            &["-HUP", &engine.pid().to_string()],
            Duration::from_secs(5),
        );
        assert!(ok, "kill -HUP: {err}");
    };
    hup();
    eventually("the reload logged", Duration::from_secs(10), || {
        engine.log().contains("TLS certificate and key reloaded")
    });
    let (_fresh, shown) = tls_connect(https, &certs.ca);
    assert_eq!(shown, new_leaf, "new handshakes get the new certificate");
    assert!(
        read_more(&mut viewer, 64 * 1024) >= 64 * 1024,
        "the session opened before the reload still flows"
    );

    // A broken file: the reload fails, and the last good certificate stays.
    std::fs::write(&certs.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    hup();
    eventually("the failed reload logged", Duration::from_secs(10), || {
        engine.log().contains("TLS reload failed")
    });
    let (_after, shown) = tls_connect(https, &certs.ca);
    assert_eq!(
        shown, new_leaf,
        "a failed reload keeps the last good certificate"
    );
    assert!(read_more(&mut viewer, 16 * 1024) >= 16 * 1024);
    let ok = https_get(https, &certs.ca, "/healthz");
    assert_eq!(ok.status(), 200);
}

#[test]
fn an_edge_pulls_from_an_rtmps_origin_it_verifies_and_refuses_one_it_cannot() {
    let certs = TestCerts::generate("origin");
    let origin = tls_engine(&certs, &[]);
    let rtmps = origin.rtmps.unwrap();
    let _publisher = publish_loop(&origin.rtmp_url("live/sec"));
    // `localhost`: the name in the origin's certificate, checked by the edge.
    let url = format!("rtmps://localhost:{}/live", rtmps.port());
    let ca = certs.ca.to_str().unwrap();
    let edge = Engine::start(&["--cores", "2", "--origin", &url, "--upstream-ca", ca]);
    let opts = PlayOpts {
        deadline: Duration::from_secs(4),
        ..PlayOpts::default()
    };
    eventually(
        "media through the TLS pull",
        Duration::from_secs(40),
        || play_rtmp(edge.rtmp, "live", "sec", &opts, None).video > 0,
    );
    let m = origin.metrics();
    assert!(m.sum("tls_handshakes") >= 1, "{m:?}");
    assert!(
        m.sum("rtmp_play_requests") >= 1,
        "the pull played at the origin"
    );
    drop(edge);

    // An edge that trusts another CA refuses the origin's certificate: no play reaches the
    // origin, and the viewer gets nothing.
    let other = TestCerts::generate("other");
    let before = origin.metrics();
    let wrong = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &url,
        "--upstream-ca",
        other.ca.to_str().unwrap(),
    ]);
    let log = play_rtmp(wrong.rtmp, "live", "sec", &opts, None);
    assert_eq!(log.video, 0, "no media through an unverified origin");
    let failures = |m: &Metrics| m.sum("tls_handshake_failures");
    origin.wait_for("the refused handshakes", Duration::from_secs(20), |m| {
        failures(m) > failures(&before)
    });
    let after = origin.metrics();
    assert_eq!(
        after.sum("rtmp_play_requests"),
        before.sum("rtmp_play_requests"),
        "no play over a connection the edge did not trust"
    );
    assert!(wrong.metrics().sum("upstream_connects") >= 1);
}
