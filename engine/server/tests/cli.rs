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
        "--max-connections",
        "--max-connections-per-ip",
        "--play-auth",
        "--publish-auth",
        "--token-key",
        "--token-param",
        "--token-format",
        "--token-alg",
        "--secure-link-md5",
        "--token-skew-s",
        "--on-publish",
        "--on-unpublish",
        "--on-play",
        "--on-stop",
        "--hook-timeout-ms",
        "--play-hook-failure",
        "--hook-grant-ms",
        "--node-id",
        "--upstream-sign-key",
        "--upstream-sign-ttl-s",
        "--https",
        "--rtmps",
        "--tls-cert",
        "--tls-key",
        "--tls-handshake-timeout-ms",
        "--upstream-ca",
        "--check",
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag));
        assert!(line.is_some(), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn sign_help_is_printed_once_and_exits_0_and_bad_usage_exits_2() {
    let out = engine().args(["sign", "--help"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    assert_eq!(help.matches("Usage:").count(), 1, "{help}");
    for flag in [
        "--key",
        "--acl",
        "--url",
        "--ttl",
        "--base-url",
        "--secure-link-md5",
    ] {
        assert!(help.contains(flag), "sign --help lacks {flag}");
    }
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = engine().args(["sign", "--key", "00"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--ttl is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl"));
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
        .args(["--check", "--origin", "ftp://127.0.0.1/live"])
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
fn access_flags_are_checked_together_and_never_printed() {
    let refused = |args: &[&str], names: &str| {
        let out = engine().arg("--check").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} should be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(names), "{args:?}: {err}");
    };
    refused(&["--play-auth", "token"], "--token-key");
    refused(&["--publish-auth", "hook"], "--on-publish");
    refused(&["--play-auth", "tokens"], "--play-auth");
    refused(
        &["--play-auth", "token", "--token-key", "xyz"],
        "--token-key",
    );
    refused(&["--https", "127.0.0.1:0"], "--tls-cert");
    refused(&["--on-play", "https://h/x"], "--on-play");
    refused(
        &["--play-auth", "token", "--token-format", "secure-link"],
        "--secure-link-md5",
    );
    let out = engine()
        .args([
            "--check",
            "--play-auth",
            "token",
            "--play-auth",
            "free=none",
            "--publish-auth",
            "hook",
            "--on-publish",
            "http://127.0.0.1:9/hook",
            "--token-key",
            "00112233445566778899aabbccddeeff",
            "--upstream-sign-key",
            "ffeeddccbbaa99887766554433221100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("free"), "{text}");
    for secret in ["00112233", "ffeeddcc", "[0, 17, 34"] {
        assert!(!text.contains(secret), "--check printed a key: {text}");
    }
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
    let cpus = text
        .split_once("cpus: [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_default();
    assert_eq!(
        cpus.matches("Some(").count() + cpus.matches("None").count(),
        2,
        "two shards: {text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
