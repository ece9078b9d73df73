//! The command line: every flag is documented in `--help`, `--check` validates without
//! serving, and bad values fail with exit code 2 and a message naming the flag.

use std::process::Command;

fn engine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-engine"))
}

#[test]
fn help_documents_every_flag() {
    let out = engine().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--cores",
        "--cpu-list",
        "--rtmp",
        "--http",
        "--origin",
        "--max-queue-bytes",
        "--slow-viewer-ms",
        "--republish-grace-ms",
        "--play-wait-ms",
        "--idle-timeout-ms",
        "--gop-max-frames",
        "--gop-max-bytes",
        "--hls-segment-ms",
        "--hls-window",
        "--cache-mb",
        "--http-writes",
        "--mesh-queue-len",
        "--uring-entries",
        "--check",
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag));
        assert!(line.is_some(), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn check_validates_and_exits() {
    let out = engine()
        .args(["--check", "--cores", "3", "--cpu-list", "0-2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok"));
}

#[test]
fn bad_values_exit_2_with_a_reason() {
    let out = engine()
        .args(["--check", "--cores", "2", "--cpu-list", "0-3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cpu-list"));
    let out = engine()
        .args(["--check", "--origin", "http://127.0.0.1/live"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--origin"));
    let out = engine()
        .args(["--check", "--origin", "rtmp://127.0.0.1/live"])
        .output()
        .unwrap();
    assert!(out.status.success(), "an RTMP origin is edge mode");
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("edge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("engine.conf");
    std::fs::write(&file, "# test\ncores = 5\nplay_wait_ms = 1234\n").unwrap();
    let out = engine()
        .args([
            "--check",
            "--config",
            file.to_str().unwrap(),
            "--cores",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("play_wait_ms: 1234"), "{text}");
    assert_eq!(
        text.matches("Some(").count() + text.matches("None,").count(),
        2,
        "two shards: {text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
