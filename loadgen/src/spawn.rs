//! `--spawn`: start the workspace's edge-engine on loopback, wait for it, and report its peak
//! RSS and CPU time when the run is over.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running engine.
pub struct Spawned {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
}

/// `$EDGE_ENGINE_BIN`, or `edge-engine` next to this executable (cargo's target dir).
pub fn engine_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDGE_ENGINE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable dir")?;
    for candidate in [dir.join("edge-engine"), dir.join("../edge-engine")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no edge-engine next to {}: build it (cargo build -p edge-engine) or set EDGE_ENGINE_BIN",
        exe.display()
    )
}

impl Spawned {
    pub fn start(extra_args: &str) -> anyhow::Result<Spawned> {
        let bin = engine_path()?;
        let mut child = Command::new(&bin)
            .args(["--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra_args.split_whitespace())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("engine stdout")?).read_line(&mut line)?;
        let field = |name: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .with_context(|| format!("engine did not start: {line:?}"))?
                .parse()
                .context("engine address")
        };
        let spawned = Spawned {
            rtmp: field("rtmp")?,
            http: field("http")?,
            child,
        };
        spawned.wait_healthy()?;
        Ok(spawned)
    }

    fn wait_healthy(&self) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(self.http) {
                let _ =
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("engine /healthz never answered 200")
    }

    /// (peak RSS in KiB, CPU seconds) so far.
    pub fn usage(&self) -> (u64, f64) {
        let pid = self.child.id();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .map(str::to_string)
            })
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the command name in parentheses; utime and stime are 14 and 15.
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks: u64 =
                    f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
                // SAFETY: sysconf has no memory effects.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
                Some(ticks as f64 / hz)
            })
            .unwrap_or(0.0);
        (rss, cpu)
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
