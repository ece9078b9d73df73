use super::*;
use clap::Parser as _;

/// Loads `file` as the config file with `flags` after it. (The environment is the test
/// process's: the precedence of `EDGE_…` variables is tested on the binary.)
fn load(file: &str, flags: &[&str]) -> anyhow::Result<Loaded> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("edge-config-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("engine.toml");
    std::fs::write(&path, file).unwrap();
    let mut argv = vec!["edge-engine".to_string(), "--config".into()];
    argv.push(path.display().to_string());
    argv.extend(flags.iter().map(|s| s.to_string()));
    let r = Loaded::from_argv(argv);
    let _ = std::fs::remove_dir_all(dir);
    r
}

fn error(file: &str) -> String {
    format!("{:#}", load(file, &[]).unwrap_err())
}

/// The `--check` line of setting `name`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_default()
}

#[test]
fn file_values_are_typed_and_flags_win() {
    let l = load(
        "# c\ncores = 2\nrtmp = \"127.0.0.1:0\"  # ours\nplay-wait-ms = 5\n\
         zero_copy = false\norigin = [\"rtmp://a/live\", \"rtmp://b/live\"]\n",
        &["--cores", "3"],
    )
    .unwrap();
    assert_eq!(l.args.cores, Some(3));
    assert_eq!(l.args.play_wait_ms, 5);
    assert_eq!(l.args.rtmp.to_string(), "127.0.0.1:0");
    assert_eq!(l.args.zero_copy, super::super::OnOff::Off);
    assert_eq!(l.args.origin, ["rtmp://a/live", "rtmp://b/live"]);
    let config = l.args.validate().unwrap();
    let text = l.describe(&config);
    assert!(
        line(&text, "play-wait-ms").ends_with("file line 4"),
        "{text}"
    );
    assert!(line(&text, "cores").ends_with("command line"), "{text}");
    assert!(line(&text, "hls-window").ends_with("default"), "{text}");
    assert!(line(&text, "shards").contains("= 3"), "{text}");
    // A repeatable flag on the command line replaces the file's list.
    let l = load(
        "origin = [\"rtmp://a/live\"]\n",
        &["--origin", "rtmp://c/x"],
    )
    .unwrap();
    assert_eq!(l.args.origin, ["rtmp://c/x"]);
}

#[test]
fn a_bad_value_is_named_by_file_line_and_key() {
    let e = error("cores = 2\nplay_wait_ms = \"soon\"\n");
    assert!(
        e.ends_with(
            "engine.toml:2: play_wait_ms: invalid value 'soon' for '--play-wait-ms <MS>': \
             invalid digit found in string"
        ),
        "{e}"
    );
    assert!(!e.contains("--help"), "{e}");
    let e = error("\n\ncolour = \"blue\"\n");
    assert!(e.contains("engine.toml:3: colour: no such setting"), "{e}");
    let e = error("cores = true\n");
    assert!(
        e.contains("engine.toml:1: cores: expected a value, found a boolean"),
        "{e}"
    );
    let e = error("rtmp = [\"a\", \"b\"]\n");
    assert!(
        e.contains("engine.toml:1: rtmp: takes one value, found an array"),
        "{e}"
    );
    let e = error("zero_copy = \"maybe\"\n");
    assert!(
        e.contains("engine.toml:1: zero_copy: invalid value 'maybe'"),
        "{e}"
    );
    let e = error("config = \"other.toml\"\n");
    assert!(
        e.contains("engine.toml:1: config: `config` cannot be nested"),
        "{e}"
    );
    let e = error("check = true\n");
    assert!(
        e.contains("engine.toml:1: check: a command-line flag"),
        "{e}"
    );
    let e = error("play_wait_ms = 1\nplay-wait-ms = 2\n");
    assert!(e.contains("given twice"), "{e}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let e = error("cores = 2\n\n[apps.live\n");
    assert!(e.contains("engine.toml:3: "), "{e}");
}

#[test]
fn the_old_form_gets_a_conversion_hint() {
    let e = error("# old\nrtmp = 0.0.0.0:1935\ncores = 2\n");
    assert!(
        e.contains("engine.toml:2: not TOML: this is the old `name = value` form"),
        "{e}"
    );
    assert!(e.contains("edge-engine convert-config"), "{e}");
}

#[test]
fn secrets_are_not_shown() {
    let l = load(
        "token_key = \"00112233445566778899aabbccddeeff\"\n\
         registry = \"redis://u:pw@127.0.0.1:6379\"\n",
        &[],
    )
    .unwrap();
    let config = l.args.validate().unwrap();
    let text = l.describe(&config);
    assert!(!text.contains("00112233"), "{text}");
    assert!(!text.contains(":pw@"), "{text}");
    assert!(text.contains("redis://u:***@127.0.0.1:6379"), "{text}");
}

#[test]
fn app_tables_set_one_apps_policy() {
    let l = load(
        "play_auth = \"token\"\ntoken_key = [\"00ff\"]\nhls_segment_ms = 4000\n\
         [apps.free]\nplay_auth = \"none\"\n\
         [apps.low]\nhls_segment_ms = 1000\nhls_window = 4\nplay_wait_ms = 500\n",
        &[],
    )
    .unwrap();
    let config = l.args.validate().unwrap();
    use edge_core::access::Mode;
    let play = &config.access.policy.play;
    assert_eq!(
        (play.mode("free"), play.mode("low"), play.mode("live")),
        (Mode::None, Mode::Token, Mode::Token)
    );
    let low = config.apps.get("low");
    assert_eq!(
        (low.hls.segment_ms, low.hls.window, low.play_wait_ms),
        (1000, 4, 500)
    );
    assert_eq!(config.apps.get("live").hls.segment_ms, 4000);
    assert_eq!(config.apps.get("free").hls.segment_ms, 4000);
    let text = l.describe(&config);
    assert!(text.contains("[apps.low]\n"), "{text}");
    // A flag for one app wins over its table.
    let l = load(
        "[apps.free]\nplay_auth = \"hook\"\n",
        &["--play-auth", "free=none"],
    )
    .unwrap();
    let config = l.args.validate().unwrap();
    assert_eq!(config.access.policy.play.mode("free"), Mode::None);
    // Unknown keys and bad values in a table: the line, and the line's text.
    let e = error("[apps.live]\n\nhls_windoww = 3\n");
    assert!(
        e.contains("engine.toml:3: unknown field `hls_windoww`"),
        "{e}"
    );
    assert!(e.contains("(in `hls_windoww = 3`)"), "{e}");
    let e = error("[apps.live]\nplay_auth = \"maybe\"\n");
    assert!(e.contains("engine.toml:2: unknown variant `maybe`"), "{e}");
    let l = load("[apps.live]\nhls_window = 0\n", &[]).unwrap();
    let e = l.args.validate().unwrap_err().to_string();
    assert_eq!(e, "[apps.live] hls-window must be within 1..=100");
}

#[test]
fn origin_tables_give_the_failover_order_and_each_origins_path() {
    let l = load(
        "[[origins]]\nurl = \"rtmp://backup/live\"\nrole = \"backup\"\n\n\
         [[origins]]\nurl = \"rtmp://main/live\"\nbind = \"127.0.0.2\"\nconnect_timeout_ms = 700\n\
         sign_key = \"00ff\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(l.args.origin, ["rtmp://main/live", "rtmp://backup/live"]);
    let config = l.args.validate().unwrap();
    let main = edge_core::upstream::OriginUrl::parse("rtmp://main/live").unwrap();
    let path = config.rtmp_origin_path(&main).unwrap();
    assert_eq!(path.egress.bind, Some("127.0.0.2".parse().unwrap()));
    assert_eq!(path.connect_timeout_ms, Some(700));
    assert!(path.sign.is_some());
    let text = l.describe(&config);
    assert!(text.contains("[[origins]]\nurl"), "{text}");
    assert!(!text.contains("00ff"), "{text}");
    assert!(line(&text, "origin").ends_with("file line 1"), "{text}");
    let e = error("origin = [\"rtmp://a/live\"]\n[[origins]]\nurl = \"rtmp://b/live\"\n");
    assert!(
        e.contains("engine.toml:1: origin: give the origins either"),
        "{e}"
    );
    let e = error("[[origins]]\nurl = \"rtmp://b/live\"\nmark = \"x\"\n");
    assert!(e.contains("engine.toml:3: invalid type"), "{e}");
    let l = load(
        "[[origins]]\nurl = \"rtmp://b/live\"\nsign_key = \"zz\"\n",
        &[],
    )
    .unwrap();
    let e = format!("{:#}", l.args.validate().unwrap_err());
    assert!(e.contains("[[origins]] rtmp://b/live: not hex"), "{e}");
}

#[test]
fn warnings_name_too_many_shards_and_unresolvable_origins() {
    let args = Args::try_parse_from([
        "edge-engine",
        "--cores",
        "512",
        "--origin",
        "rtmp://nowhere.invalid/live",
    ])
    .unwrap();
    let config = args.validate().unwrap();
    let w = warnings(&config, |host, _| host != "nowhere.invalid");
    assert!(
        w.iter().any(|w| w.starts_with("512 shards on a host with")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("nowhere.invalid does not resolve")),
        "{w:?}"
    );
    assert!(warnings(&config, |_, _| true).len() == 1);
}
