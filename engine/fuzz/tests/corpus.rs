//! Replays every committed fuzz input through its target's body: the minimised corpora in
//! `fuzz/corpus/TARGET/` and the crash reproducers in `fuzz/regressions/TARGET/` (named
//! after what they broke). A regression here fails `cargo test --workspace` without a
//! fuzzer, a nightly toolchain or a sanitizer.

use std::path::PathBuf;

type Body = fn(&[u8]);

const TARGETS: &[(&str, Body)] = &[
    ("rtmp_server", edge_fuzz::rtmp_server),
    ("rtmp_server_session", edge_fuzz::rtmp_server_session),
    ("rtmp_client_session", edge_fuzz::rtmp_client_session),
    ("rtmp_chunks", edge_fuzz::rtmp_chunks),
    ("amf0", edge_fuzz::amf0),
    ("m3u8", edge_fuzz::m3u8),
    ("flv_aggregate", edge_fuzz::flv_aggregate),
    ("media_pipeline", edge_fuzz::media_pipeline),
    ("http", edge_fuzz::http),
    ("access", edge_fuzz::access),
    ("ts_sei", edge_fuzz::ts_sei),
    ("ts_roundtrip", edge_fuzz::ts_roundtrip),
    ("registry", edge_fuzz::registry),
    ("handover", edge_fuzz::handover),
    ("http_response", edge_fuzz::http_response),
    ("hls_pull", edge_fuzz::hls_pull),
    ("ts_demux", edge_fuzz::ts_demux),
    ("llhls", edge_fuzz::llhls),
    ("llhls_request", edge_fuzz::llhls_request),
    ("llrelay", edge_fuzz::llrelay),
    ("h3_streams", edge_fuzz::h3_streams),
    ("qpack", edge_fuzz::qpack),
    ("h3_response", edge_fuzz::h3_response),
    ("webrtc_media", edge_fuzz::webrtc_media),
];

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_corpus() {
    for (target, _) in TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "fuzz/corpus/{target} is empty: run the seed writer and the fuzzer"
        );
    }
}

#[test]
fn corpora_replay_cleanly() {
    for (target, body) in TARGETS {
        for path in inputs("corpus", target) {
            body(&std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn crash_reproducers_replay_cleanly() {
    let mut n = 0;
    for (target, body) in TARGETS {
        for path in inputs("regressions", target) {
            body(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(
        n >= 6,
        "the reproducers of issue 11 are committed ({n} found)"
    );
}

#[test]
fn no_stray_directories() {
    // A corpus for a target that is not in TARGETS would never be replayed.
    for kind in ["corpus", "regressions"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz")
            .join(kind);
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().into_string().unwrap();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} belongs to no target"
            );
        }
    }
}
