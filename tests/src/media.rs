//! Real media tools as peers and judges: ffmpeg and GStreamer publishing and reading,
//! ffprobe's packets, playlists parsed.

use edge_core::flv::FlvReader;
use edge_core::media::{self, MediaKind};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::*;

/// Runs `gst-launch-1.0 -v PIPELINE` (its last element a `fakesink silent=false`) for at most
/// `timeout`; returns how many buffers reached the sink, and what GStreamer printed.
pub fn gst_buffers(pipeline: &str, timeout: Duration) -> (u64, String) {
    let mut args = vec!["-v"];
    args.extend(pipeline.split_whitespace());
    let (_, out, err) = run_tool("gst-launch-1.0", &args, timeout);
    let n = out
        .lines()
        .filter(|l| l.contains("last-message = chain"))
        .count() as u64;
    (n, format!("{out}\n{err}"))
}

/// Counts of what an FLV file holds: (pictures, audio frames); sequence headers and
/// end-of-sequence markers (which ffmpeg's FLV muxer writes last) are not counted.
pub fn flv_frame_counts(path: &std::path::Path) -> (u64, u64) {
    let mut r = FlvReader::new();
    r.handle_input(&std::fs::read(path).unwrap());
    let (mut v, mut a) = (0, 0);
    while let Some(tag) = r.poll_tag().unwrap() {
        match MediaKind::from_type_id(tag.type_id) {
            Some(MediaKind::Video)
                if media::parse_video_tag(&tag.body)
                    .is_ok_and(|t| !t.sequence_header && !t.end_of_sequence) =>
            {
                v += 1
            }
            Some(MediaKind::Audio)
                if !media::parse_audio_tag(&tag.body).unwrap().sequence_header =>
            {
                a += 1
            }
            _ => {}
        }
    }
    (v, a)
}

/// `ffmpeg -re -i FILE -c copy -f flv URL` in the background.
pub fn ffmpeg_publish(file: &std::path::Path, url: &str, extra_input_args: &[&str]) -> Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re"])
        .args(extra_input_args)
        .arg("-i")
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg must be installed (.ci/run installs it)")
}

/// A GStreamer publisher: 150 frames of test pattern at 30 fps with AAC, encoded by x264, to
/// `url` through `sink` (`rtmp2sink`, or librtmp's `rtmpsink`).
pub fn gst_publish(sink: &str, url: &str) -> Child {
    let pipeline = format!(
        "videotestsrc num-buffers=150 is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency key-int-max=30 bitrate=400 ! h264parse ! queue \
         ! flvmux name=m streamable=true ! {sink} location={url} \
         audiotestsrc num-buffers=220 is-live=true ! audioconvert ! avenc_aac ! aacparse ! queue ! m."
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) must be installed")
}

/// Publishes `bframes.flv` to `path` once (real time) and waits until its HLS playlist is
/// complete (EXT-X-ENDLIST); returns the playlist.
pub fn publish_and_wait_for_endlist(engine: &Engine, path: &str) -> String {
    let mut publisher = ffmpeg_publish(&fixture("bframes.flv"), &engine.rtmp_url(path), &[]);
    assert!(publisher.wait().unwrap().success());
    let url = format!("/{path}.m3u8");
    for _ in 0..400 {
        let r = http_get(engine.http, &url);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if r.status() == 200 && text.contains("#EXT-X-ENDLIST") {
            return text;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{url} never got EXT-X-ENDLIST");
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes `bframes.flv` to `url` with ffmpeg in a loop (it never ends on its own) until
/// dropped.
pub fn publish_loop(url: &str) -> KillOnDrop {
    KillOnDrop(ffmpeg_publish(
        &fixture("bframes.flv"),
        url,
        &["-stream_loop", "-1"],
    ))
}

/// `ffmpeg -i INPUT -c copy -f framemd5 -`: per-packet lines without comments.
pub fn framemd5(input: &str, timeout: Duration) -> (Vec<String>, String) {
    let mut child = Command::new("timeout")
        .arg(format!("{}", timeout.as_secs()))
        .args([
            "ffmpeg", "-nostdin", "-v", "error", "-i", input, "-c", "copy", "-f", "framemd5", "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    (packet_lines(&out), err)
}

/// ffmpeg's framemd5 listing of a live `input` played for `duration`, then stopped with
/// SIGTERM (or ended by itself before that), and what it printed before the stop.
///
/// Stopping is this helper's, not the stream's, so ffmpeg's answer to it is left out: a
/// SIGTERM that lands inside a read or a write makes that I/O fail with "Immediate exit
/// requested" (AVERROR_EXIT), which it then logs at error level for the muxer, the trailer
/// and the pipe, whatever the stream did. Whether it does depends on where the signal lands
/// (`framemd5` under `timeout` saw it once in a few dozen CI runs). Every line printed before
/// the signal is kept, so a real playback error still shows.
pub fn framemd5_for(input: &str, duration: Duration) -> (Vec<String>, String) {
    let mut child = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-i", input, "-c", "copy", "-f", "framemd5", "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let err_lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let sink = err_lines.clone();
    let err = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + duration;
    let mut before_stop = None;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            // Lines are counted before the signal is sent: any later one is the stop's.
            before_stop = Some(err_lines.lock().unwrap().len());
            // SAFETY: kill(2) on our own child's pid, which `child` has not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let killed_at = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if killed_at.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    let out = out.join().unwrap();
    err.join().unwrap();
    let err_lines = err_lines.lock().unwrap();
    let kept = before_stop.unwrap_or(err_lines.len());
    let err = err_lines[..kept].iter().map(|l| format!("{l}\n")).collect();
    (packet_lines(&out), err)
}

/// A framemd5 listing's packet lines (its `#` header left out).
fn packet_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A fixture's own packets, as ffmpeg's framemd5 sees them (at least 200 of them).
pub fn fixture_md5(name: &str) -> Vec<String> {
    let (lines, err) = framemd5(fixture(name).to_str().unwrap(), Duration::from_secs(30));
    assert!(err.is_empty(), "{err}");
    assert!(lines.len() > 200, "{name} has {} packets", lines.len());
    lines
}

/// One packet as ffprobe lists it: (stream index, pts, dts, keyframe).
pub type ProbePacket = (u32, i64, i64, bool);

/// `ffprobe -show_packets` of `input`, in the stream's own time base.
pub fn probe_packets(input: &str) -> Vec<ProbePacket> {
    let (ok, out, err) = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,dts,flags",
            "-of",
            "csv=p=0",
            input,
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "ffprobe {input}: {err}");
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |s: &str| s.parse::<i64>().unwrap_or(i64::MIN);
            (
                f[0].parse().unwrap(),
                num(f[1]),
                num(f[2]),
                f[3].starts_with('K'),
            )
        })
        .collect()
}

/// The playlist's segment URIs and EXTINF durations in ms, plus the target duration.
pub fn parse_playlist(text: &str) -> (Vec<(String, u64)>, u64) {
    let p = edge_core::hls::m3u8::parse_media_playlist(text).expect("a valid media playlist");
    (
        p.segments
            .into_iter()
            .map(|s| (s.uri, s.duration_ms))
            .collect(),
        p.target_duration_s,
    )
}

/// Decodes `url` with ffmpeg to nothing (`-f null`; the first `seconds` of it, or all):
/// `Err` with what ffmpeg printed at error level, or that it failed.
pub fn ffmpeg_decode(url: &str, seconds: Option<u32>) -> Result<(), String> {
    let t = seconds.map(|s| s.to_string());
    let mut args = vec!["-nostdin", "-v", "error", "-i", url];
    if let Some(t) = &t {
        args.extend(["-t", t.as_str()]);
    }
    args.extend(["-f", "null", "-"]);
    let (ok, _, err) = run_tool("ffmpeg", &args, Duration::from_secs(60));
    match (ok, err.is_empty()) {
        (true, true) => Ok(()),
        _ => Err(format!("ffmpeg {url} (ok {ok}): {err}")),
    }
}

/// `ffprobe -v error ARGS -of csv=p=0 URL`: its output, one value list per line. Panics when
/// ffprobe fails.
pub fn ffprobe(url: &str, args: &[&str]) -> String {
    let mut all = vec!["-v", "error"];
    all.extend_from_slice(args);
    all.extend(["-of", "csv=p=0", url]);
    let (ok, out, err) = run_tool("ffprobe", &all, Duration::from_secs(60));
    assert!(ok, "ffprobe {url}: {err}");
    out
}
