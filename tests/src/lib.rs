//! Helpers for the end-to-end tests: start the real `edge-engine` binary on ephemeral
//! loopback ports, read its counters, drive ffmpeg, and play with edge-core's RTMP client.
//!
//! The binary is the one `cargo test --workspace` builds next to this test executable
//! (edge-engine's own CLI test makes cargo build it).

pub mod nginx;
pub mod redis;
pub mod relay;
pub use nginx::Nginx;
pub use redis::Redis;
pub use relay::DelayRelay;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_core::flv::FlvReader;
use edge_core::media::{self, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};

/// A fixture file in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Path of the engine binary: `$EDGE_ENGINE_BIN`, or the one cargo built beside this
/// executable (`target/<profile>/edge-engine`, also for test executables in `deps/`).
pub fn engine_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_ENGINE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable dir");
    let candidates = [
        dir.join("edge-engine"),
        dir.parent()
            .map(|d| d.join("edge-engine"))
            .unwrap_or_default(),
    ];
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "no edge-engine binary near {}: run the tests with `cargo test --workspace`, which builds it",
            exe.display()
        )
    })
}

/// Waits until `pred` holds, polling every 20 ms; panics naming `what` after `timeout`, so a
/// test that would hang fails with a message instead.
pub fn eventually(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of the loadgen binary, built beside the engine by `cargo test --workspace`.
pub fn loadgen_bin() -> PathBuf {
    let engine = engine_bin();
    let p = engine.with_file_name("loadgen");
    assert!(p.is_file(), "no loadgen binary at {}", p.display());
    p
}

/// A loadgen run in the background, writing its JSON report to a file of its own.
pub struct LoadgenRun {
    child: KillOnDrop,
    report: PathBuf,
}

impl LoadgenRun {
    /// Starts loadgen with `args` and `--json` to a temporary file named after `name`.
    pub fn start(name: &str, args: &[&str]) -> LoadgenRun {
        let report =
            std::env::temp_dir().join(format!("{name}-loadgen-{}.json", std::process::id()));
        let child = Command::new(loadgen_bin())
            .args(args)
            .arg("--json")
            .arg(&report)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        LoadgenRun {
            child: KillOnDrop(child),
            report,
        }
    }

    /// Waits for it to end: its exit status and its report (empty when it wrote none).
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.0.wait().unwrap();
        let text = std::fs::read_to_string(&self.report).unwrap_or_default();
        let _ = std::fs::remove_file(&self.report);
        (status, text)
    }
}

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

/// The `connect` command object edge-core's client sends for `rtmp://127.0.0.1:1935/live`.
pub fn client_connect_object(mode: ClientMode) -> edge_core::rtmp::amf::Amf0Value {
    use edge_core::rtmp::message::Message;
    use edge_core::rtmp::server::ServerConnection;
    let cfg = ClientConfig::new("rtmp://127.0.0.1:1935/live", "cam", mode);
    let mut c = RtmpClient::new(cfg).unwrap();
    let mut s = ServerConnection::new();
    s.handle_input(&c.poll_transmit().unwrap(), &mut Vec::new())
        .unwrap();
    c.handle_input(&s.poll_transmit().unwrap(), &mut Vec::new())
        .unwrap();
    let out = c.poll_transmit().unwrap();
    let mut r = edge_core::rtmp::reader::ChunkReader::new();
    let mut input = &out[1536..];
    while let Some(m) = r.read_message(&mut input).unwrap() {
        if let Ok(Message::Command(cmd)) = Message::decode(&m) {
            return cmd.object;
        }
    }
    panic!("the client sent no command")
}

/// A running engine, stopped with SIGTERM on drop.
pub struct Engine {
    child: Option<Child>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The `--https` and `--rtmps` listeners, when asked for.
    pub https: Option<SocketAddr>,
    pub rtmps: Option<SocketAddr>,
    /// Where its stderr goes, for engines started with [`Engine::start_logged`].
    log: Option<PathBuf>,
}

impl Engine {
    /// Starts `edge-engine --rtmp 127.0.0.1:0 --http 127.0.0.1:0 --play-wait-ms 30000 ARGS`
    /// and waits for its ready line. Many scenarios attach their players before the publisher
    /// starts, so players wait as long as they did before the default became 3 s; a test of
    /// the play-wait passes its own (ARGS come last and win).
    pub fn start(args: &[&str]) -> Engine {
        Self::start_with_env(args, &[])
    }

    /// [`Engine::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Engine {
        Self::spawn(args, env, None)
    }

    /// [`Engine::start`] at log level `level`, with stderr kept for [`Engine::log`].
    pub fn start_logged(args: &[&str], level: &str) -> Engine {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "edge-engine-test-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Self::spawn(args, &[("RUST_LOG", level)], Some(path))
    }

    /// Everything the engine logged so far (engines from [`Engine::start_logged`]).
    pub fn log(&self) -> String {
        let path = self
            .log
            .as_ref()
            .expect("an engine started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], log: Option<PathBuf>) -> Engine {
        let stderr = match &log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("creating the engine log")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(engine_bin())
            .args(["--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--play-wait-ms", "30000"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("EDGE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning edge-engine");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading ready line");
        let optional = |name: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(|a| a.parse().unwrap())
        };
        let field = |name: &str| -> SocketAddr {
            optional(name).unwrap_or_else(|| panic!("no {name}= in ready line {line:?}"))
        };
        let (rtmp, http) = (field("rtmp"), field("http"));
        Engine {
            child: Some(child),
            rtmp,
            http,
            https: optional("https"),
            rtmps: optional("rtmps"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.http)
    }

    /// Counters by (name without `edge_`, shard); a series with labels besides the shard is
    /// named with them: `access_denied_total{action="play",reason="expired"}`.
    pub fn metrics(&self) -> Metrics {
        self.try_metrics().unwrap()
    }

    /// [`Engine::metrics`], with the error of a request the engine refused or closed (at its
    /// connection limit, for one) instead of a panic.
    pub fn try_metrics(&self) -> std::io::Result<Metrics> {
        let body = try_http_get(self.http, "/metrics")?.body;
        Ok(Metrics::parse(&String::from_utf8_lossy(&body)))
    }

    /// Polls the counters until `pred` holds; panics with the last counters after `timeout`.
    /// A /metrics request the engine refuses (a test that fills its connection limit) is
    /// retried like a false `pred`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = match self.try_metrics() {
                Ok(m) if pred(&m) => return m,
                other => other,
            };
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {m:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (an origin dying without a word), then waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the engine to exit by itself; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`, which starts a drain) and returns at once.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }

    /// Whether the process has exited (its status is then taken).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    /// SIGINT (stop at once, no drain), then the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        child.wait().unwrap()
    }

    /// SIGTERM (a drain), then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().unwrap()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = &self.log {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to an RTMP server and completes a plain handshake the way a peer does (C0+C1,
/// then C2 echoing S1), leaving the socket right after it, with a 10 s read timeout.
pub fn rtmp_handshake(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    s.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s.read_exact(&mut s0s1s2)?;
    s.write_all(&s0s1s2[1..1537])?;
    Ok(s)
}

/// Reads (and drops) until the peer closes the socket: `true` for EOF or a reset, `false`
/// when the read timeout passed first.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A counters snapshot.
#[derive(Debug)]
pub struct Metrics(pub HashMap<(String, usize), u64>);

impl Metrics {
    /// Parses a `/metrics` body.
    pub fn parse(text: &str) -> Metrics {
        let mut m = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("edge_") else {
                continue;
            };
            let Some((name, tail)) = rest.split_once("{shard=\"") else {
                continue;
            };
            let Some((shard, tail)) = tail.split_once('"') else {
                continue;
            };
            let Some(value) = tail.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            let name = match tail.strip_prefix(',').and_then(|t| t.split_once('}')) {
                Some((labels, _)) => format!("{name}{{{labels}}}"),
                None => name.to_string(),
            };
            if let Ok(shard) = shard.parse::<usize>() {
                m.insert((name, shard), value);
            }
        }
        Metrics(m)
    }

    pub fn get(&self, name: &str, shard: usize) -> u64 {
        self.0.get(&(name.to_string(), shard)).copied().unwrap_or(0)
    }

    pub fn sum(&self, name: &str) -> u64 {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}

/// An HTTP response read to its end.
#[derive(Debug)]
pub struct Response {
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The status code (0 when the head does not parse).
    pub fn status(&self) -> u16 {
        edge_core::http::parse_response_head(self.head.as_bytes())
            .ok()
            .flatten()
            .map_or(0, |h| h.status)
    }
}

/// `GET path` with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    try_http_get(addr, path).unwrap()
}

/// [`http_get`], with the error of a connect or request write instead of a panic.
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    Ok(split_response(&all))
}

/// Splits raw bytes at the end of the head (edge-core's response parser finds it; bytes
/// that are no response head are all head).
pub fn split_response(all: &[u8]) -> Response {
    let end = match edge_core::http::parse_response_head(all) {
        Ok(Some(h)) => h.len,
        _ => all.len(),
    };
    Response {
        head: String::from_utf8_lossy(&all[..end]).into_owned(),
        body: all[end..].to_vec(),
    }
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

/// What an RTMP player saw.
#[derive(Debug, Default, Clone)]
pub struct PlayLog {
    pub started: bool,
    pub video: u64,
    pub audio: u64,
    pub video_headers: u64,
    pub audio_headers: u64,
    /// End-of-sequence markers (not pictures; counted apart from `video`).
    pub video_ends: u64,
    pub statuses: Vec<String>,
    /// Timestamps of non-header video frames, in arrival order.
    pub video_ts: Vec<u32>,
    /// The server closed the connection.
    pub closed: bool,
    pub error: Option<String>,
    /// FNV-1a over every audio/video message (kind, timestamp, body), headers included:
    /// equal digests mean byte- and time-identical media.
    pub digest: u64,
    /// The first audio or video frame that is not a sequence header: (kind, keyframe).
    pub first_frame: Option<(MediaKind, bool)>,
    /// The server redirected the play (SRS-style RTMP 302) to this tcUrl.
    pub redirect: Option<String>,
    /// Every audio and video message (kind, timestamp, body), with [`PlayOpts::keep_frames`].
    pub frames: Vec<(MediaKind, u32, Bytes)>,
}

/// How a test player behaves.
#[derive(Debug, Clone)]
pub struct PlayOpts {
    pub deadline: Duration,
    /// Stop reading (but keep the socket) once play started and this many more bytes
    /// arrived: a stalled viewer.
    pub stall_after_bytes: Option<u64>,
    pub rcvbuf: Option<usize>,
    /// Also end when a status with this code arrives.
    pub until_status: Option<String>,
    /// Keep every message in [`PlayLog::frames`].
    pub keep_frames: bool,
    /// Counts every byte read from the socket, as it is read.
    pub bytes_read: Option<Arc<AtomicU64>>,
}

impl Default for PlayOpts {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            stall_after_bytes: None,
            rcvbuf: None,
            until_status: Some("NetStream.Play.UnpublishNotify".into()),
            keep_frames: false,
            bytes_read: None,
        }
    }
}

/// Plays `rtmp://addr/app/stream` with edge-core's client until the server closes, the
/// deadline passes, or `until_status` arrives. `progress` counts media frames as they come.
pub fn play_rtmp(
    addr: SocketAddr,
    app: &str,
    stream: &str,
    opts: &PlayOpts,
    progress: Option<&AtomicU64>,
) -> PlayLog {
    let mut log = PlayLog::default();
    let start = Instant::now();
    let mut sock = match connect_with_rcvbuf(addr, opts.rcvbuf) {
        Ok(s) => s,
        Err(e) => {
            log.error = Some(format!("connect: {e}"));
            return log;
        }
    };
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        stream,
        ClientMode::Play,
    ))
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received_since_start = 0u64;
    while start.elapsed() < opts.deadline {
        if let Some(out) = client.poll_transmit() {
            if let Err(e) = sock.write_all(&out) {
                log.error = Some(format!("write: {e}"));
                return log;
            }
        }
        if log.started
            && opts
                .stall_after_bytes
                .is_some_and(|n| received_since_start >= n)
        {
            std::thread::sleep(Duration::from_millis(50));
            // Without reading, notice the server closing the socket (FIN or RST).
            let mut pfd = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&sock),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: poll(2) on one valid pollfd we own.
            unsafe { libc::poll(&mut pfd, 1, 0) };
            if pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                log.closed = true;
                return log;
            }
            continue;
        }
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                log.closed = true;
                return log;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                log.closed = true;
                return log;
            }
        };
        if log.started {
            received_since_start += n as u64;
        }
        if let Some(c) = &opts.bytes_read {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        let mut events = Vec::new();
        if let Err(e) = client.handle_input(&buf[..n], &mut events) {
            log.error = Some(e.to_string());
        }
        for ev in events {
            match ev {
                ClientEvent::Started => log.started = true,
                ClientEvent::Media {
                    kind,
                    timestamp,
                    body,
                } => {
                    record_media(&mut log, kind, timestamp, &body, progress);
                    if opts.keep_frames && kind != MediaKind::Data {
                        log.frames.push((kind, timestamp, body));
                    }
                }
                ClientEvent::Redirect { url } => {
                    log.redirect = Some(url);
                    return log;
                }
                ClientEvent::Status { code } => {
                    let done = opts.until_status.as_deref() == Some(code.as_str());
                    log.statuses.push(code);
                    if done {
                        return log;
                    }
                }
                _ => {}
            }
        }
        if log.error.is_some() {
            return log;
        }
    }
    log
}

/// Plays `rtmp://addr/app/stream` until a status with `code` arrives or `secs` pass: what
/// the player saw.
pub fn play_until_status(
    addr: SocketAddr,
    app: &str,
    stream: &str,
    code: &str,
    secs: u64,
) -> PlayLog {
    let opts = PlayOpts {
        deadline: Duration::from_secs(secs),
        until_status: Some(code.into()),
        ..PlayOpts::default()
    };
    play_rtmp(addr, app, stream, &opts, None)
}

/// Extends an FNV-1a digest (0 to start) over one media message: kind, timestamp, body.
/// [`PlayLog::digest`] is this over every audio and video message a player got.
pub fn media_digest(digest: u64, kind: MediaKind, ts: u32, body: &[u8]) -> u64 {
    let mut h = if digest == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        digest
    };
    let tag = [kind as u8];
    for b in tag.iter().chain(&ts.to_be_bytes()).chain(body.iter()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `GET path` of an HTTP-FLV stream, read until the server ends it; the FLV tags of the
/// de-chunked body.
pub fn flv_over_http(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Vec<edge_core::flv::FlvTag> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let resp = split_response(&all);
    assert_eq!(resp.status(), 200, "{}", resp.head);
    let mut body = Vec::new();
    edge_core::http::Dechunker::default()
        .decode(&resp.body, &mut body)
        .expect("a chunked HTTP-FLV body");
    let mut r = FlvReader::new();
    r.handle_input(&body);
    let mut tags = Vec::new();
    while let Ok(Some(t)) = r.poll_tag() {
        tags.push(t);
    }
    tags
}

fn record_media(
    log: &mut PlayLog,
    kind: MediaKind,
    ts: u32,
    body: &Bytes,
    progress: Option<&AtomicU64>,
) {
    if kind != MediaKind::Data {
        log.digest = media_digest(log.digest, kind, ts, body);
    }
    match kind {
        MediaKind::Video => {
            let tag = media::parse_video_tag(body);
            if tag.as_ref().is_ok_and(|t| t.sequence_header) {
                log.video_headers += 1;
                return;
            }
            if tag.as_ref().is_ok_and(|t| t.end_of_sequence) {
                log.video_ends += 1;
                return;
            }
            log.first_frame
                .get_or_insert((kind, tag.is_ok_and(|t| t.keyframe)));
            log.video += 1;
            log.video_ts.push(ts);
        }
        MediaKind::Audio => {
            if media::parse_audio_tag(body).is_ok_and(|t| t.sequence_header) {
                log.audio_headers += 1;
                return;
            }
            log.first_frame.get_or_insert((kind, false));
            log.audio += 1;
        }
        MediaKind::Data => return,
    }
    if let Some(p) = progress {
        p.fetch_add(1, Ordering::Relaxed);
    }
}

fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: Option<usize>) -> std::io::Result<TcpStream> {
    let Some(size) = rcvbuf else {
        return TcpStream::connect(addr);
    };
    // SO_RCVBUF must be set before connect to bound the advertised window.
    // SAFETY: plain socket syscalls on a fd we create and own; the fd is handed to
    // TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let v = size as libc::c_int;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            4,
        );
        let SocketAddr::V4(a) = addr else {
            panic!("IPv4 only")
        };
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(<TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd))
    }
}

/// Runs `n` players on their own threads; returns their logs.
pub fn play_many(
    addr: SocketAddr,
    app: &str,
    stream: &str,
    n: usize,
    opts: PlayOpts,
) -> std::thread::JoinHandle<Vec<PlayLog>> {
    let app = app.to_string();
    let stream = stream.to_string();
    std::thread::spawn(move || {
        let opts = Arc::new(opts);
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (app, stream, opts) = (app.clone(), stream.clone(), Arc::clone(&opts));
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || play_rtmp(addr, &app, &stream, &opts, None))
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Publishes with edge-core's client and returns the statuses the server sent back.
pub fn try_publish(addr: SocketAddr, app: &str, stream: &str) -> (Vec<ClientEvent>, bool) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        stream,
        ClientMode::Publish,
    ))
    .unwrap();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(out) = client.poll_transmit() {
            if sock.write_all(&out).is_err() {
                return (events, true);
            }
        }
        match sock.read(&mut buf) {
            Ok(0) => return (events, true),
            Ok(n) => {
                if client.handle_input(&buf[..n], &mut events).is_err() {
                    return (events, true);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (events, true),
        }
    }
    (events, false)
}

/// Runs a command with a time limit and returns (status ok, stdout, stderr).
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> (bool, String, String) {
    let out = Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// How a [`FakeOrigin`] answers every play.
#[derive(Debug, Clone)]
pub enum FakeAnswer {
    /// `NetStream.Play.StreamNotFound`.
    NotFound,
    /// SRS-style: `onStatus(NetConnection.Connect.Rejected, ex: {code: 302, redirect: URL})`.
    Redirect(String),
}

/// A tiny RTMP origin on 127.0.0.1 that never has a stream: it records the stream names it is
/// asked to play and answers each play with `answer`.
pub struct FakeOrigin {
    pub addr: SocketAddr,
    pub plays: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeOrigin {
    pub fn start(answer: FakeAnswer) -> FakeOrigin {
        use edge_core::rtmp::server::{ServerConnection, ServerEvent};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let plays = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&plays);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut sock) = conn else { return };
                let (seen, answer) = (Arc::clone(&seen), answer.clone());
                std::thread::spawn(move || {
                    let mut s = ServerConnection::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match sock.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let mut events = Vec::new();
                        if s.handle_input(&buf[..n], &mut events).is_err() {
                            return;
                        }
                        for ev in events {
                            if let ServerEvent::PlayRequested {
                                stream, stream_id, ..
                            } = ev
                            {
                                seen.lock().unwrap().push(stream);
                                let wire = match &answer {
                                    FakeAnswer::NotFound => {
                                        s.send_status(
                                            stream_id,
                                            "error",
                                            "NetStream.Play.StreamNotFound",
                                            "not here",
                                        );
                                        None
                                    }
                                    FakeAnswer::Redirect(url) => Some(redirect_status(url)),
                                };
                                if let Some(w) = wire {
                                    let _ = sock.write_all(&w);
                                }
                            }
                        }
                        if let Some(out) = s.poll_transmit() {
                            if sock.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeOrigin { addr, plays }
    }

    pub fn url(&self) -> String {
        format!("rtmp://{}/live", self.addr)
    }
}

/// The chunk SRS sends to redirect a client to `tc_url`.
fn redirect_status(tc_url: &str) -> Vec<u8> {
    use rml_amf0::Amf0Value;
    let s = |v: &str| Amf0Value::Utf8String(v.into());
    let ex = HashMap::from([
        ("code".to_string(), Amf0Value::Number(302.0)),
        ("redirect".to_string(), s(tc_url)),
    ]);
    let info = HashMap::from([
        ("level".to_string(), s("error")),
        ("code".to_string(), s("NetConnection.Connect.Rejected")),
        ("description".to_string(), s("RTMP 302 Redirect")),
        ("ex".to_string(), Amf0Value::Object(ex)),
    ]);
    let body = rml_amf0::serialize(&vec![
        s("onStatus"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        Amf0Value::Object(info),
    ])
    .unwrap();
    edge_core::rtmp::chunk::serialize_message(
        edge_core::rtmp::chunk::CSID_DATA,
        0,
        20,
        0,
        &body,
        edge_core::rtmp::chunk::OUT_CHUNK_SIZE,
    )
    .to_vec()
}

/// Reads an HTTP-FLV response until `stop`, counting body bytes into `progress`. Returns
/// whether the server closed the connection first.
pub fn read_http_until(
    addr: SocketAddr,
    path: &str,
    progress: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<bool> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::spawn(move || {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.write_all(request.as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    progress.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    })
}

/// Checks a `connect` command object the way SRS does: `tcUrl` is required and must be an
/// `rtmp://` or `rtmps://` URL with a host, `app` is required, and the tcUrl's path (before
/// any `?`) is the app (before any `?`). `Err` says what is wrong.
pub fn strict_connect_check(object: &edge_core::rtmp::amf::Amf0Value) -> Result<(), String> {
    use edge_core::rtmp::amf::prop_str;
    let tc_url = prop_str(object, "tcUrl").ok_or("invalid request without tcUrl")?;
    let app = prop_str(object, "app").ok_or("invalid request without app")?;
    let rest = tc_url
        .strip_prefix("rtmp://")
        .or_else(|| tc_url.strip_prefix("rtmps://"))
        .ok_or_else(|| format!("tcUrl {tc_url:?} is not an rtmp URL"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("tcUrl {tc_url:?} has no host"));
    }
    let base = |s: &str| {
        s.split('?')
            .next()
            .unwrap_or("")
            .trim_matches('/')
            .to_string()
    };
    if base(path) != base(app) {
        return Err(format!("app {app:?} does not match tcUrl {tc_url:?}"));
    }
    Ok(())
}

/// An origin as strict as SRS about `connect`: a relay on 127.0.0.1 in front of a real
/// origin (`upstream`) that reads each client's first command, refuses a connect that fails
/// [`strict_connect_check`] with `_error(NetConnection.Connect.Rejected)` and a close, and
/// otherwise passes every byte both ways untouched.
pub struct StrictOrigin {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    pub refused: Arc<std::sync::Mutex<Vec<String>>>,
}

impl StrictOrigin {
    pub fn start(upstream: SocketAddr) -> StrictOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (acc, refs) = (Arc::clone(&accepted), Arc::clone(&refused));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let (acc, refs) = (Arc::clone(&acc), Arc::clone(&refs));
                std::thread::spawn(move || strict_relay(client, upstream, &acc, &refs));
            }
        });
        StrictOrigin {
            addr,
            accepted,
            refused,
        }
    }

    pub fn url(&self, app: &str) -> String {
        format!("rtmp://{}/{app}", self.addr)
    }
}

fn strict_relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    accepted: &AtomicU64,
    refused: &std::sync::Mutex<Vec<String>>,
) {
    use edge_core::rtmp::message::Message;
    use edge_core::rtmp::reader::ChunkReader;
    let Ok(mut origin) = TcpStream::connect(upstream) else {
        return;
    };
    // Origin → client: untouched, from the first byte.
    let (Ok(mut from_origin), Ok(mut to_client)) = (origin.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_origin, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    // Client → origin: the handshake (C0, C1, C2) passes at once; the chunks after it are
    // held back until the connect is judged.
    let mut held = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut reader = ChunkReader::new();
    let mut handshake_left = 1 + 2 * 1536;
    let verdict = 'read: loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let skip = handshake_left.min(n);
        handshake_left -= skip;
        if origin.write_all(&buf[..skip]).is_err() {
            return;
        }
        held.extend_from_slice(&buf[skip..n]);
        let mut input = &buf[skip..n];
        loop {
            match reader.read_message(&mut input) {
                Ok(Some(m)) => {
                    if let Ok(Message::Command(c)) = Message::decode(&m) {
                        if c.name != "connect" {
                            break 'read Err(format!("{} before connect", c.name));
                        }
                        break 'read strict_connect_check(&c.object);
                    }
                }
                Ok(None) => break,
                Err(e) => break 'read Err(e.to_string()),
            }
        }
    };
    match verdict {
        Ok(()) => {
            accepted.fetch_add(1, Ordering::Relaxed);
            if origin.write_all(&held).is_ok() {
                let _ = std::io::copy(&mut client, &mut origin);
            }
        }
        Err(why) => {
            refused.lock().unwrap().push(why.clone());
            let mut w = edge_core::rtmp::amf::Writer::new();
            w.string("_error").number(1.0).null().begin_object();
            w.key("level").string("error");
            w.key("code").string("NetConnection.Connect.Rejected");
            w.key("description").string(&why);
            w.end_object();
            // The origin has answered the handshake already; the refusal follows it.
            std::thread::sleep(Duration::from_millis(50));
            let _ = client.write_all(&edge_core::rtmp::message::command_message(
                3,
                0,
                &w.finish(),
            ));
        }
    }
    let _ = origin.shutdown(std::net::Shutdown::Both);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// An RTMP viewer of `app/stream` at `addr` on its own thread, until `deadline` (or the
/// server ends it): media frames counted into the returned counter as they come, its log at
/// the end.
pub fn watch(
    addr: SocketAddr,
    path: &str,
    deadline: Duration,
) -> (Arc<AtomicU64>, std::thread::JoinHandle<PlayLog>) {
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let (app, stream) = path.split_once('/').expect("app/stream");
    let (app, stream) = (app.to_string(), stream.to_string());
    let t = std::thread::spawn(move || {
        let opts = PlayOpts {
            deadline,
            until_status: None,
            ..PlayOpts::default()
        };
        play_rtmp(addr, &app, &stream, &opts, Some(&p))
    });
    (progress, t)
}

/// A publisher on edge-core's client, for synthetic streams (enhanced RTMP, odd timing).
pub struct Publisher {
    sock: TcpStream,
    client: RtmpClient,
    /// The timestamp of [`Publisher::pump`]'s last frame.
    pumped_ms: u32,
}

impl Publisher {
    /// Connects and publishes `rtmp://addr/app/stream`; returns once the server said
    /// `NetStream.Publish.Start`.
    pub fn start(addr: SocketAddr, app: &str, stream: &str) -> Publisher {
        Self::start_offering(addr, app, stream, 0)
    }

    /// [`Publisher::start`], offering Enhanced RTMP `capsEx` in `connect`.
    pub fn start_offering(addr: SocketAddr, app: &str, stream: &str, caps_ex: u8) -> Publisher {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut cfg =
            ClientConfig::new(&format!("rtmp://{addr}/{app}"), stream, ClientMode::Publish);
        cfg.caps_ex = caps_ex;
        let mut client = RtmpClient::new(cfg).unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no NetStream.Publish.Start");
            if let Some(out) = client.poll_transmit() {
                sock.write_all(&out).unwrap();
            }
            match sock.read(&mut buf) {
                Ok(0) => panic!("the server closed the publisher"),
                Ok(n) => {
                    let mut events = Vec::new();
                    client.handle_input(&buf[..n], &mut events).unwrap();
                    if events.contains(&ClientEvent::Started) {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        Publisher {
            sock,
            client,
            pumped_ms: 0,
        }
    }

    /// Sends one media message.
    pub fn send(&mut self, kind: MediaKind, ts: u32, body: &[u8]) {
        self.client
            .publish(kind, ts, Bytes::copy_from_slice(body))
            .unwrap();
        let out = self.client.poll_transmit().unwrap();
        self.sock.write_all(&out).unwrap();
    }

    /// Sends `onMetaData` (an AMF0 `onMetaData` body), behind `@setDataFrame`.
    pub fn send_metadata(&mut self, body: &[u8]) {
        self.client.publish_metadata(body).unwrap();
        let out = self.client.poll_transmit().unwrap();
        self.sock.write_all(&out).unwrap();
    }

    /// Publishes an audio frame every 40 ms for `how_long`, and returns what the server sent
    /// meanwhile (stopping early once `until` matches one).
    pub fn pump(
        &mut self,
        how_long: Duration,
        until: impl Fn(&ClientEvent) -> bool,
    ) -> Vec<ClientEvent> {
        let end = Instant::now() + how_long;
        let mut buf = vec![0u8; 16 * 1024];
        let mut events = Vec::new();
        self.sock
            .set_read_timeout(Some(Duration::from_millis(40)))
            .unwrap();
        while Instant::now() < end && !events.iter().any(&until) {
            self.pumped_ms += 40;
            let ts = self.pumped_ms;
            self.send(MediaKind::Audio, ts, b"\xaf\x01\x21\x10\x04");
            match self.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.client.handle_input(&buf[..n], &mut events).unwrap(),
                Err(_) => {}
            }
        }
        events
    }

    /// FCUnpublish + deleteStream, then the socket is closed.
    pub fn finish(mut self) {
        self.client.close();
        if let Some(out) = self.client.poll_transmit() {
            let _ = self.sock.write_all(&out);
        }
    }
}

/// A test CA and a `localhost`/127.0.0.1 certificate it signed, made with openssl.
pub struct TestCerts {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_key: PathBuf,
}

impl TestCerts {
    /// A fresh CA and leaf in a directory of their own.
    pub fn generate(name: &str) -> TestCerts {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edge-tls-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = TestCerts {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
            dir,
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=edge-engine test CA",
            "-keyout",
            certs.ca_key.to_str().unwrap(),
            "-out",
            certs.ca.to_str().unwrap(),
        ]);
        certs.issue_leaf(&certs.cert.clone(), &certs.key.clone(), "1");
        certs
    }

    /// Issues another leaf from the same CA (serial `serial`) into `cert`/`key`.
    pub fn issue_leaf(&self, cert: &std::path::Path, key: &std::path::Path, serial: &str) {
        let csr = self.dir.join("leaf.csr");
        let ext = self.dir.join("leaf.ext");
        std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.ca.to_str().unwrap(),
            "-CAkey",
            self.ca_key.to_str().unwrap(),
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
    }

    /// The DER of the leaf in `cert`.
    pub fn leaf_der(cert: &std::path::Path) -> Vec<u8> {
        let pem = std::fs::read(cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .expect("a certificate")
            .unwrap()
            .to_vec();
        der
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str]) {
    let (ok, _, err) = run_tool("openssl", args, Duration::from_secs(30));
    assert!(ok, "openssl {args:?}: {err}");
}

/// A blocking TLS client connection (rustls) that trusts `ca`, for `localhost`.
pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects to `addr` over TLS, trusting only `ca`, and completes the handshake; the leaf
/// certificate the server showed comes back with the stream.
pub fn tls_connect(addr: SocketAddr, ca: &std::path::Path) -> (TlsClient, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with the engine");
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    (tls, leaf)
}

/// `GET path` over TLS (trusting `ca`) with `Connection: close`; the response as read until
/// the server ends the connection (with or without close_notify).
pub fn https_get(addr: SocketAddr, ca: &std::path::Path, path: &str) -> Response {
    let (mut tls, _) = tls_connect(addr, ca);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    split_response(&all)
}
