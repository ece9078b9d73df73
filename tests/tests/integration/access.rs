//! Access control end to end (issue 14): signed URLs on every protocol, an edge that checks
//! before it pulls and signs its own upstream URLs, SRS-compatible hooks. Tokens are minted
//! by a few lines of Python written apart from the engine, by `edge-engine sign`, or by hand
//! (tampered); every refusal is checked on the wire and in its counter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_core::rtmp::client::ClientEvent;
use tests::*;

const FIXTURE: &str = "bframes.flv";
const KEY: &str = "5eed0fa11c0ffee0123456789abcdef0";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An EdgeAuth token from Python's `hmac` (not the engine's code): `fields` joined by `~`,
/// then `~hmac=` and the hex HMAC of what came before.
fn python_token(key_hex: &str, alg: &str, fields: &[String]) -> String {
    let script = r#"
import hashlib, hmac, sys
key = bytes.fromhex(sys.argv[1])
signed = "~".join(sys.argv[3:])
print(signed + "~hmac=" + hmac.new(key, signed.encode(), getattr(hashlib, sys.argv[2])).hexdigest())
"#;
    let mut args = vec!["-c", script, key_hex, alg];
    args.extend(fields.iter().map(String::as_str));
    let (ok, out, err) = run_tool("python3", &args, Duration::from_secs(20));
    assert!(ok, "python3: {err}");
    out.trim().to_string()
}

fn token(fields: &[String]) -> String {
    python_token(KEY, "sha256", fields)
}

/// `edge-engine sign` output.
fn engine_sign(args: &[&str]) -> String {
    let bin = engine_bin();
    let (ok, out, err) = run_tool(
        bin.to_str().unwrap(),
        &[&["sign"], args].concat(),
        Duration::from_secs(10),
    );
    assert!(ok, "sign: {err}");
    out.trim().to_string()
}

fn denied(m: &Metrics, action: &str, reason: &str) -> u64 {
    m.sum(&format!(
        "access_denied_total{{action=\"{action}\",reason=\"{reason}\"}}"
    ))
}

fn all_denied(m: &Metrics) -> u64 {
    m.0.iter()
        .filter(|((n, _), _)| n.starts_with("access_denied_total"))
        .map(|(_, v)| v)
        .sum()
}

/// The first `bytes` of a live HTTP-FLV response (the stream itself never ends here).
fn flv_prefix(addr: SocketAddr, path: &str, bytes: usize) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while all.len() < bytes {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    split_response(&all)
}

/// The RTMP play of `stream` (may carry `?token=`) for a while: what the player saw.
fn rtmp_play(addr: SocketAddr, stream: &str, secs: u64) -> PlayLog {
    play_until_status(addr, "live", stream, "NetStream.Play.Failed", secs)
}

#[test]
fn tokens_guard_rtmp_flv_hls_playlists_and_segments() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--play-auth",
        "token",
        "--publish-auth",
        "token",
        "--token-key",
        KEY,
        "--token-skew-s",
        "0",
        "--hls-segment-ms",
        "1000",
    ]);
    let t = now();
    let acl = |a: &str| format!("acl={a}");
    let valid = token(&[format!("exp={}", t + 600), acl("/live/*")]);

    // Publishing: unsigned is refused with a reason, signed goes live.
    let (events, closed) = try_publish(engine.rtmp, "live", "s");
    let refusal = events.iter().find_map(|e| match e {
        ClientEvent::Status { code } => Some(code.clone()),
        _ => None,
    });
    assert_eq!(refusal.as_deref(), Some("NetStream.Publish.BadName"));
    assert!(closed, "a refused publisher is closed");
    let m = engine.metrics();
    assert_eq!(denied(&m, "publish", "missing"), 1);
    // ffmpeg reads a second `/` in an RTMP URL as the start of the stream name (app
    // instances), so the ACL's slashes travel percent-encoded; the engine decodes them.
    let escaped = valid.replace('/', "%2F");
    let _publisher = publish_loop(&engine.rtmp_url(&format!("live/s?token={escaped}")));
    engine.wait_for("the signed publisher", Duration::from_secs(20), |m| {
        m.sum("publishers") == 1
    });

    // RTMP play.
    let log = rtmp_play(engine.rtmp, &format!("s?token={valid}"), 3);
    assert!(log.started && log.video > 0, "signed RTMP play: {log:?}");
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing", String::new(), "missing"),
        (
            "expired",
            token(&[format!("exp={}", t - 100), acl("/live/*")]),
            "expired",
        ),
        (
            "not yet valid",
            token(&[
                format!("st={}", t + 3600),
                format!("exp={}", t + 7200),
                acl("/live/*"),
            ]),
            "not_yet_valid",
        ),
        (
            "wrong ACL",
            token(&[format!("exp={}", t + 600), acl("/other/*")]),
            "acl",
        ),
        (
            "wrong IP",
            token(&[
                "ip=127.0.0.9".into(),
                format!("exp={}", t + 600),
                acl("/live/*"),
            ]),
            "ip",
        ),
        (
            "tampered",
            valid.replacen(&format!("exp={}", t + 600), &format!("exp={}", t + 900), 1),
            "bad_signature",
        ),
        (
            "another key",
            python_token(
                "00",
                "sha256",
                &[format!("exp={}", t + 600), acl("/live/*")],
            ),
            "bad_signature",
        ),
    ];
    for (what, tok, reason) in &cases {
        let stream = if tok.is_empty() {
            "s".to_string()
        } else {
            format!("s?token={tok}")
        };
        let before = denied(&engine.metrics(), "play", reason);
        let log = rtmp_play(engine.rtmp, &stream, 10);
        assert!(!log.started && log.video == 0, "{what}: {log:?}");
        assert!(
            log.statuses.iter().any(|s| s == "NetStream.Play.Failed"),
            "{what}: {log:?}"
        );
        assert_eq!(
            denied(&engine.metrics(), "play", reason),
            before + 1,
            "{what} counted as {reason}"
        );
    }

    // HTTP-FLV, the playlist and a segment, each with every case.
    engine.wait_for("segments", Duration::from_secs(20), |m| {
        m.sum("hls_segments") >= 2
    });
    let playlist = http_get(engine.http, &format!("/live/s.m3u8?token={valid}"));
    assert_eq!(playlist.status(), 200, "{}", playlist.head);
    let text = String::from_utf8(playlist.body).unwrap();
    let (segments, _) = parse_playlist(&text);
    assert!(!segments.is_empty(), "{text}");
    for (uri, _) in &segments {
        assert!(
            uri.ends_with(&format!("?token={valid}")),
            "{uri} carries the token"
        );
    }
    let segment = segments[0].0.split('?').next().unwrap().to_string();
    let seg = http_get(engine.http, &format!("/live/{segment}?token={valid}"));
    assert_eq!(seg.status(), 200);
    assert!(seg.body.len() > 188 && seg.body[0] == 0x47, "a TS segment");
    let flv = flv_prefix(
        engine.http,
        &format!("/live/s.flv?token={valid}"),
        32 * 1024,
    );
    assert_eq!(flv.status(), 200, "{}", flv.head);
    assert!(
        flv.body.windows(3).any(|w| w == b"FLV"),
        "signed HTTP-FLV plays"
    );
    for (what, tok, reason) in &cases {
        let query = if tok.is_empty() {
            String::new()
        } else {
            format!("?token={tok}")
        };
        let status = if *reason == "expired" { 410 } else { 403 };
        for path in [
            format!("/live/s.flv{query}"),
            format!("/live/s.m3u8{query}"),
            format!("/live/{segment}{query}"),
        ] {
            let before = denied(&engine.metrics(), "play", reason);
            let r = http_get(engine.http, &path);
            assert_eq!(r.status(), status, "{what}: {path}: {}", r.head);
            assert!(
                !String::from_utf8_lossy(&r.body).contains("hmac"),
                "the refusal does not echo the token"
            );
            assert_eq!(
                denied(&engine.metrics(), "play", reason),
                before + 1,
                "{what}: {path}"
            );
        }
    }
    // Tokens from `edge-engine sign` verify the same way.
    let signed = engine_sign(&["--key", KEY, "--acl", "/live/s", "--ttl", "60"]);
    assert_eq!(
        http_get(engine.http, &format!("/live/s.m3u8?token={signed}")).status(),
        200
    );
    let url = engine_sign(&[
        "--key",
        KEY,
        "--acl",
        "/live/s*",
        "--ttl",
        "60",
        "--base-url",
        &engine.http_url("live/s.m3u8"),
    ]);
    assert!(
        url.starts_with("http://") && url.contains("?token=exp="),
        "{url}"
    );
}

#[test]
fn ffmpeg_plays_a_signed_hls_url_and_no_segment_is_refused() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--play-auth",
        "token",
        "--token-key",
        KEY,
        "--republish-grace-ms",
        "300",
        "--hls-segment-ms",
        "1000",
    ]);
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/h"), &[]);
    assert!(publisher.wait().unwrap().success());
    let tok = token(&[format!("exp={}", now() + 600), "acl=/live/h*".into()]);
    let path = format!("/live/h.m3u8?token={tok}");
    eventually("EXT-X-ENDLIST", Duration::from_secs(20), || {
        String::from_utf8_lossy(&http_get(engine.http, &path).body).contains("#EXT-X-ENDLIST")
    });
    let before = engine
        .metrics()
        .sum("access_allowed_total{action=\"play\"}");
    let url = engine.http_url(&path[1..]);
    if let Err(err) = ffmpeg_decode(&url, None) {
        panic!("ffmpeg on a signed playlist: {err}");
    }
    let m = engine.metrics();
    let segments = parse_playlist(&String::from_utf8_lossy(&http_get(engine.http, &path).body)).0;
    let allowed = m.sum("access_allowed_total{action=\"play\"}") - before;
    // The playlist, then every segment, each checked and allowed.
    assert!(
        allowed > segments.len() as u64,
        "{allowed} allowed requests for {} segments",
        segments.len()
    );
    assert_eq!(all_denied(&m), 0, "nothing refused: {m:?}");
    // The same URL without its token: refused, so the check above was a real one.
    assert_eq!(http_get(engine.http, "/live/h.m3u8").status(), 403);

    // LL-HLS: the same token guards the playlist, the init segment, segments and parts, and
    // goes on every URI the playlist names (without the _HLS_ directives).
    let ll = format!("/live/h/llhls.m3u8?token={tok}&_HLS_skip=YES");
    let text = String::from_utf8(http_get(engine.http, &ll).body).unwrap();
    let uris: Vec<&str> = text
        .lines()
        .flat_map(|l| {
            l.split("URI=\"")
                .skip(1)
                .map(|u| u.split('"').next().unwrap())
        })
        .chain(text.lines().filter(|l| l.starts_with("seg-")))
        .collect();
    assert!(uris.len() > 3, "{text}");
    for uri in &uris {
        assert!(uri.ends_with(&format!("?token={tok}")), "{uri} in {text}");
        assert_eq!(
            http_get(engine.http, &format!("/live/h/{uri}")).status(),
            200,
            "{uri}"
        );
        let bare = uri.split('?').next().unwrap();
        assert_eq!(
            http_get(engine.http, &format!("/live/h/{bare}")).status(),
            403,
            "{bare}"
        );
    }
    assert_eq!(http_get(engine.http, "/live/h/llhls.m3u8").status(), 403);
    let url = engine.http_url(&format!("live/h/llhls.m3u8?token={tok}"));
    if let Err(err) = ffmpeg_decode(&url, None) {
        panic!("ffmpeg on a signed LL-HLS playlist: {err}");
    }
}

/// Regression: `rtmp://HOST/live/a?token=…~acl=/live/*~hmac=…` was refused with `invalid
/// stream name`: ffmpeg and librtmp cut an RTMP URL at a `/` inside its query, moving part
/// of the query into the app. ffmpeg publishes and plays with such a token, raw and
/// percent-encoded, and so do GStreamer's rtmp2sink and librtmp's rtmpsink; nothing is
/// refused, and the same URLs without the token are.
#[test]
fn signed_rtmp_urls_whose_acl_holds_slashes_publish_and_play() {
    let engine = Engine::start(&[
        "--cores",
        "2",
        "--play-auth",
        "token",
        "--publish-auth",
        "token",
        "--token-key",
        KEY,
        "--republish-grace-ms",
        "300",
    ]);
    let raw = token(&[format!("exp={}", now() + 600), "acl=/live/*".into()]);
    assert!(raw.contains("acl=/live/*"), "{raw}");
    let escaped = raw.replace('/', "%2F").replace('*', "%2A");
    let _publisher = publish_loop(&engine.rtmp_url(&format!("live/a?token={raw}")));
    engine.wait_for("ffmpeg's signed publish", Duration::from_secs(20), |m| {
        m.sum("publishers") == 1
    });
    for tok in [&raw, &escaped] {
        let url = engine.rtmp_url(&format!("live/a?token={tok}"));
        let (lines, err) = framemd5_for(&url, Duration::from_secs(3));
        assert!(err.is_empty(), "ffmpeg plays {url}: {err}");
        assert!(
            lines.len() > 20,
            "ffmpeg played {} packets of {url}",
            lines.len()
        );
    }
    for sink in ["rtmp2sink", "rtmpsink"] {
        let stream = format!("g{sink}");
        let mut gst = gst_publish(
            sink,
            &engine.rtmp_url(&format!("live/{stream}?token={raw}")),
        );
        assert!(gst.wait().unwrap().success(), "{sink} publishes signed");
        let playlist = http_get(engine.http, &format!("/live/{stream}.m3u8?token={escaped}"));
        assert_eq!(playlist.status(), 200, "{sink}'s stream has HLS");
    }
    let m = engine.metrics();
    assert_eq!(all_denied(&m), 0, "nothing refused: {m:?}");
    // Without the token: refused, so the checks above were real ones.
    let (events, _) = try_publish(engine.rtmp, "live", "b");
    assert!(
        events.iter().any(
            |e| matches!(e, ClientEvent::Status { code } if code == "NetStream.Publish.BadName")
        ),
        "{events:?}"
    );
    assert_eq!(denied(&engine.metrics(), "publish", "missing"), 1);
}

#[test]
fn an_unsigned_viewer_at_an_edge_causes_no_upstream_connection() {
    let origin = Engine::start(&["--cores", "1"]);
    let _publisher = publish_loop(&origin.rtmp_url("live/e"));
    origin.wait_for("publisher", Duration::from_secs(20), |m| {
        m.sum("publishers") == 1
    });
    let origin_url = origin.rtmp_url("live");
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &origin_url,
        "--play-auth",
        "token",
        "--token-key",
        KEY,
    ]);
    let accepted = origin.metrics().sum("rtmp_connections_accepted");
    let forged = python_token(
        "ff",
        "sha256",
        &[format!("exp={}", now() + 60), "acl=/live/*".into()],
    );
    for _ in 0..3 {
        assert!(!rtmp_play(edge.rtmp, "e", 10).started);
        assert!(!rtmp_play(edge.rtmp, &format!("e?token={forged}"), 10).started);
        assert_eq!(http_get(edge.http, "/live/e.flv").status(), 403);
        assert_eq!(http_get(edge.http, "/live/e.m3u8").status(), 403);
        assert_eq!(
            http_get(edge.http, &format!("/live/e.m3u8?token={forged}")).status(),
            403
        );
    }
    let m = edge.metrics();
    assert_eq!(m.sum("upstream_connects"), 0, "{m:?}");
    assert_eq!(m.sum("upstream_pulls_started"), 0);
    assert_eq!(all_denied(&m), 15);
    assert_eq!(
        origin.metrics().sum("rtmp_connections_accepted"),
        accepted,
        "the origin saw nothing"
    );
    // A signed viewer does start the pull: the edge is wired to the origin.
    let tok = token(&[format!("exp={}", now() + 60), "acl=/live/*".into()]);
    let log = rtmp_play(edge.rtmp, &format!("e?token={tok}"), 4);
    assert!(log.started && log.video > 0, "{log:?}");
    assert_eq!(edge.metrics().sum("upstream_pulls_started"), 1);
}

#[test]
fn an_edge_signs_its_own_pulls_and_fails_over_after_the_viewers_token_expired() {
    const ORIGIN_KEY: &str = "0123456789abcdef0123456789abcdef";
    // Origins that require SHA-1 EdgeAuth tokens from players (the seed's HMAC-SHA1 design).
    let origin_args = [
        "--cores",
        "1",
        "--play-auth",
        "token",
        "--token-key",
        ORIGIN_KEY,
        "--token-alg",
        "sha1",
        "--token-skew-s",
        "0",
    ];
    let mut primary = Engine::start(&origin_args);
    let backup = Engine::start(&origin_args);
    let _p1 = publish_loop(&primary.rtmp_url("live/f"));
    let _p2 = publish_loop(&backup.rtmp_url("live/f"));
    for o in [&primary, &backup] {
        o.wait_for("publisher", Duration::from_secs(20), |m| {
            m.sum("publishers") == 1
        });
    }
    let (u1, u2) = (primary.rtmp_url("live"), backup.rtmp_url("live"));
    let edge = Engine::start(&[
        "--cores",
        "1",
        "--origin",
        &u1,
        "--origin",
        &u2,
        "--play-auth",
        "token",
        "--token-key",
        KEY,
        "--token-skew-s",
        "0",
        "--upstream-sign-key",
        ORIGIN_KEY,
        "--token-alg",
        "sha1",
        "--upstream-timeout-ms",
        "1000",
    ]);
    // The viewer's token is valid for 3 s (edge and origin keys differ: it would not open
    // the origin even while valid).
    let viewer = python_token(
        KEY,
        "sha1",
        &[format!("exp={}", now() + 3), "acl=/live/f".into()],
    );
    let frames = Arc::new(AtomicU64::new(0));
    let (addr, f2, name) = (edge.rtmp, Arc::clone(&frames), format!("f?token={viewer}"));
    let player = std::thread::spawn(move || {
        play_rtmp(
            addr,
            "live",
            &name,
            &PlayOpts {
                deadline: Duration::from_secs(14),
                until_status: None,
                ..PlayOpts::default()
            },
            Some(&f2),
        )
    });
    eventually("frames from the primary", Duration::from_secs(20), || {
        frames.load(Ordering::Relaxed) > 10
    });
    assert_eq!(
        primary
            .metrics()
            .sum("access_allowed_total{action=\"play\"}"),
        1,
        "the primary checked the edge's token"
    );
    // Past the viewer's expiry, the primary dies: the edge reconnects to the backup.
    std::thread::sleep(Duration::from_secs(4));
    primary.kill();
    let at_failover = frames.load(Ordering::Relaxed);
    backup.wait_for("the edge's pull", Duration::from_secs(20), |m| {
        m.sum("access_allowed_total{action=\"play\"}") >= 1
    });
    eventually("frames from the backup", Duration::from_secs(20), || {
        frames.load(Ordering::Relaxed) > at_failover + 20
    });
    let log = player.join().unwrap();
    assert!(log.error.is_none(), "{log:?}");
    assert_eq!(
        all_denied(&backup.metrics()),
        0,
        "the backup refused nothing"
    );
    let e = edge.metrics();
    assert!(e.sum("upstream_failovers") >= 1, "{e:?}");
    assert_eq!(all_denied(&e), 0);
}

/// A hook server: answers by the stream named in the body and keeps every body it got.
struct HookServer {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl HookServer {
    fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || answer(conn, &kept));
            }
        });
        HookServer { addr, bodies }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/hooks", self.addr)
    }

    fn bodies(&self, action: &str) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.contains(&format!("\"action\":\"{action}\"")))
            .cloned()
            .collect()
    }
}

fn answer(conn: TcpStream, kept: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(conn);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    kept.lock().unwrap().push(body.clone());
    let reply = if body.contains("\"stream\":\"deny") {
        "{\"code\":403,\"msg\":\"not on the list\"}"
    } else if body.contains("\"stream\":\"slow") {
        std::thread::sleep(Duration::from_secs(3));
        "0"
    } else {
        "0"
    };
    let mut conn = r.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

fn publish_status(addr: SocketAddr, stream: &str) -> (Option<String>, bool) {
    let (events, closed) = try_publish(addr, "live", stream);
    let status = events.iter().find_map(|e| match e {
        ClientEvent::Status { code } => Some(code.clone()),
        ClientEvent::Started => Some("NetStream.Publish.Start".into()),
        _ => None,
    });
    (status, closed)
}

#[test]
fn hooks_allow_refuse_time_out_and_fail_closed_without_touching_other_streams() {
    let hooks = HookServer::start();
    let url = hooks.url();
    let engine = Engine::start_logged(
        &[
            "--cores",
            "2",
            "--publish-auth",
            "hook",
            "--on-publish",
            &url,
            "--on-unpublish",
            &url,
            "--play-auth",
            "hook",
            "--on-play",
            &url,
            "--on-stop",
            &url,
            "--hook-timeout-ms",
            "500",
            "--node-id",
            "edge-test-1",
        ],
        "info",
    );
    // An allowed publisher, watched throughout.
    let _publisher = publish_loop(&engine.rtmp_url("live/ok?secret=1"));
    engine.wait_for("the allowed publisher", Duration::from_secs(20), |m| {
        m.sum("publishers") == 1
    });
    let frames = Arc::new(AtomicU64::new(0));
    let (addr, f2) = (engine.rtmp, Arc::clone(&frames));
    let watcher = std::thread::spawn(move || {
        play_rtmp(
            addr,
            "live",
            "ok",
            &PlayOpts {
                deadline: Duration::from_secs(8),
                until_status: None,
                ..PlayOpts::default()
            },
            Some(&f2),
        )
    });
    let body = hooks
        .bodies("on_publish")
        .pop()
        .expect("an on_publish call");
    for field in [
        "\"app\":\"live\"",
        "\"stream\":\"ok\"",
        "\"param\":\"?secret=1\"",
        "\"ip\":\"127.0.0.1\"",
        "\"vhost\":\"__defaultVhost__\"",
        "\"server_id\":\"edge-test-1\"",
        "\"client_id\":\"",
        "\"tcUrl\":\"rtmp://127.0.0.1:",
    ] {
        assert!(body.contains(field), "{field} in {body}");
    }

    // Refused: told why, closed.
    let (status, closed) = publish_status(engine.rtmp, "deny-me");
    assert_eq!(status.as_deref(), Some("NetStream.Publish.BadName"));
    assert!(closed);
    // Times out, and a hook that is down: both fail closed.
    let (status, _) = publish_status(engine.rtmp, "slow-one");
    assert_eq!(status.as_deref(), Some("NetStream.Publish.BadName"));
    let m = engine.metrics();
    assert_eq!(denied(&m, "publish", "hook_refused"), 1, "{m:?}");
    assert_eq!(denied(&m, "publish", "hook_failed"), 1);
    assert_eq!(
        m.sum("hook_calls_total{event=\"on_publish\",outcome=\"timeout\"}"),
        1
    );
    let log = engine.log();
    assert!(log.contains("refused by the hook (code 403)"), "{log}");

    // Players: allowed, refused, and the allowed one's on_stop after it leaves.
    let watched = watcher.join().unwrap();
    assert!(watched.video > 0 && watched.error.is_none(), "{watched:?}");
    assert!(frames.load(Ordering::Relaxed) > 0);
    assert_eq!(rtmp_play(engine.rtmp, "deny-view", 5).video, 0);
    eventually("on_stop", Duration::from_secs(10), || {
        !hooks.bodies("on_stop").is_empty()
    });
    assert!(hooks
        .bodies("on_play")
        .iter()
        .any(|b| b.contains("\"stream\":\"ok\"")));

    // HLS: one on_play covers the viewer's next requests.
    engine.wait_for("segments", Duration::from_secs(20), |m| {
        m.sum("hls_segments") >= 2
    });
    let plays_before = hooks.bodies("on_play").len();
    // Five requests on one connection (one shard: allowances are per shard).
    let mut conn = TcpStream::connect(engine.http).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for i in 0..5 {
        let close = if i == 4 { "Connection: close\r\n" } else { "" };
        write!(
            conn,
            "GET /live/ok.m3u8?viewer=7 HTTP/1.1\r\nHost: t\r\n{close}\r\n"
        )
        .unwrap();
    }
    let mut all = Vec::new();
    let _ = conn.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 5, "{text}");
    assert_eq!(
        hooks.bodies("on_play").len(),
        plays_before + 1,
        "one hook call for five requests"
    );
    assert_eq!(http_get(engine.http, "/live/deny-x.m3u8").status(), 403);

    // The publisher leaving is announced.
    drop(_publisher);
    eventually("on_unpublish", Duration::from_secs(10), || {
        hooks
            .bodies("on_unpublish")
            .iter()
            .any(|b| b.contains("\"stream\":\"ok\""))
    });
    drop(engine);

    // A hook that is down: publish fails closed; play follows --play-hook-failure allow.
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("http://{}/hooks", down.local_addr().unwrap());
    drop(down);
    let engine = Engine::start(&[
        "--publish-auth",
        "hook",
        "--on-publish",
        &down_url,
        "--play-auth",
        "hook",
        "--on-play",
        &down_url,
        "--play-hook-failure",
        "allow",
        "--play-wait-ms",
        "500",
    ]);
    let (status, _) = publish_status(engine.rtmp, "any");
    assert_eq!(status.as_deref(), Some("NetStream.Publish.BadName"));
    // No stream: the allowed viewer waits and gets a 404, not a 403/503.
    assert_eq!(http_get(engine.http, "/live/any.flv").status(), 404);
    let m = engine.metrics();
    assert_eq!(denied(&m, "publish", "hook_failed"), 1);
    assert_eq!(denied(&m, "play", "hook_failed"), 0);
    assert_eq!(
        m.sum("hook_calls_total{event=\"on_play\",outcome=\"unreachable\"}"),
        1
    );
}
