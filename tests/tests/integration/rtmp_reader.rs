//! The lean RTMP play path (issue 19) against rml_rtmp, on what the engine really sends: a
//! player records every byte an engine sends it while the bundled fixture is published, then
//! edge-core's chunk reader (which loadgen's RTMP viewers use) and rml_rtmp's
//! `ChunkDeserializer` both read the recording, whole and split at many points. They must
//! give the same messages: type, timestamp, message stream and every payload byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use edge_core::media::MediaKind;
use edge_core::rtmp::client::{ClientConfig, ClientEvent, ClientMode, RtmpClient};
use edge_core::rtmp::reader::ChunkReader;
use rml_rtmp::chunk_io::ChunkDeserializer;
use tests::{publish_loop, Engine};

/// S0 + S1 + S2: what the server sends before its first chunk.
const HANDSHAKE: usize = 1 + 1536 + 1536;

type Msg = (u8, u32, u32, Vec<u8>);

/// Plays `live/{stream}` until `frames` video frames came, returning every byte received
/// and the video frames the client saw.
fn record(engine: &Engine, stream: &str, frames: usize) -> (Vec<u8>, usize) {
    let mut sock = TcpStream::connect(engine.rtmp).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut client = RtmpClient::new(ClientConfig::new(
        &format!("rtmp://{}/live", engine.rtmp),
        stream,
        ClientMode::Play,
    ))
    .unwrap();
    let mut wire = Vec::new();
    let mut video = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    while video < frames {
        assert!(Instant::now() < deadline, "only {video} video frames");
        if let Some(out) = client.poll_transmit() {
            sock.write_all(&out).unwrap();
        }
        let n = match sock.read(&mut buf) {
            Ok(0) => panic!("the engine closed the player"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("read: {e}"),
        };
        wire.extend_from_slice(&buf[..n]);
        let mut events = Vec::new();
        client.handle_input(&buf[..n], &mut events).unwrap();
        video += events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::Media {
                        kind: MediaKind::Video,
                        ..
                    }
                )
            })
            .count();
    }
    (wire, video)
}

/// edge-core's reader over `wire` cut into pieces at `cuts`.
fn ours(wire: &[u8], cuts: &[usize]) -> Vec<Msg> {
    let mut r = ChunkReader::new();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
        let mut input = &wire[last..c];
        while let Some(m) = r.read_message(&mut input).unwrap() {
            out.push((m.type_id, m.timestamp, m.stream_id, m.payload.to_vec()));
        }
        assert!(input.is_empty());
        last = c;
    }
    out
}

/// rml_rtmp's deserializer over the same pieces; it leaves `SetChunkSize` to its session, so
/// this applies it as a session would.
fn theirs(wire: &[u8], cuts: &[usize]) -> Vec<Msg> {
    let mut d = ChunkDeserializer::new();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
        let mut input = &wire[last..c];
        while let Some(m) = d.get_next_message(input).unwrap() {
            input = &[];
            if m.type_id == 1 && m.data.len() >= 4 {
                let size = u32::from_be_bytes([m.data[0], m.data[1], m.data[2], m.data[3]]);
                d.set_max_chunk_size(size as usize).unwrap();
            }
            out.push((
                m.type_id,
                m.timestamp.value,
                m.message_stream_id,
                m.data.to_vec(),
            ));
        }
        last = c;
    }
    out
}

#[test]
fn the_lean_reader_and_rml_rtmp_read_recorded_engine_output_alike() {
    let engine = Engine::start(&["--cores", "2"]);
    let _publisher = publish_loop(&engine.rtmp_url("live/rec"));
    // Wait for the stream, then record a player that joins it (GOP burst included).
    let (wire, video) = loop {
        let (wire, video) = record(&engine, "rec", 150);
        if video >= 150 {
            break (wire, video);
        }
    };
    let chunks = &wire[HANDSHAKE..];
    let whole = ours(chunks, &[]);
    assert_eq!(whole, theirs(chunks, &[]), "the same messages, whole");
    let media = whole.iter().filter(|m| m.0 == 9).count();
    assert!(
        media >= video,
        "{media} video messages, the client saw {video}"
    );
    assert!(
        whole.iter().any(|m| m.0 == 1),
        "the engine's SetChunkSize is in the recording"
    );
    // Split at many points: every byte of the first 4 KB (the control messages and the first
    // chunk headers), then every 997th byte.
    let mut cuts: Vec<Vec<usize>> = (1..4096.min(chunks.len())).map(|c| vec![c]).collect();
    cuts.push((1..chunks.len()).step_by(997).collect());
    cuts.push((1..chunks.len()).step_by(7).collect());
    for c in &cuts {
        assert_eq!(
            ours(chunks, c),
            whole,
            "ours, cut at {:?}",
            &c[..c.len().min(3)]
        );
    }
    for c in cuts.iter().step_by(101) {
        assert_eq!(
            theirs(chunks, c),
            whole,
            "rml_rtmp, cut at {:?}",
            &c[..c.len().min(3)]
        );
    }
}
