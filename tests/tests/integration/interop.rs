//! Interoperability with real peers from Debian's packages, each a test that can fail: a
//! strict (SRS-like) origin, GStreamer and librtmp publishers, rtmpdump and GStreamer players
//! over RTMP, HTTP-FLV and HLS. Every player must decode frames, counted, not just connect.
//! `.ci/run` installs the peers; docs/guide/origin.md's compatibility table names each test.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_core::rtmp::amf::Amf0Value;
use edge_core::rtmp::client::ClientMode;
use tests::*;

const FIXTURE: &str = "bframes.flv";

fn connect_object(pairs: &[(&str, &str)]) -> Amf0Value {
    Amf0Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Amf0Value::Utf8String(v.to_string())))
            .collect(),
    )
}

/// The strict origin's check itself: rml_rtmp's old connect (app only) is refused, so is a
/// tcUrl that names another app; what edge-core's client sends now passes.
#[test]
fn a_strict_origin_refuses_a_connect_without_tc_url() {
    let old = connect_object(&[("app", "live"), ("flashVer", "LNX 9,0,124,2")]);
    let why = strict_connect_check(&old).unwrap_err();
    assert!(why.contains("without tcUrl"), "{why}");
    let mismatch = connect_object(&[("app", "other"), ("tcUrl", "rtmp://h:1935/live")]);
    assert!(strict_connect_check(&mismatch).is_err());
    for mode in [ClientMode::Play, ClientMode::Publish] {
        let ours = client_connect_object(mode);
        assert_eq!(strict_connect_check(&ours), Ok(()), "{mode:?}: {ours:?}");
    }
    // A query on the app is the same app.
    let q = connect_object(&[("app", "live?vhost=a"), ("tcUrl", "rtmp://h/live?vhost=a")]);
    assert_eq!(strict_connect_check(&q), Ok(()));
}

#[test]
fn an_edge_pulls_and_forwards_through_a_strict_origin() {
    let origin = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let strict = StrictOrigin::start(origin.rtmp);
    let edge = Engine::start(&[
        "--cores",
        "2",
        "--origin",
        &strict.url("live"),
        "--republish-grace-ms",
        "300",
    ]);
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    let addr = edge.rtmp;
    let viewer =
        std::thread::spawn(move || play_rtmp(addr, "live", "s", &PlayOpts::default(), None));
    edge.wait_for("the pull", Duration::from_secs(20), |m| {
        m.sum("upstream_pulls_active") == 1
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &origin.rtmp_url("live/s"), &[]);
    assert!(publisher.wait().unwrap().success());
    let log = viewer.join().unwrap();
    assert_eq!((log.video, log.audio), (video, audio), "{log:?}");
    assert_eq!(
        strict.refused.lock().unwrap().as_slice(),
        &[] as &[String],
        "every connect passed the check"
    );
    assert!(strict.accepted.load(Ordering::Relaxed) >= 1);

    // A publish at the edge is forwarded through the strict origin too.
    let origin_viewer = {
        let addr = origin.rtmp;
        std::thread::spawn(move || play_rtmp(addr, "live", "f", &PlayOpts::default(), None))
    };
    origin.wait_for("origin viewer", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let before = strict.accepted.load(Ordering::Relaxed);
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &edge.rtmp_url("live/f"), &[]);
    assert!(publisher.wait().unwrap().success());
    let log = origin_viewer.join().unwrap();
    assert!(
        log.video > video / 2,
        "forwarded media reached the origin: {log:?}"
    );
    assert!(strict.accepted.load(Ordering::Relaxed) > before);
    assert!(strict.refused.lock().unwrap().is_empty());
}

#[test]
fn loadgen_publishes_and_plays_through_a_strict_origin() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let strict = StrictOrigin::start(engine.rtmp);
    let (status, text) = LoadgenRun::start(
        "strict",
        &[
            "--target",
            &format!("rtmp://{}", strict.addr),
            "--target",
            &format!("http://{}", engine.http),
            "--publish",
            "--viewers",
            "20",
            "--protocol",
            "rtmp",
            "--duration",
            "6s",
        ],
    )
    .finish();
    assert!(status.success(), "loadgen exit {status}: {text}");
    assert!(strict.refused.lock().unwrap().is_empty());
    assert!(
        strict.accepted.load(Ordering::Relaxed) >= 21,
        "the publisher and 20 players connected through it"
    );
    assert!(text.contains("\"video_frames\""), "{text}");
}

/// Publishes with GStreamer `sink` to an engine and checks what comes out: an RTMP player
/// attached first gets all 150 pictures, and the ended HLS stream decodes to 150 frames.
fn check_gstreamer_publisher(sink: &str) {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let addr = engine.rtmp;
    let player =
        std::thread::spawn(move || play_rtmp(addr, "live", "gst", &PlayOpts::default(), None));
    engine.wait_for("the player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let mut publisher = gst_publish(sink, &engine.rtmp_url("live/gst"));
    assert!(
        publisher.wait().unwrap().success(),
        "{sink} publisher failed"
    );
    let log = player.join().unwrap();
    assert!(log.started, "{log:?}");
    assert_eq!(
        log.video, 150,
        "{sink}: every encoded picture reached the player"
    );
    assert!(log.audio > 100, "{sink}: audio too: {log:?}");
    assert_eq!((log.video_headers, log.audio_headers), (1, 1));
    let out = ffprobe(
        &engine.http_url("live/gst.m3u8"),
        &[
            "-count_frames",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_frames",
        ],
    );
    // ffprobe lists an HLS stream once per program and once alone.
    assert_eq!(
        out.split_whitespace().next(),
        Some("150"),
        "{sink}: HLS decodes every frame"
    );
}

#[test]
fn gstreamer_rtmp2sink_publishes() {
    check_gstreamer_publisher("rtmp2sink");
}

#[test]
fn gstreamer_librtmp_rtmpsink_publishes() {
    check_gstreamer_publisher("rtmpsink");
}

/// Players of one ffmpeg publish of the fixture, all attached before it starts: each must
/// decode every picture the fixture has.
#[test]
fn rtmpdump_and_gstreamer_play_rtmp_http_flv_and_hls() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let (video, audio) = flv_frame_counts(&fixture(FIXTURE));
    let dump = std::env::temp_dir().join(format!("rtmpdump-{}.flv", std::process::id()));
    let rtmpdump = {
        let (url, dump) = (engine.rtmp_url("live/p"), dump.clone());
        std::thread::spawn(move || {
            let dump = dump.to_str().unwrap().to_string();
            run_tool(
                "rtmpdump",
                &["-q", "--live", "-r", &url, "-o", &dump],
                Duration::from_secs(60),
            )
        })
    };
    let rtmp2src = {
        let url = engine.rtmp_url("live/p");
        std::thread::spawn(move || {
            gst_buffers(
                &format!(
                    "rtmp2src location={url} ! flvdemux name=d d.video ! queue ! h264parse \
                     ! avdec_h264 ! fakesink silent=false d.audio ! queue ! fakesink"
                ),
                Duration::from_secs(60),
            )
        })
    };
    let flv = {
        let url = engine.http_url("live/p.flv");
        std::thread::spawn(move || {
            gst_buffers(
                &format!(
                    "souphttpsrc location={url} ! flvdemux name=d d.video ! queue ! h264parse \
                     ! avdec_h264 ! fakesink silent=false d.audio ! queue ! fakesink"
                ),
                Duration::from_secs(60),
            )
        })
    };
    engine.wait_for("three players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 2 && m.sum("flv_players") == 1
    });
    let mut publisher = ffmpeg_publish(&fixture(FIXTURE), &engine.rtmp_url("live/p"), &[]);
    assert!(publisher.wait().unwrap().success());

    let (_, _, err) = rtmpdump.join().unwrap();
    let counts = flv_frame_counts(&dump);
    let _ = std::fs::remove_file(&dump);
    assert_eq!(counts, (video, audio), "rtmpdump's recording: {err}");
    let (n, text) = rtmp2src.join().unwrap();
    assert_eq!(n, video, "GStreamer rtmp2src decoded pictures:\n{text}");
    let (n, text) = flv.join().unwrap();
    assert_eq!(n, video, "GStreamer HTTP-FLV decoded pictures:\n{text}");
    // The ended stream's playlist lists every segment: hlsdemux plays it through.
    let (n, text) = gst_buffers(
        &format!(
            "uridecodebin uri={} name=d d. ! video/x-raw ! fakesink silent=false \
             d. ! audio/x-raw ! fakesink",
            engine.http_url("live/p.m3u8")
        ),
        Duration::from_secs(60),
    );
    assert_eq!(n, video, "GStreamer hlsdemux decoded pictures:\n{text}");
}

/// GStreamer's rtmp2src, wanting video only, joined an x264 (default settings: lookahead,
/// long GOP) GStreamer publish a second in and got nothing ("Got EOS before any data"): it
/// arrived after the sequence headers but before the first keyframe, and the audio that came
/// first made flvdemux give up. Deterministic here: our publisher announces video, sends the
/// headers and a second of audio, and only then the fixture's pictures; the players join in
/// between. Every one must start at the keyframe and decode every picture.
#[test]
fn regression_players_joining_before_the_first_keyframe_start_at_it() {
    use edge_core::flv::FlvReader;
    use edge_core::media::{self, MediaKind};
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let mut tags = Vec::new();
    let mut r = FlvReader::new();
    r.handle_input(&std::fs::read(fixture(FIXTURE)).unwrap());
    while let Some(t) = r.poll_tag().unwrap() {
        tags.push(t);
    }
    let header = |k: MediaKind| {
        tags.iter()
            .find(|t| {
                t.type_id == k.type_id()
                    && match k {
                        MediaKind::Video => {
                            media::parse_video_tag(&t.body).unwrap().sequence_header
                        }
                        _ => media::parse_audio_tag(&t.body).unwrap().sequence_header,
                    }
            })
            .unwrap()
            .body
            .clone()
    };
    let audio_frame = tags
        .iter()
        .find(|t| t.type_id == 8 && !media::parse_audio_tag(&t.body).unwrap().sequence_header)
        .unwrap()
        .body
        .clone();
    let mut p = Publisher::start(engine.rtmp, "live", "early");
    let mut props = std::collections::HashMap::new();
    props.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
    props.insert("audiocodecid".to_string(), Amf0Value::Number(10.0));
    p.send_metadata(&edge_core::rtmp::amf::metadata_body(&props));
    p.send(MediaKind::Audio, 0, &header(MediaKind::Audio));
    p.send(MediaKind::Video, 0, &header(MediaKind::Video));
    // A second of audio before any picture, as x264's lookahead makes it.
    for i in 0..43u32 {
        p.send(MediaKind::Audio, i * 23, &audio_frame);
    }
    let addr = engine.rtmp;
    let ours =
        std::thread::spawn(move || play_rtmp(addr, "live", "early", &PlayOpts::default(), None));
    let url = engine.rtmp_url("live/early");
    let gst = std::thread::spawn(move || {
        gst_buffers(
            &format!(
                "rtmp2src location={url} ! flvdemux name=d d.video ! queue ! h264parse \
                 ! avdec_h264 ! fakesink silent=false"
            ),
            Duration::from_secs(30),
        )
    });
    engine.wait_for("two players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 2
    });
    // More audio while they wait, then the pictures (the fixture's, a second later).
    for i in 43..60u32 {
        p.send(MediaKind::Audio, i * 23, &audio_frame);
    }
    let mut pictures = 0;
    for t in tags.iter().filter(|t| t.type_id == 9) {
        let tag = media::parse_video_tag(&t.body).unwrap();
        if tag.sequence_header || tag.end_of_sequence {
            continue;
        }
        p.send(MediaKind::Video, 1400 + t.timestamp, &t.body);
        pictures += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    p.finish();
    let log = ours.join().unwrap();
    assert_eq!(
        log.first_frame,
        Some((MediaKind::Video, true)),
        "the first frame after the headers is the keyframe: {log:?}"
    );
    assert_eq!(log.video, pictures, "{log:?}");
    let (n, text) = gst.join().unwrap();
    assert_eq!(n, pictures, "rtmp2src decodes every picture:\n{text}");
}

/// The same with a GStreamer publisher (x264 at its defaults) and players joining at several
/// moments of its first seconds: each decodes pictures.
#[test]
fn players_joining_a_gstreamer_publish_at_several_moments_decode() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let url = engine.rtmp_url("live/join");
    let pipeline = format!(
        "videotestsrc num-buffers=240 is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc ! h264parse ! queue ! flvmux name=m streamable=true ! rtmp2sink location={url} \
         audiotestsrc num-buffers=360 is-live=true ! audioconvert ! avenc_aac ! aacparse ! queue ! m."
    );
    let mut publisher = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    engine.wait_for("the publisher", Duration::from_secs(20), |m| {
        m.sum("publishers") == 1
    });
    let mut joins = Vec::new();
    for step in 0..6 {
        let url = url.clone();
        joins.push(std::thread::spawn(move || {
            gst_buffers(
                &format!(
                    "rtmp2src location={url} ! flvdemux name=d d.video ! queue ! h264parse \
                     ! avdec_h264 ! fakesink silent=false"
                ),
                Duration::from_secs(20),
            )
        }));
        let addr = engine.rtmp;
        let seen = Arc::new(AtomicU64::new(0));
        let s = Arc::clone(&seen);
        joins.push(std::thread::spawn(move || {
            let log = play_rtmp(addr, "live", "join", &PlayOpts::default(), Some(&s));
            assert_eq!(
                log.first_frame,
                Some((edge_core::media::MediaKind::Video, true)),
                "join {step}: the first frame must be a keyframe: {log:?}"
            );
            (log.video, String::new())
        }));
        std::thread::sleep(Duration::from_millis(150 + 100 * step));
    }
    assert!(publisher.wait().unwrap().success());
    for (i, j) in joins.into_iter().enumerate() {
        let (n, text) = j.join().unwrap();
        assert!(n > 0, "join {i} decoded nothing:\n{text}");
    }
}

/// Removes H.264/HEVC emulation-prevention bytes (00 00 03 → 00 00).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// NAL units of an Annex B stream.
fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            while end > s && data[end - 1] == 0 {
                end -= 1;
            }
            &data[s..end]
        })
        .collect()
}

/// `frames` pictures of ffmpeg's 320x240 test pattern at 25 fps, encoded with `codec_args`
/// (an encoder and an output format), as the elementary stream's bytes.
fn encode_test_pattern(frames: u32, codec_args: &[&str]) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!(
        "pattern-{}-{}",
        std::process::id(),
        codec_args.join("_").replace(['/', ':', '='], "_")
    ));
    let frames = frames.to_string();
    let mut args = vec![
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-frames:v",
        &frames,
    ];
    args.extend_from_slice(codec_args);
    args.push(path.to_str().unwrap());
    let (ok, _, err) = run_tool("ffmpeg", &args, Duration::from_secs(60));
    assert!(
        ok,
        "ffmpeg encodes the test pattern ({codec_args:?}): {err}"
    );
    let data = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    data
}

/// HEVC from libx265 as enhanced RTMP: an `hvc1` SequenceStart (hvcC built from the
/// stream's VPS/SPS/PPS) and CodedFrames (with a zero composition time), one per access unit.
fn hevc_as_enhanced_rtmp(frames: u32) -> Vec<Vec<u8>> {
    let data = encode_test_pattern(
        frames,
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "keyint=25:bframes=0:aud=1:log-level=error",
            "-f",
            "hevc",
        ],
    );
    let nals = annexb_nals(&data);
    let kind = |n: &[u8]| (n[0] >> 1) & 0x3f;
    let (vps, sps, pps) = (
        nals.iter().find(|n| kind(n) == 32).expect("a VPS"),
        nals.iter().find(|n| kind(n) == 33).expect("an SPS"),
        nals.iter().find(|n| kind(n) == 34).expect("a PPS"),
    );
    // hvcC: the profile, tier and level of the SPS's profile_tier_level (bytes 3..15 of the
    // unescaped SPS), 4-byte NAL lengths, one array each of VPS, SPS, PPS.
    let ptl = unescape(sps);
    let mut hvcc = vec![1u8];
    hvcc.extend_from_slice(&ptl[3..15]);
    hvcc.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]);
    for (t, n) in [(32u8, vps), (33, sps), (34, pps)] {
        hvcc.push(0x80 | t);
        hvcc.extend_from_slice(&1u16.to_be_bytes());
        hvcc.extend_from_slice(&(n.len() as u16).to_be_bytes());
        hvcc.extend_from_slice(n);
    }
    let mut out = vec![[&[0x90u8][..], b"hvc1", &hvcc].concat()];
    // Access units start at each AUD (type 35); parameter sets stay in-band as x265 wrote.
    let mut au: Vec<u8> = Vec::new();
    let mut key = false;
    let flush = |au: &mut Vec<u8>, key: bool, out: &mut Vec<Vec<u8>>| {
        if !au.is_empty() {
            let b0 = if key { 0x91 } else { 0xa1 };
            out.push([&[b0][..], b"hvc1", &[0, 0, 0], au].concat());
            au.clear();
        }
    };
    for n in nals {
        match kind(n) {
            35 => {
                flush(&mut au, key, &mut out);
                key = false;
            }
            16..=21 => key = true,
            _ => {}
        }
        au.extend_from_slice(&(n.len() as u32).to_be_bytes());
        au.extend_from_slice(n);
    }
    flush(&mut au, key, &mut out);
    out
}

/// Enhanced RTMP (FourCC video, as OBS 30 and ffmpeg 6.1 publish; Debian's ffmpeg 5.1 cannot):
/// `hvc1` is carried byte for byte over RTMP and HTTP-FLV and muxed into HLS as HEVC (stream
/// type 0x24), which ffprobe decodes.
#[test]
fn enhanced_rtmp_hevc_is_served_over_rtmp_flv_and_hls() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let bodies = hevc_as_enhanced_rtmp(50);
    assert_eq!(bodies.len(), 51, "a sequence start and 50 pictures");
    let addr = engine.rtmp;
    let player =
        std::thread::spawn(move || play_rtmp(addr, "live", "hevc", &PlayOpts::default(), None));
    let http = engine.http;
    let flv =
        std::thread::spawn(move || flv_over_http(http, "/live/hevc.flv", Duration::from_secs(30)));
    engine.wait_for("two players", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1 && m.sum("flv_players") == 1
    });
    let mut p = Publisher::start(engine.rtmp, "live", "hevc");
    let mut expect = 0;
    for (i, b) in bodies.iter().enumerate() {
        let ts = (i.saturating_sub(1) * 40) as u32;
        p.send(edge_core::media::MediaKind::Video, ts, b);
        expect = media_digest(expect, edge_core::media::MediaKind::Video, ts, b);
        std::thread::sleep(Duration::from_millis(5));
    }
    p.finish();
    let log = player.join().unwrap();
    assert_eq!((log.video_headers, log.video), (1, 50), "{log:?}");
    assert_eq!(
        log.digest, expect,
        "RTMP: the published bodies and times, unchanged"
    );
    let tags = flv.join().unwrap();
    let got = tags.iter().filter(|t| t.type_id == 9).fold(0, |d, t| {
        media_digest(d, edge_core::media::MediaKind::Video, t.timestamp, &t.body)
    });
    assert_eq!(
        got, expect,
        "HTTP-FLV: the published bodies and times, unchanged"
    );
    let frames = |url: &str, entries: &str| {
        let out = ffprobe(
            url,
            &[
                "-count_frames",
                "-select_streams",
                "v",
                "-show_entries",
                entries,
            ],
        );
        out.split_whitespace().next().map(str::to_string)
    };
    assert_eq!(
        frames(
            &engine.http_url("live/hevc.m3u8"),
            "stream=codec_name,nb_read_frames"
        )
        .as_deref(),
        Some("hevc,50"),
        "HLS carries the HEVC pictures"
    );
    // LL-HLS carries them as fMP4 (`hvc1` with the publisher's hvcC), every picture.
    let url = engine.http_url("live/hevc/llhls.m3u8");
    assert_eq!(
        frames(&url, "stream=codec_name,codec_tag_string,nb_read_frames").as_deref(),
        Some("hevc,hvc1,50"),
        "LL-HLS carries the HEVC pictures"
    );
}

/// AV1 from libaom over Enhanced RTMP (`av01`): carried byte for byte over RTMP, and into
/// LL-HLS as fMP4 (`av01` with the publisher's `av1C`), where ffmpeg decodes every picture.
/// MPEG-TS has no mapping for AV1, so the TS playlist is a 404 that says where to look.
#[test]
fn enhanced_rtmp_av1_plays_over_rtmp_and_ll_hls() {
    let engine = Engine::start(&["--cores", "2", "--republish-grace-ms", "300"]);
    let bodies = av1_as_enhanced_rtmp(75);
    assert_eq!(bodies.len(), 76, "a sequence start and 75 pictures");
    let keyframes = bodies.iter().filter(|b| b[0] == 0x91).count();
    assert_eq!(keyframes, 3, "libaom's keyframes every 25 pictures");
    let addr = engine.rtmp;
    let player =
        std::thread::spawn(move || play_rtmp(addr, "live", "av1", &PlayOpts::default(), None));
    engine.wait_for("the player", Duration::from_secs(20), |m| {
        m.sum("rtmp_players") == 1
    });
    let mut p = Publisher::start(engine.rtmp, "live", "av1");
    let video = edge_core::media::MediaKind::Video;
    let mut expect = 0;
    for (i, b) in bodies.iter().enumerate() {
        let ts = (i.saturating_sub(1) * 40) as u32;
        p.send(video, ts, b);
        expect = media_digest(expect, video, ts, b);
        std::thread::sleep(Duration::from_millis(5));
    }
    p.finish();
    let log = player.join().unwrap();
    assert_eq!((log.video_headers, log.video), (1, 75), "{log:?}");
    assert_eq!(log.digest, expect, "RTMP: the published bodies and times");
    let playlist = http_get(engine.http, "/live/av1.m3u8");
    assert_eq!(playlist.status(), 404, "MPEG-TS cannot carry AV1");
    let why = String::from_utf8_lossy(&playlist.body);
    assert!(why.contains("llhls.m3u8"), "{why}");
    let url = engine.http_url("live/av1/llhls.m3u8");
    let out = ffprobe(
        &url,
        &[
            "-count_frames",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=codec_name,codec_tag_string,nb_read_frames",
        ],
    );
    assert_eq!(
        out.split_whitespace().next(),
        Some("av1,av01,75"),
        "LL-HLS carries every AV1 picture: {out}"
    );
}

/// AV1 from libaom (real-time mode: no reordering) as Enhanced RTMP: an `av01` SequenceStart
/// (an `av1C` whose config OBU is the stream's sequence header) and CodedFrames, one per
/// temporal unit without its temporal delimiter (as in MP4). Keyframes are the temporal units
/// that carry a sequence header: libaom writes one before each.
fn av1_as_enhanced_rtmp(frames: u32) -> Vec<Vec<u8>> {
    let data = encode_test_pattern(
        frames,
        &[
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "25",
            "-f",
            "obu",
        ],
    );
    // OBUs: a header byte (type in bits 6..3, extension flag, size flag), an optional
    // extension byte, a LEB128 size.
    let mut obus: Vec<(u8, &[u8])> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let h = data[i];
        assert!(h & 0x02 != 0, "OBUs with sizes");
        let mut j = i + 1 + usize::from((h >> 2) & 1);
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let b = data[j];
            j += 1;
            size |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        obus.push(((h >> 3) & 0x0f, &data[i..j + size]));
        i = j + size;
    }
    let (_, seq_header) = *obus
        .iter()
        .find(|(t, _)| *t == 1)
        .expect("a sequence header");
    // av1C: marker and version, seq_profile (the header's first three bits) and level 0,
    // 4:2:0 chroma, then the sequence header as the config OBU.
    let header_at = 1 + seq_header[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let profile = seq_header[header_at] >> 5;
    let av1c = [&[0x81, profile << 5, 0x0c, 0x00][..], seq_header].concat();
    let mut out = vec![[&[0x90u8][..], b"av01", &av1c].concat()];
    let mut tu: Vec<u8> = Vec::new();
    let mut key = false;
    let mut flush = |tu: &mut Vec<u8>, key: bool| {
        if !tu.is_empty() {
            let b0 = if key { 0x91 } else { 0xa1 };
            out.push([&[b0][..], b"av01", tu].concat());
            tu.clear();
        }
    };
    for (kind, obu) in obus {
        match kind {
            2 => {
                flush(&mut tu, key);
                key = false;
            }
            1 => {
                key = true;
                tu.extend_from_slice(obu);
            }
            _ => tu.extend_from_slice(obu),
        }
    }
    flush(&mut tu, key);
    out
}
