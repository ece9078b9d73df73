//! HTTP request parse plus response head: what every segment request costs before its body.
//!
//! Run: `cargo bench -p bench --bench http`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 537 ns per request.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::http::{parse_request, response_head, Route};

fn http(c: &mut Criterion) {
    let req = b"GET /live/camera-1042.ts HTTP/1.1\r\nHost: edge.example.net\r\nUser-Agent: hls.js\r\nAccept: */*\r\nOrigin: https://player.example.net\r\nConnection: keep-alive\r\n\r\n";
    c.bench_function("http_parse_route_head", |b| {
        b.iter(|| {
            let (r, _) = parse_request(black_box(req)).unwrap().unwrap();
            let route = Route::parse(&r.path);
            let head = response_head(
                200,
                "video/mp2t",
                Some(74_072),
                "public, max-age=86400, immutable",
                r.keep_alive,
            );
            black_box((route, head))
        });
    });
}

criterion_group!(benches, http);
criterion_main!(benches);
