//! A `redis-server` of the test's own (Debian's package; `.ci/run` installs it), on a free
//! loopback port, plain or TLS-only with a password, and `redis-cli` against it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, TestCerts};

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of our own, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// TLS and password arguments for redis-cli, and the URL's scheme and login.
    cli_args: Vec<String>,
    url_prefix: String,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        Self::spawn(
            &["--port", &port.to_string()],
            port,
            Vec::new(),
            "redis://".into(),
        )
    }

    /// TLS only (`--tls-port`, no plain port), with a password: `rediss://:PASSWORD@…`.
    pub fn start_tls(certs: &TestCerts, password: &str) -> Redis {
        let port = free_port();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let server = [
            "--port".to_string(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&certs.cert),
            "--tls-key-file".into(),
            path(&certs.key),
            "--tls-ca-cert-file".into(),
            path(&certs.ca),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            password.into(),
        ];
        let server: Vec<&str> = server.iter().map(String::as_str).collect();
        let cli = vec![
            "--tls".to_string(),
            "--cacert".into(),
            path(&certs.ca),
            "-a".into(),
            password.into(),
            "--no-auth-warning".into(),
        ];
        Self::spawn(&server, port, cli, format!("rediss://:{password}@"))
    }

    fn spawn(server: &[&str], port: u16, cli_args: Vec<String>, url_prefix: String) -> Redis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(server)
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let r = Redis {
            child: Some(child),
            port,
            cli_args,
            url_prefix,
        };
        eventually("redis-server to answer", Duration::from_secs(10), || {
            r.cli(&["PING"]) == "PONG"
        });
        r
    }

    pub fn url(&self) -> String {
        format!("{}127.0.0.1:{}", self.url_prefix, self.port)
    }

    /// `redis-cli ARGS`, its output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
