//! Writes the seed inputs of every fuzz target into `fuzz/corpus/TARGET/seed-*`: real session
//! bytes from edge-core's client and server, a playlist the segmenter rendered, and cuts of
//! the test fixture. Run it after a change to what the sessions send:
//! `cargo run -p edge-fuzz --example write_seeds`, then minimise with `cargo fuzz cmin`.

use std::path::PathBuf;

use bytes::Bytes;
use edge_core::flv::FlvReader;
use edge_core::media::MediaKind;
use edge_core::rtmp::amf;
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::rtmp::server::{ServerConnection, ServerEvent};

fn dir(target: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(format!("seed-{name}")), bytes).unwrap();
}

/// A split point prefix (the targets read their first two bytes as one).
fn with_split(at: u16, bytes: &[u8]) -> Vec<u8> {
    let mut v = at.to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// Runs a whole session; returns (client bytes after C2, server bytes after S0+S1+S2).
fn session(mode: ClientMode, media: &[(MediaKind, u32, Bytes)]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut c =
        RtmpClient::new(ClientConfig::new("rtmp://127.0.0.1:1935/live", "cam", mode)).unwrap();
    let mut s = ServerConnection::new();
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    let mut first_client = Vec::new();
    let mut handshake_bytes = 0usize;
    let mut started = false;
    for round in 0..20 {
        if let Some(b) = c.poll_transmit() {
            if round == 0 {
                first_client.extend_from_slice(&b);
            } else {
                from_client.extend_from_slice(&b);
            }
            let mut events = Vec::new();
            s.handle_input(&b, &mut events).unwrap();
            for e in events {
                if let ServerEvent::PublishRequested { request_id, .. }
                | ServerEvent::PlayRequested { request_id, .. } = e
                {
                    s.accept(request_id).unwrap();
                }
            }
        }
        if let Some(b) = s.poll_transmit() {
            if handshake_bytes == 0 {
                handshake_bytes = 1 + 2 * 1536;
                from_server.extend_from_slice(&b[handshake_bytes.min(b.len())..]);
            } else {
                from_server.extend_from_slice(&b);
            }
            let mut events = Vec::new();
            c.handle_input(&b, &mut events).unwrap();
            for e in events {
                if e == ClientEvent::Started {
                    started = true;
                }
            }
        }
    }
    assert!(started, "the session starts");
    if mode == ClientMode::Publish {
        for (k, ts, body) in media {
            c.publish(*k, *ts, body.clone()).unwrap();
        }
        from_client.extend_from_slice(&c.poll_transmit().unwrap());
    } else {
        for (k, ts, body) in media {
            let f =
                edge_core::media::Frame::new(*k, u64::from(*ts), Default::default(), body.clone());
            from_server.extend_from_slice(&f.rtmp);
        }
    }
    // The client's C2 leads its second output.
    let after_c2 = from_client.split_off(1536.min(from_client.len()));
    let mut whole = first_client;
    whole.extend_from_slice(&from_client);
    whole.extend_from_slice(&after_c2);
    (whole, after_c2, from_server)
}

fn fixture_tags(max: usize) -> (Vec<u8>, Vec<(MediaKind, u32, Bytes)>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bframes.flv");
    let flv = std::fs::read(path).unwrap();
    let mut r = FlvReader::new();
    r.handle_input(&flv);
    let mut media = Vec::new();
    let mut cut = flv[..13].to_vec();
    while let Ok(Some(t)) = r.poll_tag() {
        if media.len() >= max {
            break;
        }
        cut.extend_from_slice(&edge_core::flv::serialize_tag(
            t.type_id,
            t.timestamp,
            &t.body,
        ));
        if let Some(k @ (MediaKind::Audio | MediaKind::Video)) = MediaKind::from_type_id(t.type_id)
        {
            media.push((k, t.timestamp, t.body));
        }
    }
    (cut, media)
}

/// The fixture's media cut into 1 s TS segments by the segmenter.
fn segment_fixture(media: &[(MediaKind, u32, Bytes)]) -> Vec<Vec<u8>> {
    use edge_core::hls::{HlsConfig, Segmenter, VecStore};
    use edge_core::media::{parse_tag, Frame, FrameFlags, TagInfo};
    let config = HlsConfig {
        segment_ms: 1000,
        window: 1000,
        keep_extra: 0,
        part_ms: 0,
    };
    let mut s = Segmenter::new(config, VecStore, "x");
    for (kind, ts, body) in media {
        let tag = parse_tag(*kind, body).unwrap();
        let flags = FrameFlags {
            sync_point: matches!(tag, TagInfo::Video(v) if v.keyframe && !v.sequence_header),
            header: tag.is_sequence_header(),
        };
        s.handle_frame(&Frame::new(*kind, u64::from(*ts), flags, body.clone()))
            .unwrap();
    }
    s.handle_end()
        .segments
        .iter()
        .map(|seg| seg.pieces.concat())
        .collect()
}

fn main() {
    let (flv, media) = fixture_tags(120);
    let few: Vec<_> = media.iter().take(6).cloned().collect();
    let (pub_whole, pub_after, pub_server) = session(ClientMode::Publish, &few);
    let (_, play_after, play_server) = session(ClientMode::Play, &few);
    write("rtmp_server", "publish", &with_split(1537, &pub_whole));
    write(
        "rtmp_server_session",
        "publish",
        &with_split(40, &pub_after),
    );
    write("rtmp_server_session", "play", &with_split(100, &play_after));
    write(
        "rtmp_client_session",
        "play",
        &[&[0u8, 0, 30][..], &play_server].concat(),
    );
    write(
        "rtmp_client_session",
        "publish",
        &[&[1u8, 0, 30][..], &pub_server].concat(),
    );
    write("rtmp_chunks", "client", &with_split(7, &pub_after));
    write("rtmp_chunks", "server", &with_split(300, &play_server));
    let mut connect = amf::Writer::new();
    connect.string("connect").number(1.0).begin_object();
    connect
        .key("app")
        .string("live")
        .key("tcUrl")
        .string("rtmp://h/live");
    connect.end_object();
    write("amf0", "connect", &connect.finish());
    let mut props = std::collections::HashMap::new();
    props.insert("width".into(), amf::Amf0Value::Number(320.0));
    props.insert("encoder".into(), amf::Amf0Value::Utf8String("Lavf".into()));
    write("amf0", "metadata", &amf::metadata_body(&props));
    write(
        "m3u8",
        "live",
        b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXTINF:2.000,\ncam-41.ts\n#EXT-X-DISCONTINUITY\n\
#EXTINF:1.960,\ncam-42.ts\n#EXT-X-ENDLIST\n",
    );
    let (short_flv, _) = fixture_tags(30);
    write("flv_aggregate", "fixture", &with_split(500, &short_flv));
    write("media_pipeline", "fixture", &flv);
    // The same with a republish marker and a 100 000 s timestamp jump in the middle.
    let mut jumped = flv[..13].to_vec();
    let mut r = FlvReader::new();
    r.handle_input(&flv);
    let mut n = 0;
    while let Ok(Some(t)) = r.poll_tag() {
        n += 1;
        let ts = if n > 60 {
            t.timestamp + 100_000_000
        } else {
            t.timestamp
        };
        if n == 40 {
            jumped.extend_from_slice(&edge_core::flv::serialize_tag(0xfe, ts, &[]));
        }
        jumped.extend_from_slice(&edge_core::flv::serialize_tag(t.type_id, ts, &t.body));
    }
    write("media_pipeline", "jump-and-republish", &jumped);
    // Access: a minted token in a query with another parameter, for a path; secure_link
    // arguments; hook replies.
    let token = edge_core::token::sign_edgeauth(
        b"k1",
        edge_core::token::HashAlg::Sha256,
        &edge_core::token::EdgeAuthClaims {
            ip: Some("10.1.2.3"),
            start_s: Some(1_699_999_000),
            exp_s: 1_700_000_600,
            acl: Some("/live/*!/vod/a*"),
            ..Default::default()
        },
    );
    write(
        "access",
        "edgeauth",
        format!("a=1&token={token}\n/live/s").as_bytes(),
    );
    write(
        "access",
        "secure-link",
        b"md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647\n/live/s",
    );
    write(
        "access",
        "hook-json",
        br#"{"code":0,"data":{"code":1},"msg":"\"code\""}"#,
    );
    write("access", "modes", b"token\nfree=none\nvip=hook");
    // Two segments the segmenter cut from the fixture, as an origin serves them: one
    // whole, and both as feed input (cut at 0x47 0xff 0xff).
    let segments = segment_fixture(&media);
    write("ts_demux", "segment", &with_split(1000, &segments[0]));
    let mut both = Vec::new();
    for seg in segments.iter().take(2) {
        both.extend_from_slice(seg);
        both.extend_from_slice(&[0x47, 0xff, 0xff]);
    }
    write("ts_demux", "segments", &with_split(188 * 7, &both));
    println!("seeds written under fuzz/corpus/");
}
