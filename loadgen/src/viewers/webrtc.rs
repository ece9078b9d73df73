//! WHEP viewers: a str0m client per viewer (sans-IO: its datagrams and deadline driven by this
//! worker's runtime), a UDP socket of its own, video and audio received as RTP. Every video
//! frame's probe (an SEI NAL unit, small enough to travel as an RTP packet of its own) is
//! measured as the other viewers' are.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Instant;

use edge_core::http;
use edge_core::sei;
use monoio::io::AsyncWriteRentExt;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::stream::ProbeTrack;
use super::{connect, read_append};
use crate::live::Ctx;

/// The local address that reaches `to` (a connected UDP socket's, nothing sent).
fn local_ip_towards(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(to).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// A receive buffer of 1 MiB, beyond `net.core.rmem_max` where the process may (root): a
/// joining viewer gets its GOP at once, and a busy loadgen thread must not lose it to a
/// full default buffer (UdpRcvbufErrors counted them at 250 viewers).
fn grow_receive_buffer(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    crate::net::grow_receive_buffer(s.as_raw_fd(), 1 << 20);
}

/// POSTs `offer` to `path` over a connection of its own: the answer and its session's URL.
async fn post_offer(
    ctx: &Ctx,
    addr: SocketAddr,
    path: &str,
    offer: &str,
) -> Result<(String, String), &'static str> {
    let mut s = connect(ctx, addr).await.ok_or("connect")?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    ctx.live.requests.fetch_add(1, Ordering::Relaxed);
    if s.write_all(req.into_bytes()).await.0.is_err() {
        return Err("closed");
    }
    let mut all = Vec::with_capacity(16 * 1024);
    loop {
        if all.len() == all.capacity() {
            all.reserve(16 * 1024);
        }
        match read_append(&mut s, &mut all, ctx.until()).await {
            Ok(()) => {}
            Err("closed") => break,
            Err(e) => return Err(e),
        }
    }
    let head = match http::parse_response_head(&all) {
        Ok(Some(h)) => h,
        _ => return Err("parse"),
    };
    if head.status != 201 {
        return Err("status");
    }
    let text = String::from_utf8_lossy(&all[head.len..]).into_owned();
    let head_text = String::from_utf8_lossy(&all[..head.len]).into_owned();
    let location = head_text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((text, location))
}

/// An SRTP datagram's RTP header, read without decrypting (RFC 3711 leaves it in the
/// clear): payload type, marker, sequence number, SSRC. `None` for anything else (STUN,
/// DTLS, RTCP).
fn rtp_header(d: &[u8]) -> Option<(u8, bool, u16, u32)> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    let pt = d[1] & 0x7f;
    // RTCP's packet types 192–223 read as payload types 64–95 with the marker.
    if (64..96).contains(&pt) {
        return None;
    }
    Some((
        pt,
        d[1] & 0x80 != 0,
        u16::from_be_bytes([d[2], d[3]]),
        u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
    ))
}

/// A header-only viewer's count of one SSRC's packets: the next sequence number expected.
#[derive(Default)]
struct Sequence {
    next: Option<u16>,
}

impl Sequence {
    /// Packets missing before `seq` (a reordered or repeated one counts none).
    fn lost_before(&mut self, seq: u16) -> u64 {
        let lost = match self.next {
            Some(next) => {
                let gap = seq.wrapping_sub(next);
                if gap < 0x8000 {
                    u64::from(gap)
                } else {
                    0
                }
            }
            None => 0,
        };
        if self.next.is_none_or(|n| seq.wrapping_sub(n) < 0x8000) {
            self.next = Some(seq.wrapping_add(1));
        }
        lost
    }
}

/// A WHEP viewer: plays until the deadline, measuring every video frame's probe; with
/// `decrypt` false, once connected it reads only the RTP headers of the media (see
/// `--verify light`), so that one client core can hold more viewers than it could decrypt.
pub async fn webrtc_viewer(ctx: Ctx, addr: SocketAddr, app: String, stream: String, decrypt: bool) {
    let Some(ip) = local_ip_towards(addr) else {
        return ctx.error("connect");
    };
    let Ok(std_sock) = UdpSocket::bind(SocketAddr::new(ip, 0)) else {
        return ctx.error("connect");
    };
    let _ = std_sock.set_nonblocking(true);
    grow_receive_buffer(&std_sock);
    let Ok(local) = std_sock.local_addr() else {
        return ctx.error("connect");
    };
    // Datagrams are read and sent with non-blocking calls on `raw`; the runtime only says
    // when it is readable. (A receive operation cancelled by the deadline's timer could lose
    // the datagram it had just taken: a lost DTLS flight then waits for a retransmission.)
    let Ok(raw) = std_sock.try_clone() else {
        return ctx.error("connect");
    };
    let Ok(sock) = monoio::net::udp::UdpSocket::from_std(std_sock) else {
        return ctx.error("connect");
    };
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    let Ok(candidate) = Candidate::host(local, "udp") else {
        return ctx.error("connect");
    };
    rtc.add_local_candidate(candidate);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let Some((offer, pending)) = change.apply() else {
        return ctx.error("parse");
    };
    let path = format!("/{app}/{stream}/whep");
    let (answer, location) = match post_offer(&ctx, addr, &path, &offer.to_sdp_string()).await {
        Ok(a) => a,
        Err(e) => return ctx.error(e),
    };
    let accepted = SdpAnswer::from_sdp_string(&answer)
        .ok()
        .and_then(|a| rtc.sdp_api().accept_answer(pending, a).ok());
    if accepted.is_none() {
        return ctx.error("parse");
    }
    let video_pts: Vec<_> = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| p.spec().codec == Codec::H264)
        .map(|p| p.pt())
        .collect();
    ctx.live.viewers.fetch_add(1, Ordering::Relaxed);
    let mut track = ProbeTrack::new();
    let mut got_media = false;
    let mut connected = false;
    let mut readable = false;
    let mut sequences: std::collections::HashMap<u32, Sequence> = Default::default();
    // `--webrtc-drop-every`: the RTP datagrams seen, and those dropped not yet seen again.
    let mut rtp_seen = 0u64;
    let mut dropped: std::collections::HashSet<(u32, u16)> = Default::default();
    let mut buf = vec![0u8; 2048];
    'run: loop {
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    // A full socket drops it, as a network would.
                    let _ = raw.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => connected = true,
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    got_media = true;
                    ctx.live
                        .bytes
                        .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                    if video_pts.contains(&p.header.payload_type) {
                        if let Some(probe) = sei::probe_in_nal(&p.payload) {
                            track.handle(&ctx, probe);
                        }
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => {
                    ctx.error_while_running("webrtc");
                    break 'run;
                }
            }
        };
        if !ctx.running() || !rtc.is_alive() {
            break;
        }
        // A viewer whose last read found a datagram reads again before it waits: a burst
        // costs one readiness wait, not one per datagram.
        if !readable {
            let wait = deadline.min(ctx.until());
            monoio::select! {
                _ = sock.readable(false) => {}
                _ = monoio::time::sleep_until(wait.into()) => {}
            }
        }
        // The datagrams the socket holds up to the next one for str0m, or the deadline once
        // it holds none: each input is one mutation, drained by the next pass of the loop
        // above before the next is fed. A header-only viewer's media is counted here and
        // never fed.
        let now = Instant::now();
        readable = false;
        let fed = loop {
            match raw.recv_from(&mut buf) {
                Ok((n, from)) => {
                    readable = true;
                    let header = rtp_header(&buf[..n]).filter(|_| connected);
                    if let (true, Some((_, _, seq, ssrc))) =
                        (decrypt && ctx.webrtc_drop_every > 0, header)
                    {
                        if dropped.remove(&(ssrc, seq)) {
                            ctx.stats.borrow_mut().count("rtp_recovered", 1);
                        } else {
                            rtp_seen += 1;
                            if rtp_seen.is_multiple_of(ctx.webrtc_drop_every)
                                && dropped.len() < 1024
                            {
                                dropped.insert((ssrc, seq));
                                ctx.stats.borrow_mut().count("rtp_dropped", 1);
                                continue;
                            }
                        }
                    }
                    let media = header.filter(|_| !decrypt);
                    let Some((pt, marker, seq, ssrc)) = media else {
                        break match Receive::new(Protocol::Udp, from, local, &buf[..n]) {
                            Ok(r) => rtc.handle_input(Input::Receive(now, r)),
                            Err(_) => Ok(()),
                        };
                    };
                    got_media = true;
                    ctx.live.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    let lost = sequences.entry(ssrc).or_default().lost_before(seq);
                    let mut st = ctx.stats.borrow_mut();
                    if lost > 0 {
                        st.count("rtp_packets_lost", lost);
                    }
                    if marker && video_pts.contains(&Pt::from(pt)) {
                        st.count("video_frames_headers_only", 1);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    break rtc.handle_input(Input::Timeout(now));
                }
                Err(_) => break Ok(()),
            }
        };
        if fed.is_err() {
            ctx.error_while_running("webrtc");
            break;
        }
    }
    // End the session at once rather than by the engine's ICE timeout.
    if !location.is_empty() {
        if let Some(mut s) = connect(&ctx, addr).await {
            let req =
                format!("DELETE {location} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(req.into_bytes()).await;
            let mut tail = Vec::with_capacity(1024);
            let _ = read_append(
                &mut s,
                &mut tail,
                Instant::now() + std::time::Duration::from_secs(2),
            )
            .await;
        }
    }
    ctx.viewer_done(got_media);
    ctx.live.viewers.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rtp_header_is_read_in_the_clear_and_rtcp_stun_and_dtls_are_not_media() {
        let mut p = vec![
            0x80,
            0x80 | 102,
            0x12,
            0x34,
            0,
            0,
            0,
            1,
            0xde,
            0xad,
            0xbe,
            0xef,
        ];
        p.extend_from_slice(&[9; 20]);
        assert_eq!(rtp_header(&p), Some((102, true, 0x1234, 0xdead_beef)));
        p[1] = 200; // an RTCP sender report
        assert_eq!(rtp_header(&p), None);
        assert_eq!(
            rtp_header(&[0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            rtp_header(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(rtp_header(&p[..11]), None);
    }

    #[test]
    fn packets_lost_are_the_gaps_in_sequence_numbers_across_the_wrap() {
        let mut s = Sequence::default();
        assert_eq!(s.lost_before(65_533), 0);
        assert_eq!(s.lost_before(65_534), 0);
        assert_eq!(s.lost_before(1), 2, "65535 and 0 missing");
        assert_eq!(s.lost_before(0), 0, "late, not lost again");
        assert_eq!(s.lost_before(2), 0);
        assert_eq!(s.lost_before(2), 0, "a repeat");
        assert_eq!(s.lost_before(5), 2);
    }
}
