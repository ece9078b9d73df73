//! The engine under test: `edge-engine` started on ephemeral loopback ports, its counters
//! (`/metrics`) read back, and stopped on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::*;

/// A running engine, stopped with SIGTERM on drop.
pub struct Engine {
    child: Option<Child>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The `--https` and `--rtmps` listeners, when asked for.
    pub https: Option<SocketAddr>,
    pub rtmps: Option<SocketAddr>,
    /// The `--http3` endpoint (UDP), when asked for.
    pub http3: Option<SocketAddr>,
    /// Where its stderr goes, for engines started with [`Engine::start_logged`].
    log: Option<PathBuf>,
}

impl Engine {
    /// Starts `edge-engine --rtmp 127.0.0.1:0 --http 127.0.0.1:0 --play-wait-ms 30000 ARGS`
    /// and waits for its ready line. Many scenarios attach their players before the publisher
    /// starts, so players wait as long as they did before the default became 3 s; a test of
    /// the play-wait passes its own (ARGS come last and win).
    pub fn start(args: &[&str]) -> Engine {
        Self::start_with_env(args, &[])
    }

    /// [`Engine::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Engine {
        Self::spawn(args, env, None)
    }

    /// [`Engine::start`] at log level `level`, with stderr kept for [`Engine::log`].
    pub fn start_logged(args: &[&str], level: &str) -> Engine {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "edge-engine-test-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Self::spawn(args, &[("RUST_LOG", level)], Some(path))
    }

    /// Everything the engine logged so far (engines from [`Engine::start_logged`]).
    pub fn log(&self) -> String {
        let path = self
            .log
            .as_ref()
            .expect("an engine started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], log: Option<PathBuf>) -> Engine {
        let stderr = match &log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("creating the engine log")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(engine_bin())
            .args(["--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--play-wait-ms", "30000"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("EDGE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning edge-engine");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading ready line");
        let optional = |name: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(|a| a.parse().unwrap())
        };
        let field = |name: &str| -> SocketAddr {
            optional(name).unwrap_or_else(|| panic!("no {name}= in ready line {line:?}"))
        };
        let (rtmp, http) = (field("rtmp"), field("http"));
        Engine {
            child: Some(child),
            rtmp,
            http,
            https: optional("https"),
            rtmps: optional("rtmps"),
            http3: optional("http3"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.http)
    }

    /// Counters by (name without `edge_`, shard); a series with labels besides the shard is
    /// named with them: `access_denied_total{action="play",reason="expired"}`.
    pub fn metrics(&self) -> Metrics {
        self.try_metrics().unwrap()
    }

    /// [`Engine::metrics`], with the error of a request the engine refused or closed (at its
    /// connection limit, for one) instead of a panic.
    pub fn try_metrics(&self) -> std::io::Result<Metrics> {
        let body = try_http_get(self.http, "/metrics")?.body;
        Ok(Metrics::parse(&String::from_utf8_lossy(&body)))
    }

    /// Polls the counters until `pred` holds; panics with the last counters after `timeout`.
    /// A /metrics request the engine refuses (a test that fills its connection limit) is
    /// retried like a false `pred`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = match self.try_metrics() {
                Ok(m) if pred(&m) => return m,
                other => other,
            };
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {m:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (an origin dying without a word), then waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the engine to exit by itself; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`, which starts a drain) and returns at once.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }

    /// Whether the process has exited (its status is then taken).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    /// SIGINT (stop at once, no drain), then the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        child.wait().unwrap()
    }

    /// SIGTERM (a drain), then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().unwrap()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = &self.log {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A counters snapshot.
#[derive(Debug)]
pub struct Metrics(pub HashMap<(String, usize), u64>);

impl Metrics {
    /// Parses a `/metrics` body.
    pub fn parse(text: &str) -> Metrics {
        let mut m = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("edge_") else {
                continue;
            };
            let Some((name, tail)) = rest.split_once("{shard=\"") else {
                continue;
            };
            let Some((shard, tail)) = tail.split_once('"') else {
                continue;
            };
            let Some(value) = tail.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            let name = match tail.strip_prefix(',').and_then(|t| t.split_once('}')) {
                Some((labels, _)) => format!("{name}{{{labels}}}"),
                None => name.to_string(),
            };
            if let Ok(shard) = shard.parse::<usize>() {
                m.insert((name, shard), value);
            }
        }
        Metrics(m)
    }

    pub fn get(&self, name: &str, shard: usize) -> u64 {
        self.0.get(&(name.to_string(), shard)).copied().unwrap_or(0)
    }

    pub fn sum(&self, name: &str) -> u64 {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}
