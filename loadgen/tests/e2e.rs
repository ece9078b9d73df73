//! loadgen end to end: against the real engine (`--spawn`), against a broken target, and
//! against a fake slow server that must raise the measured tail (no coordinated omission).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("loadgen-{}-{name}.json", std::process::id()))
}

#[test]
fn three_hundred_viewers_over_rtmp_flv_and_hls_get_everything_after_joining() {
    let out = tmp("300");
    let status = loadgen()
        .args([
            "--spawn",
            "--publish",
            "--viewers",
            "300",
            "--protocol",
            "rtmp=1,flv=1,hls=1",
        ])
        .args([
            "--duration",
            "15s",
            "--engine-args",
            "--cores 2 --republish-grace-ms 300",
        ])
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "loadgen exit {status}");
    let j = json(&out);
    let counter = |k: &str| j["counters"][k].as_u64().unwrap_or(0);
    let hist = |k: &str| j["histograms"][k]["count"].as_u64().unwrap();
    assert!(
        hist("frame_latency") > 0 && hist("segment_latency") > 0 && hist("segment_download") > 0,
        "{j}"
    );
    // 200 RTMP/FLV viewers for ~15 s of 25 fps video; every frame after joining, no gaps.
    assert!(counter("video_frames") > 200 * 15 * 25 * 8 / 10, "{j}");
    assert_eq!(counter("gaps"), 0, "{j}");
    assert_eq!(counter("missing_frames"), 0);
    // 100 HLS viewers: every segment after joining, in sequence.
    assert!(counter("segments") >= 100 * 4, "{j}");
    assert_eq!(counter("segment_gaps"), 0);
    // Each segment was scanned whole as it streamed in (every byte in a TS packet) and its
    // first video frame carried a probe.
    assert_eq!(
        counter("segment_packets") * 188,
        counter("segment_bytes"),
        "{j}"
    );
    assert_eq!(counter("segments_without_probe"), 0, "{j}");
    // Every HLS viewer started playing (three target durations buffered).
    assert_eq!(hist("hls_startup"), 100, "{j}");
    assert_eq!(counter("startup_pending"), 0, "{j}");
    assert_eq!(
        j["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        0
    );
    assert!(j["engine"]["peak_rss_kib"].as_u64().unwrap() > 0);
    assert_eq!(
        j["machine"]["nofile_limit"].as_u64().map(|n| n > 0),
        Some(true)
    );
    std::fs::remove_file(out).unwrap();
}

/// LL-HLS viewers: every next part fetched as the preload hint names it (streamed while it is
/// written) or after a blocking reload, with the probe of its first picture, every viewer
/// started.
#[test]
fn llhls_viewers_fetch_every_part_after_joining_with_its_probe() {
    let out = tmp("llhls");
    let status = loadgen()
        .args([
            "--spawn",
            "--publish",
            "--viewers",
            "40",
            "--protocol",
            "llhls",
        ])
        .args(["--duration", "12s", "--engine-args", "--cores 2"])
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "loadgen exit {status}");
    let j = json(&out);
    let counter = |k: &str| j["counters"][k].as_u64().unwrap_or(0);
    let hist = |k: &str| j["histograms"][k]["count"].as_u64().unwrap();
    // 200 ms parts: five a second per viewer, for most of the 12 s.
    let parts = counter("parts");
    assert!(parts >= 40 * 5 * 6, "{j}");
    // Every part's first picture had its probe; those published before the viewer joined
    // (the catch-up from the part it joined at) are not live latency.
    assert_eq!(
        hist("part_latency") + counter("catchup_parts"),
        parts,
        "{j}"
    );
    assert!(hist("part_latency") > parts / 2, "{j}");
    assert_eq!(counter("parts_without_probe"), 0);
    // Each live part was hinted (and fetched while written, then its duration read from a
    // blocking reload answered at once), or waited for by a blocking reload.
    assert!(
        hist("blocking_reload") + counter("catchup_parts") >= parts,
        "{j}"
    );
    assert!(counter("hinted_parts") >= parts / 2, "{j}");
    assert_eq!(hist("llhls_startup"), 40, "{j}");
    let errors: u64 = j["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 0, "{j}");
    std::fs::remove_file(out).unwrap();
}

#[test]
fn a_broken_target_gives_a_non_zero_exit() {
    // Port 1 on loopback: nothing listens, every connect fails.
    let status = loadgen()
        .args([
            "--viewers",
            "5",
            "--protocol",
            "rtmp",
            "--target",
            "rtmp://127.0.0.1:1",
            "--duration",
            "2s",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let status = loadgen()
        .args(["--viewers", "5", "--protocol", "dash"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "bad arguments");
}

/// Regression: viewers of a stream nobody publishes printed `frames/s=0` each second and
/// loadgen exited 0. Every viewer that receives no media is an error (`no_media`), the run
/// says why and exits 1 even when `--max-error-rate` would allow it. The report's `config`
/// is a JSON object (it was a Rust `Debug` string), naming the bundled rendition, not a path
/// of the machine loadgen was built on.
#[test]
fn viewers_of_an_unpublished_stream_fail_the_run_and_say_why() {
    let out = tmp("unpublished");
    let run = loadgen()
        .args([
            "--spawn",
            "--viewers",
            "6",
            "--protocol",
            "flv=1,rtmp=1,hls=1",
            "--stream",
            "live/nobody",
            "--duration",
            "4s",
            "--max-error-rate",
            "1",
            "--engine-args",
            "--cores 2",
        ])
        .arg("--json")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("6 of 6 viewers received no media"),
        "{stderr}"
    );
    let j = json(&out);
    // Each viewer failed once: with the engine's answer (FLV's 404, RTMP's StreamNotFound)
    // or, where it had none before the run ended (HLS retrying a 404), as `no_media`.
    let errors: u64 = j["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 6, "{j}");
    assert!(j["errors"]["no_media"].as_u64() >= Some(2), "{j}");
    assert_eq!(
        j["counters"]["viewers_with_media"].as_u64().unwrap_or(0),
        0,
        "{j}"
    );
    let config = &j["config"];
    assert_eq!(config["viewers"].as_u64(), Some(6), "{config}");
    assert_eq!(config["streams"], serde_json::json!(["live/nobody"]));
    assert_eq!(config["protocol"], "flv=1,rtmp=1,hls=1");
    assert_eq!(config["source"], "bundled 360k rendition");
    assert_eq!(j["source"]["path"], "bundled 360k rendition");
    std::fs::remove_file(out).unwrap();
}

/// A fake HLS origin whose segment 2 answers 1.5 s late. Requests count from their intended
/// time, so every segment queued behind the slow one is late too: the median moves, not
/// just the maximum.
/// A fake HTTP server on 127.0.0.1. Every request on every connection is answered with
/// `answer(path)`: the bytes to write, and whether to close the connection after them.
fn fake_server(
    answer: impl Fn(&str) -> (Vec<u8>, bool) + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            s.set_nodelay(true).unwrap();
            let answer = std::sync::Arc::clone(&answer);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let req = String::from_utf8_lossy(&pending[..end]).into_owned();
                        pending.drain(..end + 4);
                        let path = req.split_whitespace().nth(1).unwrap_or("");
                        let (bytes, close) = answer(path);
                        if s.write_all(&bytes).is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An ended playlist of `n` 2 s segments `x-0.ts` … .
fn ended_playlist(n: usize) -> String {
    let mut p = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n".to_string();
    for i in 0..n {
        p += &format!("#EXTINF:2.000,\nx-{i}.ts\n");
    }
    p + "#EXT-X-ENDLIST\n"
}

/// A 200 head saying `length`, then `body` (which may be shorter or longer than it says).
fn response(length: usize, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn a_slow_response_raises_the_measured_tail() {
    let addr = fake_server(|path| {
        let body = if path.ends_with(".m3u8") {
            ended_playlist(10).into_bytes()
        } else {
            if path.ends_with("x-2.ts") {
                std::thread::sleep(Duration::from_millis(1500));
            }
            vec![0x47; 188 * 10]
        };
        (response(body.len(), &body), false)
    });
    let out = tmp("slow");
    let status = loadgen()
        .args([
            "--viewers",
            "1",
            "--protocol",
            "hls",
            "--stream-prefix",
            "x",
            "--streams",
            "1",
            "--duration",
            "8s",
        ])
        .arg("--target")
        .arg(format!("http://{addr}"))
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let j = json(&out);
    let d = &j["histograms"]["segment_download"];
    assert_eq!(d["count"].as_u64(), Some(10), "{j}");
    // Segments 2..9 were all intended at the playlist's arrival and waited behind segment 2.
    assert!(
        d["p50_us"].as_u64().unwrap() >= 1_400_000,
        "median carries the stall: {d}"
    );
    std::fs::remove_file(out).unwrap();
}

#[test]
fn more_viewers_than_sockets_share_a_connection_pool() {
    let out = tmp("mux");
    let status = loadgen()
        .args([
            "--spawn",
            "--publish",
            "--viewers",
            "200",
            "--protocol",
            "hls",
            "--connections",
            "20",
        ])
        .args(["--duration", "12s", "--engine-args", "--cores 2"])
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let j = json(&out);
    assert_eq!(j["viewers"].as_u64(), Some(200));
    assert_eq!(j["hls_connections_max"].as_u64(), Some(20));
    // 20 pooled connections plus the publisher's socket.
    assert!(j["peak_sockets"].as_u64().unwrap() <= 21, "{j}");
    assert!(
        j["counters"]["segments"].as_u64().unwrap() >= 200 * 3,
        "{j}"
    );
    assert_eq!(j["counters"]["segment_gaps"].as_u64().unwrap_or(0), 0);
    std::fs::remove_file(out).unwrap();
}

/// How the fake server spoils a segment.
#[derive(Clone, Copy)]
enum Spoil {
    None,
    /// The connection closes halfway through the body.
    Truncated,
    /// Content-Length says 1,000 bytes fewer than the body that is sent.
    ShortLength,
    /// Packet 1's sync byte (inside the checked prefix) is not 0x47.
    BrokenSync,
    /// The first frame's probe UUID is defaced.
    NoProbe,
}

/// A server for one ended three-segment playlist whose segments are the recorded engine
/// segment, spoiled as `spoil` says.
fn spoiling_server(spoil: Spoil) -> std::net::SocketAddr {
    let mut segment = include_bytes!("fixtures/engine-segment.ts").to_vec();
    match spoil {
        Spoil::BrokenSync => segment[188] = 0x00,
        Spoil::NoProbe => {
            let at = segment
                .windows(16)
                .position(|w| w == b"edge-engine:lat1")
                .expect("the recorded segment carries a probe");
            segment[at..at + 16].copy_from_slice(b"edge-engine:XXXX");
        }
        _ => {}
    }
    fake_server(move |path| {
        if path.ends_with(".m3u8") {
            let p = ended_playlist(3);
            return (response(p.len(), p.as_bytes()), false);
        }
        match spoil {
            Spoil::Truncated => (response(segment.len(), &segment[..segment.len() / 2]), true),
            Spoil::ShortLength => (response(segment.len() - 1000, &segment), false),
            _ => (response(segment.len(), &segment), false),
        }
    })
}

/// One HLS viewer in `--verify light` against a spoiling server: the run's JSON.
fn light_viewer(spoil: Spoil, name: &str) -> serde_json::Value {
    let addr = spoiling_server(spoil);
    let out = tmp(name);
    loadgen()
        .args([
            "--viewers",
            "1",
            "--protocol",
            "hls",
            "--verify",
            "light",
            "--stream-prefix",
            "x",
            "--streams",
            "1",
            "--duration",
            "3s",
        ])
        .arg("--target")
        .arg(format!("http://{addr}"))
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    let j = json(&out);
    std::fs::remove_file(out).unwrap();
    j
}

#[test]
fn light_verification_discards_bodies_in_the_kernel_and_still_catches_what_it_must() {
    let good = light_viewer(Spoil::None, "light-good");
    assert_eq!(good["verify"], "light");
    assert!(
        good["loadgen_cpu_us_per_request"].as_f64().unwrap() > 0.0,
        "the client's own cost is reported: {good}"
    );
    assert!(
        good["errors"].as_object().unwrap().values().all(|n| n == 0),
        "{good}"
    );
    assert_eq!(good["counters"]["segments"].as_u64(), Some(3), "{good}");
    let size = include_bytes!("fixtures/engine-segment.ts").len() as u64;
    assert_eq!(good["counters"]["segment_bytes"].as_u64(), Some(3 * size));
    let unread = good["counters"]["segment_bytes_unread"].as_u64().unwrap();
    assert!(
        unread * 10 > 3 * size * 9,
        "all but the checked start of each body went unread: {unread} of {}",
        3 * size
    );
    assert_eq!(
        good["histograms"]["segment_latency"]["count"].as_u64(),
        Some(3),
        "every probe read: {good}"
    );
    for (spoil, name, kind) in [
        (Spoil::Truncated, "light-truncated", "closed"),
        (Spoil::ShortLength, "light-short", "parse"),
        (Spoil::BrokenSync, "light-sync", "parse"),
        (Spoil::NoProbe, "light-probe", "probe"),
    ] {
        let j = light_viewer(spoil, name);
        assert!(
            j["errors"][kind].as_u64().is_some_and(|n| n >= 1),
            "{name}: a {kind} error: {j}"
        );
    }
}
