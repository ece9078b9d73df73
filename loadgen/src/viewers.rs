//! Publishers and viewers, as monoio tasks on a worker thread. Each records into its thread's
//! [`Stats`]; nothing is shared between threads while running except the live counters.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use edge_core::flv::{FlvReader, FlvTag};
use edge_core::hls::m3u8::parse_media_playlist;
use edge_core::media::{self, MediaKind};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::sei::{self, Probe};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::httpc::{self, Dechunker};
use crate::pool::{Acquired, Pool};
use crate::stats::Stats;
use crate::tsscan::TsScan;

/// Counters every thread adds to, for the live line.
#[derive(Default)]
pub struct Live {
    pub viewers: AtomicU64,
    pub sockets: AtomicU64,
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub frames: AtomicU64,
    pub errors: AtomicU64,
    /// Worst latency seen this second (µs), reset by the reporter.
    pub worst_us: AtomicU64,
    /// This second's frame latencies (RTMP/FLV), for the live p99.
    pub frame_latency: LiveHistogram,
    /// This second's segment downloads (HLS), for the live p99.
    pub segment_download: LiveHistogram,
}

/// Latencies of the current second for the live line's p99, shared by all threads without a
/// lock: log-spaced buckets of atomics, four per doubling (so a reported p99 is at most 19 %
/// above the true one), emptied by the reporter each second. The final table uses the exact
/// per-thread HDR histograms instead.
pub struct LiveHistogram {
    buckets: [AtomicU64; LIVE_BUCKETS],
}

const LIVE_BUCKETS: usize = 4 * 40;

impl Default for LiveHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LiveHistogram {
    fn bucket(us: u64) -> usize {
        if us == 0 {
            return 0;
        }
        let log2 = 63 - us.leading_zeros() as usize;
        // The two bits after the leading one pick the quarter of the doubling.
        let quarter = ((u128::from(us) << 2) >> log2) as usize & 3;
        (log2 * 4 + quarter).min(LIVE_BUCKETS - 1)
    }

    /// The largest value bucket `b` holds.
    fn upper_bound(b: usize) -> u64 {
        let (log2, quarter) = (b / 4, (b % 4) as u64);
        // Bucket values have their leading one at `log2` and the next two bits = `quarter`.
        ((5 + quarter) << log2).div_ceil(4) - 1
    }

    pub fn record(&self, us: u64) {
        self.buckets[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The p99 (µs, bucket upper bound) of what was recorded since the last call; empties it.
    pub fn take_p99(&self) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total - total / 100;
        let mut seen = 0;
        counts.iter().enumerate().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| Self::upper_bound(b))
        })
    }
}

/// The run's clock, shared by all threads: viewers arrive from `go`, set once the published
/// streams are live, and everything stops `duration` after it.
pub struct Clock {
    go: std::sync::OnceLock<Instant>,
    duration: Duration,
}

impl Clock {
    pub fn new(duration: Duration) -> Self {
        Self {
            go: std::sync::OnceLock::new(),
            duration,
        }
    }

    /// Starts the arrivals now (once; later calls do nothing).
    pub fn go(&self) {
        let _ = self.go.set(Instant::now());
    }

    /// When arrivals start, once known.
    pub fn started(&self) -> Option<Instant> {
        self.go.get().copied()
    }

    /// When the run ends: `duration` after go; far away while go is not set.
    pub fn until(&self) -> Instant {
        self.started().map_or_else(
            || Instant::now() + Duration::from_secs(24 * 3600),
            |go| go + self.duration,
        )
    }

    /// Waits (on a monoio task) until arrivals start.
    pub async fn wait_go(&self) -> Instant {
        loop {
            if let Some(go) = self.started() {
                return go;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What a task needs from its thread.
#[derive(Clone)]
pub struct Ctx {
    pub stats: Rc<RefCell<Stats>>,
    pub live: std::sync::Arc<Live>,
    pub clock: std::sync::Arc<Clock>,
    /// Frames published within this long after a viewer joined are not in its latency.
    pub warmup_us: u64,
}

impl Ctx {
    fn until(&self) -> Instant {
        self.clock.until()
    }

    fn latency(&self, histogram: &'static str, us: u64) {
        self.stats.borrow_mut().record(histogram, us);
        self.live.worst_us.fetch_max(us, Ordering::Relaxed);
        match histogram {
            "frame_latency" => self.live.frame_latency.record(us),
            "segment_download" => self.live.segment_download.record(us),
            _ => {}
        }
    }

    fn error(&self, kind: &'static str) {
        self.stats.borrow_mut().error(kind);
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the run's deadline is still ahead.
    fn running(&self) -> bool {
        Instant::now() < self.until()
    }

    /// Counts an error unless the run is over: a connection cut at the deadline is not one.
    fn error_while_running(&self, kind: &'static str) {
        if self.running() {
            self.error(kind);
        }
    }

    /// Records the time from `from` to `to` in `histogram`.
    fn span(&self, histogram: &'static str, from: Instant, to: Instant) {
        self.latency(histogram, to.duration_since(from).as_micros() as u64);
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The clip a publisher loops.
pub struct Source {
    pub headers: Vec<FlvTag>,
    pub media: Vec<FlvTag>,
    /// Duration of one pass, so the next pass continues the timeline.
    pub loop_ms: u32,
}

impl Source {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Source> {
        let mut r = FlvReader::new();
        r.handle_input(&std::fs::read(path)?);
        let (mut headers, mut media) = (Vec::new(), Vec::new());
        while let Some(tag) = r
            .poll_tag()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        {
            let header = match MediaKind::from_type_id(tag.type_id) {
                Some(MediaKind::Video) => media::parse_video_tag(&tag.body)?.sequence_header,
                Some(MediaKind::Audio) => media::parse_audio_tag(&tag.body)?.sequence_header,
                _ => continue,
            };
            if header {
                headers.push(tag);
            } else {
                media.push(tag);
            }
        }
        let last = media.last().map_or(0, |t| t.timestamp);
        anyhow::ensure!(!media.is_empty(), "{} holds no media", path.display());
        // One frame interval after the last tag (assume 25 fps if unknown).
        Ok(Source {
            headers,
            media,
            loop_ms: last + 40,
        })
    }

    /// The rate one pass is sent at: media tag bodies over the pass's duration, in kbit/s.
    pub fn kbps(&self) -> u64 {
        let bytes: usize = self.media.iter().map(|t| t.body.len()).sum();
        bytes as u64 * 8 / u64::from(self.loop_ms.max(1))
    }
}

async fn connect(ctx: &Ctx, addr: SocketAddr) -> Option<TcpStream> {
    match monoio::time::timeout(Duration::from_secs(10), crate::net::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            ctx.live.sockets.fetch_add(1, Ordering::Relaxed);
            Some(s)
        }
        Ok(Err(_)) => {
            ctx.error("connect");
            None
        }
        Err(_) => {
            ctx.error("timeout");
            None
        }
    }
}

/// Why an RTMP exchange stopped.
enum RtmpStop {
    /// The run's deadline passed (not an error).
    Deadline,
    /// An error of this kind.
    Error(&'static str),
}

/// One round of an RTMP client: write what it has to send, read once, feed it in.
async fn rtmp_round(
    s: &mut TcpStream,
    client: &mut RtmpClient,
    buf: &mut Vec<u8>,
    ctx: &Ctx,
) -> Result<Vec<ClientEvent>, RtmpStop> {
    if let Some(out) = client.poll_transmit() {
        if s.write_all(out).await.0.is_err() {
            return Err(RtmpStop::Error("closed"));
        }
    }
    buf.clear();
    if read_append(s, buf, ctx.until()).await.is_err() {
        return Err(if ctx.running() {
            RtmpStop::Error("closed")
        } else {
            RtmpStop::Deadline
        });
    }
    ctx.live
        .bytes
        .fetch_add(buf.len() as u64, Ordering::Relaxed);
    let mut events = Vec::new();
    client
        .handle_input(buf, &mut events)
        .map(|()| events)
        .map_err(|_| RtmpStop::Error("parse"))
}

/// Publishes the looped source with SEI probes in every video frame, in real time.
pub async fn publish(ctx: Ctx, addr: SocketAddr, app: String, stream: String, source: Rc<Source>) {
    let Some(mut s) = connect(&ctx, addr).await else {
        return;
    };
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        &stream,
        ClientMode::Publish,
    ))
    .expect("handshake bytes");
    let mut buf = Vec::with_capacity(16 * 1024);
    // Handshake and publish request.
    loop {
        match rtmp_round(&mut s, &mut client, &mut buf, &ctx).await {
            Ok(events) if events.contains(&ClientEvent::Started) => break,
            Ok(events)
                if events
                    .iter()
                    .any(|e| matches!(e, ClientEvent::Status { .. })) =>
            {
                return ctx.error("status");
            }
            Ok(_) => {}
            Err(RtmpStop::Deadline) => return,
            Err(RtmpStop::Error(kind)) => return ctx.error(kind),
        }
    }
    for h in &source.headers {
        let kind = MediaKind::from_type_id(h.type_id).unwrap_or(MediaKind::Video);
        let _ = client.publish(kind, 0, h.body.clone());
    }
    let start = Instant::now();
    let mut seq = 0u64;
    for pass in 0u32.. {
        for tag in &source.media {
            let ts = tag
                .timestamp
                .wrapping_add(pass.wrapping_mul(source.loop_ms));
            let due = start + Duration::from_millis(u64::from(ts));
            if due >= ctx.until() {
                return;
            }
            monoio::time::sleep(due.saturating_duration_since(Instant::now())).await;
            let kind = MediaKind::from_type_id(tag.type_id).unwrap_or(MediaKind::Video);
            let body = if kind == MediaKind::Video {
                let probe = Probe {
                    send_time_us: now_us(),
                    seq,
                };
                seq += 1;
                sei::embed_avcc(&tag.body, 4, probe)
            } else {
                tag.body.clone()
            };
            if client.publish(kind, ts, body).is_err() {
                return ctx.error("parse");
            }
            if let Some(out) = client.poll_transmit() {
                if s.write_all(out).await.0.is_err() {
                    return ctx.error("closed");
                }
            }
        }
    }
}

/// Tracks probes of one viewer: latency per frame and gaps in the sequence. Frames published
/// before the viewer joined (the server's GOP cache, sent at once) are counted but kept out
/// of the latency histogram: their age says how long ago the keyframe was, not how fast the
/// server is.
struct ProbeTrack {
    last_seq: Option<u64>,
    joined_us: u64,
}

impl ProbeTrack {
    fn new() -> Self {
        Self {
            last_seq: None,
            joined_us: now_us(),
        }
    }

    fn handle(&mut self, ctx: &Ctx, probe: Probe) {
        if probe.send_time_us >= self.joined_us + ctx.warmup_us {
            ctx.latency("frame_latency", now_us().saturating_sub(probe.send_time_us));
        } else if probe.send_time_us < self.joined_us {
            ctx.stats.borrow_mut().count("join_frames", 1);
        } else {
            ctx.stats.borrow_mut().count("warmup_frames", 1);
        }
        let mut st = ctx.stats.borrow_mut();
        st.count("video_frames", 1);
        if let Some(last) = self.last_seq {
            if probe.seq > last + 1 {
                st.count("gaps", 1);
                st.count("missing_frames", probe.seq - last - 1);
            }
        }
        self.last_seq = Some(probe.seq);
        ctx.live.frames.fetch_add(1, Ordering::Relaxed);
    }
}

fn video_probe(body: &Bytes) -> Option<Probe> {
    let tag = media::parse_video_tag(body).ok()?;
    if tag.sequence_header {
        return None;
    }
    sei::find_in_avcc(body.get(5..)?, 4)
}

/// An RTMP viewer: plays until the deadline, measuring every video frame's probe.
pub async fn rtmp_viewer(ctx: Ctx, addr: SocketAddr, app: String, stream: String) {
    let Some(mut s) = connect(&ctx, addr).await else {
        return;
    };
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{addr}/{app}"),
        &stream,
        ClientMode::Play,
    ))
    .expect("handshake bytes");
    let mut track = ProbeTrack::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        match rtmp_round(&mut s, &mut client, &mut buf, &ctx).await {
            Ok(events) => {
                for e in events {
                    if let ClientEvent::Media {
                        kind: MediaKind::Video,
                        body,
                        ..
                    } = e
                    {
                        if let Some(p) = video_probe(&body) {
                            track.handle(&ctx, p);
                        }
                    }
                }
            }
            Err(RtmpStop::Deadline) => break,
            Err(RtmpStop::Error(kind)) => break ctx.error(kind),
        }
    }
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}

/// An HTTP-FLV viewer.
pub async fn flv_viewer(ctx: Ctx, addr: SocketAddr, app: String, stream: String) {
    let Some(mut s) = connect(&ctx, addr).await else {
        return;
    };
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let req = httpc::get(&format!("/{app}/{stream}.flv"), &addr.to_string());
    ctx.live.requests.fetch_add(1, Ordering::Relaxed);
    if s.write_all(req).await.0.is_err() {
        ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
        return ctx.error("closed");
    }
    let mut pending = BytesMut::new();
    let mut head_done = false;
    let mut dechunk = Dechunker::default();
    let mut body = Vec::new();
    let mut flv = FlvReader::new();
    let mut track = ProbeTrack::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    'read: loop {
        buf.clear();
        if read_append(&mut s, &mut buf, ctx.until()).await.is_err() {
            break ctx.error_while_running("closed");
        }
        ctx.live
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        pending.extend_from_slice(&buf);
        if !head_done {
            match httpc::parse_head(&pending) {
                Ok(None) => continue,
                Ok(Some(h)) if h.status == 200 && h.chunked => {
                    let _ = pending.split_to(h.len);
                    head_done = true;
                }
                Ok(Some(_)) => break ctx.error("status"),
                Err(_) => break ctx.error("parse"),
            }
        }
        if dechunk.decode(&mut pending, &mut body).is_err() {
            break ctx.error("parse");
        }
        flv.handle_input(&body);
        body.clear();
        loop {
            match flv.poll_tag() {
                Ok(Some(tag)) if tag.type_id == 9 => {
                    if let Some(p) = video_probe(&tag.body) {
                        track.handle(&ctx, p);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    ctx.error("parse");
                    break 'read;
                }
            }
        }
        if dechunk.done {
            break;
        }
    }
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}

/// Where a response body goes as it arrives.
enum Sink<'a> {
    /// Kept (playlists: a few hundred bytes).
    Keep(&'a mut Vec<u8>),
    /// Streamed through the TS scan and not kept (segments).
    Scan(&'a mut TsScan),
}

impl Sink<'_> {
    fn take(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        match self {
            Sink::Keep(out) => {
                out.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Scan(scan) => scan.feed(bytes).map_err(|_| "parse"),
        }
    }
}

/// A response: status, body length, and when its first byte came.
struct Response {
    status: u16,
    len: usize,
    first_byte: Instant,
}

/// Appends one read to `buf` (into its spare capacity); the error kind when the connection
/// ends, the buffer is full or time is up.
async fn read_append(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    until: Instant,
) -> Result<(), &'static str> {
    let (len, cap) = (buf.len(), buf.capacity());
    if len == cap {
        return Err("parse");
    }
    let slice = monoio::buf::SliceMut::new(std::mem::take(buf), len, cap);
    let left = until.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, s.read(slice)).await {
        Ok((Ok(n), b)) => {
            *buf = b.into_inner();
            if n == 0 {
                return Err("closed");
            }
            Ok(())
        }
        Ok((Err(_), b)) => {
            *buf = b.into_inner();
            Err("closed")
        }
        Err(_) => {
            *buf = Vec::with_capacity(cap);
            Err("timeout")
        }
    }
}

/// One HTTP exchange on a keep-alive connection. The body of a 200 goes to `sink` piece by
/// piece as it is read into `buf` (the thread's reused read buffer); other bodies are read and
/// dropped. Bytes beyond the response are a protocol error (nothing is pipelined).
async fn exchange(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: Vec<u8>,
    until: Instant,
    mut sink: Sink<'_>,
) -> Result<Response, &'static str> {
    if s.write_all(request).await.0.is_err() {
        return Err("closed");
    }
    buf.clear();
    read_append(s, buf, until).await?;
    let first_byte = Instant::now();
    let head = loop {
        match httpc::parse_head(buf) {
            Ok(Some(h)) => break h,
            Ok(None) => read_append(s, buf, until).await?,
            Err(_) => return Err("parse"),
        }
    };
    let len = head.content_length.ok_or("parse")?;
    let mut got = 0;
    let mut from = head.len;
    loop {
        let piece = &buf[from..];
        if got + piece.len() > len {
            return Err("parse");
        }
        if head.status == 200 {
            sink.take(piece)?;
        }
        got += piece.len();
        if got == len {
            break;
        }
        buf.clear();
        from = 0;
        read_append(s, buf, until).await?;
    }
    Ok(Response {
        status: head.status,
        len,
        first_byte,
    })
}

/// One request through the pool. Broken connections are dropped from the pool.
async fn pooled(
    ctx: &Ctx,
    pool: &Pool,
    path: &str,
    sink: Sink<'_>,
) -> Result<Response, &'static str> {
    let mut conn = match pool.acquire().await {
        Acquired::Conn(c) => c,
        Acquired::ConnectFailed => return Err("connect"),
    };
    ctx.live.requests.fetch_add(1, Ordering::Relaxed);
    let mut buf = pool.take_buffer();
    let result = exchange(
        &mut conn,
        &mut buf,
        httpc::get(path, pool.host()),
        ctx.until(),
        sink,
    )
    .await;
    pool.give_buffer(buf);
    pool.release(result.is_ok().then_some(conn));
    result
}

/// An HLS viewer: starts three segments from the live edge as hls.js does (from the start of
/// an ended playlist), reloads the playlist as RFC 8216 §6.3.4 says (the target duration after
/// a change, half of it otherwise), fetches every new segment once, and counts stalls against
/// a playback clock. Requests go through the thread's connection pool.
pub async fn hls_viewer(ctx: Ctx, pool: Rc<Pool>, app: String, stream: String) {
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let playlist_path = format!("/{app}/{stream}.m3u8");
    let mut body = Vec::new();
    let started = Instant::now();
    let mut next_seq: Option<u64> = None;
    let mut next_reload = Instant::now();
    // Playback model: like hls.js, start once three target durations are buffered (or the
    // playlist ended); after that, a segment that arrives after the buffered media ran out is
    // a stall.
    let mut buffered_until: Option<Instant> = None;
    let mut startup_buffer = Duration::ZERO;
    'run: while next_reload < ctx.until() {
        if next_reload > Instant::now() {
            monoio::time::sleep(next_reload - Instant::now()).await;
            // How late the timer fired says whether this thread has CPU to spare.
            pool.note_lag(Instant::now().saturating_duration_since(next_reload));
        }
        let intended = next_reload;
        body.clear();
        let response = match pooled(&ctx, &pool, &playlist_path, Sink::Keep(&mut body)).await {
            Ok(r) => r,
            Err(kind) => {
                ctx.error_while_running(kind);
                break;
            }
        };
        let got_at = Instant::now();
        ctx.span("ttfb", intended, response.first_byte);
        ctx.span("playlist_reload_delay", intended, got_at);
        let status = response.status;
        if status == 404 && started.elapsed() < Duration::from_secs(10) {
            // The stream is not there yet (publisher starting): retry without counting.
            next_reload = got_at + Duration::from_millis(500);
            continue;
        }
        if status != 200 {
            ctx.error("status");
            break;
        }
        let Ok(playlist) = parse_media_playlist(&String::from_utf8_lossy(&body)) else {
            ctx.error("parse");
            break;
        };
        let target = Duration::from_secs(playlist.target_duration_s.max(1));
        // A live playlist is joined three segments from its end; an ended one from its start.
        let first_new = *next_seq.get_or_insert_with(|| {
            let n = playlist.segments.len();
            let skip = if playlist.ended {
                0
            } else {
                n.saturating_sub(3)
            };
            playlist.segments.get(skip).map_or(0, |s| s.seq)
        });
        let new: Vec<_> = playlist
            .segments
            .iter()
            .filter(|s| s.seq >= first_new)
            .cloned()
            .collect();
        for seg in &new {
            let seg_intended = got_at;
            let path = format!("/{app}/{}", seg.uri);
            let mut scan = TsScan::default();
            let scanned = pooled(&ctx, &pool, &path, Sink::Scan(&mut scan))
                .await
                .and_then(|r| Ok((r, scan.finish().map_err(|_| "parse")?)));
            let (response, (packets, probe)) = match scanned {
                Ok(r) => r,
                Err(kind) => {
                    ctx.error_while_running(kind);
                    break 'run;
                }
            };
            let done = Instant::now();
            if response.status != 200 {
                ctx.error("status");
                continue;
            }
            ctx.live
                .bytes
                .fetch_add(response.len as u64, Ordering::Relaxed);
            ctx.span("ttfb", seg_intended, response.first_byte);
            ctx.span("segment_download", seg_intended, done);
            match probe {
                Some(p) => ctx.latency("segment_latency", now_us().saturating_sub(p.send_time_us)),
                None => ctx.stats.borrow_mut().count("segments_without_probe", 1),
            }
            let dur = Duration::from_millis(seg.duration_ms);
            match buffered_until {
                Some(end) if done > end => {
                    ctx.stats.borrow_mut().count("stalls", 1);
                    buffered_until = Some(done + dur);
                }
                Some(end) => buffered_until = Some(end + dur),
                None => {
                    startup_buffer += dur;
                    if startup_buffer >= 3 * target || playlist.ended {
                        buffered_until = Some(done + startup_buffer);
                        ctx.span("hls_startup", started, done);
                    }
                }
            }
            let mut st = ctx.stats.borrow_mut();
            st.count("segments", 1);
            st.count("segment_bytes", response.len as u64);
            st.count("segment_packets", packets);
            if next_seq.is_some_and(|n| seg.seq > n) {
                st.count("segment_gaps", 1);
            }
            next_seq = Some(seg.seq + 1);
        }
        if playlist.ended {
            break;
        }
        next_reload = intended + if new.is_empty() { target / 2 } else { target };
    }
    if buffered_until.is_none() {
        // Never had enough buffered to start playing: a viewer that saw nothing.
        ctx.stats.borrow_mut().count("startup_pending", 1);
    }
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::LiveHistogram;

    #[test]
    fn live_p99_is_within_a_bucket_above_the_true_one() {
        let h = LiveHistogram::default();
        assert_eq!(h.take_p99(), None);
        // 1..=10_000 µs: the true p99 is 9900.
        for us in 1..=10_000 {
            h.record(us);
        }
        let p99 = h.take_p99().unwrap();
        assert!((9_900..=9_900 * 119 / 100).contains(&p99), "{p99}");
        assert_eq!(h.take_p99(), None, "taking empties it");
        // One slow outlier in a hundred fast ones is the p99.
        for _ in 0..99 {
            h.record(1_000);
        }
        h.record(3_000_000);
        let p99 = h.take_p99().unwrap();
        assert!((1_000..=1_190).contains(&p99), "{p99}");
        // Every value lands in a bucket whose bound is not below it.
        for us in [1u64, 2, 3, 4, 5, 7, 8, 1023, 1024, 1_000_000_007] {
            let b = LiveHistogram::bucket(us);
            assert!(LiveHistogram::upper_bound(b) >= us, "{us}");
            assert!(b == 0 || LiveHistogram::upper_bound(b - 1) < us, "{us}");
        }
    }
}
