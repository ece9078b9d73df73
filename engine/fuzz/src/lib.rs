//! Fuzz target bodies: one function per parser or session of edge-core that peers feed.
//! cargo-fuzz calls them from `fuzz/fuzz_targets/` (libFuzzer); `tests/corpus.rs` here replays the
//! committed corpora and crash inputs through the same functions on every `cargo test`.
//!
//! Each body asserts invariants, not only the absence of panics: input split anywhere reads
//! the same as input in one piece, nothing consumed exceeds what was given, what the engine
//! renders its own parser reads back.
//!
//! Must not: read files, the clock or the network (a body must be a pure function of its
//! input, or a crash would not reproduce).

use bytes::Bytes;
use edge_core::flv::FlvReader;
use edge_core::hls::m3u8::parse_media_playlist;
use std::sync::Arc;

use edge_core::gop::GopLimits;
use edge_core::hls::{HlsConfig, HlsSnapshot, VecStore};
use edge_core::media::{parse_tag, MediaKind, StreamKey};
use edge_core::owner::{Owner, OwnerConfig, OwnerEffect};
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::rtmp::message::Message;
use edge_core::rtmp::reader::{ChunkReader, RawMessage};
use edge_core::rtmp::server::{ServerConnection, ServerEvent};
use edge_core::rtmp::{aggregate, amf};
use edge_core::stream::{Departure, PublisherId};
use edge_core::ShardId;

/// The first two input bytes as a split point into the rest, and the rest.
fn split_point(data: &[u8]) -> (usize, &[u8]) {
    match data {
        [a, b, rest @ ..] => (
            usize::from(u16::from_be_bytes([*a, *b])) % (rest.len() + 1),
            rest,
        ),
        _ => (0, data),
    }
}

/// A server after a handshake as a peer does it: C0+C1 (zeros), then C2 echoing S1.
pub fn handshaken_server() -> ServerConnection {
    let mut s = ServerConnection::new();
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    let mut events = Vec::new();
    s.handle_input(&c0c1, &mut events)
        .expect("a plain C0+C1 is accepted");
    let s0s1s2 = s.poll_transmit().expect("S0+S1+S2");
    s.handle_input(&s0s1s2[1..1537], &mut events)
        .expect("C2 echoing S1 completes the handshake");
    let _ = s.poll_transmit();
    s
}

/// Feeds `pieces` to a server; the events up to the first error, and whether one came.
/// With `accept`, every publish and play request is accepted as it comes (to reach the
/// publishing and playing states); without, the run is a pure function of the bytes.
fn server_events(
    mut s: ServerConnection,
    pieces: &[&[u8]],
    accept: bool,
) -> (Vec<ServerEvent>, bool) {
    let mut events = Vec::new();
    for p in pieces {
        let mut new = Vec::new();
        let result = s.handle_input(p, &mut new);
        if accept && result.is_ok() {
            for e in &new {
                if let ServerEvent::PublishRequested { request_id, .. }
                | ServerEvent::PlayRequested { request_id, .. } = e
                {
                    let _ = s.accept(*request_id);
                }
            }
        }
        events.extend(new);
        if result.is_err() {
            return (events, true);
        }
        let _ = s.poll_transmit();
    }
    (events, false)
}

/// The RTMP server session from the first byte (handshake included).
pub fn rtmp_server(data: &[u8]) {
    let (at, data) = split_point(data);
    let mut s = ServerConnection::new();
    let mut events = Vec::new();
    for piece in [&data[..at], &data[at..]] {
        if s.handle_input(piece, &mut events).is_err() {
            return;
        }
        let _ = s.poll_transmit();
    }
}

/// The RTMP server session after a valid handshake: whole input and input split at any
/// point give the same events and the same verdict. A third run accepts every request and
/// feeds the input message by message, to reach media handling.
pub fn rtmp_server_session(data: &[u8]) {
    let (at, data) = split_point(data);
    let whole = server_events(handshaken_server(), &[data], false);
    let split = server_events(handshaken_server(), &[&data[..at], &data[at..]], false);
    assert_eq!(whole, split, "split at {at}");
    let pieces: Vec<&[u8]> = data.chunks(64).collect();
    let _ = server_events(handshaken_server(), &pieces, true);
}

/// A client that has sent its connect and waits for the server's answer.
pub fn connected_client(mode: ClientMode) -> RtmpClient {
    let mut c = RtmpClient::new(ClientConfig::new("rtmp://127.0.0.1:1935/live", "cam", mode))
        .expect("C0+C1");
    let mut s = ServerConnection::new();
    let c0c1 = c.poll_transmit().expect("C0+C1");
    s.handle_input(&c0c1, &mut Vec::new())
        .expect("the server takes C0+C1");
    let s012 = s.poll_transmit().expect("S0+S1+S2");
    c.handle_input(&s012, &mut Vec::new())
        .expect("the client takes S0+S1+S2");
    let _ = c.poll_transmit();
    c
}

fn client_events(mut c: RtmpClient, pieces: &[&[u8]]) -> (Vec<ClientEvent>, bool) {
    let mut events = Vec::new();
    for p in pieces {
        if c.handle_input(p, &mut events).is_err() {
            return (events, true);
        }
        let _ = c.poll_transmit();
    }
    (events, false)
}

/// The RTMP client session (an edge pull, a forward, loadgen) with origin bytes after its
/// connect; the first input byte picks play or publish. Split or whole, the same events.
pub fn rtmp_client_session(data: &[u8]) {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mode = if mode & 1 == 0 {
        ClientMode::Play
    } else {
        ClientMode::Publish
    };
    let (at, data) = split_point(data);
    let whole = client_events(connected_client(mode), &[data]);
    let split = client_events(connected_client(mode), &[&data[..at], &data[at..]]);
    assert_eq!(whole, split, "split at {at}");
}

fn read_all(r: &mut ChunkReader, mut input: &[u8], out: &mut Vec<RawMessage>) -> bool {
    loop {
        match r.read_message(&mut input) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {
                assert!(input.is_empty(), "the reader stopped with input left");
                return true;
            }
            Err(_) => return false,
        }
    }
}

/// The chunk reader and message decoding: split anywhere, the same messages; no message
/// longer than the input; every message decodes or is refused, never panics.
pub fn rtmp_chunks(data: &[u8]) {
    let (at, data) = split_point(data);
    let mut whole = Vec::new();
    let whole_ok = read_all(&mut ChunkReader::new(), data, &mut whole);
    let mut split = Vec::new();
    let mut r = ChunkReader::new();
    let split_ok =
        read_all(&mut r, &data[..at], &mut split) && read_all(&mut r, &data[at..], &mut split);
    assert_eq!(whole_ok, split_ok, "verdict differs at split {at}");
    assert_eq!(whole, split, "messages differ at split {at}");
    if whole_ok {
        assert_eq!(r.bytes_read(), data.len() as u64);
    }
    let payload: usize = whole.iter().map(|m| m.payload.len()).sum();
    assert!(payload <= data.len());
    for m in &whole {
        let _ = Message::decode(m);
    }
}

/// The AMF0 reader: never more values than bytes, and what it reads writes back readably.
pub fn amf0(data: &[u8]) {
    let _ = amf::metadata_declares_video(data);
    if let Ok(values) = amf::decode(data) {
        assert!(values.len() <= data.len());
        // Metadata built from whatever was read is itself readable.
        if let Some(props) = amf::metadata_object(&values) {
            let body = amf::metadata_body(props);
            let back = amf::decode(&body).expect("our own onMetaData reads back");
            assert!(amf::metadata_object(&back).is_some());
        }
    }
}

/// The m3u8 parser: sequence numbers consecutive from the media sequence, no more segments
/// than lines.
pub fn m3u8(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = parse_media_playlist(&text) {
        assert!(p.segments.len() <= text.lines().count());
        for (i, s) in p.segments.iter().enumerate() {
            assert_eq!(Some(s.seq), p.media_sequence.checked_add(i as u64));
            assert!(s.duration_ms <= 86_400_000);
        }
    }
}

/// FLV tags and aggregate messages: every tag body and sub-message within its input; an
/// aggregate made of the tags splits back into them.
pub fn flv_aggregate(data: &[u8]) {
    let (at, data) = split_point(data);
    let tags = |pieces: &[&[u8]]| {
        let mut r = FlvReader::new();
        let mut out = Vec::new();
        for p in pieces {
            r.handle_input(p);
            loop {
                match r.poll_tag() {
                    Ok(Some(t)) => out.push(t),
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
        }
        (out, false)
    };
    let whole = tags(&[data]);
    assert_eq!(whole, tags(&[&data[..at], &data[at..]]), "split at {at}");
    let body = Bytes::copy_from_slice(data);
    if let Ok(subs) = aggregate::split(1000, &body) {
        let total: usize = subs.iter().map(|s| s.body.len() + 15).sum();
        assert!(total <= data.len());
    }
    // Tags wrapped as one aggregate split back into the same bodies and kinds.
    let mut agg = Vec::new();
    for t in &whole.0 {
        agg.push(t.type_id);
        agg.extend_from_slice(&(t.body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&t.timestamp.to_be_bytes()[1..]);
        agg.push((t.timestamp >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(&t.body);
        agg.extend_from_slice(&(t.body.len() as u32 + 11).to_be_bytes());
    }
    let subs = aggregate::split(0, &Bytes::from(agg)).expect("a well-formed aggregate");
    assert_eq!(subs.len(), whole.0.len());
    for (s, t) in subs.iter().zip(&whole.0) {
        assert_eq!((s.type_id, &s.body), (t.type_id, &t.body));
    }
}

/// The media pipeline, as an owner shard runs it: FLV tags (the fixtures are the seeds) →
/// the stream's [`Owner`] state machine (master, join cache, segmenter) → playlists, which
/// must parse back with edge-core's own parser, with sequence numbers rising and no segment
/// longer than its target allows. A tag of type 0xFE is a republish, 0xFF the end of the
/// stream, 0xFD a shard subscribing (its updates must be the ones every other shard got).
pub fn media_pipeline(data: &[u8]) {
    let mut r = FlvReader::new();
    r.handle_input(data);
    let config = Arc::new(OwnerConfig {
        me: ShardId(0),
        grace_ms: 10_000,
        gop: GopLimits::default(),
        hls: HlsConfig::default(),
        edge: None,
    });
    let mut owner = Owner::new(StreamKey::new("live", "cam").unwrap(), config, VecStore, 1);
    let publisher = PublisherId(1);
    let mut now = 0u64;
    let mut fx = Vec::new();
    owner.handle_publish(publisher, ShardId(0), None, Vec::new(), now, &mut fx);
    let mut last_seq: Option<u64> = None;
    let mut check = |snapshot: &HlsSnapshot| {
        let text = std::str::from_utf8(&snapshot.playlist).expect("playlists are UTF-8");
        let p = parse_media_playlist(text).expect("our playlist parses back");
        for s in &p.segments {
            assert!(
                s.duration_ms <= p.target_duration_s * 1000,
                "EXTINF over TARGETDURATION:\n{text}"
            );
        }
        if let Some(first) = p.segments.first() {
            assert!(last_seq.is_none_or(|l| first.seq <= l + 1));
        }
        if let Some(last) = p.segments.last() {
            assert!(
                last_seq.is_none_or(|l| last.seq >= l),
                "sequence went back:\n{text}"
            );
            last_seq = Some(last.seq);
        }
    };
    while let Ok(Some(tag)) = r.poll_tag() {
        now += 1;
        match tag.type_id {
            0xfe => {
                owner.handle_unpublish(publisher, Departure::Unpublished, now, &mut fx);
                owner.handle_publish(publisher, ShardId(0), None, Vec::new(), now + 1, &mut fx);
            }
            0xff => {
                now += 20_000;
                owner.handle_unpublish(publisher, Departure::Lost, now, &mut fx);
                owner.handle_timeout(now + 10_000, &mut fx);
            }
            0xfd => owner.handle_subscribe(ShardId(1), None, now, &mut fx),
            t => match MediaKind::from_type_id(t) {
                Some(MediaKind::Data) => owner.handle_metadata(publisher, tag.body, &mut fx),
                Some(kind) => {
                    if let Ok(parsed) = parse_tag(kind, &tag.body) {
                        owner.handle_media(publisher, tag.timestamp, tag.body, parsed, &mut fx);
                    }
                }
                None => {}
            },
        }
        for e in fx.drain(..) {
            if let OwnerEffect::Hls(s) = e {
                check(&s);
            }
        }
    }
    owner.handle_unpublish(publisher, Departure::Unpublished, now, &mut fx);
    owner.handle_timeout(now + 10_000, &mut fx);
    for e in fx.drain(..) {
        if let OwnerEffect::Hls(s) = e {
            check(&s);
        }
    }
}

/// HTTP: the request parser (consumed bytes within the input), the response-head parser, and
/// the chunked decoder (split anywhere = whole; never more out than in).
pub fn http(data: &[u8]) {
    use edge_core::http::{parse_request, parse_response_head, Dechunker, Route};
    if let Ok(Some((req, used))) = parse_request(data) {
        assert!(used <= data.len());
        // Every path names a route (the pages and player libraries among them), or none.
        let _ = Route::parse(&req.path);
    }
    if let Ok(Some(h)) = parse_response_head(data) {
        assert!(h.len <= data.len());
    }
    let (at, body) = split_point(data);
    let decode = |pieces: &[&[u8]]| {
        let mut d = Dechunker::default();
        let (mut pending, mut out) = (Vec::new(), Vec::new());
        for p in pieces {
            pending.extend_from_slice(p);
            match d.decode(&pending, &mut out) {
                Ok(used) => {
                    assert!(used <= pending.len());
                    pending.drain(..used);
                }
                Err(_) => return (out, d.done, true),
            }
        }
        (out, d.done, false)
    };
    let whole = decode(&[body]);
    assert!(whole.0.len() <= body.len());
    // A split can only delay an error the whole input shows at once, not invent or hide
    // body bytes before it.
    let split = decode(&[&body[..at], &body[at..]]);
    if !whole.2 && !split.2 {
        assert_eq!(whole, split, "split at {at}");
    }
}

/// Access checks on peer-chosen text: token verification (EdgeAuth with each HMAC, and nginx
/// secure_link) of an arbitrary query for an arbitrary path, the hook reply verdict, the
/// per-app mode parser, query editing, and RTMP stream-name resolution. Besides not
/// panicking: a token minted for the input's path verifies for it and for no other key;
/// removing a parameter removes it; a resolved RTMP name resolves to itself.
pub fn access(data: &[u8]) {
    use edge_core::access::{hook_verdict, ModeByApp};
    use edge_core::token::{
        query_param, sign_edgeauth, without_param, EdgeAuthClaims, HashAlg, TokenConfig,
        TokenError, TokenFormat,
    };
    let text = String::from_utf8_lossy(data);
    let (query, path) = text.split_once('\n').unwrap_or((&text, "/live/s"));
    let ip = "10.1.2.3".parse().ok();
    let now = 1_700_000_000;
    let edgeauth = |alg| TokenConfig {
        format: TokenFormat::EdgeAuth {
            alg,
            keys: vec![b"k1".to_vec(), vec![0xab; 64]],
            param: "token".into(),
        },
        skew_s: 5,
    };
    let configs = [
        edgeauth(HashAlg::Sha256),
        edgeauth(HashAlg::Sha1),
        edgeauth(HashAlg::Md5),
        TokenConfig {
            format: TokenFormat::SecureLink {
                template: "$secure_link_expires$uri$remote_addr secret".into(),
            },
            skew_s: 0,
        },
    ];
    for c in &configs {
        let r = c.verify(Some(query), path, ip, now);
        if let Err(e) = &r {
            assert!(matches!(e.status(), 403 | 410));
        }
        assert_eq!(c.verify(None, path, ip, now), Err(TokenError::Missing));
    }
    // A token minted for this path verifies (where the path can sit in an ACL as itself).
    let plain = !path.is_empty() && !path.contains(['~', '!', '&', '%', '*', '\0']);
    if plain {
        let t = sign_edgeauth(
            b"k1",
            HashAlg::Sha256,
            &EdgeAuthClaims {
                exp_s: now + 60,
                acl: Some(path),
                ..Default::default()
            },
        );
        let q = format!("token={t}");
        assert_eq!(configs[0].verify(Some(&q), path, ip, now), Ok(()), "{q}");
        let other = sign_edgeauth(
            b"k2",
            HashAlg::Sha256,
            &EdgeAuthClaims {
                exp_s: now + 60,
                acl: Some(path),
                ..Default::default()
            },
        );
        assert_eq!(
            configs[0].verify(Some(&format!("token={other}")), path, ip, now),
            Err(TokenError::BadSignature)
        );
    }
    let _ = query_param(query, "token");
    let rest = without_param(query, "token");
    assert!(query_param(&rest, "token").is_none(), "{rest}");
    assert!(hook_verdict(500, data).is_err());
    let _ = hook_verdict(200, data);
    let specs: Vec<String> = text.lines().map(str::to_string).collect();
    let _ = ModeByApp::parse(&specs);
    // Where an RTMP client put the stream name and its query: whatever the three parts, a
    // resolved target written out the plain way (app, `name?query`) resolves to itself.
    let mut parts = text.splitn(3, '\n');
    let (app, tc_url, name) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if let Ok(t) = edge_core::rtmp::name::resolve(app, tc_url, name) {
        let plain = match &t.query {
            Some(q) => format!("{}?{q}", t.key.stream()),
            None => t.key.stream().to_string(),
        };
        let again = edge_core::rtmp::name::resolve(t.key.app(), "", &plain);
        assert_eq!(again.as_ref(), Ok(&t), "{app} | {tc_url} | {name}");
    }
}

/// The TS scan (loadgen's HLS viewers read every segment through it) and the SEI probe
/// finder, on peer bytes. Besides not panicking: a scan split anywhere gives what the whole
/// gives; a finished scan counted exactly `len / 188` packets; a probe embedded into an
/// AVC body (1- to 4-byte NAL lengths) is found there again.
pub fn ts_sei(data: &[u8]) {
    use edge_core::hls::tsscan::{segment_probe, TsScan};
    use edge_core::sei::{self, Probe};
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let scan = |pieces: &[&[u8]]| {
        let mut s = TsScan::default();
        for p in pieces {
            s.feed(p)?;
        }
        s.finish()
    };
    let whole = scan(&[rest]);
    let at = usize::from(selector) * 7 % (rest.len() + 1);
    let split = scan(&[&rest[..at], &rest[at..]]);
    assert_eq!(whole, split, "split at {at}");
    if let Ok((packets, probe)) = whole {
        assert_eq!(packets as usize * 188, rest.len());
        assert_eq!(probe, segment_probe(rest));
    }
    let _ = sei::find_in_annexb(rest);
    for n in 0..=8 {
        let _ = sei::find_in_avcc(rest, n);
    }
    if rest.len() >= 5 {
        let n = 1 + usize::from(selector % 4);
        let probe = Probe {
            send_time_us: u64::from(selector) << 20,
            seq: rest.len() as u64,
        };
        let body = sei::embed_avcc(rest, n, probe);
        assert_eq!(sei::find_in_avcc(&body[5..], n), Some(probe), "n = {n}");
    }
}

/// The TS muxer round trip: a stream the input describes (AVC and AAC frames: which kind,
/// decode-time step 0–255 ms, composition offset 0–255 ms, keyframe or not, payload size and
/// byte) goes through the segmenter; the segments are read back by the TS scan and demuxed
/// with `mpeg2ts`. Every picture fed while a segment is open (from a keyframe on, and again
/// from the first keyframe after a jump of more than `MAX_GAP_MS`) comes back once, in order,
/// with its DTS and PTS exact and its NAL unit bytes intact; so does every audio frame fed
/// while a segment is open, byte for byte. edge-core's own demuxer (the HLS feed's) gives
/// the same pictures back as FLV bodies, with their DTS and composition times, and the same
/// audio frames.
/// A synthetic H.264 + AAC stream from fuzz input (5 bytes a frame): the frames, and what a
/// segmenter must carry of them: pictures as (DTS ms, PTS ms, NAL unit) and raw AAC frames,
/// those fed while a segment is open.
pub struct Synthetic {
    pub frames: Vec<edge_core::media::Frame>,
    pub pictures: Vec<(u64, u64, Vec<u8>)>,
    pub audio: Vec<Vec<u8>>,
}

pub fn synthetic_stream(data: &[u8]) -> Synthetic {
    use bytes::Bytes;
    use edge_core::hls::segmenter::MAX_GAP_MS;
    use edge_core::media::{Frame, FrameFlags, MediaKind};

    let header = |kind, body: Vec<u8>| {
        Frame::new(
            kind,
            0,
            FrameFlags {
                sync_point: false,
                header: true,
            },
            Bytes::from(body),
        )
    };
    let mut avcc = vec![0x17, 0, 0, 0, 0];
    avcc.extend([
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 3,
    ]);
    let mut frames = vec![
        header(MediaKind::Video, avcc),
        header(MediaKind::Audio, vec![0xaf, 0, 0x12, 0x10]),
    ];
    // (dts, pts, NAL bytes) of pictures; raw AAC payloads.
    let mut pictures: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    let mut audio: Vec<Vec<u8>> = Vec::new();
    // Whether the segmenter has a segment open: from a keyframe on, until a DTS jump of more
    // than MAX_GAP_MS closes it (the frames up to the next keyframe are dropped, as a new
    // segment after a discontinuity must start with one); audio is kept only while open.
    let (mut open, mut last_video) = (false, None::<u64>);
    let mut dts = 0u64;
    for c in data.chunks_exact(5).take(2000) {
        dts += u64::from(c[1]);
        let size = 1 + usize::from(c[3]) * 8;
        if c[0] & 1 == 0 {
            let key = c[0] & 2 != 0 || frames.len() == 2;
            let cts = u32::from(c[2]);
            let mut nal = vec![if key { 0x65 } else { 0x41 }];
            // 0x00/0x01/0x03 runs would be start codes or emulation prevention in Annex B.
            nal.extend(std::iter::repeat_n(c[4] | 0x10, size));
            let mut body = vec![if key { 0x17 } else { 0x27 }, 1];
            body.extend_from_slice(&cts.to_be_bytes()[1..]);
            body.extend((nal.len() as u32).to_be_bytes());
            body.extend_from_slice(&nal);
            let flags = FrameFlags {
                sync_point: key,
                header: false,
            };
            frames.push(Frame::new(MediaKind::Video, dts, flags, Bytes::from(body)));
            if last_video.is_some_and(|last| dts - last > MAX_GAP_MS) {
                open = false;
            }
            last_video = Some(dts);
            open |= key;
            if open {
                let pts = dts + u64::from(cts);
                pictures.push((dts, pts, nal));
            }
        } else {
            let raw = vec![c[4]; size];
            let mut body = vec![0xaf, 1];
            body.extend_from_slice(&raw);
            frames.push(Frame::new(
                MediaKind::Audio,
                dts,
                FrameFlags::default(),
                Bytes::from(body),
            ));
            if open {
                audio.push(raw);
            }
        }
    }
    Synthetic {
        frames,
        pictures,
        audio,
    }
}

pub fn ts_roundtrip(data: &[u8]) {
    use edge_core::hls::ts::TS_OFFSET_90K;
    use edge_core::hls::tsscan::TsScan;
    use edge_core::hls::{HlsConfig, Segmenter, VecStore};
    use edge_core::media::MediaKind;
    use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
    use mpeg2ts::ts::TsPacketReader;

    let Synthetic {
        frames,
        pictures,
        audio,
    } = synthetic_stream(data);
    let pictures: Vec<_> = pictures
        .into_iter()
        .map(|(d, p, nal)| (d * 90 + TS_OFFSET_90K, p * 90 + TS_OFFSET_90K, nal))
        .collect();
    let config = HlsConfig {
        segment_ms: 1000,
        window: 100_000,
        keep_extra: 0,
        part_ms: 0,
    };
    let mut s = Segmenter::new(config, VecStore, "x");
    for f in &frames {
        s.handle_frame(f).expect("frames the test built are valid");
    }
    let end = s.handle_end();
    let mut ts = Vec::new();
    for seg in &end.segments {
        let mut scan = TsScan::default();
        for p in &seg.pieces {
            scan.feed(p).expect("in sync");
            ts.extend_from_slice(p);
        }
        let (packets, _) = scan.finish().expect("whole packets");
        assert_eq!(packets as usize * 188, seg.len);
    }
    let mut reader = PesPacketReader::new(TsPacketReader::new(&ts[..]));
    let (mut got_pictures, mut got_audio) = (Vec::new(), Vec::new());
    while let Some(pes) = reader.read_pes_packet().expect("demuxable") {
        if pes.header.stream_id.as_u8() == 0xe0 {
            let pts = pes.header.pts.expect("a PTS").as_u64();
            let dts = pes.header.dts.map_or(pts, |d| d.as_u64());
            got_pictures.push((dts, pts, pes.data));
        } else {
            // ADTS frames back to back; the length field includes the 7-byte header.
            let d = &pes.data;
            let mut at = 0;
            while at + 7 <= d.len() {
                assert_eq!((d[at], d[at + 1] & 0xf6), (0xff, 0xf0), "ADTS sync");
                let len = (usize::from(d[at + 3] & 3) << 11)
                    | (usize::from(d[at + 4]) << 3)
                    | usize::from(d[at + 5] >> 5);
                assert!(len >= 7 && at + len <= d.len(), "ADTS length {len}");
                got_audio.push(d[at + 7..at + len].to_vec());
                at += len;
            }
            assert_eq!(at, d.len(), "whole ADTS frames");
        }
    }
    assert_eq!(got_pictures.len(), pictures.len(), "every picture once");
    for (i, ((gd, gp, gdata), (d, p, nal))) in got_pictures.iter().zip(&pictures).enumerate() {
        assert_eq!((gd, gp), (d, p), "picture {i}: DTS, PTS");
        assert!(
            gdata.ends_with(nal),
            "picture {i}: its NAL unit, last and intact"
        );
    }
    assert_eq!(
        got_audio, audio,
        "audio: every frame fed while a segment was open, in order"
    );
    let mut demuxer = edge_core::hls::demux::TsDemuxer::new();
    let mut out = Vec::new();
    for seg in &end.segments {
        for p in &seg.pieces {
            demuxer.handle_bytes(p, &mut out).expect("demuxable");
        }
        demuxer.handle_end(&mut out).expect("whole packets");
    }
    let demuxed: Vec<_> = out
        .iter()
        .filter(|f| f.kind == MediaKind::Video && f.body[1] == 1)
        .collect();
    assert_eq!(demuxed.len(), pictures.len(), "every picture once, demuxed");
    for (i, (f, (d, p, nal))) in demuxed.iter().zip(&pictures).enumerate() {
        let cts = i64::from(i32::from_be_bytes([0, f.body[2], f.body[3], f.body[4]]));
        assert_eq!(
            (f.dts_90k, cts),
            (*d, (*p as i64 - *d as i64) / 90),
            "picture {i}"
        );
        assert_eq!(
            f.body[5..9],
            (nal.len() as u32).to_be_bytes(),
            "picture {i}"
        );
        assert_eq!(f.body[9..], nal[..], "picture {i}: its NAL unit alone");
    }
    let demuxed_audio: Vec<Vec<u8>> = out
        .iter()
        .filter(|f| f.kind == MediaKind::Audio && f.body[1] == 1)
        .map(|f| f.body[2..].to_vec())
        .collect();
    assert_eq!(demuxed_audio, audio, "audio, demuxed");
}

/// What a registry session reads from Redis: replies (RESP, split anywhere), node records
/// other nodes wrote, and channel events. Besides not panicking: decoding split at any point
/// gives what decoding the whole gives, a record that parses encodes back to itself, and the
/// session fed any replies (after a connect) never asks for more than it was owed.
pub fn registry(data: &[u8]) {
    use edge_core::cluster::{NodeRecord, Role};
    use edge_core::registry::{Login, RegistrySession};
    use edge_core::resp::{Decoder, Limits};

    let (split, rest) = split_point(data);
    let limits = Limits {
        max_bulk: 4096,
        max_elements: 64,
        max_depth: 4,
        max_line: 256,
        max_reply: 16 << 10,
    };
    let decode = |pieces: &[&[u8]]| {
        let mut d = Decoder::new(limits);
        let mut out = Vec::new();
        for p in pieces {
            d.feed(p);
            loop {
                match d.next_reply() {
                    Ok(Some(v)) => out.push(Ok(v)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    };
    let whole = decode(&[rest]);
    let (a, b) = rest.split_at(split.min(rest.len()));
    let parts = decode(&[a, b]);
    // The same replies, and the same error where there is one.
    assert_eq!(whole, parts, "a split changes the replies");

    if let Some(r) = NodeRecord::parse(rest) {
        assert_eq!(NodeRecord::parse(r.encode().as_bytes()), Some(r));
    }
    let me = NodeRecord::new("fuzz", Role::Origin, "127.0.0.1:1935", "127.0.0.1:8080");
    let mut s = RegistrySession::new(me, Login::default(), 0);
    let mut out = Vec::new();
    s.handle_timeout(0, &mut out);
    s.handle_connected(0, &mut out);
    for v in whole.into_iter().flatten() {
        s.handle_reply(v, &mut out);
    }
    s.handle_event(rest, &mut out);
}

/// The upgrade handover's packets ([`edge_core::handover`]). Besides not panicking: a packet
/// that parses encodes back to a packet that parses to the same message.
pub fn handover(data: &[u8]) {
    use edge_core::handover::{Message, MAX_MESSAGE};
    if let Ok(m) = Message::parse(data) {
        let again = m.encode();
        assert!(again.len() <= MAX_MESSAGE, "{m:?} encodes too long");
        assert_eq!(Message::parse(&again), Ok(m));
    }
}

/// An origin's response as the HLS pull's client reads it: split anywhere, it reads the
/// same; the body is never longer than the input.
pub fn http_response(data: &[u8]) {
    use edge_core::httpc::read_split;
    let (cut, rest) = split_point(data);
    for head_only in [false, true] {
        let whole = read_split(rest, usize::MAX, head_only);
        let split = read_split(rest, cut, head_only);
        if let (Ok(Some(a)), Ok(Some(b))) = (&whole, &split) {
            assert_eq!((&a.1, a.2), (&b.1, b.2), "split at {cut}");
            assert!(a.1.len() <= rest.len());
            assert!(!head_only || a.1.is_empty());
        }
    }
}

/// The HLS pull over arbitrary origin playlists and download outcomes (records separated by
/// 0xff; a record's first byte picks the event and how far the clock moves): it lists each
/// segment once, in order; its media sequence never goes back; what it publishes parses.
pub fn hls_pull(data: &[u8]) {
    use edge_core::hls::pull::{FetchError, HlsPull, HlsPullConfig, HlsPullEffect, HttpOrigin};
    let origins = vec![
        HttpOrigin::parse("http://a:8080/live").unwrap(),
        HttpOrigin::parse("https://b/hls").unwrap(),
    ];
    let cfg = HlsPullConfig {
        prefetch: data.first().is_some_and(|b| b & 1 == 0),
        idle_ms: 60_000,
        negative_ms: 1_000,
        window: 6,
        keep_extra: 2,
        start_segments: 3,
        reload_ms: if data.first().is_some_and(|b| b & 2 == 0) {
            250
        } else {
            0
        },
    };
    let mut p = HlsPull::new(cfg, origins, "cam", 0);
    let (mut now, mut fx, mut fetched) = (0u64, Vec::new(), Vec::<u64>::new());
    let mut first_listed = 0u64;
    p.handle_demand(Some("t=1"), 0, &mut fx);
    for rec in data.split(|b| *b == 0xff) {
        let Some((&op, rest)) = rec.split_first() else {
            continue;
        };
        now += 100 * u64::from(op >> 4);
        let pick = |fetched: &[u64]| {
            let i = rest.first().copied().unwrap_or(0) as usize;
            fetched
                .get(i % fetched.len().max(1))
                .copied()
                .unwrap_or(u64::from(op))
        };
        match op & 7 {
            0 => p.handle_playlist(Ok(&String::from_utf8_lossy(rest)), now, &mut fx),
            1 => p.handle_playlist(Err(FetchError::Timeout), now, &mut fx),
            2 => p.handle_segment_started(pick(&fetched), &mut fx),
            3 => p.handle_segment_done(pick(&fetched), Ok(()), now, &mut fx),
            4 => p.handle_segment_done(pick(&fetched), Err(FetchError::Status(500)), now, &mut fx),
            5 => p.handle_miss(pick(&fetched), now, &mut fx),
            6 => p.handle_timeout(now, &mut fx),
            _ => p.handle_demand(None, now, &mut fx),
        }
        for e in fx.drain(..) {
            match e {
                HlsPullEffect::FetchSegment { seq, .. } => fetched.push(seq),
                HlsPullEffect::Publish(pl) if !pl.listed.is_empty() => {
                    assert!(
                        pl.listed.windows(2).all(|w| w[1] == w[0] + 1),
                        "{:?}",
                        pl.listed
                    );
                    assert!(pl.listed[0] >= first_listed, "media sequence went back");
                    first_listed = pl.listed[0];
                    let text = std::str::from_utf8(&pl.text).unwrap();
                    let parsed = parse_media_playlist(text).unwrap();
                    assert_eq!(parsed.media_sequence, pl.listed[0]);
                    assert_eq!(parsed.segments.len(), pl.listed.len());
                    assert_eq!(pl.uri_ends.len(), pl.listed.len());
                }
                _ => {}
            }
        }
    }
}

/// The TS demuxer and the HLS feed (what RTMP and FLV viewers of an HLS-only origin get) on
/// origin bytes. Besides not panicking: the input split anywhere demuxes as it does whole;
/// every frame out is an FLV body the engine's own tag parser reads (an AVC picture's NAL
/// lengths add up to its body, a sequence header is a record the TS muxer accepts); and the
/// feed, given the input as segments (cut at 0x47 0xff 0xff), never sends a track back in
/// time.
pub fn ts_demux(data: &[u8]) {
    use edge_core::hls::demux::{EsFrame, TsDemuxer};
    use edge_core::hls::feed::{FeedFrame, HlsFeed};
    use edge_core::hls::ts::{AudioConfig, VideoConfig};
    use edge_core::media::{parse_audio_tag, parse_video_tag};

    let (cut, rest) = split_point(data);
    let demux = |pieces: &[&[u8]]| {
        let mut d = TsDemuxer::new();
        let mut out: Vec<EsFrame> = Vec::new();
        let mut result = Ok(());
        for p in pieces {
            result = result.and_then(|()| d.handle_bytes(p, &mut out));
        }
        let result = result.and_then(|()| d.handle_end(&mut out));
        (result, out)
    };
    let whole = demux(&[rest]);
    assert_eq!(
        whole,
        demux(&[&rest[..cut], &rest[cut..]]),
        "split at {cut}"
    );
    for f in &whole.1 {
        assert!(f.dts_90k < 1 << 33);
        match f.kind {
            MediaKind::Video => {
                let tag = parse_video_tag(&f.body).expect("a video body");
                if tag.sequence_header {
                    VideoConfig::from_avcc(&f.body[5..]).expect("an AVC record");
                } else {
                    let mut at = 5;
                    while at < f.body.len() {
                        let len = u32::from_be_bytes(f.body[at..at + 4].try_into().unwrap());
                        at += 4 + len as usize;
                    }
                    assert_eq!(at, f.body.len(), "NAL lengths add up");
                }
            }
            MediaKind::Audio => {
                if parse_audio_tag(&f.body)
                    .expect("an audio body")
                    .sequence_header
                {
                    AudioConfig::from_asc(&f.body[2..]).expect("an AudioSpecificConfig");
                }
            }
            MediaKind::Data => panic!("the demuxer makes no data frames"),
        }
    }
    let mut feed = HlsFeed::new();
    let mut notes = Vec::new();
    let mut out: Vec<FeedFrame> = Vec::new();
    let mut now = 0;
    for (seq, segment) in rest.split(|b| *b == 0xff).enumerate() {
        let seq = seq as u64;
        let discontinuity = segment.first().is_some_and(|b| b & 1 == 1);
        let pieces = vec![Bytes::copy_from_slice(segment)];
        feed.handle_segment(seq, seq, discontinuity, pieces, &mut notes);
        now += 700;
        feed.poll_frames(now, &mut out);
    }
    feed.poll_frames(u64::MAX / 2, &mut out);
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let ts: Vec<u32> = out
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.timestamp)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[1] >= w[0]),
            "{kind:?} went back: {ts:?}"
        );
    }
}

/// The fMP4 writer and the LL-HLS muxer on a synthetic stream (as `ts_roundtrip`), parsed
/// back: every part is CMAF chunks (`moof` + `mdat`) whose runs point inside their `mdat`; the video
/// samples of every part, in order, are the pictures a segment was open for, with their DTS
/// and composition offsets; a segment is its parts; parts stay within the target unless the
/// input's timestamps jump; every URI the playlist names parses back to a file it serves.
pub fn llhls(data: &[u8]) {
    use edge_core::hls::fmp4::{find_box, read_boxes, VIDEO_TRACK_ID};
    use edge_core::hls::llhls::LlFile;
    use edge_core::hls::{HlsConfig, Segmenter, VecStore};

    let Some((&part, data)) = data.split_first() else {
        return;
    };
    let part_ms = 50 + u64::from(part) * 4;
    let Synthetic {
        frames, pictures, ..
    } = synthetic_stream(data);
    let config = HlsConfig {
        segment_ms: 1000.max(part_ms),
        window: 100_000,
        keep_extra: 0,
        part_ms,
    };
    let mut s = Segmenter::new(config, VecStore, "x");
    for f in &frames {
        s.handle_frame(f).expect("frames the test built are valid");
    }
    let end = s.handle_end();
    let Some(ll) = end.ll.as_deref() else {
        assert!(end.segments.is_empty(), "LL-HLS is on");
        return;
    };
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut got = Vec::new();
    for seg in &ll.segments {
        let joined: Vec<u8> = seg.pieces().flat_map(|b| b.iter().copied()).collect();
        let parts: Vec<u8> = seg.parts.iter().flat_map(|p| p.joined()).collect();
        assert_eq!(joined, parts);
        for p in &seg.parts {
            // CMAF chunks: moof, mdat, moof, mdat, ...; each moof's runs point inside the mdat
            // that follows it (offsets count from the moof).
            let bytes = p.joined();
            let boxes = read_boxes(&bytes).expect("boxes");
            assert!(
                !boxes.is_empty() && boxes.len().is_multiple_of(2),
                "{}",
                boxes.len()
            );
            let mut chunk_start = 0;
            for pair in boxes.chunks(2) {
                assert_eq!((&pair[0].kind, &pair[1].kind), (b"moof", b"mdat"));
                let moof = pair[0].body;
                let chunk_len = 8 + moof.len() + 8 + pair[1].body.len();
                let mdat_start = chunk_start + 8 + moof.len() + 8;
                for traf in read_boxes(moof)
                    .unwrap()
                    .into_iter()
                    .filter(|b| &b.kind == b"traf")
                {
                    let track = u32_at(find_box(traf.body, &[b"tfhd"]).unwrap(), 4);
                    let tfdt = find_box(traf.body, &[b"tfdt"]).unwrap();
                    let mut dts = u64::from_be_bytes(tfdt[4..12].try_into().unwrap());
                    let trun = find_box(traf.body, &[b"trun"]).unwrap();
                    let mut at = chunk_start + u32_at(trun, 8) as usize;
                    for i in 0..u32_at(trun, 4) as usize {
                        let e = 12 + 16 * i;
                        let size = u32_at(trun, e + 4) as usize;
                        assert!(
                            at >= mdat_start && at + size <= chunk_start + chunk_len,
                            "in the mdat"
                        );
                        if track == VIDEO_TRACK_ID {
                            let cto = u32_at(trun, e + 12) as i32;
                            got.push((dts, cto, bytes[at..at + size].to_vec()));
                        }
                        dts += u64::from(u32_at(trun, e));
                        at += size;
                    }
                }
                chunk_start += chunk_len;
            }
        }
    }
    assert_eq!(got.len(), pictures.len(), "every picture once");
    for (i, ((gd, gc, sample), (d, p, nal))) in got.iter().zip(&pictures).enumerate() {
        assert_eq!(
            (*gd, i64::from(*gc)),
            (d * 90, (*p as i64 - *d as i64) * 90),
            "picture {i}"
        );
        assert_eq!(sample[..4], (nal.len() as u32).to_be_bytes(), "picture {i}");
        assert_eq!(sample[4..], nal[..], "picture {i}");
    }
    let text = std::str::from_utf8(&ll.playlist.text).expect("UTF-8");
    for &end in &ll.playlist.uri_ends {
        let start = text[..end].rfind(['\n', '"']).map_or(0, |i| i + 1);
        let name = &text[start..end];
        let name = name.rsplit("URI=\"").next().unwrap();
        let served = match LlFile::parse(name).unwrap_or_else(|| panic!("{name}")) {
            LlFile::Init(id) => ll.init(id).is_some(),
            LlFile::Segment(seq) => ll.segment(seq).is_some(),
            LlFile::Part(seq, i) => ll.part(seq, i).is_some(),
            LlFile::Playlist => false,
        };
        assert!(served, "{name}");
    }
}

/// LL-HLS requests as a peer sends them: any path through the router, any query through the
/// directive parser and the viewer-query filter, and any directive decided against a real
/// snapshot. Nothing may panic; a decision to wait has a deadline.
pub fn llhls_request(data: &[u8]) {
    use edge_core::hls::blocking::{decide, viewer_query, Decision, Directives};
    use edge_core::hls::{HlsConfig, Segmenter, VecStore};
    use std::sync::OnceLock;

    static SNAPSHOT: OnceLock<std::sync::Arc<edge_core::hls::llhls::LlSnapshot>> = OnceLock::new();
    let snap = SNAPSHOT.get_or_init(|| {
        let config = HlsConfig {
            segment_ms: 1000,
            window: 6,
            keep_extra: 2,
            part_ms: 200,
        };
        let mut s = Segmenter::new(config, VecStore, "x");
        // Video and audio in turn every 20 ms, a keyframe every 2 s: segments close.
        let input: Vec<u8> = (0..2000u32)
            .flat_map(|i| {
                [
                    (i % 2) as u8 | if i % 100 == 0 { 2 } else { 0 },
                    20,
                    0,
                    4,
                    7,
                ]
            })
            .collect();
        let mut last = None;
        for f in synthetic_stream(&input).frames {
            if let Some(snap) = s.handle_frame(&f).unwrap() {
                last = snap.ll;
            }
        }
        last.expect("an LL-HLS snapshot")
    });
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    let _ = edge_core::http::Route::parse(path);
    let _ = viewer_query(query);
    if let Ok(d) = Directives::parse(Some(query)) {
        if let Some(msn) = d.msn {
            if let Ok(Decision::Wait { deadline_ms }) = decide(snap, msn, d.part, 1000) {
                assert_eq!(deadline_ms, 1000 + 3 * snap.target_duration_s * 1000);
            }
        }
    }
}

/// An origin's LL-HLS playlist as an HLS-origin edge's relay reads it (bytes from the network):
/// parsing never panics; a playlist it accepts has its URI ends inside the text, on the end
/// of a name the edge serves, and answers what requests ask of it; the relay fed it (and
/// misses for made-up files) keeps one playlist request at the origin and fetches a file at
/// most once.
pub fn llrelay(data: &[u8]) {
    use edge_core::hls::llhls::LlFile;
    use edge_core::hls::llrelay::{parse_ll_playlist, LlRelay, LlRelayConfig, LlRelayEffect};

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(snap) = parse_ll_playlist(text) else {
        return;
    };
    for &end in &snap.playlist.uri_ends {
        assert!(end <= text.len(), "URI end inside the text");
        let start = text[..end].rfind(['\n', '"']).map_or(0, |i| i + 1);
        assert!(
            LlFile::parse(&text[start..end]).is_some(),
            "{:?}",
            &text[start..end]
        );
    }
    for msn in [0, 1, u64::MAX] {
        let _ = snap.satisfies(msn, Some(0));
        let _ = snap.part(msn, u32::MAX);
    }
    let _ = snap.next_part();
    let config = LlRelayConfig {
        idle_ms: 1000,
        retry_ms: 10,
        negative_ms: 10,
    };
    let mut r = LlRelay::new(config, 0);
    let mut out = Vec::new();
    r.handle_demand(0, &mut out);
    r.handle_playlist(Ok(text), 1, &mut out);
    r.handle_playlist(Ok(text), 2, &mut out);
    for file in [
        LlFile::Segment(u64::MAX),
        LlFile::Part(0, u32::MAX),
        LlFile::Init(0),
    ] {
        r.handle_miss(file, 3, &mut out);
    }
    let mut files = std::collections::HashSet::new();
    let mut reloads = 0;
    for e in &out {
        match e {
            LlRelayEffect::FetchFile(f) => assert!(files.insert(*f), "{f:?} fetched twice"),
            LlRelayEffect::FetchPlaylist { .. } => reloads += 1,
            _ => {}
        }
    }
    // The first load, then one blocking reload after each playlist (none once ended).
    assert!(reloads <= 3, "{reloads} playlist requests");
}

/// HTTP/3 streams as a client sends them: the first byte picks the stream (request,
/// control, QPACK encoder, or a unidirectional stream's type and a datagram's routing by
/// connection ID), the second the size of the pieces the rest arrives in (or the shards). Nothing may panic, buffering stays bounded, and a request the
/// stream accepts renders to an HTTP/1.1 head our parser reads back with the same path.
pub fn h3_streams(data: &[u8]) {
    use edge_core::h3::stream::{ControlStream, EncoderStream, RequestStream, UniStream};

    let [which, step, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*step).max(1);
    match which % 4 {
        0 => {
            let mut s = RequestStream::new();
            for piece in rest.chunks(step) {
                match s.push(piece) {
                    Ok(Some(req)) => check_http1(&req),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = (e.code(), e.is_connection_error());
                        return;
                    }
                }
            }
            if let Ok(Some(req)) = s.finish() {
                assert!(req.body.len() <= edge_core::http::MAX_BODY_BYTES);
                assert!(req.body.is_empty() || req.body.len() as u64 == req.body_len);
                check_http1(&req);
            }
        }
        1 => {
            let mut c = ControlStream::new();
            let mut events = Vec::new();
            for piece in rest.chunks(step) {
                if c.push(piece, &mut events).is_err() {
                    return;
                }
            }
        }
        2 => {
            let mut e = EncoderStream::new();
            for piece in rest.chunks(step) {
                if e.push(piece).is_err() {
                    return;
                }
            }
        }
        _ => {
            let _ = UniStream::classify(rest);
            // Every datagram the engine receives is routed by its connection ID first.
            if let Some(shard) = edge_core::h3::cid::shard_of(rest, step) {
                assert!(shard < step);
            }
        }
    }
}

/// A QPACK field section: decoding never panics; what decodes encodes back to a section that
/// decodes to the same fields; a request read from it renders to a parseable HTTP/1.1 head.
pub fn qpack(data: &[u8]) {
    use edge_core::h3::message::{response_fields, Request};
    use edge_core::h3::qpack::{decode_field_section, encode_field_section};
    use edge_core::h3::MAX_FIELD_SECTION_SIZE;

    let _ = response_fields(data);
    let Ok(fields) = decode_field_section(data, MAX_FIELD_SECTION_SIZE) else {
        return;
    };
    let pairs: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let mut again = Vec::new();
    encode_field_section(&pairs, &mut again);
    assert_eq!(
        decode_field_section(&again, u64::MAX).as_ref(),
        Ok(&fields),
        "re-encoded fields decode to the same"
    );
    if let Ok(req) = Request::from_fields(fields) {
        check_http1(&req);
    }
}

fn check_http1(req: &edge_core::h3::message::Request) {
    let mut head = req.to_http1();
    // A body within the limit follows its head, as the driver reads it.
    head.extend_from_slice(&req.body);
    match edge_core::http::parse_request(&head) {
        Ok(Some((parsed, used))) => {
            assert_eq!(used, head.len(), "the whole head is one request");
            let path = match &parsed.query {
                Some(q) => format!("{}?{q}", parsed.path),
                None => parsed.path.clone(),
            };
            // The parser may normalise nothing but split the query off.
            assert_eq!(path, req.path, "the path survives");
        }
        // Our HTTP/1.1 parser is stricter (its header limits, methods it knows): refusing is
        // fine, as long as it is an error, not a panic or a different request.
        Ok(None) => panic!("a rendered head is complete"),
        Err(_) => {}
    }
}

/// An HTTP/1.1 response (as our writers produce, or anything) through the HTTP/3 response
/// converter, whole and cut at the points the first bytes give: no panic; the same frames'
/// payload either way; DATA payloads never add up to more than the input.
pub fn h3_response(data: &[u8]) {
    use bytes::Bytes;
    use edge_core::h3::response::ResponseFrames;

    let [flags, step, wire @ ..] = data else {
        return;
    };
    let head_only = flags & 1 == 1;
    let run = |cut: usize| {
        let mut r = ResponseFrames::new(head_only);
        let mut out = Vec::new();
        let mut ok = true;
        for piece in wire.chunks(cut.max(1)) {
            if r.push(Bytes::copy_from_slice(piece), &mut out).is_err() {
                ok = false;
                break;
            }
        }
        let bytes: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        (ok, r.is_done(), bytes)
    };
    let whole = run(wire.len());
    let cut = run(usize::from(*step));
    if whole.0 && cut.0 {
        assert_eq!(whole.1, cut.1, "done the same whole and cut");
        // The frames differ in how DATA is cut, not in what they carry: compare payloads.
        let (headers, body) = data_payload(&whole.2);
        assert_eq!((headers, body.clone()), data_payload(&cut.2));
        assert!(body.len() <= wire.len());
    }
}

/// A sequence of HTTP/3 frames as (HEADERS blocks, the DATA payloads concatenated).
fn data_payload(mut frames: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    use edge_core::h3::varint;
    let (mut headers, mut body) = (Vec::new(), Vec::new());
    while let Some((ty, a)) = varint::decode(frames) {
        let Some((len, b)) = varint::decode(&frames[a..]) else {
            break;
        };
        let start = a + b;
        let end = (start + len as usize).min(frames.len());
        if ty == 0 {
            body.extend_from_slice(&frames[start..end]);
        } else {
            headers.push(frames[start..end].to_vec());
        }
        frames = &frames[end..];
    }
    (headers, body)
}

/// WebRTC's inputs from peers, as far as our code reads them: FLV video bodies (a
/// publisher's) through the H.264 RTP packetizer, and an SDP offer's text through the video
/// section finder, a session id through its parser and a WHEP path through the router.
pub fn webrtc_media(data: &[u8]) {
    use bytes::Bytes;
    use edge_core::webrtc::h264::{
        depacketize, slice_type, split_nal_units, Packetizer, MAX_PAYLOAD,
    };
    use edge_core::webrtc::{media_mids, SessionId};

    let [which, rest @ ..] = data else {
        return;
    };
    if which % 2 == 1 {
        let text = String::from_utf8_lossy(rest);
        for mid in media_mids(&text, "video")
            .into_iter()
            .chain(media_mids(&text, "audio"))
        {
            assert!(text.contains(mid));
        }
        if let Some(ufrag) = edge_core::webrtc::stun_local_ufrag(rest) {
            assert!(!ufrag.is_empty());
            assert!(rest.windows(ufrag.len()).any(|w| w == ufrag.as_bytes()));
        }
        if let Some(id) = SessionId::parse(&text) {
            assert_eq!(id.to_string(), text.to_ascii_lowercase());
        }
        let _ = edge_core::http::Route::parse(&text);
        let reason = edge_core::webrtc::offer_error_reason(&text);
        assert!(!reason.contains('\n'));
        return;
    }
    // Video bodies separated by 0xfe bytes; a sequence header among them sets the NAL length.
    let mut p = Packetizer::new(which & 2 != 0);
    let mut at = 0u64;
    for body in rest.split(|&b| b == 0xfe) {
        if let Some(t) = slice_type(body) {
            assert!(t < 5);
        }
        at += 40;
        let body = Bytes::copy_from_slice(body);
        let Ok(Some(au)) = p.push(at, &body) else {
            continue;
        };
        assert!(au
            .payloads
            .iter()
            .all(|p| !p.is_empty() && p.len() <= MAX_PAYLOAD));
        // The NAL units come back whole from their payloads, the frame's own among them in
        // order (after any parameter sets put before an IDR).
        let nals = depacketize(&au.payloads);
        let data_at = if body[0] & 0x80 == 0 || body[0] & 0x0f != 1 {
            5
        } else {
            8
        };
        let size = (1..=4).filter(|s| *s != 3).find(|&s| {
            split_nal_units(&body.slice(data_at.min(body.len())..), s).is_ok_and(|own| {
                let own: Vec<Vec<u8>> = own
                    .iter()
                    .filter(|n| !matches!(n[0] & 0x1f, 0 | 9 | 12 | 24..=31))
                    .map(|n| n.to_vec())
                    .collect();
                nals.ends_with(&own)
            })
        });
        assert!(size.is_some(), "the frame's NAL units did not come back");
    }
}
