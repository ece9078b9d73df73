//! WebRTC playback by WHEP (issue 34) end to end, with an independent client (aiortc from
//! PyPI): the access units it depacketises are the source's NAL units, byte for byte and in
//! order; the source's AAC arrives as Opus that aiortc's decoder decodes to sound; DELETE
//! frees the session; offers, tokens and methods the engine refuses get their
//! statuses and reasons.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::*;

const FIXTURE: &str = "bframes.flv";
const KEY: &str = "5eed0fa11c0ffee0123456789abcdef0";

fn webrtc_engine(extra: &[&str]) -> Engine {
    Engine::start(&[&["--cores", "2", "--webrtc-udp", "127.0.0.1:0"], extra].concat())
}

/// The NAL units of an Annex B stream (start codes of 3 or 4 bytes).
fn nal_units(annexb: &[u8]) -> Vec<Vec<u8>> {
    edge_core::hls::ts::annexb_nal_units(annexb)
        .map(<[u8]>::to_vec)
        .collect()
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The fixture's H.264 NAL units as ffmpeg's own bitstream filter writes them out, without
/// parameter sets, delimiters and filler (the engine sends SPS and PPS before every IDR
/// itself, and drops delimiters and filler).
fn source_pictures() -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(fixture(FIXTURE))
        .args([
            "-an",
            "-c:v",
            "copy",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success());
    nal_units(&out.stdout)
        .into_iter()
        .filter(|n| !matches!(nal_type(n), 7 | 8 | 9 | 12))
        .collect()
}

/// What `tests/webrtc/whep_client.py` reports.
struct WhepRun {
    status: u16,
    body: String,
    connected: bool,
    /// Access units as aiortc's depacketiser handed them to its decoder (Annex B).
    units: Vec<Vec<u8>>,
    /// Each unit's RTP timestamp as aiortc's decoder got it (from 0, unwrapped).
    timestamps: Vec<u64>,
    /// With `--pli-after`: how many units the client had when it sent its PLI.
    pli_at: Option<usize>,
    /// Opus frames aiortc's decoder gave (one per packet), how many of them are not silence,
    /// and their samples per channel in all.
    audio_frames: u64,
    audio_loud: u64,
    audio_samples: u64,
    delete_status: u16,
}

/// Plays `url` by WHEP for `seconds` with aiortc, then DELETEs the session.
fn whep_play(url: &str, seconds: u32, extra: &[&str]) -> WhepRun {
    let python = venv_python().expect("the CI virtualenv (target/tools/venv) with aiortc");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("webrtc/whep_client.py");
    let out = Command::new("timeout")
        .arg("120")
        .arg(python)
        .arg(script)
        .arg(url)
        .arg(seconds.to_string())
        .args(extra)
        .output()
        .expect("whep_client.py");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "whep_client.py: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let units = v["units"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| hex_decode(u.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    WhepRun {
        status: v["status"].as_u64().unwrap_or(0) as u16,
        body: v["body"].as_str().unwrap_or("").to_string(),
        connected: v["connected"].as_bool().unwrap_or(false),
        units,
        timestamps: v["timestamps"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_u64()).collect())
            .unwrap_or_default(),
        pli_at: v["pli_at"].as_u64().map(|n| n as usize),
        audio_frames: v["audio_frames"].as_u64().unwrap_or(0),
        audio_loud: v["audio_loud"].as_u64().unwrap_or(0),
        audio_samples: v["audio_samples"].as_u64().unwrap_or(0),
        delete_status: v["delete_status"].as_u64().unwrap_or(0) as u16,
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// One request with a body, `Connection: close`: (status, head, body).
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A refused body may be answered and closed on before it is all written.
    let _ = s.write_all(body);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let r = split_response(&all);
    (
        r.status(),
        r.head.clone(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// A live stream: the fixture in a loop, until the returned child is killed.
fn live(engine: &Engine, name: &str) -> std::process::Child {
    let publisher = ffmpeg_publish(
        &fixture(FIXTURE),
        &engine.rtmp_url(&format!("live/{name}")),
        &["-stream_loop", "-1"],
    );
    engine.wait_for("the stream is live", Duration::from_secs(30), |m| {
        m.sum("streams_owned") >= 1 && m.sum("hls_segments") >= 1
    });
    publisher
}

/// Asserts that `run` received a run of `source`'s pictures (NAL units, parameter sets
/// aside) from an IDR on, each IDR access unit with SPS and PPS before it; how many NAL units.
fn assert_a_run_of(run: &WhepRun, source: &[Vec<u8>]) -> usize {
    assert_eq!(run.status, 201, "{}", run.body);
    assert!(run.connected, "ICE and DTLS did not complete");
    for (i, unit) in run.units.iter().enumerate() {
        let types: Vec<u8> = nal_units(unit).iter().map(|n| nal_type(n)).collect();
        if let Some(idr) = types.iter().position(|&t| t == 5) {
            assert!(
                types[..idr].contains(&7) && types[..idr].contains(&8),
                "unit {i}: {types:?}"
            );
        }
    }
    let got: Vec<Vec<u8>> = run
        .units
        .iter()
        .flat_map(|u| nal_units(u))
        .filter(|n| !matches!(nal_type(n), 7 | 8))
        .collect();
    let first = got.iter().find(|n| nal_type(n) != 6).map(|n| nal_type(n));
    assert_eq!(first, Some(5), "the first picture is not an IDR");
    let looped: Vec<&Vec<u8>> = source.iter().cycle().take(source.len() * 4).collect();
    (0..source.len())
        .find(|&i| looped[i] == &got[0] && looped[i..].iter().zip(&got).all(|(a, b)| *a == b))
        .unwrap_or_else(|| {
            panic!(
                "the {} NAL units received are not a run of the source's {}",
                got.len(),
                source.len()
            )
        });
    assert!(got.len() <= looped.len());
    got.len()
}

fn is_b_slice(nal: &[u8]) -> bool {
    nal_type(nal) == 1 && edge_core::webrtc::h264::slice_type(nal) == Some(1)
}

#[test]
fn a_whep_viewer_gets_the_sources_h264_byte_for_byte_and_its_aac_as_opus_and_delete_frees_it() {
    let engine = webrtc_engine(&[]);
    let mut publisher = live(&engine, "w");
    let url = format!("http://{}/live/w/whep", engine.http);
    let run = whep_play(&url, 3, &[]);
    // By default B-frames are not sent (browsers' WebRTC decoders take none): the pictures
    // are the source's I and P pictures, byte for byte and in order.
    let source = source_pictures();
    let b_frames = source.iter().filter(|n| is_b_slice(n)).count();
    assert!(
        b_frames * 3 >= source.len(),
        "the fixture has B-frames: {b_frames}"
    );
    let without_b: Vec<Vec<u8>> = source.into_iter().filter(|n| !is_b_slice(n)).collect();
    let got = assert_a_run_of(&run, &without_b);
    // The join's GOP and about 3 s at the I and P pictures' 8 a second.
    assert!(run.units.len() >= 20, "{} access units", run.units.len());
    // The AAC, transcoded once per stream on the shard: 20 ms Opus frames for the 3 s played
    // (at least 2 s of them), decoded by libopus in aiortc, nearly all of them sound.
    assert!(
        run.audio_frames >= 100,
        "{} Opus frames decoded",
        run.audio_frames
    );
    assert!(
        run.audio_loud * 10 >= run.audio_frames * 9,
        "{} of {} decoded frames are sound",
        run.audio_loud,
        run.audio_frames
    );
    // Each packet is 20 ms at 48 kHz (the default --webrtc-audio-frame-ms).
    assert_eq!(run.audio_samples, run.audio_frames * 960);
    // DELETE ends the session and frees what it held, on whichever shard answered it.
    assert_eq!(run.delete_status, 200);
    engine.wait_for("the session is freed", Duration::from_secs(10), |m| {
        m.sum("webrtc_sessions_open") == 0 && m.sum("webrtc_players") == 0
    });
    let m = engine.metrics();
    assert_eq!(m.sum("webrtc_sessions"), 1);
    assert_eq!(m.sum("webrtc_connected"), 1);
    assert!(m.sum("webrtc_b_frames_dropped") > 0);
    assert!(m.sum("webrtc_rtp_packets") >= got as u64 + run.audio_frames);
    assert!(m.sum("webrtc_opus_packets") >= run.audio_frames);
    assert_eq!(m.sum("webrtc_audio_errors"), 0);
    assert!(m.sum("webrtc_datagrams_out") >= m.sum("webrtc_rtp_packets"));
    publisher.kill().ok();
    publisher.wait().ok();
}

#[test]
fn with_60_ms_audio_frames_a_whep_viewer_decodes_a_third_as_many_opus_packets_of_sound() {
    let engine = webrtc_engine(&["--webrtc-audio-frame-ms", "60"]);
    let mut publisher = live(&engine, "a60");
    let url = format!("http://{}/live/a60/whep", engine.http);
    let run = whep_play(&url, 3, &[]);
    assert!(run.connected, "{}", run.body);
    // 3 s played, at least 2 s of them as audio: 60 ms packets, each decoded whole by
    // libopus in aiortc, nearly all of them sound.
    assert!(run.audio_frames >= 33, "{} Opus frames", run.audio_frames);
    assert_eq!(run.audio_samples, run.audio_frames * 2880);
    assert!(
        run.audio_loud * 10 >= run.audio_frames * 9,
        "{} of {} decoded frames are sound",
        run.audio_loud,
        run.audio_frames
    );
    let m = engine.metrics();
    assert_eq!(m.sum("webrtc_audio_errors"), 0);
    publisher.kill().ok();
    publisher.wait().ok();
}

/// A viewer's PLI is answered from the cache, never by the publisher (RTMP has no way to
/// ask): the session is sent its stream's GOP again from the keyframe it had, with its
/// timestamps moved on so that the replay plays after what it had.
#[test]
fn a_pli_is_answered_by_the_gop_from_the_cache_with_timestamps_that_go_on() {
    let engine = webrtc_engine(&[]);
    let mut publisher = live(&engine, "pli");
    let source = source_pictures();
    let idrs: std::collections::HashSet<&Vec<u8>> =
        source.iter().filter(|n| nal_type(n) == 5).collect();
    assert!(
        idrs.len() >= 2,
        "the fixture has one keyframe: a replay would look natural"
    );
    let url = format!("http://{}/live/pli/whep", engine.http);
    let run = whep_play(&url, 4, &["--pli-after", "12"]);
    assert_eq!(run.status, 201, "{}", run.body);
    let p = run.pli_at.expect("the client sent its PLI");
    let m = engine.metrics();
    assert!(m.sum("webrtc_keyframe_requests") >= 1);
    assert!(m.sum("webrtc_keyframe_answers") >= 1);
    let is_idr = |u: &Vec<u8>| nal_units(u).iter().any(|n| nal_type(n) == 5);
    // The keyframe the viewer had when it asked (at least 3 units back), and the first one
    // after it asked: the same picture, byte for byte (the fixture's next keyframe is
    // another picture), and what followed it then follows it again.
    let had = (0..p).rev().find(|&i| is_idr(&run.units[i])).unwrap();
    assert!(p - had > 3);
    let again = (p..run.units.len())
        .find(|&i| is_idr(&run.units[i]))
        .expect("a keyframe after the PLI");
    assert_eq!(
        run.units[again], run.units[had],
        "the replay starts at its keyframe"
    );
    let replayed = p - had;
    assert!(
        run.units.len() >= again + replayed,
        "{} units",
        run.units.len()
    );
    assert_eq!(
        run.units[again..again + replayed],
        run.units[had..p],
        "the GOP up to the viewer's place, again"
    );
    // Every picture plays after the one before: the replay's timestamps went on.
    assert!(
        run.timestamps.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        run.timestamps
    );
    publisher.kill().ok();
    publisher.wait().ok();
}

/// WHEP over HTTP/3: the offer's body reaches the route as over HTTP/1.1 (an HTTP/3
/// request's DATA is its body), the session plays, and DELETE over HTTP/3 frees it; a
/// malformed offer and one over 16 KiB get the statuses and reasons HTTP/1.1 gives.
#[test]
fn whep_over_http3_plays_and_refuses_as_over_http1() {
    let certs = TestCerts::generate("whep-h3");
    let listeners = ["--https", "127.0.0.1:0", "--http3", "127.0.0.1:0"];
    let engine = webrtc_engine(&[&listeners[..], &certs.flags()].concat());
    let mut publisher = live(&engine, "h3");
    let h3 = engine.http3.unwrap();
    let url = "http://127.0.0.1/live/h3/whep";
    let ca = certs.ca.to_string_lossy().into_owned();
    let run = whep_play(url, 3, &["--h3", &h3.port().to_string(), &ca]);
    let source: Vec<Vec<u8>> = source_pictures()
        .into_iter()
        .filter(|n| !is_b_slice(n))
        .collect();
    assert_a_run_of(&run, &source);
    assert_eq!(run.delete_status, 200);
    engine.wait_for("the session is freed", Duration::from_secs(10), |m| {
        m.sum("webrtc_sessions_open") == 0 && m.sum("webrtc_players") == 0
    });
    let m = engine.metrics();
    assert!(m.sum("http3_streams") >= 2, "{m:?}");
    assert_eq!(m.sum("webrtc_connected"), 1);
    // Refusals: the same status and reason over both.
    let large = "v".repeat(20_000);
    let path = "/live/h3/whep";
    let answers = h3_requests_with_bodies(
        h3,
        &certs.ca,
        &[("POST", path, "v=0 not sdp"), ("POST", path, &large)],
    );
    for (answer, body) in answers.iter().zip(["v=0 not sdp", large.as_str()]) {
        let answer = answer.as_ref().expect("an answer, not a reset stream");
        let (status, _, reason) = request(engine.http, "POST", path, body.as_bytes());
        assert_eq!(answer.status, status, "{reason}");
        assert_eq!(String::from_utf8_lossy(&answer.body), reason);
    }
    assert_eq!(answers[0].as_ref().unwrap().status, 400);
    assert_eq!(answers[1].as_ref().unwrap().status, 413);
    publisher.kill().ok();
    publisher.wait().ok();
}

#[test]
fn with_bframes_kept_every_nal_unit_of_the_source_arrives_in_order() {
    let engine = webrtc_engine(&["--webrtc-bframes", "keep"]);
    let mut publisher = live(&engine, "k");
    let run = whep_play(&format!("http://{}/live/k/whep", engine.http), 3, &[]);
    assert_a_run_of(&run, &source_pictures());
    // The join's GOP and about 3 s of 25 frames a second.
    assert!(run.units.len() >= 50, "{} access units", run.units.len());
    assert_eq!(engine.metrics().sum("webrtc_b_frames_dropped"), 0);
    publisher.kill().ok();
    publisher.wait().ok();
}

#[test]
fn whep_refuses_what_it_cannot_serve_with_a_status_and_a_reason() {
    let engine = webrtc_engine(&[
        "--play-auth",
        "token",
        "--token-key",
        KEY,
        "--play-wait-ms",
        "500",
    ]);
    let signed = {
        let (ok, out, err) = run_tool(
            engine_bin().to_str().unwrap(),
            &["sign", "--key", KEY, "--acl", "/live/*", "--ttl", "60"],
            Duration::from_secs(10),
        );
        assert!(ok, "sign: {err}");
        out.trim().to_string()
    };
    let http = engine.http;
    // No token: 403, before anything else is looked at.
    let (status, _, body) = request(http, "POST", "/live/a/whep", b"v=0\r\n");
    assert_eq!(status, 403, "{body}");
    // A malformed offer: 400, with the parser's reason.
    let path = format!("/live/a/whep?token={signed}");
    let (status, _, body) = request(http, "POST", &path, b"this is not SDP");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("offer"), "{body}");
    let (status, _, body) = request(http, "POST", &path, b"");
    assert_eq!(status, 400, "{body}");
    // A good offer for a stream nobody publishes: 404 after the play-wait, and no session
    // is left behind.
    let url = format!("http://{http}/live/nobody/whep?token={signed}");
    let run = whep_play(&url, 0, &[]);
    assert_eq!(run.status, 404, "{}", run.body);
    assert!(run.body.contains("not found"), "{}", run.body);
    // The token as a bearer credential plays too, as WHEP clients send it.
    let mut publisher = live(&engine, "a");
    let run = whep_play(
        &format!("http://{http}/live/a/whep"),
        1,
        &["--token", &signed],
    );
    assert_eq!(run.status, 201, "{}", run.body);
    assert!(run.connected);
    assert!(!run.units.is_empty());
    // Trickle ICE is refused as documented; other methods too; unknown sessions are 404.
    let session = format!("/live/a/whep/{:016x}?token={signed}", 0u64);
    let (status, _, _) = request(
        http,
        "PATCH",
        &session,
        b"a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
    );
    assert_eq!(status, 405);
    let (status, _, _) = request(http, "GET", &format!("/live/a/whep?token={signed}"), b"");
    assert_eq!(status, 405);
    let (status, _, body) = request(http, "DELETE", &session, b"");
    assert_eq!(status, 404, "{body}");
    engine.wait_for("every session is freed", Duration::from_secs(10), |m| {
        m.sum("webrtc_sessions_open") == 0
    });
    let m = engine.metrics();
    assert_eq!(
        m.sum("webrtc_sessions"),
        2,
        "the 404's session and the bearer's"
    );
    assert!(m.sum("webrtc_refused") >= 1, "the malformed offer");
    publisher.kill().ok();
    publisher.wait().ok();
}

/// loadgen publishing to `engine` and running WHEP viewers with `args` (`--viewers` and the
/// rest) against it.
fn whep_loadgen(engine: &Engine, name: &str, args: &[&str]) -> LoadgenRun {
    let (rtmp, http) = (engine.rtmp_url(""), engine.http_url(""));
    let targets = [
        "--target",
        rtmp.trim_end_matches('/'),
        "--target",
        http.trim_end_matches('/'),
        "--publish",
        "--protocol",
        "webrtc",
    ];
    LoadgenRun::start(name, &[&targets[..], args].concat())
}

/// Waits for loadgen to end, which must be a success: its counters, and the whole report.
fn loadgen_counters(run: LoadgenRun) -> (serde_json::Value, String) {
    let (status, report) = run.finish();
    assert!(status.success(), "{status:?} {report}");
    let v: serde_json::Value = serde_json::from_str(&report).expect("loadgen's JSON");
    (v["counters"].clone(), report)
}

/// A hundred WHEP sessions at once on two shards, loadgen's (a str0m client each): every one
/// connects and receives the stream's frames (their SEI probes, measured), the sessions are
/// spread over both shards, and each viewer's DELETE frees its session.
#[test]
fn a_hundred_whep_sessions_on_two_shards_all_play_and_are_freed() {
    let engine = webrtc_engine(&["--webrtc-bframes", "keep"]);
    let run = whep_loadgen(
        &engine,
        "whep100",
        &[
            "--viewers",
            "100",
            // Arrivals over 4 s, on two loadgen threads: a hundred DTLS handshakes at once
            // on a machine the whole suite shares left one viewer without media in 6 s.
            "--ramp",
            "25",
            "--cores",
            "2",
            "--duration",
            "12s",
        ],
    );
    // While they play, the node's viewer figures an autoscaler reads count them: the
    // machine gauge with the shards' players in one rendering, and the summary's JSON.
    let viewers = |text: &str, name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = String::from_utf8_lossy(&http_get(engine.http, "/metrics").body).into_owned();
        let players = viewers(&text, "edge_webrtc_players{");
        let machine = viewers(&text, "edge_viewers{protocol=\"webrtc\"}");
        // One rendering reads the two a moment apart while viewers still arrive: they must
        // agree in one taken between two arrivals (a miscount never would).
        if players >= 90 && machine == players {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{players} players, machine gauge {machine}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&http_get(engine.http, "/api/v1/summary").body).unwrap();
    let in_summary = summary["viewers"]["webrtc"].as_u64().unwrap_or(0);
    assert!(in_summary > 0, "{summary}");
    assert!(
        summary["viewers"]["total"].as_u64() >= Some(in_summary),
        "{summary}"
    );
    let (counters, report) = loadgen_counters(run);
    assert_eq!(counters["viewers_with_media"], 100, "{report}");
    assert!(
        counters["video_frames"].as_u64().unwrap_or(0) >= 100 * 25,
        "{report}"
    );
    let m = engine.metrics();
    assert_eq!(m.sum("webrtc_sessions"), 100);
    assert_eq!(m.sum("webrtc_connected"), 100);
    assert!(m.get("webrtc_sessions", 0) > 0 && m.get("webrtc_sessions", 1) > 0);
    // Each access unit was cut once per shard with sessions, not once per session.
    assert!(m.sum("webrtc_units_packetized") * 20 < m.sum("webrtc_rtp_packets"));
    engine.wait_for("every session is freed", Duration::from_secs(15), |m| {
        m.sum("webrtc_sessions_open") == 0 && m.sum("webrtc_players") == 0
    });
}

/// loadgen's light WHEP viewers (`--verify light`, for runs where the client would be the
/// limit): nine in ten count the frames by their RTP headers without decrypting, every
/// tenth decrypts and measures; all of them get media.
#[test]
fn loadgen_light_whep_viewers_count_frames_by_their_headers() {
    let engine = webrtc_engine(&["--webrtc-bframes", "keep"]);
    let run = whep_loadgen(
        &engine,
        "whep-light",
        &[
            "--viewers",
            "20",
            "--ramp",
            "10",
            "--verify",
            "light",
            "--duration",
            "8s",
        ],
    );
    let (c, report) = loadgen_counters(run);
    assert_eq!(c["viewers_with_media"], 20, "{report}");
    // Two viewers decrypt (every tenth) and eighteen count headers: at least a second of
    // frames each, at 25 a second.
    assert!(
        c["video_frames"].as_u64().unwrap_or(0) >= 2 * 25,
        "{report}"
    );
    assert!(
        c["video_frames_headers_only"].as_u64().unwrap_or(0) >= 18 * 25,
        "{report}"
    );
    assert!(
        c["video_frames_headers_only"].as_u64() > c["video_frames"].as_u64(),
        "{report}"
    );
    eprintln!(
        "RTP packets lost (header-only viewers): {}",
        c["rtp_packets_lost"]
    );
}

/// A viewer that loses video packets NACKs them, and the engine sends them again from the
/// session's history: loadgen's viewers drop every 40th RTP datagram before their client
/// sees it, and most of those dropped come again (the last few of the run may not have been
/// asked for yet); the engine counted the NACKs and its retransmissions.
#[test]
fn a_nacked_video_packet_is_sent_again_from_the_history() {
    let engine = webrtc_engine(&["--webrtc-bframes", "keep"]);
    let run = whep_loadgen(
        &engine,
        "whep-nack",
        &[
            "--viewers",
            "4",
            "--ramp",
            "4",
            "--webrtc-drop-every",
            "40",
            "--duration",
            "8s",
        ],
    );
    let (c, report) = loadgen_counters(run);
    assert_eq!(c["viewers_with_media"], 4, "{report}");
    let dropped = c["rtp_dropped"].as_u64().unwrap_or(0);
    let recovered = c["rtp_recovered"].as_u64().unwrap_or(0);
    // 4 viewers, about 100 datagrams a second each, for several seconds.
    assert!(dropped >= 20, "{dropped} dropped: {report}");
    // Audio is not retransmitted (no NACK for it): about a third of the drops are audio.
    assert!(
        recovered * 3 >= dropped,
        "{recovered} of {dropped} recovered: {report}"
    );
    let m = engine.metrics();
    eprintln!(
        "dropped {dropped}, recovered {recovered}; the engine: {} NACKs, {} retransmits",
        m.sum("webrtc_nacks"),
        m.sum("webrtc_retransmits")
    );
    assert!(m.sum("webrtc_nacks") > 0, "no NACKs counted");
    assert!(
        m.sum("webrtc_retransmits") >= recovered,
        "{} retransmits, {recovered} recovered",
        m.sum("webrtc_retransmits")
    );
}

/// At an edge, WHEP viewers of a pulled stream share the one pull per machine: ten loadgen
/// WHEP viewers and an aiortc one at a two-shard edge in front of an engine origin, one
/// upstream pull, and the aiortc viewer's pictures are the source's.
#[test]
fn whep_viewers_at_an_edge_share_its_one_pull() {
    let origin = Engine::start(&["--cores", "1"]);
    let edge = webrtc_engine(&[
        "--origin",
        &origin_of(&origin),
        "--upstream-timeout-ms",
        "20000",
    ]);
    let mut publisher = live(&origin, "e");
    let http = edge.http_url("");
    let run = LoadgenRun::start(
        "whep-edge",
        &[
            "--target",
            http.trim_end_matches('/'),
            "--viewers",
            "10",
            "--protocol",
            "webrtc",
            "--stream",
            "live/e",
            "--duration",
            "6s",
        ],
    );
    let aiortc = whep_play(&format!("http://{}/live/e/whep", edge.http), 3, &[]);
    let source = source_pictures();
    let without_b: Vec<Vec<u8>> = source.into_iter().filter(|n| !is_b_slice(n)).collect();
    assert_a_run_of(&aiortc, &without_b);
    let (counters, report) = loadgen_counters(run);
    assert_eq!(counters["viewers_with_media"], 10, "{report}");
    let m = edge.metrics();
    assert_eq!(
        m.sum("upstream_pulls_started"),
        1,
        "one pull for every viewer"
    );
    assert_eq!(m.sum("webrtc_sessions"), 11);
    publisher.kill().ok();
    publisher.wait().ok();
}
