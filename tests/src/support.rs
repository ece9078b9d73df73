//! Finding the binaries and fixtures, waiting on a condition with a deadline, and running a
//! tool with one.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// The Python of the virtualenv `.ci/run` makes under `target/tools` (m3u8, aioquic), if
/// it is there.
pub fn venv_python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/venv/bin/python");
    venv.is_file().then_some(venv)
}

/// A fixture file in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Path of the engine binary: `$EDGE_ENGINE_BIN`, or the one cargo built beside this
/// executable (`target/<profile>/edge-engine`, also for test executables in `deps/`).
pub fn engine_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_ENGINE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable dir");
    let candidates = [
        dir.join("edge-engine"),
        dir.parent()
            .map(|d| d.join("edge-engine"))
            .unwrap_or_default(),
    ];
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "no edge-engine binary near {}: run the tests with `cargo test --workspace`, which builds it",
            exe.display()
        )
    })
}

/// Waits until `pred` holds, polling every 20 ms; panics naming `what` after `timeout`, so a
/// test that would hang fails with a message instead.
pub fn eventually(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of the loadgen binary, built beside the engine by `cargo test --workspace`.
pub fn loadgen_bin() -> PathBuf {
    let engine = engine_bin();
    let p = engine.with_file_name("loadgen");
    assert!(p.is_file(), "no loadgen binary at {}", p.display());
    p
}

/// Path of h3load (loadgen's HTTP/3 request load), built beside loadgen.
pub fn h3load_bin() -> PathBuf {
    let p = engine_bin().with_file_name("h3load");
    assert!(p.is_file(), "no h3load binary at {}", p.display());
    p
}

/// A loadgen run in the background, writing its JSON report to a file of its own.
pub struct LoadgenRun {
    child: KillOnDrop,
    report: PathBuf,
}

impl LoadgenRun {
    /// Starts loadgen with `args` and `--json` to a temporary file named after `name`.
    pub fn start(name: &str, args: &[&str]) -> LoadgenRun {
        let report =
            std::env::temp_dir().join(format!("{name}-loadgen-{}.json", std::process::id()));
        let child = Command::new(loadgen_bin())
            .args(args)
            .arg("--json")
            .arg(&report)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        LoadgenRun {
            child: KillOnDrop(child),
            report,
        }
    }

    /// Waits for it to end: its exit status and its report (empty when it wrote none).
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.0.wait().unwrap();
        let text = std::fs::read_to_string(&self.report).unwrap_or_default();
        let _ = std::fs::remove_file(&self.report);
        (status, text)
    }
}

/// Runs a command with a time limit and returns (status ok, stdout, stderr).
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> (bool, String, String) {
    let out = Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to `edge-NAME-PID.toml` in the temporary directory (a config file for an
/// engine this test process starts) and returns its path.
pub fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("edge-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}
