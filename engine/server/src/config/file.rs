//! Reading the command line and `--config FILE` into [`Args`], with errors that name the
//! file and line, and the `--check` report: every setting's effective value and where it
//! came from, plus warnings about settings that are valid but probably not meant.
//!
//! Must not: print (the caller prints what it gets), or decide values (clap's defaults and
//! [`Args::validate`] do).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{parser::ValueSource, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::{Args, Config};

/// Settings whose values are secrets: `--check` shows that they are set, not what they are.
const SECRETS: [&str; 4] = [
    "token_key",
    "admin_token",
    "upstream_sign_key",
    "secure_link_md5",
];

/// The parsed arguments, and what `--check` needs to say where each value came from.
#[derive(Debug)]
pub struct Loaded {
    pub args: Args,
    file: Option<PathBuf>,
    /// The merged command line (file, then flags) and the flags alone.
    merged: ArgMatches,
    command_line: ArgMatches,
}

/// One `name = value` line of a config file, as a flag.
#[derive(Debug, PartialEq, Eq)]
struct FileArg {
    line: usize,
    key: String,
    flag: Option<String>,
}

impl Loaded {
    /// Parses `argv` (the program name first): `--config FILE` is read first, and the flags
    /// given on the command line override it.
    pub fn from_argv(argv: Vec<String>) -> anyhow::Result<Loaded> {
        // Errors on the command line (and --help, --version) are clap's to print, once.
        let command_line = Args::command()
            .try_get_matches_from(&argv)
            .unwrap_or_else(|e| e.exit());
        let first = Args::from_arg_matches(&command_line)?;
        let Some(path) = first.config.clone() else {
            return Ok(Loaded {
                args: first,
                file: None,
                merged: command_line.clone(),
                command_line,
            });
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let lines = file_args(&path, &text)?;
        let mut merged_argv = vec![argv[0].clone()];
        merged_argv.extend(lines.iter().filter_map(|l| l.flag.clone()));
        merged_argv.extend(argv.iter().skip(1).cloned());
        let merged = match Args::command().try_get_matches_from(&merged_argv) {
            Ok(m) => m,
            Err(e) => bail!("{}", blame_line(&path, &lines, &e)),
        };
        Ok(Loaded {
            args: Args::from_arg_matches(&merged)?,
            file: Some(path),
            merged,
            command_line,
        })
    }

    /// The `--check` report: every setting by topic with its value and source, then what
    /// validation derived.
    pub fn describe(&self, config: &Config) -> String {
        let mut out = String::from("configuration ok");
        if let Some(f) = &self.file {
            let _ = write!(out, " (file {})", f.display());
        }
        out.push('\n');
        let command = Args::command();
        let mut heading = None;
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            if matches!(id, "help" | "version" | "check" | "config") {
                continue;
            }
            if heading != arg.get_help_heading() {
                heading = arg.get_help_heading();
                let _ = writeln!(out, "\n[{}]", heading.unwrap_or("Other"));
            }
            let values: Vec<String> = self
                .merged
                .get_raw(id)
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let shown = if values.is_empty() {
                "(not set)".to_string()
            } else if SECRETS.contains(&id) {
                format!("(set, {} hidden)", values.len())
            } else if id == "registry" {
                values
                    .iter()
                    .map(|v| hide_password(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                values.join(", ")
            };
            let source = match self.merged.value_source(id) {
                Some(ValueSource::DefaultValue) => "default",
                Some(_) if self.command_line.value_source(id) == Some(ValueSource::CommandLine) => {
                    "command line"
                }
                Some(_) => "file",
                None => "",
            };
            let _ = writeln!(out, "{long:<26} = {shown:<30} {source}");
        }
        let cpus: Vec<String> = config
            .cpus
            .iter()
            .map(|c| c.map_or_else(|| "unpinned".to_string(), |c| c.to_string()))
            .collect();
        let _ = writeln!(out, "\n[Derived]");
        let _ = writeln!(
            out,
            "{:<26} = {} (CPUs: {})",
            "shards",
            config.shards(),
            cpus.join(", ")
        );
        let role = if config.is_edge() { "edge" } else { "origin" };
        let _ = writeln!(out, "{:<26} = {role}", "role");
        out
    }
}

/// Warnings about a valid configuration that is probably not what was meant. `resolve`
/// looks a host name up (the caller's: `--check` and start-up may block for it).
pub fn warnings(config: &Config, resolve: impl Fn(&str, u16) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    if config.shards() > available {
        out.push(format!(
            "{} shards on a host with {available} CPUs: shards will share CPUs, each slower \
             than one with a CPU of its own (--cores {available} or less)",
            config.shards()
        ));
    }
    let hosts = config
        .origins
        .iter()
        .map(|o| (o.to_string(), o.host.clone(), o.port))
        .chain(config.hls_origins.iter().map(|o| {
            let scheme = if o.tls { "https" } else { "http" };
            let url = format!("{scheme}://{}:{}{}", o.host, o.port, o.path);
            (url, o.host.clone(), o.port)
        }));
    for (url, host, port) in hosts {
        if !resolve(&host, port) {
            out.push(format!(
                "origin {url}: {host} does not resolve here (pulls from it will fail until it does)"
            ));
        }
    }
    out
}

/// A `redis://user:password@host` URL with the password hidden.
fn hide_password(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(s, r)| Some((s, r.rsplit_once('@')?)))
    {
        Some((scheme, (auth, rest))) => {
            let user = auth.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{rest}")
        }
        None => url.to_string(),
    }
}

/// The lines of a config file as flags: `name = value` (underscores or dashes), `#`
/// comments (a whole line, or after an unquoted value), values in optional double quotes.
/// `true` sets a switch and `false` leaves it off.
fn file_args(path: &Path, text: &str) -> anyhow::Result<Vec<FileArg>> {
    let switches: HashSet<String> = Args::command()
        .get_arguments()
        .filter(|a| matches!(a.get_action(), ArgAction::SetTrue))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let at = || format!("{}:{line}", path.display());
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((k, v)) = trimmed.split_once('=') else {
            bail!("{}: expected `name = value`, found {trimmed:?}", at());
        };
        let key = k.trim().replace('_', "-");
        let v = v.trim();
        let value = match v.strip_prefix('"') {
            Some(rest) => match rest.split_once('"') {
                Some((inner, tail)) if tail.trim().is_empty() || tail.trim().starts_with('#') => {
                    inner.to_string()
                }
                _ => bail!(
                    "{}: {key}: unterminated or trailing text after a quoted value",
                    at()
                ),
            },
            None => v.split(" #").next().unwrap_or("").trim().to_string(),
        };
        if key == "config" {
            bail!("{}: `config` cannot be nested", at());
        }
        let flag = if switches.contains(&key) {
            match value.as_str() {
                "true" => Some(format!("--{key}")),
                "false" => None,
                _ => bail!("{}: {key}: expected true or false, found {value:?}", at()),
            }
        } else {
            Some(format!("--{key}={value}"))
        };
        out.push(FileArg { line, key, flag });
    }
    Ok(out)
}

/// The merged command line failed: find the file line that fails on its own, and say where.
fn blame_line(path: &Path, lines: &[FileArg], merged: &clap::Error) -> String {
    for l in lines {
        let Some(flag) = &l.flag else { continue };
        if let Err(e) = Args::command().try_get_matches_from(["edge-engine", flag.as_str()]) {
            let why = match e.kind() {
                clap::error::ErrorKind::UnknownArgument => {
                    "no such setting (settings are named as the long flags, without the dashes)"
                        .to_string()
                }
                _ => first_line(&e),
            };
            return format!("{}:{}: {}: {why}", path.display(), l.line, l.key);
        }
    }
    format!(
        "{} with the command line: {}",
        path.display(),
        first_line(merged)
    )
}

/// A clap error's message alone: no `error:` prefix, usage or `--help` tip.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn load(file: &str, flags: &[&str]) -> anyhow::Result<Loaded> {
        let dir =
            std::env::temp_dir().join(format!("edge-config-{}-{}", std::process::id(), file.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("engine.conf");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["edge-engine".to_string(), "--config".into()];
        argv.push(path.display().to_string());
        argv.extend(flags.iter().map(|s| s.to_string()));
        let r = Loaded::from_argv(argv);
        let _ = std::fs::remove_dir_all(dir);
        r
    }

    #[test]
    fn file_lines_become_flags_and_flags_win() {
        let l = load(
            "# c\ncores = 2\nrtmp = \"127.0.0.1:0\"  # ours\nplay_wait_ms=5 # short\n",
            &["--cores", "3"],
        )
        .unwrap();
        assert_eq!(l.args.cores, Some(3));
        assert_eq!(l.args.play_wait_ms, 5);
        assert_eq!(l.args.rtmp.to_string(), "127.0.0.1:0");
        let config = l.args.validate().unwrap();
        let text = l.describe(&config);
        assert!(text.contains("play-wait-ms"), "{text}");
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("play-wait-ms ").ends_with("file"), "{text}");
        assert!(line("cores ").ends_with("command line"), "{text}");
        assert!(line("hls-window ").ends_with("default"), "{text}");
        assert!(line("shards ").contains("= 3"), "{text}");
    }

    #[test]
    fn a_bad_line_is_named_by_file_line_and_key() {
        let e = load("cores = 2\nplay_wait_ms = soon\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("engine.conf:2: play-wait-ms: invalid value 'soon' for '--play-wait-ms <MS>': invalid digit found in string"), "{e}");
        assert!(!e.contains("--help"), "{e}");
        let e = load("\n\ncolour = blue\n", &[]).unwrap_err().to_string();
        assert!(e.contains("engine.conf:3: colour: no such setting"), "{e}");
        let e = load("cores 2\n", &[]).unwrap_err().to_string();
        assert!(e.contains("engine.conf:1: expected `name = value`"), "{e}");
        let e = load("check = maybe\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("engine.conf:1: check: expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn false_switches_are_off_and_secrets_are_not_shown() {
        let l = load(
            "check = false\ntoken_key = \"00112233445566778899aabbccddeeff\"\nregistry = \"redis://u:pw@127.0.0.1:6379\"\n",
            &[],
        )
        .unwrap();
        assert!(!l.args.check);
        let config = l.args.validate().unwrap();
        let text = l.describe(&config);
        assert!(!text.contains("00112233"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
        assert!(text.contains("redis://u:***@127.0.0.1:6379"), "{text}");
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
}
