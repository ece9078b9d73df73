//! The deployment files in `deploy/`, validated with the tools operators use: `yamllint`,
//! `systemd-analyze verify` on the unit (pointed at the binary cargo built), the Kubernetes API
//! schemas (`kubernetes-validate --strict`), and `deploy/check.py` for what no schema covers
//! (KEDA's documented fields, grace periods that cover the drain, probes on /readyz and
//! /healthz). `.ci/run` installs the tools; a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `kubernetes-validate`: `$KUBERNETES_VALIDATE`, the virtualenv `.ci/run` makes, or PATH.
fn kubernetes_validate() -> String {
    if let Ok(p) = std::env::var("KUBERNETES_VALIDATE") {
        return p;
    }
    let venv = root().join("target/tools/venv/bin/kubernetes-validate");
    if venv.is_file() {
        return venv.to_string_lossy().into_owned();
    }
    "kubernetes-validate".into()
}

#[test]
fn yamllint_passes_on_every_manifest() {
    let (ok, text) = run("yamllint", &["-s", "-c", "deploy/.yamllint", "deploy/"]);
    assert!(ok, "{text}");
}

#[test]
fn the_systemd_unit_verifies_and_its_configuration_is_valid() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/edge-engine.service")).unwrap();
    let engine = engine_bin();
    let dir = std::env::temp_dir().join(format!("edge-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("edge-engine.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/edge-engine", engine.to_str().unwrap()),
    )
    .unwrap();
    let (ok, text) = run("systemd-analyze", &["verify", path.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok && text.trim().is_empty(), "{text}");
    // The example configuration the unit reads is one the engine takes.
    let (ok, text) = run(
        engine.to_str().unwrap(),
        &["--config", "deploy/edge-engine.toml", "--check"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("drain-timeout-s"), "{text}");
}

/// `edge-engine ARGS` in the repository root with `env` added; its success and output.
fn engine_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(engine_bin())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `--check` line of setting `name`, spaces squeezed.
fn setting(report: &str, name: &str) -> String {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {report}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn settings_come_from_the_file_then_the_environment_then_the_flags() {
    let path = config_file(
        "precedence",
        "cores = 1
play_wait_ms = 5
hls_window = 3
slow_viewer_ms = 7
",
    );
    let (ok, text) = engine_with_env(
        &[
            "--config",
            path.to_str().unwrap(),
            "--check",
            "--play-wait-ms",
            "9",
        ],
        &[("EDGE_PLAY_WAIT_MS", "8"), ("EDGE_HLS_WINDOW", "4")],
    );
    assert!(ok, "{text}");
    assert_eq!(
        setting(&text, "play-wait-ms"),
        "play-wait-ms = 9 command line"
    );
    assert_eq!(
        setting(&text, "hls-window"),
        "hls-window = 4 environment EDGE_HLS_WINDOW"
    );
    assert_eq!(
        setting(&text, "slow-viewer-ms"),
        "slow-viewer-ms = 7 file line 4"
    );
    assert_eq!(
        setting(&text, "idle-timeout-ms"),
        "idle-timeout-ms = 30000 default"
    );
    // The file itself from the environment, and repeatable settings comma-separated there.
    let (ok, text) = engine_with_env(
        &["--check"],
        &[
            ("EDGE_CONFIG", path.to_str().unwrap()),
            ("EDGE_ORIGIN", "rtmp://a/live,rtmp://b/live"),
        ],
    );
    assert!(ok, "{text}");
    assert_eq!(setting(&text, "hls-window"), "hls-window = 3 file line 3");
    assert_eq!(
        setting(&text, "origin"),
        "origin = rtmp://a/live, rtmp://b/live environment EDGE_ORIGIN"
    );
    // A bad value in the environment is refused, naming the setting.
    let (ok, text) = engine_with_env(&["--check"], &[("EDGE_HLS_WINDOW", "many")]);
    assert!(
        !ok && text.contains("invalid value 'many' for '--hls-window <N>'"),
        "{text}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_config_error_names_the_file_line_and_key_and_the_old_form_converts() {
    let path = config_file(
        "unknown",
        "cores = 1

[apps.live]
hls_windows = 3
",
    );
    let (ok, text) = engine_with_env(&["--config", path.to_str().unwrap(), "--check"], &[]);
    let at = format!("{}:4: unknown field `hls_windows`", path.display());
    assert!(!ok && text.contains(&at), "{text}");
    let old = "# from an earlier release
rtmp = 0.0.0.0:1935
play_auth = token
               play_auth = free=none
token_key = 00ff
";
    std::fs::write(&path, old).unwrap();
    let (ok, text) = engine_with_env(&["--config", path.to_str().unwrap(), "--check"], &[]);
    assert!(!ok && text.contains("old `name = value` form"), "{text}");
    assert!(text.contains("edge-engine convert-config"), "{text}");
    let (ok, converted) = engine_with_env(&["convert-config", path.to_str().unwrap()], &[]);
    assert!(ok, "{converted}");
    std::fs::write(&path, &converted).unwrap();
    let (ok, text) = engine_with_env(&["--config", path.to_str().unwrap(), "--check"], &[]);
    assert!(ok, "{converted}\n{text}");
    assert_eq!(
        setting(&text, "play-auth"),
        "play-auth = token, free=none file line 3"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn the_example_config_names_every_setting() {
    let example = std::fs::read_to_string(root().join("deploy/edge-engine.toml")).unwrap();
    let (_, help) = engine_with_env(&["--help"], &[]);
    let mut missing = Vec::new();
    for long in help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '=']).next())
    {
        if ["help", "version", "check", "config"].contains(&long) {
            continue;
        }
        let key = long.replace('-', "_");
        let listed = example.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{key} ="))
        });
        if !listed {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "deploy/edge-engine.toml lacks {missing:?}"
    );
}

#[test]
fn the_kubernetes_manifests_match_the_api_schemas_and_the_drain() {
    let validate = kubernetes_validate();
    for file in ["redis.yaml", "origin.yaml", "edge.yaml", "hpa.yaml"] {
        let path = format!("deploy/k8s/{file}");
        let (ok, text) = run(&validate, &["--strict", &path]);
        assert!(ok, "{file}: {text}");
        assert!(text.contains("passed"), "{file}: {text}");
        assert!(!text.contains("WARN"), "{file}: {text}");
    }
    let (ok, text) = run("python3", &["deploy/check.py", "deploy"]);
    assert!(ok, "{text}");
}
