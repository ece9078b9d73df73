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
    let file = dir.join("engine.toml");
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
    let line = |name: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("play-wait-ms"),
        "play-wait-ms = 1234 file line 3",
        "{text}"
    );
    assert_eq!(line("cores"), "cores = 2 command line", "{text}");
    assert!(
        line("shards").starts_with("shards = 2 (CPUs: "),
        "two shards: {text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Regression: a bad value in a config file printed clap's text with `For more information,
/// try '--help'` glued into it, an unknown key named neither the file nor the line, and
/// every start-up error was printed twice (a log line, then the same text).
#[test]
fn config_file_errors_name_the_file_line_and_key_once() {
    let dir = std::env::temp_dir().join(format!("edge-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("engine.toml");
    for (text, expect) in [
        (
            "cores = 2\nhls_window = \"many\"\n",
            ":2: hls_window: invalid value 'many'",
        ),
        ("# x\nhls_windows = 3\n", ":2: hls_windows: no such setting"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = engine()
            .args(["--check", "--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}{expect}", file.display())),
            "{err}"
        );
        assert!(!err.contains("--help"), "{err}");
        assert_eq!(err.lines().count(), 1, "printed once: {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--check` prints the settings readably (it was an 87-line Rust `Debug` dump) and warns of
/// what is valid but probably not meant: more shards than CPUs, an origin host that does not
/// resolve.
#[test]
fn check_prints_settings_by_topic_and_warns() {
    let out = engine()
        .args([
            "--check",
            "--cores",
            "64",
            "--origin",
            "rtmp://no-such-host.invalid/live",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("configuration ok\n"), "{text}");
    assert!(!text.contains("Some("), "{text}");
    for heading in [
        "[Listening and shards]",
        "[Edge: origins and pulls]",
        "[Derived]",
    ] {
        assert!(text.contains(heading), "{heading}: {text}");
    }
    // A play for a stream nobody publishes is answered after 3 s (it waited 30 s).
    let play_wait = text
        .lines()
        .find(|l| l.starts_with("play-wait-ms "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    assert_eq!(
        play_wait.as_deref(),
        Some("play-wait-ms = 3000 default"),
        "{text}"
    );
    assert!(text.contains("warning: 64 shards on a host with"), "{text}");
    assert!(
        text.contains("warning: origin rtmp://no-such-host.invalid:1935/live: no-such-host.invalid does not resolve"),
        "{text}"
    );
}

/// `--help` is grouped by topic with lines that fit a terminal, names the `sign` subcommand
/// and the README; the `--origin` help says what an HTTP origin's pull feeds.
#[test]
fn help_is_grouped_by_topic_and_names_sign() {
    let out = engine().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for heading in [
        "Listening and shards:",
        "Edge: origins and pulls:",
        "Access control (tokens, hooks):",
        "Drain and upgrade:",
    ] {
        assert!(
            help.lines().any(|l| l == heading),
            "{heading} missing:\n{help}"
        );
    }
    let longest = help.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= 100, "a {longest}-character line");
    assert!(help.contains("edge-engine sign --help"), "{help}");
    assert!(help.contains("README.md"), "{help}");
    assert!(help.contains("RTMP and HTTP-FLV viewers are fed"), "{help}");
    assert!(!help.contains("HLS viewers only"), "{help}");
}

/// Logs written to a file or a pipe carry no colour codes, and fields read as values (they
/// read `cpu=Some(1)`).
#[test]
fn logs_to_a_pipe_are_plain() {
    let mut child = engine()
        .args([
            "--cores",
            "1",
            "--cpu-list",
            "0",
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(ready.starts_with("edge-engine ready"), "{ready}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("shard started"), "{log}");
    assert!(log.contains("cpu=0"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a pipe: {log}");
    assert!(!log.contains("Some("), "{log}");
}
