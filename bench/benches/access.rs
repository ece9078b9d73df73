//! The cost of an access check per request: a token verified for a playlist or segment
//! request, and the playlist written with a viewer's token between its shared pieces.
//!
//! Run: `cargo bench -p bench --bench access`. Target (issue 14): a token check below 1 µs.
//! - `verify/{sha256,sha1,md5}`: one EdgeAuth token (exp, ACL `/live/*`, 64-hex HMAC for
//!   SHA-256) found in a query with another parameter, checked for `/live/cam`.
//! - `verify/secure_link`: nginx `md5`/`expires` arguments.
//! - `playlist_with_token`: the pieces of a 6-segment playlist with a 150-byte query.
//!
//! Measured (commit 2387a6d, ci-vm, medians of three runs; docs/BENCHMARKS.md): sha256
//! 800 ns, sha1 688 ns, md5 956 ns, secure_link 772 ns, playlist_with_token 278 ns.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::access::{Action, ModeByApp, Policy};
use edge_core::token::{
    sign_edgeauth, sign_secure_link, EdgeAuthClaims, HashAlg, TokenConfig, TokenFormat,
};

const NOW: u64 = 1_700_000_000;

fn verify(c: &mut Criterion) {
    let key = vec![0x5a; 16];
    let mut group = c.benchmark_group("verify");
    for (name, alg) in [
        ("sha256", HashAlg::Sha256),
        ("sha1", HashAlg::Sha1),
        ("md5", HashAlg::Md5),
    ] {
        let token = sign_edgeauth(
            &key,
            alg,
            &EdgeAuthClaims {
                exp_s: NOW + 3600,
                acl: Some("/live/*"),
                ..Default::default()
            },
        );
        let policy = Policy {
            play: ModeByApp::parse(&["token".to_string()]).unwrap(),
            publish: ModeByApp::default(),
            tokens: Some(TokenConfig {
                format: TokenFormat::EdgeAuth {
                    alg,
                    keys: vec![key.clone()],
                    param: "token".into(),
                },
                skew_s: 30,
            }),
        };
        let query = format!("viewer=42&token={token}");
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(policy.check(
                    Action::Play,
                    "live",
                    "cam",
                    Some(black_box(&query)),
                    None,
                    NOW,
                ))
            })
        });
    }
    let template = "$secure_link_expires$uri$remote_addr secret".to_string();
    let args = sign_secure_link(&template, "/live/cam", "127.0.0.1", NOW + 3600);
    let config = TokenConfig {
        format: TokenFormat::SecureLink { template },
        skew_s: 0,
    };
    let ip = "127.0.0.1".parse().ok();
    group.bench_function("secure_link", |b| {
        b.iter(|| black_box(config.verify(Some(black_box(&args)), "/live/cam", ip, NOW)))
    });
    group.finish();
}

fn playlist_with_token(c: &mut Criterion) {
    let snap = tests_playlist();
    let suffix = bytes::Bytes::from(format!("?token={}", "a".repeat(144)));
    c.bench_function("playlist_with_token", |b| {
        b.iter(|| black_box(snap.playlist_with(black_box(&suffix))))
    });
}

/// A 6-segment playlist as the segmenter renders it.
fn tests_playlist() -> edge_core::hls::HlsSnapshot {
    let mut p = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n",
    );
    let mut ends = Vec::new();
    for seq in 10..16 {
        p.push_str(&format!("#EXTINF:2.000,\ncam-{seq}.ts"));
        ends.push(p.len());
        p.push('\n');
    }
    edge_core::hls::HlsSnapshot {
        playlist: bytes::Bytes::from(p),
        uri_ends: ends,
        segments: Vec::new(),
        target_duration_s: 2,
        ended: false,
        ll: None,
        ts_carries: true,
    }
}

criterion_group!(benches, verify, playlist_with_token);
criterion_main!(benches);
