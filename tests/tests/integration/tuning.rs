//! The host tuning scripts' own tests (bats over fake sysfs/procfs trees, and shellcheck),
//! run as part of `cargo test --workspace`. `.ci/run` installs bats and shellcheck.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn tuning_scripts_pass_their_bats_suite() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuning/tests");
    let out = Command::new("bats")
        .arg("--tap")
        .arg(&dir)
        .output()
        .expect("bats must be installed (apt-get install bats; .ci/run does it)");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "bats failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = text.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(
        passed >= 10,
        "expected the full suite, {passed} passed:\n{text}"
    );
}
