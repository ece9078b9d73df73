//! One pull, every protocol: RTMP and HTTP-FLV viewers at an edge whose only origin gives
//! HLS (`--origin http://…`), fed from the same HLS pull its HLS viewers use. In front of an
//! edge-engine origin and of nginx-rtmp's `hls on`, each behind a relay that records every
//! request. Assertions are on bytes, timestamps, request counts and counters.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use edge_core::media::MediaKind;
use tests::*;

fn play(addr: SocketAddr, stream: &str, secs: u64) -> PlayLog {
    let opts = PlayOpts {
        deadline: Duration::from_secs(secs),
        until_status: None,
        keep_frames: true,
        ..PlayOpts::default()
    };
    play_rtmp(addr, "live", stream, &opts, None)
}

/// ffmpeg decodes `secs` seconds of `url` (video and audio) without a word at error level.
fn decodes(url: &str, secs: u64) {
    let (ok, _, err) = run_tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            url,
            "-t",
            &secs.to_string(),
            "-f",
            "null",
            "-",
        ],
        Duration::from_secs(secs + 40),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg on {url}: {err}");
}

/// Video frames that are pictures (AVC NAL units, not sequence headers or ends): (timestamp,
/// body). An end of sequence (where loadgen's source loops) has no place in TS.
fn pictures(log: &PlayLog) -> Vec<(u32, Bytes)> {
    log.frames
        .iter()
        .filter(|(k, _, b)| *k == MediaKind::Video && b.get(1) == Some(&1))
        .map(|(_, t, b)| (*t, b.clone()))
        .collect()
}

/// The edge player's stream against the origin's own RTMP output: sequence headers first,
/// timestamps that never go back, and every picture byte-identical to one the origin
/// played, in the origin's order with none left out. With `unique` bodies (loadgen's SEI
/// probes) the timing is checked too: one constant offset for every picture.
fn same_frames(edge: &PlayLog, origin: &PlayLog, unique: bool) -> usize {
    assert!(edge.started && edge.error.is_none(), "{:?}", edge.error);
    let first = |kind| edge.frames.iter().find(|f| f.0 == kind).map(|f| f.2[1]);
    assert_eq!(
        first(MediaKind::Video),
        Some(0),
        "video sequence header first"
    );
    assert_eq!(
        first(MediaKind::Audio),
        Some(0),
        "audio sequence header first"
    );
    assert!(edge.audio > 100, "audio frames: {}", edge.audio);
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let ts: Vec<u32> = edge
            .frames
            .iter()
            .filter(|f| f.0 == kind)
            .map(|f| f.1)
            .collect();
        assert!(ts.windows(2).all(|w| w[1] >= w[0]), "{kind:?} went back");
    }
    let origin_pictures = pictures(origin);
    let at_origin: HashMap<&Bytes, Vec<usize>> =
        origin_pictures
            .iter()
            .enumerate()
            .fold(HashMap::new(), |mut m, (i, (_, b))| {
                m.entry(b).or_default().push(i);
                m
            });
    let edge_pictures = pictures(edge);
    assert_eq!(
        edge_pictures.first().map(|p| p.1[0] >> 4),
        Some(1),
        "a keyframe first"
    );
    let mut previous: Option<Vec<usize>> = None;
    let mut offsets = BTreeSet::new();
    for (ts, body) in &edge_pictures {
        let Some(places) = at_origin.get(body) else {
            panic!(
                "a picture at {ts} that the origin never played ({} bytes)",
                body.len()
            );
        };
        // Some place of this picture follows some place of the last one directly.
        if let Some(prev) = &previous {
            assert!(
                places.iter().any(|p| prev.iter().any(|q| p == &(q + 1))),
                "a picture missing before the one at {ts}: it is the origin's {places:?} \
                 ({:?}), the one before was {prev:?} ({:?})",
                places
                    .iter()
                    .map(|&p| origin_pictures[p].0)
                    .collect::<Vec<_>>(),
                prev.iter()
                    .map(|&p| origin_pictures[p].0)
                    .collect::<Vec<_>>(),
            );
        }
        if unique {
            assert_eq!(places.len(), 1);
            offsets.insert(i64::from(*ts) - i64::from(origin_pictures[places[0]].0));
        }
        previous = Some(places.clone());
    }
    if unique {
        assert_eq!(offsets.len(), 1, "one timeline: {offsets:?}");
    }
    edge_pictures.len()
}

#[test]
fn rtmp_and_flv_viewers_of_an_hls_only_edge_engine_origin_get_its_frames_from_the_one_pull() {
    let origin = Engine::start(&["--cores", "1"]);
    let relay = DelayRelay::start(origin.http, Duration::ZERO);
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &relay.url("live"),
        "--upstream-idle-ms",
        "3000",
    ]);
    // loadgen publishes to the origin (every picture carries a probe of its own, so none
    // repeats) and 40 HLS viewers watch the edge.
    let loadgen = LoadgenRun::start(
        "hls-feed",
        &[
            "--publish-target",
            &format!("rtmp://{}", origin.rtmp),
            "--target",
            &format!("http://{}", edge.http),
            "--publish",
            "--viewers",
            "40",
            "--protocol",
            "hls",
            "--stream-prefix",
            "hy",
            "--duration",
            "26s",
        ],
    );
    let origin_rtmp = origin.rtmp;
    let at_origin = std::thread::spawn(move || play(origin_rtmp, "hy0", 24));
    eventually("the origin's playlist", Duration::from_secs(30), || {
        http_get(origin.http, "/live/hy0.m3u8").status() == 200
    });
    let edge_rtmp = edge.rtmp;
    let players: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || play(edge_rtmp, "hy0", 14)))
        .collect();
    let rtmp_url = edge.rtmp_url("live/hy0");
    let flv_url = edge.http_url("live/hy0.flv");
    let rtmp_decoder = std::thread::spawn(move || decodes(&rtmp_url, 8));
    let flv_decoder = std::thread::spawn(move || decodes(&flv_url, 8));
    eventually(
        "RTMP viewers in the streams list",
        Duration::from_secs(20),
        || {
            let api = String::from_utf8(http_get(edge.http, "/api/v1/streams").body).unwrap();
            api.matches("\"key\":\"live/hy0\"").count() == 1
                && api.contains("\"source\":\"upstream\"")
                && api.contains("\"hls_pull\":{\"origin\"")
                && !api.contains("\"rtmp\":0,")
        },
    );
    rtmp_decoder.join().unwrap();
    flv_decoder.join().unwrap();
    let edge_logs: Vec<PlayLog> = players.into_iter().map(|p| p.join().unwrap()).collect();
    let origin_log = at_origin.join().unwrap();
    for log in &edge_logs {
        let n = same_frames(log, &origin_log, true);
        // 14 s of 25 fps, less the start-up.
        assert!(n > 200, "{n} pictures");
    }
    let (status, report) = loadgen.finish();
    assert!(status.success(), "loadgen exit {status}: {report}");
    // One pull for every protocol: each segment requested from the origin once.
    let gets = relay.gets_by_path();
    let segments: Vec<(&String, &usize)> =
        gets.iter().filter(|(p, _)| p.ends_with(".ts")).collect();
    assert!(segments.len() >= 6, "{gets:?}");
    for (path, n) in &segments {
        assert_eq!(**n, 1, "{path} requested {n} times: {gets:?}");
    }
    let m = edge.metrics();
    assert_eq!(m.sum("hls_pulls_started"), 1);
    assert_eq!(m.sum("hls_feeds_started"), 1);
    assert_eq!(m.sum("upstream_pulls_started"), 0, "no RTMP pull");
    assert_eq!(m.sum("hls_feed_skipped"), 0);
    assert!(m.sum("hls_feed_segments") >= 5);
    // Nobody left: the feed ends after --upstream-idle-ms, then the pull.
    eventually(
        "the feed and the pull to end",
        Duration::from_secs(30),
        || {
            let m = edge.metrics();
            m.sum("hls_feeds_active") == 0 && m.sum("hls_pulls_active") == 0
        },
    );
}

#[test]
fn rtmp_and_flv_viewers_of_nginx_rtmp_hls_get_what_nginx_rtmp_plays() {
    let nginx = Nginx::start_hls();
    let _publisher = publish_loop(&format!("{}/nf0", nginx.url()));
    let relay = DelayRelay::start(nginx.http_addr(), Duration::ZERO);
    let edge = Engine::start(&["--cores", "2", "--origin", &relay.url("hls")]);
    let nginx_rtmp: SocketAddr = format!("127.0.0.1:{}", nginx.port).parse().unwrap();
    let at_origin = std::thread::spawn(move || play(nginx_rtmp, "nf0", 30));
    eventually("nginx to write a playlist", Duration::from_secs(30), || {
        http_get(nginx.http_addr(), "/hls/nf0.m3u8").status() == 200
    });
    let edge_rtmp = edge.rtmp;
    let player = std::thread::spawn(move || play(edge_rtmp, "nf0", 14));
    decodes(&edge.rtmp_url("live/nf0"), 8);
    decodes(&edge.http_url("live/nf0.flv"), 8);
    let log = player.join().unwrap();
    // The fixture loops, so pictures repeat: byte-identical and in order, not timed.
    let n = same_frames(&log, &at_origin.join().unwrap(), false);
    assert!(n > 200, "{n} pictures");
    for (path, count) in relay
        .gets_by_path()
        .iter()
        .filter(|(p, _)| p.ends_with(".ts"))
    {
        assert_eq!(*count, 1, "{path}");
    }
    let m = edge.metrics();
    assert_eq!(m.sum("hls_feeds_started"), 1);
    assert_eq!(m.sum("hls_feed_skipped"), 0);
}
