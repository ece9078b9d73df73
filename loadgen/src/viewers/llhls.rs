//! The LL-HLS viewer: joins at the newest independent part, then asks for each next part as
//! Apple's players do: the part the playlist's preload hint names is fetched at once (the
//! server streams it as it is written), and a blocking playlist reload (`_HLS_msn`,
//! `_HLS_part`) for it then returns at once with its duration and the next hint; a part the
//! playlist does not hint is waited for by a blocking reload, then fetched. Each part's first
//! picture carries the publisher's SEI probe: publication to that picture's bytes received is
//! `part_latency` (for parts published after the viewer joined and `--warmup`; earlier ones
//! are `catchup_parts`). A part that arrives after the media played so far ran out is a stall.
//! Each viewer keeps one connection of its own (not the thread's shared pool: a blocking
//! reload holds its connection until the part exists).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_core::hls::fmp4::{find_box, read_boxes, VIDEO_TRACK_ID};
use edge_core::sei::{self, Probe};

use super::hls::{fetch_kept, fetch_timed};
use super::{Arrival, Playback};
use crate::live::{now_us, Ctx};
use crate::pool::{Pool, Pools};

/// A part as a playlist lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    seq: u64,
    index: u32,
    duration_ms: u64,
    independent: bool,
}

/// What the viewer reads of an LL-HLS playlist.
#[derive(Debug, Default)]
struct LlPlaylist {
    parts: Vec<Part>,
    /// The part `EXT-X-PRELOAD-HINT` names.
    hint: Option<(u64, u32)>,
    /// Segments listed whole (finished).
    complete: Vec<u64>,
    part_hold_back_ms: u64,
    ended: bool,
}

impl LlPlaylist {
    fn parse(text: &str) -> Option<LlPlaylist> {
        if !text.starts_with("#EXTM3U") {
            return None;
        }
        let mut p = LlPlaylist::default();
        for line in text.lines() {
            if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
                let uri = attr(attrs, "URI")?;
                let (seq, index) = part_id(uri.trim_matches('"'))?;
                let duration_ms = (attr(attrs, "DURATION")?.parse::<f64>().ok()? * 1000.0) as u64;
                p.parts.push(Part {
                    seq,
                    index,
                    duration_ms,
                    independent: attr(attrs, "INDEPENDENT") == Some("YES"),
                });
            } else if let Some(attrs) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                if attr(attrs, "TYPE") == Some("PART") {
                    p.hint = part_id(attr(attrs, "URI")?.trim_matches('"'));
                }
            } else if let Some(attrs) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                let hold = attr(attrs, "PART-HOLD-BACK")?.parse::<f64>().ok()?;
                p.part_hold_back_ms = (hold * 1000.0) as u64;
            } else if let Some(seq) = line
                .strip_prefix("seg-")
                .and_then(|l| l.strip_suffix(".m4s"))
            {
                p.complete.push(seq.parse().ok()?);
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            }
        }
        Some(p)
    }

    fn part(&self, seq: u64, index: u32) -> Option<&Part> {
        self.parts.iter().find(|p| (p.seq, p.index) == (seq, index))
    }
}

/// An attribute's value in an attribute list (quoted values may hold commas).
fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attrs;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&after[..end + 2], quoted[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// `part-{seq}.{index}.m4s`.
fn part_id(uri: &str) -> Option<(u64, u32)> {
    let (seq, index) = uri
        .strip_prefix("part-")?
        .strip_suffix(".m4s")?
        .split_once('.')?;
    Some((seq.parse().ok()?, index.parse().ok()?))
}

/// The probe in a part's first video sample (AVCC, 4-byte lengths, as the engine writes),
/// and where that sample ends in the part. The part is CMAF chunks; data offsets count from
/// their chunk's `moof`.
fn part_probe(part: &[u8]) -> Option<(Probe, usize)> {
    let mut chunk = 0;
    for b in read_boxes(part)? {
        if &b.kind == b"moof" {
            for traf in read_boxes(b.body)?
                .into_iter()
                .filter(|b| &b.kind == b"traf")
            {
                let tfhd = find_box(traf.body, &[b"tfhd"])?;
                if tfhd.get(4..8)? != VIDEO_TRACK_ID.to_be_bytes() {
                    continue;
                }
                let trun = find_box(traf.body, &[b"trun"])?;
                let at = chunk + u32::from_be_bytes(trun.get(8..12)?.try_into().ok()?) as usize;
                let size = u32::from_be_bytes(trun.get(16..20)?.try_into().ok()?) as usize;
                let end = at.checked_add(size)?;
                return sei::find_in_avcc(part.get(at..end)?, 4).map(|p| (p, end));
            }
        }
        chunk += 8 + b.body.len();
    }
    None
}

/// When the body had reached `len` bytes, from the reads' (length so far, when).
fn arrived_at(times: &[(usize, Instant)], len: usize) -> Option<Instant> {
    times.iter().find(|(l, _)| *l >= len).map(|(_, t)| *t)
}

/// An LL-HLS viewer (module docs). Requests go through the thread's connection pool.
pub async fn llhls_viewer(
    ctx: Ctx,
    pools: Rc<Pools>,
    server: std::net::SocketAddr,
    app: String,
    stream: String,
) {
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    // A connection of its own, as a player's: a blocking reload holds its connection until
    // the part exists, so viewers sharing the thread's pool would wait on each other.
    let _ = pools;
    let pool = Pool::new(server, 1, std::sync::Arc::clone(&ctx.live));
    let base = format!("/{app}/{stream}/");
    let started = Instant::now();
    let joined_us = now_us();
    let mut body = Vec::new();
    let mut playlist: Option<LlPlaylist> = None;
    // The next part to play, once joined.
    let mut next: Option<(u64, u32)> = None;
    let mut playback = Playback::default();
    let mut got_part = false;
    let mut times = Vec::new();
    // The hinted part fetched while it was written, not yet listed: (its id, when it came,
    // its bytes), waiting for the playlist to give its duration.
    let mut fetched: Option<((u64, u32), Instant, usize)> = None;
    // A hinted part the server answered 404 (it never came): not asked for again.
    let mut refused_hint: Option<(u64, u32)> = None;
    while ctx.running() {
        // What to ask for: the next part if the playlist lists it (or it came already), the
        // hinted part, or the playlist that lists the next part (blocking), or, to join, the
        // live playlist.
        let step = match (&playlist, next) {
            (Some(p), Some((seq, index))) => {
                if let Some(part) = p.part(seq, index).copied() {
                    Step::Listed(part)
                } else if p.complete.contains(&seq) && p.parts.iter().any(|q| q.seq == seq) {
                    // That segment ended before this part: go on with the next one.
                    next = Some((seq + 1, 0));
                    continue;
                } else if p.ended {
                    break;
                } else if p.hint == next && fetched.is_none() && refused_hint != next {
                    Step::Hinted(seq, index)
                } else {
                    Step::Reload
                }
            }
            _ => Step::Reload,
        };
        let (part, done, len) = match step {
            Step::Reload => {
                let path = match next {
                    Some((seq, index)) => {
                        format!("{base}llhls.m3u8?_HLS_msn={seq}&_HLS_part={index}")
                    }
                    None => format!("{base}llhls.m3u8"),
                };
                let intended = Instant::now();
                let Some(response) = fetch_kept(&ctx, &pool, &path, &mut body).await else {
                    break;
                };
                ctx.span("blocking_reload", intended, Instant::now());
                match response.status {
                    200 => {}
                    404 if next.is_none() && started.elapsed() < Duration::from_secs(10) => {
                        monoio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    503 => {
                        // Waited three target durations for the part: the stream stalled.
                        ctx.stats.borrow_mut().count("blocking_timeouts", 1);
                        continue;
                    }
                    _ => {
                        ctx.error("status");
                        break;
                    }
                }
                let Some(p) = LlPlaylist::parse(&String::from_utf8_lossy(&body)) else {
                    ctx.error("parse");
                    break;
                };
                if next.is_none() {
                    // Join at the newest independent part.
                    match p.parts.iter().rev().find(|q| q.independent) {
                        Some(q) => next = Some((q.seq, q.index)),
                        None => {
                            monoio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                ctx.stats.borrow_mut().count("playlists", 1);
                playlist = Some(p);
                continue;
            }
            Step::Listed(part) if fetched.is_some_and(|(id, ..)| id == (part.seq, part.index)) => {
                let (_, done, len) = fetched.take().expect("fetched");
                (part, done, len)
            }
            Step::Listed(part) => {
                fetched = None;
                let path = format!("{base}part-{}.{}.m4s", part.seq, part.index);
                match fetch_part(&ctx, &pool, &path, &mut body, &mut times, joined_us).await {
                    Some(Ok((done, len))) => (part, done, len),
                    Some(Err(_)) => {
                        ctx.error("status");
                        break;
                    }
                    None => break,
                }
            }
            Step::Hinted(seq, index) => {
                let path = format!("{base}part-{seq}.{index}.m4s");
                match fetch_part(&ctx, &pool, &path, &mut body, &mut times, joined_us).await {
                    Some(Ok((done, len))) => {
                        ctx.stats.borrow_mut().count("hinted_parts", 1);
                        // Its duration comes with the playlist that lists it (a blocking
                        // reload for it, answered at once).
                        fetched = Some(((seq, index), done, len));
                    }
                    // A hinted part that never came (its segment was cut before it began):
                    // the playlist says what comes instead.
                    Some(Err(404)) => {
                        ctx.stats.borrow_mut().count("hinted_parts_missing", 1);
                        refused_hint = Some((seq, index));
                    }
                    Some(Err(_)) => {
                        ctx.error("status");
                        break;
                    }
                    None => break,
                }
                continue;
            }
        };
        // Playback starts once PART-HOLD-BACK is buffered, as a low-latency player's.
        let hold = playlist.as_ref().map_or(0, |p| p.part_hold_back_ms);
        let dur = Duration::from_millis(part.duration_ms);
        match playback.arrived(done, dur, Duration::from_millis(hold), false) {
            Arrival::Stall => ctx.stats.borrow_mut().count("stalls", 1),
            Arrival::Started => ctx.span("llhls_startup", started, done),
            Arrival::Buffering | Arrival::Playing => {}
        }
        got_part = true;
        let mut st = ctx.stats.borrow_mut();
        st.count("parts", 1);
        st.count("part_bytes", len as u64);
        next = Some((part.seq, part.index + 1));
    }
    if !playback.started() {
        ctx.stats.borrow_mut().count("startup_pending", 1);
    }
    ctx.viewer_done(got_part);
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}

/// What an LL-HLS viewer does next.
enum Step {
    /// Fetch a part the playlist lists (or take the one fetched already).
    Listed(Part),
    /// Fetch the part the preload hint names, streamed as it is written.
    Hinted(u64, u32),
    /// Reload the playlist (blocking for the next part, once joined).
    Reload,
}

/// Fetches a part; counts its latency (publication to its first picture's bytes received)
/// and download; when it was complete, and its length, or the status that is not 200.
/// `None` when the connection failed (the viewer stops).
async fn fetch_part(
    ctx: &Ctx,
    pool: &Pool,
    path: &str,
    body: &mut Vec<u8>,
    times: &mut Vec<(usize, Instant)>,
    joined_us: u64,
) -> Option<Result<(Instant, usize), u16>> {
    let intended = Instant::now();
    let response = fetch_timed(ctx, pool, path, body, times).await?;
    let done = Instant::now();
    if response.status != 200 {
        return Some(Err(response.status));
    }
    ctx.live
        .bytes
        .fetch_add(response.len as u64, Ordering::Relaxed);
    ctx.span("part_download", intended, done);
    // Parts published before this viewer joined (the catch-up from the independent part it
    // joined at) are not live latency: counted apart, as RTMP viewers' frames.
    match part_probe(body) {
        Some((probe, end)) if probe.send_time_us >= joined_us + ctx.warmup_us => {
            // When the picture's bytes had come, on the wall clock the probe is on.
            let early = arrived_at(times, end).map_or(Duration::ZERO, |t| done - t);
            let at_us = now_us().saturating_sub(early.as_micros() as u64);
            ctx.latency("part_latency", at_us.saturating_sub(probe.send_time_us))
        }
        Some(_) => ctx.stats.borrow_mut().count("catchup_parts", 1),
        None => ctx.stats.borrow_mut().count("parts_without_probe", 1),
    }
    Some(Ok((done, response.len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parts_segments_and_the_hold_back() {
        let text = "#EXTM3U\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=12.000\n\
#EXT-X-PART:DURATION=0.200,URI=\"part-7.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.180,URI=\"part-7.1.m4s\"\n\
#EXTINF:0.380,\nseg-7.m4s\n#EXT-X-PART:DURATION=0.200,URI=\"part-8.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-8.1.m4s\"\n";
        let p = LlPlaylist::parse(text).unwrap();
        assert_eq!(p.part_hold_back_ms, 600);
        assert_eq!(p.complete, [7]);
        assert_eq!(p.parts.len(), 3);
        assert_eq!(p.part(7, 1).unwrap().duration_ms, 180);
        assert!(p.part(8, 0).unwrap().independent && !p.part(7, 1).unwrap().independent);
        assert_eq!(p.hint, Some((8, 1)));
        assert!(LlPlaylist::parse("nope").is_none());
        assert_eq!(attr("A=1,B=\"x,y\",C=3", "C"), Some("3"));
        assert_eq!(attr("A=1,B=\"x,y\",C=3", "B"), Some("\"x,y\""));
    }
}
