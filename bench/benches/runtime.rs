//! Runtime comparison: fan-out of one shared 4 KB buffer to 200 loopback connections, the
//! same pattern on monoio (io_uring) and on glommio. One task per connection writes the buffer
//! `iters` times; the reported time is per iteration (one buffer to all 200 connections).
//! The server runtime is pinned to CPU 0; a reader thread on CPU 1 drains every socket.
//! This keeps the runtime decision (docs/ARCHITECTURE.md) reproducible; glommio is used nowhere else.
//!
//! Run: `cargo bench -p bench --bench runtime`.
//! Last results (ci-vm: 2 vCPU Xeon, 2026-11-21, commit 0db4e73): monoio 283 µs, glommio
//! 174 µs per fan-out to 200 connections (1.42 µs against 0.87 µs per write): glommio was
//! faster in this pattern; see the runtime record in docs/ARCHITECTURE.md for what that does and does not change.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CONNS: usize = 200;
const MSG: usize = 4096;

/// Connects `n` sockets to `addr` and drains them until `stop`.
fn reader(addr: SocketAddr, n: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = pin(1);
        let mut socks: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for s in &socks {
            s.set_nonblocking(true).unwrap();
        }
        let mut buf = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            for s in socks.iter_mut() {
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }
        }
    })
}

fn pin(cpu: usize) -> bool {
    core_affinity_pin(cpu)
}

fn core_affinity_pin(cpu: usize) -> bool {
    // SAFETY: sched_setaffinity on the calling thread with a zeroed, then filled, cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// A runtime thread that, for each `iters` it receives, writes the buffer `iters` times to
/// every connection and answers with the elapsed time.
struct Rig {
    tx: mpsc::Sender<u64>,
    rx: mpsc::Receiver<Duration>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rig {
    fn run(&self, iters: u64) -> Duration {
        self.tx.send(iters).unwrap();
        self.rx.recv().unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.tx.send(0);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn monoio_rig() -> Rig {
    let (tx, cmd) = mpsc::channel::<u64>();
    let (done, rx) = mpsc::channel::<Duration>();
    let thread = std::thread::spawn(move || {
        pin(0);
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            use monoio::io::AsyncWriteRentExt;
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let r = reader(listener.local_addr().unwrap(), CONNS, Arc::clone(&stop));
            let mut streams = Vec::new();
            for _ in 0..CONNS {
                streams.push(listener.accept().await.unwrap().0);
            }
            let buf = Bytes::from(vec![7u8; MSG]);
            while let Ok(iters) = cmd.recv() {
                if iters == 0 {
                    break;
                }
                let start = Instant::now();
                let tasks: Vec<_> = streams
                    .drain(..)
                    .map(|mut s| {
                        let buf = buf.clone();
                        monoio::spawn(async move {
                            for _ in 0..iters {
                                s.write_all(buf.clone()).await.0.unwrap();
                            }
                            s
                        })
                    })
                    .collect();
                for t in tasks {
                    streams.push(t.await);
                }
                done.send(start.elapsed()).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            drop(streams);
            r.join().unwrap();
        });
    });
    Rig {
        tx,
        rx,
        thread: Some(thread),
    }
}

fn glommio_rig() -> Result<Rig, String> {
    let (tx, cmd) = mpsc::channel::<u64>();
    let (done, rx) = mpsc::channel::<Duration>();
    let (ok_tx, ok_rx) = mpsc::channel::<Result<(), String>>();
    let thread = std::thread::spawn(move || {
        let ex = match glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0)).make() {
            Ok(ex) => ex,
            Err(e) => {
                let _ = ok_tx.send(Err(e.to_string()));
                return;
            }
        };
        let _ = ok_tx.send(Ok(()));
        ex.run(async move {
            use futures_lite::AsyncWriteExt;
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let r = reader(listener.local_addr().unwrap(), CONNS, Arc::clone(&stop));
            let mut streams = Vec::new();
            for _ in 0..CONNS {
                streams.push(listener.accept().await.unwrap());
            }
            let buf = Bytes::from(vec![7u8; MSG]);
            while let Ok(iters) = cmd.recv() {
                if iters == 0 {
                    break;
                }
                let start = Instant::now();
                let tasks: Vec<_> = streams
                    .drain(..)
                    .map(|mut s| {
                        let buf = buf.clone();
                        glommio::spawn_local(async move {
                            for _ in 0..iters {
                                s.write_all(&buf).await.unwrap();
                            }
                            s
                        })
                    })
                    .collect();
                for t in tasks {
                    streams.push(t.await);
                }
                done.send(start.elapsed()).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            drop(streams);
            r.join().unwrap();
        });
    });
    ok_rx.recv().map_err(|e| e.to_string())??;
    Ok(Rig {
        tx,
        rx,
        thread: Some(thread),
    })
}

fn runtimes(c: &mut Criterion) {
    let mut g = c.benchmark_group("runtime_fanout_4KB_x200");
    g.throughput(Throughput::Elements(CONNS as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    {
        let rig = monoio_rig();
        g.bench_function("monoio", |b| b.iter_custom(|iters| rig.run(iters)));
    }
    match glommio_rig() {
        Ok(rig) => g.bench_function("glommio", |b| b.iter_custom(|iters| rig.run(iters))),
        // A measurement that could not run is reported, not hidden.
        Err(e) => {
            eprintln!("glommio could not start here ({e}); only monoio was measured");
            &mut g
        }
    };
    g.finish();
}

criterion_group!(benches, runtimes);
criterion_main!(benches);
