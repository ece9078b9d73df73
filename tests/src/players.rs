//! Viewers: RTMP players on edge-core's client and HTTP-FLV readers, recording what they
//! get (frame counts, digests, statuses).

use bytes::Bytes;
use edge_core::flv::FlvReader;
use edge_core::media::{self, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::*;

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
    assert!(resp.chunked.is_some(), "a chunked HTTP-FLV body");
    let mut r = FlvReader::new();
    r.handle_input(&resp.body);
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

/// `rtmp://HOST:PORT/live` of an engine: what an edge's `--origin` names.
pub fn origin_of(e: &Engine) -> String {
    format!("rtmp://{}/live", e.rtmp)
}

/// The origin has the stream: a probe player there gets media.
pub fn wait_until_published(origin: &Engine, stream: &str) {
    let opts = PlayOpts {
        deadline: Duration::from_secs(3),
        ..PlayOpts::default()
    };
    eventually(
        "the origin to have the stream",
        Duration::from_secs(30),
        || play_rtmp(origin.rtmp, "live", stream, &opts, None).video > 0,
    );
}
