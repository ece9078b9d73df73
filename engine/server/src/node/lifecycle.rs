//! The process's life: validates the configuration, binds (or inherits) the listening
//! sockets, starts one pinned shard thread per core (each with its own monoio runtime,
//! listeners and state), prints a ready line, runs the drain's control loop on the main
//! thread, and stops cleanly on SIGINT/SIGTERM. A shard thread that panics ends the process
//! ([`crate::net::contain`]).
//!
//! Must not: run anything a shard does (shards run on their own threads), or block a
//! shard (everything here happens before they start or on other threads).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use anyhow::Context;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{info, warn};

use crate::config;
use crate::config::Config;
use crate::machine::origins as origin_health;
use crate::machine::stats::Stats;
use crate::net::listeners::{self, bind_reuseport, claim_endpoint, Service};
use crate::net::mesh::Mesh;
use crate::net::{arena, clock, contain, mesh, zerocopy};
use crate::node::{drain, registry, sign, upgrade};
use crate::serve::listen;
use crate::shard::{self, ShardHandle};
use crate::upstream::predecessor;

/// What a shard reports once its listeners are up.
type Ready = Result<(usize, &'static str), String>;

/// Runs the engine until SIGINT/SIGTERM (or `edge-engine sign …`, `edge-engine
/// convert-config OLD`).
pub fn run() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("sign") => return sign::run(std::env::args().skip(1)),
        Some("convert-config") => return config::convert::run(std::env::args().skip(2)),
        _ => {}
    }
    let loaded = config::Loaded::from_argv(std::env::args().collect())?;
    let args = &loaded.args;
    let config = args.validate()?;
    if args.check {
        print!("{}", loaded.describe(&config));
        // Only --check looks names up: a start is not held up by a slow resolver (the
        // origin prober says what it finds, on /healthz).
        let resolves = |host: &str, port: u16| {
            std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .is_ok_and(|mut a| a.next().is_some())
        };
        for w in config::warnings(&config, resolves) {
            println!("warning: {w}");
        }
        return Ok(());
    }
    for w in config::warnings(&config, |_, _| true) {
        warn!("{w}");
    }
    let config = Arc::new(config);
    let shards = config.shards();

    // Every shard listens on every endpoint. A successor (--upgrade-from) takes the
    // running engine's sockets and deals them out to its shards; otherwise shard 0's are
    // bound here, so that port 0 resolves once, and the other shards bind the result.
    let mut wanted = vec![(Service::Rtmp, config.rtmp), (Service::Http, config.http)];
    wanted.extend(config.rtmps.map(|a| (Service::Rtmps, a)));
    wanted.extend(config.https.map(|a| (Service::Https, a)));
    let inherited = match &config.upgrade_from {
        Some(path) => Some(upgrade::receive(path)?),
        None => None,
    };
    let mut given: Vec<Vec<(Service, std::net::TcpListener)>> =
        (0..shards).map(|_| Vec::new()).collect();
    let mut endpoints = Vec::new();
    let mut endpoints_udp: Vec<String> = Vec::new();
    // Held until the process exits: no other engine claims these addresses meanwhile.
    let mut port_locks = Vec::new();
    let mut inherited = inherited.map(|mut i| {
        let listeners = std::mem::take(&mut i.listeners);
        (i, listeners)
    });
    for (service, addr) in wanted {
        let taken: Vec<_> = match &mut inherited {
            Some((_, ls)) => {
                let (mine, rest) = std::mem::take(ls)
                    .into_iter()
                    .partition(|(s, _, _)| *s == service);
                *ls = rest;
                mine
            }
            None => Vec::new(),
        };
        if let Some((_, at, _)) = taken.first() {
            if addr.port() != 0 && *at != addr {
                warn!(service = service.name(), flag = %addr, inherited = %at, "upgrade: serving the inherited address, not the flag's");
            }
            endpoints.push((service, *at));
            info!(service = service.name(), %at, sockets = taken.len(), "upgrade: listening sockets taken over");
            for (i, (_, _, l)) in taken.into_iter().enumerate() {
                given[i % shards].push((service, l));
            }
        } else {
            let (l, lock) = claim_endpoint(service, addr)?;
            port_locks.extend(lock);
            endpoints.push((service, l.local_addr()?));
            given[0].push((service, l));
        }
    }
    // HTTP/3: shard 0's UDP socket, bound here so that port 0 resolves once.
    let mut http3 = None;
    if let Some(addr) = config.http3 {
        let (socket, lock) = listeners::claim_udp(addr, inherited.is_some())?;
        port_locks.extend(lock);
        let at = socket.local_addr()?;
        endpoints_udp.push(format!("http3={at}"));
        // HTTP and HTTPS responses name it, for a day: browsers upgrade by themselves.
        edge_core::http::announce_http3(at.port(), 86_400);
        http3 = Some((at, socket));
    }
    if let Some((_, rest)) = &inherited {
        for (service, at, _) in rest {
            warn!(service = service.name(), %at, "upgrade: this configuration does not serve an inherited listener; closing it");
        }
    }
    let inherited = inherited.map(|(i, _)| i);
    // A successor origin pulls the streams its predecessor still holds from the relay.
    let predecessor = inherited
        .as_ref()
        .filter(|_| !config.is_edge())
        .and_then(|i| {
            let relay = i.relay?;
            info!(%relay, streams = i.streams.len(), "upgrade: streams whose publishers stay on the predecessor are pulled from its relay");
            Some(Arc::new(predecessor::Predecessor::new(
                relay,
                i.streams.iter().cloned(),
            )))
        });
    // An origin that can be upgraded keeps a relay for its successor: RTMP on loopback,
    // accepted by shard 0, never handed over, open while it drains.
    let mut relay = if config.upgrade_socket.is_some() && !config.is_edge() {
        let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .context("binding the upgrade relay on loopback")?;
        l.set_nonblocking(true)?;
        Some(l)
    } else {
        None
    };

    let mesh = Arc::new(Mesh::new(shards, config.mesh_queue_len));
    let stats = Arc::new(Stats::new(shards));
    if let Some(l) = &relay {
        let _ = stats.control.relay_addr.set(l.local_addr()?);
    }
    if let Some(&(_, mut at)) = endpoints.iter().find(|(s, _)| *s == Service::Http) {
        if at.ip().is_unspecified() {
            at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = stats.http_addr.set(at);
    }
    let origins: Arc<[origin_health::OriginHealth]> = config
        .origins
        .iter()
        .map(|o| {
            let egress = config.rtmp_origin_path(o).map(|p| p.egress.clone());
            let (url, host) = (o.to_string(), o.host.clone());
            origin_health::OriginHealth::new(url, host, o.port, egress.unwrap_or_default())
        })
        .chain(config.hls_origins.iter().map(|o| {
            let egress = config.http_origin_path(&o.host, o.port, o.tls);
            let egress = egress.map(|p| p.egress.clone()).unwrap_or_default();
            origin_health::OriginHealth::new(o.to_string(), o.host.clone(), o.port, egress)
        }))
        .collect();
    let _ = stats.origins.set(Arc::clone(&origins));
    origin_health::start(origins).context("starting the origin prober")?;
    let clock = clock::Clock::start();
    let limits = config.connection_limits;
    let admission = (limits != edge_core::admission::Limits::default()).then(|| {
        Arc::new(std::sync::Mutex::new(edge_core::admission::Admission::new(
            limits,
        )))
    });
    let registry = match &config.registry {
        None => None,
        Some(r) => {
            let addr = |want: Service| endpoints.iter().find(|(s, _)| *s == want).map(|e| e.1);
            let (rtmp, http) = r.advertised(
                addr(Service::Rtmp).unwrap_or(config.rtmp),
                addr(Service::Http).unwrap_or(config.http),
            );
            let role = if config.is_edge() {
                edge_core::cluster::Role::Edge
            } else {
                edge_core::cluster::Role::Origin
            };
            info!(node = %r.node_id, role = role.as_str(), %rtmp, %http, host = %r.host, port = r.port, "registry: joining the cluster");
            let me = edge_core::cluster::NodeRecord::new(&r.node_id, role, &rtmp, &http);
            Some(
                registry::start(r, me, shards, Arc::clone(&stats))
                    .context("starting the registry threads")?,
            )
        }
    };
    let (shard_registries, registry_status, leaver): (Vec<_>, _, _) = match registry {
        Some((handles, status, leaver)) => (
            handles.into_iter().map(Some).collect(),
            Some(status),
            Some(leaver),
        ),
        None => (vec![None; shards], None, None),
    };
    if let Some(status) = registry_status {
        let _ = stats.registry.set(status);
    }
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let mut threads = Vec::with_capacity(shards);
    for ((id, registry), listeners) in shard_registries.into_iter().enumerate().zip(given) {
        let ctx = ShardCtx {
            id,
            config: Arc::clone(&config),
            mesh: Arc::clone(&mesh),
            stats: Arc::clone(&stats),
            clock,
            endpoints: endpoints.clone(),
            listeners,
            ready: ready_tx.clone(),
            admission: admission.clone(),
            registry,
            relay: if id == 0 { relay.take() } else { None },
            predecessor: predecessor.clone(),
            http3: http3.as_ref().map(|(at, _)| *at),
            udp: if id == 0 {
                http3.as_mut().and_then(|(_, s)| s.try_clone().ok())
            } else {
                None
            },
        };
        let t = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || contain::shard_thread(id, || shard_thread(ctx)))
            .context("spawning shard thread")?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                mesh.request_shutdown();
                anyhow::bail!("a shard failed to start: {e}");
            }
            Err(_) => anyhow::bail!("a shard thread exited during start-up"),
        }
    }
    let listening: Vec<String> = endpoints
        .iter()
        .map(|(s, a)| format!("{}={a}", s.name()))
        .chain(endpoints_udp)
        .collect();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    let (sig_tx, sig_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("edge-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig_tx.send(sig).is_err() {
                    return;
                }
            }
        })
        .context("spawning the signal thread")?;
    if let Some(i) = inherited {
        let from = i.from.display().to_string();
        match i.confirm() {
            Ok(pid) => {
                info!(predecessor = pid, %from, "upgrade: the predecessor drains");
                if let Some(p) = &predecessor {
                    p.watch(pid);
                }
            }
            Err(e) => warn!(%from, "upgrade: the predecessor did not confirm its drain: {e:#}"),
        }
    }
    if let Some(path) = &config.upgrade_socket {
        upgrade::serve(path, Arc::clone(&stats), config.upgrade_from.is_some())?;
    }
    info!(shards, listening = %listening.join(" "), "edge-engine ready");
    // One machine-readable line for scripts and tests.
    println!("edge-engine ready {} shards={shards}", listening.join(" "));

    // SIGTERM drains, SIGINT (or a second SIGTERM) stops at once, SIGHUP reloads.
    drain::run_control(&stats.control, &stats, config.drain, &sig_rx, || {
        // Read on this (the control) thread, never a shard; open sessions keep their keys.
        match &config.tls {
            Some(store) => match store.reload() {
                Ok(()) => info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => warn!("SIGHUP: TLS reload failed, keeping the old certificate: {e:#}"),
            },
            None => info!("SIGHUP: nothing to reload (no --tls-cert)"),
        }
    });
    mesh.request_shutdown();
    for t in threads {
        if t.join().is_err() {
            warn!("a shard thread panicked during shutdown");
        }
    }
    if let Some(l) = leaver {
        l.leave();
    }
    if let Some(path) = &config.upgrade_socket {
        // A successor has bound the path anew; otherwise it is ours to remove.
        if !stats.control.handed_over() {
            let _ = std::fs::remove_file(path);
        }
    }
    drop(port_locks);
    info!("stopped");
    Ok(())
}

struct ShardCtx {
    id: usize,
    config: Arc<Config>,
    mesh: Arc<Mesh>,
    stats: Arc<Stats>,
    clock: clock::Clock,
    /// What to listen on, with ports resolved.
    endpoints: Vec<(Service, SocketAddr)>,
    /// Listeners bound or inherited by [`run`]; the shard binds any endpoint missing here.
    listeners: Vec<(Service, std::net::TcpListener)>,
    ready: mpsc::Sender<Ready>,
    admission: Option<Arc<std::sync::Mutex<edge_core::admission::Admission>>>,
    registry: Option<crate::machine::registry::ShardRegistry>,
    /// HTTP/3's address (port resolved), and shard 0's socket bound by [`run`].
    http3: Option<SocketAddr>,
    udp: Option<std::net::UdpSocket>,
    /// Shard 0's relay listener (an origin with --upgrade-socket).
    relay: Option<std::net::TcpListener>,
    /// The predecessor whose streams are pulled from its relay (a successor origin).
    predecessor: Option<Arc<predecessor::Predecessor>>,
}

fn shard_thread(ctx: ShardCtx) {
    let cpu = ctx.config.cpus[ctx.id];
    if let Some(cpu) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            warn!(
                shard = ctx.id,
                cpu, "could not pin to CPU; running unpinned"
            );
        }
    }
    ctx.stats.shards[ctx.id]
        .cpu
        .store(cpu.map_or(u64::MAX, |c| c as u64), Ordering::Relaxed);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    ctx.stats.shards[ctx.id]
        .tid
        .store(u64::try_from(tid).unwrap_or(0), Ordering::Relaxed);
    let entries = ctx.config.uring_entries;
    // io_uring first; if the ring cannot be built (RLIMIT_MEMLOCK → ENOMEM, seccomp → EPERM,
    // old kernel) fall back to the epoll driver and say so.
    let uring = if monoio::utils::detect_uring() {
        // A zero-copy shard makes plain system calls on its data path (vmsplice, splice);
        // with the default ring each of them runs the ring's pending completions on its way
        // out of the kernel. DEFER_TASKRUN leaves them to the runtime's own wait: measured
        // with wrk at 64 KB, zero-copy went from 0.82x to 1.07x of writev's requests/s
        // (docs/ARCHITECTURE.md, the zero-copy record). Kernels before 6.1 refuse it: then the default ring.
        let defer = ctx.config.zero_copy && zerocopy::probe_kernel().is_ok();
        let build = |defer: bool| {
            let mut urb = io_uring::IoUring::builder();
            if defer {
                urb.setup_single_issuer().setup_defer_taskrun();
            }
            RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(entries)
                .uring_builder(urb)
                .enable_timer()
                .build()
        };
        match build(defer) {
            Ok(rt) => Ok(rt),
            Err(e) if defer => {
                info!(shard = ctx.id, "io_uring without DEFER_TASKRUN ({e})");
                build(false).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    } else {
        Err("io_uring not supported by this kernel or blocked".to_string())
    };
    match uring {
        Ok(mut rt) => {
            ctx.stats.shards[ctx.id].driver.store(1, Ordering::Relaxed);
            rt.block_on(shard_main(ctx, "io_uring"));
        }
        Err(why) => {
            warn!(
                shard = ctx.id,
                "io_uring unavailable ({why}); using the legacy epoll driver"
            );
            match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
                Ok(mut rt) => {
                    ctx.stats.shards[ctx.id].driver.store(2, Ordering::Relaxed);
                    rt.block_on(shard_main(ctx, "legacy"));
                }
                Err(e) => {
                    let _ = ctx
                        .ready
                        .send(Err(format!("shard {}: no runtime: {e}", ctx.id)));
                }
            }
        }
    }
}

async fn shard_main(mut ctx: ShardCtx, driver: &'static str) {
    let mut listeners = std::mem::take(&mut ctx.listeners);
    let relay = match ctx.relay.take().map(monoio::net::TcpListener::from_std) {
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            let _ = ctx
                .ready
                .send(Err(format!("shard {}: the upgrade relay: {e}", ctx.id)));
            return;
        }
        None => None,
    };
    for (service, addr) in &ctx.endpoints {
        if listeners.iter().any(|(s, _)| s == service) {
            continue;
        }
        match bind_reuseport(*addr) {
            Ok(l) => listeners.push((*service, l)),
            Err(e) => {
                let _ = ctx
                    .ready
                    .send(Err(format!("shard {}: listening on {addr}: {e}", ctx.id)));
                return;
            }
        }
    }
    let listeners = match listeners
        .into_iter()
        .map(|(service, l)| {
            ctx.stats
                .control
                .add_listener(service, std::os::fd::AsRawFd::as_raw_fd(&l));
            monoio::net::TcpListener::from_std(l).map(|l| (service, l))
        })
        .collect::<std::io::Result<Vec<_>>>()
    {
        Ok(l) => l,
        Err(e) => {
            let _ = ctx
                .ready
                .send(Err(format!("shard {}: listeners: {e}", ctx.id)));
            return;
        }
    };
    let arena = match arena::Arena::new(ctx.config.cache_bytes_per_shard) {
        Ok(a) => a,
        Err(e) => {
            let _ = ctx
                .ready
                .send(Err(format!("shard {}: segment arena: {e}", ctx.id)));
            return;
        }
    };
    info!(
        shard = ctx.id,
        backing = arena.backing.name(),
        mib = (arena.chunks() * arena::CHUNK_BYTES) >> 20,
        "segment arena mapped"
    );
    ctx.stats.shards[ctx.id]
        .cache_backing
        .store(arena.backing.code(), Ordering::Relaxed);
    let _ = ctx.stats.arenas[ctx.id].set(Arc::clone(&arena));
    let quic_mesh = Arc::clone(&ctx.mesh);
    // A successor's streams that its predecessor still holds: pulled before it accepts.
    let inherited: Vec<edge_core::StreamKey> = ctx
        .predecessor
        .as_ref()
        .map(|p| p.streams().cloned().collect())
        .unwrap_or_default();
    let shard = ShardHandle::start(
        mesh::ShardId(ctx.id),
        ctx.config,
        ctx.mesh,
        ctx.stats,
        ctx.clock,
        arena,
        shard::MachineWide {
            admission: ctx.admission,
            registry: ctx.registry,
            predecessor: ctx.predecessor,
        },
    );
    info!(
        shard = ctx.id,
        cpu = %shard.config().cpus[ctx.id].map_or_else(|| "unpinned".to_string(), |c| c.to_string()),
        driver,
        "shard started"
    );
    // With --upgrade-socket, a watcher cancels the accepts once a successor holds the
    // listeners.
    let canceller = shard
        .config()
        .upgrade_socket
        .is_some()
        .then(monoio::io::Canceller::new);
    if let Some(relay) = relay {
        monoio::spawn(listen::accept_loop(
            shard.clone(),
            relay,
            Service::Relay,
            None,
        ));
    }
    // Every accept loop's handle to the one canceller the watcher fires.
    let cancel = canceller.as_ref().map(|c| c.handle());
    if let Some(canceller) = canceller {
        monoio::spawn(upgrade::watch(shard.clone(), canceller));
    }
    if let Some(addr) = ctx.http3 {
        let started = match ctx.udp.take() {
            Some(s) => Ok(s),
            None => crate::net::quic::bind_udp(addr),
        }
        .map_err(anyhow::Error::from)
        .and_then(|socket| shard.start_quic(socket, quic_mesh));
        match started {
            Ok(quic) => {
                monoio::spawn(crate::serve::h3::serve_requests(shard.clone(), quic));
            }
            Err(e) => {
                let _ = ctx
                    .ready
                    .send(Err(format!("shard {}: HTTP/3 on {addr}: {e:#}", ctx.id)));
                return;
            }
        }
    }
    if let Some(addr) = shard.config().webrtc_udp {
        // Shard N on the port plus N (port 0: an ephemeral one each). SO_REUSEPORT, as for
        // the other listeners, so that an upgrade's successor can bind the same ports.
        let port = if addr.port() == 0 {
            0
        } else {
            addr.port().saturating_add(ctx.id as u16)
        };
        let at = SocketAddr::new(addr.ip(), port);
        let started = crate::net::udp::bind_udp(at)
            .map_err(anyhow::Error::from)
            .and_then(|socket| shard.start_webrtc(socket));
        match started {
            Ok(endpoint) => {
                info!(
                    shard = ctx.id,
                    port = endpoint.port(),
                    "WebRTC (WHEP) media on UDP"
                );
            }
            Err(e) => {
                let _ = ctx
                    .ready
                    .send(Err(format!("shard {}: WebRTC on {at}: {e:#}", ctx.id)));
                return;
            }
        }
    }
    // Accepting (and, last, telling the main thread this shard is ready) waits for the
    // inherited streams; the mesh and the pulls run meanwhile.
    let (id, ready) = (ctx.id, ctx.ready);
    monoio::spawn({
        let shard = shard.clone();
        async move {
            if !inherited.is_empty() {
                let warm = upgrade::warm(&shard, &inherited).await;
                info!(
                    shard = id,
                    ready = warm,
                    of = inherited.len(),
                    "upgrade: inherited streams with a playlist here; accepting"
                );
            }
            for (service, l) in listeners {
                monoio::spawn(listen::accept_loop(
                    shard.clone(),
                    l,
                    service,
                    cancel.clone(),
                ));
            }
            let _ = ready.send(Ok((id, driver)));
        }
    });
    test_hooks(id);
    // Returns on shutdown; dropping the runtime then closes every socket of this shard.
    shard.run_dispatcher().await;
}

/// Hooks for the end-to-end tests, off unless their environment variable is set.
/// `EDGE_ENGINE_TEST_PANIC_SHARD=N`: shard N panics in a task of its own 200 ms after start,
/// outside any connection, as a bug in shard-wide state would.
fn test_hooks(shard: usize) {
    let panic_shard = std::env::var("EDGE_ENGINE_TEST_PANIC_SHARD").ok();
    if panic_shard.and_then(|v| v.parse::<usize>().ok()) == Some(shard) {
        monoio::spawn(async move {
            monoio::time::sleep(std::time::Duration::from_millis(200)).await;
            panic!("EDGE_ENGINE_TEST_PANIC_SHARD: shard {shard} panics on purpose");
        });
    }
}
