//! Reading the command line, the environment and `--config FILE` (TOML) into [`Args`], with
//! errors that name the file, line and key, and the `--check` report: every setting's
//! effective value and where it came from, plus warnings about settings that are valid but
//! probably not meant.
//!
//! Precedence: built-in defaults < the file < `EDGE_…` environment variables < flags. The
//! file's top-level keys are the long flag names (underscores or dashes) with TOML values; its
//! values become the flags' defaults, so clap checks them with the flags' own parsers and the
//! environment and the command line still win. `[apps.NAME]` and `[[origins]]` tables are
//! read by serde into [`super::tables`].
//!
//! Must not: print (the caller prints what it gets), or decide values (clap's defaults and
//! [`Args::validate`] do).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{parser::ValueSource, Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use serde::Deserialize;

use super::tables::{failover_order, AppSettings, OriginRef, OriginSettings};
use super::{Args, Config};

/// Settings whose values are secrets: `--check` shows that they are set, not what they are.
const SECRETS: [&str; 4] = [
    "token_key",
    "admin_token",
    "upstream_sign_key",
    "secure_link_md5",
];

/// Settings that only make sense on the command line.
const COMMAND_LINE_ONLY: [&str; 3] = ["help", "version", "check"];

/// The environment variable of a setting: `EDGE_` and its name in capitals
/// (`play_wait_ms` → `EDGE_PLAY_WAIT_MS`).
pub(crate) fn env_name(id: &str) -> String {
    format!("EDGE_{}", id.to_ascii_uppercase())
}

/// The engine's command: [`Args`]' flags, each readable from its `EDGE_…` variable too
/// (repeatable ones comma-separated there and on the command line).
pub(crate) fn command() -> clap::Command {
    Args::command().mut_args(|a| {
        let id = a.get_id().as_str().to_string();
        if COMMAND_LINE_ONLY.contains(&id.as_str()) || a.get_long().is_none() {
            return a;
        }
        let a = a.env(env_name(&id)).hide_env_values(true);
        if matches!(a.get_action(), ArgAction::Append) {
            a.value_delimiter(',')
        } else {
            a
        }
    })
}

/// The parsed arguments, and what `--check` needs to say where each value came from.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub args: Args,
    file: Option<PathBuf>,
    /// The settings the file gave (by argument id), with their lines.
    from_file: BTreeMap<String, usize>,
    matches: ArgMatches,
}

/// A config file, read: top-level settings as the flags' values, and the tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FileSettings {
    /// Argument id → (line, values as a flag would carry them).
    pub settings: BTreeMap<String, (usize, Vec<String>)>,
    pub apps: BTreeMap<String, AppSettings>,
    pub origins: Vec<OriginSettings>,
}

/// The file's tables, as serde reads them (top-level settings are read key by key).
#[derive(Debug, Default, Deserialize)]
struct Tables {
    #[serde(default)]
    apps: BTreeMap<String, AppSettings>,
    #[serde(default)]
    origins: Vec<OriginSettings>,
}

impl Loaded {
    /// Parses `argv` (the program name first), the environment, and the file that
    /// `--config` (or `EDGE_CONFIG`) names.
    pub(crate) fn from_argv(argv: Vec<String>) -> anyhow::Result<Loaded> {
        // Errors on the command line (and --help, --version) are clap's to print, once.
        let first = command()
            .try_get_matches_from(&argv)
            .unwrap_or_else(|e| e.exit());
        let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
            return Ok(Loaded {
                args: Args::from_arg_matches(&first)?,
                file: None,
                from_file: BTreeMap::new(),
                matches: first,
            });
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file = FileSettings::parse(&path, &text)?;
        let mut cmd = command();
        for (id, (_, values)) in &file.settings {
            let values = values.clone();
            cmd = cmd.mut_arg(id, move |a| a.default_values(values));
        }
        let matches = match cmd.try_get_matches_from(&argv) {
            Ok(m) => m,
            Err(e) => bail!(
                "{} with the command line: {}",
                path.display(),
                first_line(&e)
            ),
        };
        let mut args = Args::from_arg_matches(&matches)?;
        args.apps = file.apps;
        args.origin_tables = file.origins;
        Ok(Loaded {
            args,
            file: Some(path),
            from_file: file
                .settings
                .into_iter()
                .map(|(id, (line, _))| (id, line))
                .collect(),
            matches,
        })
    }

    /// The `--check` report: every setting by topic with its value and source, the tables,
    /// then what validation derived.
    pub(crate) fn describe(&self, config: &Config) -> String {
        let mut out = String::from("configuration ok");
        if let Some(f) = &self.file {
            let _ = write!(out, " (file {})", f.display());
        }
        out.push('\n');
        let mut heading = None;
        for arg in command().get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            if COMMAND_LINE_ONLY.contains(&id) || id == "config" {
                continue;
            }
            if heading != arg.get_help_heading() {
                heading = arg.get_help_heading();
                let _ = writeln!(out, "\n[{}]", heading.unwrap_or("Other"));
            }
            let values: Vec<String> = self
                .matches
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
            let source = match (self.matches.value_source(id), self.from_file.get(id)) {
                (Some(ValueSource::CommandLine), _) => "command line".to_string(),
                (Some(ValueSource::EnvVariable), _) => format!("environment {}", env_name(id)),
                (Some(ValueSource::DefaultValue), Some(line)) => format!("file line {line}"),
                (Some(_), _) => "default".to_string(),
                (None, _) => String::new(),
            };
            let _ = writeln!(out, "{long:<26} = {shown:<30} {source}");
        }
        for name in self.args.apps.keys() {
            let p = config.apps.get(name);
            let mode = |m: &edge_core::access::ModeByApp| format!("{:?}", m.mode(name));
            let _ = writeln!(out, "\n[apps.{name}]");
            let _ = writeln!(
                out,
                "{:<26} = {}\n{:<26} = {}",
                "play-auth",
                mode(&config.access.policy.play).to_lowercase(),
                "publish-auth",
                mode(&config.access.policy.publish).to_lowercase()
            );
            let _ = writeln!(
                out,
                "{:<26} = {}\n{:<26} = {}\n{:<26} = {}\n{:<26} = {}\n{:<26} = {}\n{:<26} = {}",
                "hls-segment-ms",
                p.hls.segment_ms,
                "hls-window",
                p.hls.window,
                "gop-max-frames",
                p.gop.max_frames,
                "gop-max-bytes",
                p.gop.max_bytes,
                "republish-grace-ms",
                p.republish_grace_ms,
                "play-wait-ms",
                p.play_wait_ms
            );
        }
        for path in &config.origin_paths {
            let url = path.origin.to_string();
            let _ = writeln!(out, "\n[[origins]]\n{:<26} = {url}", "url");
            let _ = writeln!(out, "{:<26} = {:?}", "role", path.role);
            let timeout = path
                .connect_timeout_ms
                .unwrap_or(config.upstream_timeout_ms);
            let _ = writeln!(out, "{:<26} = {timeout}", "connect-timeout-ms");
            let sign = if path.sign.is_some() {
                "(set, hidden)"
            } else {
                "(upstream-sign-key)"
            };
            let _ = writeln!(out, "{:<26} = {sign}", "sign-key");
            let e = &path.egress;
            let or_route = |v: Option<String>| v.unwrap_or_else(|| "(routing table)".into());
            let _ = writeln!(
                out,
                "{:<26} = {}\n{:<26} = {}\n{:<26} = {}",
                "bind",
                or_route(e.bind.map(|b| b.to_string())),
                "interface",
                or_route(e.interface.clone()),
                "mark",
                or_route(e.mark.map(|m| m.to_string()))
            );
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

impl FileSettings {
    /// Reads a TOML config file's text; errors say `FILE:LINE: key: why`.
    pub(crate) fn parse(path: &Path, text: &str) -> anyhow::Result<FileSettings> {
        let at = |span: Option<std::ops::Range<usize>>| {
            let line = span.map_or(1, |s| line_of(text, s.start));
            format!("{}:{line}", path.display())
        };
        let top: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                if let Some(line) = old_form_line(text) {
                    bail!(
                        "{}:{line}: not TOML: this is the old `name = value` form. Write text \
                         values in quotes (rtmp = \"0.0.0.0:1935\") and lists as arrays, or \
                         convert the whole file: edge-engine convert-config {} > NEW.toml",
                        path.display(),
                        path.display()
                    );
                }
                bail!("{}: {}", at(e.span()), e.message().trim());
            }
        };
        let line_of_key = |key: &str| key_line(text, key);
        let tables: Tables = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or("", |s| text_line(text, s.start));
            anyhow::anyhow!("{}: {} (in `{line}`)", at(e.span()), e.message().trim())
        })?;
        let command = command();
        let mut out = FileSettings {
            apps: tables.apps,
            origins: tables.origins,
            ..FileSettings::default()
        };
        for (key, value) in &top {
            let line = line_of_key(key);
            let here = format!("{}:{line}: {key}", path.display());
            if key == "apps" || key == "origins" {
                if !value.is_table() && !value.is_array() {
                    bail!("{here}: a table ([{key}.NAME] or [[{key}]])");
                }
                continue;
            }
            let long = key.replace('_', "-");
            let Some(arg) = command
                .get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()))
            else {
                bail!(
                    "{here}: no such setting (keys are the long flag names with underscores, \
                     tables are [apps.NAME] and [[origins]]; deploy/edge-engine.toml lists \
                     them all)"
                );
            };
            let id = arg.get_id().as_str().to_string();
            if id == "config" {
                bail!("{here}: `config` cannot be nested");
            }
            if COMMAND_LINE_ONLY.contains(&id.as_str()) {
                bail!("{here}: a command-line flag, not a setting");
            }
            if out.settings.contains_key(&id) {
                bail!("{here}: given twice (as {long} and with underscores)");
            }
            let values = flag_values(arg, value).map_err(|e| anyhow::anyhow!("{here}: {e}"))?;
            if !matches!(arg.get_action(), ArgAction::SetTrue) {
                check_values(&long, &values).map_err(|e| anyhow::anyhow!("{here}: {e}"))?;
            }
            out.settings.insert(id, (line, values));
        }
        if !out.origins.is_empty() {
            if let Some((line, _)) = out.settings.get("origin") {
                bail!(
                    "{}:{line}: origin: give the origins either as `origin = [...]` or as \
                     [[origins]] tables, not both",
                    path.display()
                );
            }
            let line = line_of_key("origins");
            out.settings
                .insert("origin".into(), (line, failover_order(&out.origins)));
        }
        Ok(out)
    }
}

/// A TOML value as the flag's values: scalars as text, arrays for repeatable flags,
/// booleans for switches and for `on`/`off` settings.
fn flag_values(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let repeatable = matches!(arg.get_action(), ArgAction::Append);
    let switch = matches!(arg.get_action(), ArgAction::SetTrue);
    let on_off = {
        let names: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|p| p.get_name().to_string())
            .collect();
        names == ["on", "off"]
    };
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) if !switch => Ok(i.to_string()),
            toml::Value::Boolean(b) if switch => Ok(b.to_string()),
            toml::Value::Boolean(b) if on_off => Ok(if *b { "on" } else { "off" }.into()),
            toml::Value::Boolean(_) => Err("expected a value, found a boolean".into()),
            other if switch => Err(format!(
                "expected true or false, found {}",
                other.type_str()
            )),
            other => Err(format!("expected a value, found {}", other.type_str())),
        }
    };
    match value {
        toml::Value::Array(items) if repeatable => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => Err("takes one value, found an array".into()),
        v => Ok(vec![scalar(v)?]),
    }
}

/// Checks values with the flag's own parser.
fn check_values(long: &str, values: &[String]) -> Result<(), String> {
    let mut argv = vec!["edge-engine".to_string()];
    argv.extend(values.iter().map(|v| format!("--{long}={v}")));
    match Args::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(first_line(&e)),
    }
}

/// The line of top-level key `key` (a toml::Value keeps no position, and toml's `Spanned`
/// does not survive `[a.b]` headers): its `key =` line before the first table header, or
/// the first header of its table.
fn key_line(text: &str, key: &str) -> usize {
    let mut in_tables = false;
    for (n, raw) in text.lines().enumerate() {
        let t = raw.trim_start();
        if t.starts_with('[') {
            in_tables = true;
            let name = t.trim_start_matches('[').trim_start();
            if name.starts_with(key) && name[key.len()..].trim_start().starts_with(['.', ']']) {
                return n + 1;
            }
            continue;
        }
        if in_tables {
            continue;
        }
        let bare = t.strip_prefix('"').unwrap_or(t);
        if let Some(rest) = bare.strip_prefix(key) {
            if rest.trim_start_matches('"').trim_start().starts_with('=') {
                return n + 1;
            }
        }
    }
    1
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line holding byte `offset`, trimmed.
fn text_line(text: &str, offset: usize) -> &str {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    text[start..].lines().next().unwrap_or("").trim()
}

/// The first line written in the old form (a value TOML cannot read: unquoted text), if
/// the text has one.
pub(crate) fn old_form_line(text: &str) -> Option<usize> {
    text.lines().enumerate().find_map(|(n, raw)| {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            return None;
        }
        let (k, v) = t.split_once('=')?;
        let key_ok = k
            .trim()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let v = v.trim();
        let value = v.split(" #").next().unwrap_or("").trim();
        let toml_ok = toml::from_str::<toml::Table>(&format!("x = {value}")).is_ok();
        (key_ok && !value.is_empty() && !toml_ok).then_some(n + 1)
    })
}

/// Warnings about a valid configuration that is probably not what was meant. `resolve`
/// looks a host name up (the caller's: `--check` and start-up may block for it).
pub(crate) fn warnings(config: &Config, resolve: impl Fn(&str, u16) -> bool) -> Vec<String> {
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
        .chain(
            config
                .hls_origins
                .iter()
                .map(|o| (o.to_string(), o.host.clone(), o.port)),
        );
    for path in &config.origin_paths {
        let used = match &path.origin {
            OriginRef::Rtmp(u) => config.origins.contains(u),
            OriginRef::Http(o) => config.hls_origins.contains(o),
        };
        if !used {
            out.push(format!(
                "[[origins]] {}: not among the origins in use (--origin or EDGE_ORIGIN                  replaced the file's list), so its settings apply to nothing",
                path.origin
            ));
        }
    }
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

/// A clap error's message alone: no `error:` prefix, usage or `--help` tip.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests;
