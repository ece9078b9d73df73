//! The reference docs against the binary, so they cannot drift: every Prometheus series the
//! engine exposes is in docs/METRICS.md (and every series listed there is exposed), and every
//! setting it takes (each flag, each `[apps.NAME]` and `[[origins]]` key) is in
//! docs/CONFIG.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::*;

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names in backquotes at the start of a Markdown table's rows.
fn table_names(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_series_the_engine_exposes_is_in_metrics_md_and_no_other() {
    // With a registry (nothing listens at port 1: it retries), so its series show too.
    let engine = Engine::start(&["--cores", "1", "--registry", "redis://127.0.0.1:1"]);
    let metrics = || String::from_utf8_lossy(&http_get(engine.http, "/metrics").body).into_owned();
    eventually("the registry's series", Duration::from_secs(30), || {
        metrics().contains("edge_registry_up")
    });
    let text = metrics();
    let exposed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(exposed.len() > 60, "{text}");
    let metrics = doc("METRICS.md");
    let listed = table_names(&metrics, "edge_");
    let missing: Vec<_> = exposed
        .iter()
        .filter(|n| !listed.iter().any(|l| l == *n))
        .collect();
    assert!(missing.is_empty(), "docs/METRICS.md lacks {missing:?}");
    let stale: Vec<_> = listed
        .iter()
        .filter(|l| !exposed.contains(&l.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/METRICS.md lists series the engine does not expose: {stale:?}"
    );
}

/// What `edge-engine --config FILE --check` says of `text`.
fn check(text: &str) -> String {
    let path = config_file("docs", text);
    let out = Command::new(engine_bin())
        .args(["--config", path.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The field names serde lists when a table has an unknown key (`expected one of `a`, `b``).
fn table_keys(table: &str) -> Vec<String> {
    let err = check(&format!("{table}\nno_such_key = 1\n"));
    let list = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no field list in {err}"));
    list.split(',')
        .filter_map(|f| f.split('`').nth(1))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_setting_the_engine_takes_is_in_config_md() {
    let config = doc("CONFIG.md");
    let help = Command::new(engine_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '=']).next())
        .filter(|f| !["help", "version"].contains(f))
        .collect();
    assert!(flags.len() > 50, "{help}");
    let missing: Vec<_> = flags
        .iter()
        .filter(|f| !config.contains(&format!("`--{f}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/CONFIG.md lacks the flags {missing:?}"
    );
    for table in ["[apps.live]", "[[origins]]\nurl = \"rtmp://a/live\""] {
        let keys = table_keys(table);
        assert!(keys.len() >= 7, "{table}: {keys:?}");
        let missing: Vec<_> = keys
            .iter()
            .filter(|k| !config.contains(&format!("| `{k}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/CONFIG.md lacks the {table} keys {missing:?}"
        );
    }
}

#[test]
fn the_guides_and_docs_the_readme_links_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 250,
        "the README is a page, not a manual"
    );
    let mut links = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap_or("");
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        links += 1;
        assert!(
            root.join(target).exists(),
            "README links to {target}, which is not there"
        );
    }
    assert!(links >= 15, "{links} links");
}
