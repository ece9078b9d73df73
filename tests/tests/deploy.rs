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
        &["--config", "deploy/systemd/edge-engine.conf", "--check"],
    );
    assert!(ok, "{text}");
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
