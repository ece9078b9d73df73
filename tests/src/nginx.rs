//! nginx with the rtmp module as a test origin, on free ports with its own directory: RTMP
//! only, or with `hls on` and its HLS directory served over HTTP. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::eventually;

pub struct Nginx {
    child: Child,
    pub port: u16,
    /// The HTTP port serving `/hls/` (an HLS origin).
    pub http_port: Option<u16>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// RTMP only (`application live { live on; }`).
    pub fn start(workers: usize) -> Nginx {
        Self::spawn(workers, false)
    }

    /// RTMP with `hls on` (2 s fragments), the fragments served at `http://…/hls/`.
    pub fn start_hls() -> Nginx {
        Self::spawn(1, true)
    }

    fn spawn(workers: usize, hls: bool) -> Nginx {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("edge-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("hls")).unwrap();
        // The workers (nobody, under a root master) write the fragments.
        let _ = Command::new("chmod")
            .args(["-R", "a+rwx"])
            .arg(&dir)
            .status();
        let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
        assert!(
            std::path::Path::new(module).exists(),
            "{module} missing: install nginx and libnginx-mod-rtmp (.ci/run does)"
        );
        let d = dir.display();
        let http_port = hls.then(free_port);
        let (app, http) = match http_port {
            None => (String::new(), String::new()),
            Some(hp) => (
                format!(
                    "hls on; hls_path {d}/hls; hls_fragment 2s; hls_playlist_length 12s; \
                     hls_cleanup on;"
                ),
                format!(
                    "http {{ access_log {d}/access.log; client_body_temp_path {d}/body; \
                     proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; \
                     uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; \
                     types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }} \
                     server {{ listen 127.0.0.1:{hp}; location /hls/ {{ alias {d}/hls/; \
                     add_header Cache-Control no-cache; }} }} }}\n"
                ),
            ),
        };
        let conf = format!(
            "load_module {module};\nworker_processes {workers};\nerror_log {d}/error.log;\n\
             pid {d}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
             application live {{ live on; {app} }} }} }}\n{http}"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let bin = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .unwrap_or("nginx");
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx must be installed (.ci/run installs it)");
        eventually("nginx to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_port.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
        });
        Nginx {
            child,
            port,
            http_port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }

    /// The HTTP address of the HLS directory's server.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        format!(
            "127.0.0.1:{}",
            self.http_port.expect("started with start_hls")
        )
        .parse()
        .unwrap()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of master and workers.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
