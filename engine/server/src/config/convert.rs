//! `edge-engine convert-config OLD`: the `name = value` config form of earlier releases
//! (one flag per line, unquoted values, `true`/`false` switches, a repeated name for a
//! repeatable flag) printed as the TOML file that means the same, comments kept.
//!
//! Must not: write files (it prints; the operator redirects), or accept what the new
//! loader would refuse (its output is read back by [`FileSettings::parse`] first).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use clap::ArgAction;

#[cfg(test)]
use super::file::old_form_line;
use super::file::{command, FileSettings};

/// Runs the subcommand: `argv` is what follows `convert-config`.
pub(crate) fn run(mut argv: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let (Some(path), None) = (argv.next(), argv.next()) else {
        bail!("usage: edge-engine convert-config OLD_FILE > NEW.toml");
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    print!("{}", convert(Path::new(&path), &text)?);
    Ok(())
}

/// The old form's text as TOML.
pub(crate) fn convert(path: &Path, text: &str) -> anyhow::Result<String> {
    let command = command();
    let mut lines: Vec<Out> = Vec::new();
    // A repeatable setting's values, gathered at its first line.
    let mut lists: BTreeMap<String, usize> = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            lines.push(Out::Text(trimmed.to_string()));
            continue;
        }
        let Some((k, v)) = trimmed.split_once('=') else {
            bail!("{}: expected `name = value`, found {trimmed:?}", at());
        };
        let key = k.trim().replace('-', "_");
        let (value, comment) = old_value(v.trim()).with_context(|| format!("{}: {key}", at()))?;
        let long = key.replace('_', "-");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
        else {
            bail!("{}: {key}: no such setting", at());
        };
        if arg.get_id() == "check" {
            lines.push(Out::Text(format!(
                "# {key} = {value}: dropped (a command-line flag, not a setting)"
            )));
            continue;
        }
        let integer = !value.is_empty()
            && value.len() <= 18
            && value.bytes().all(|b| b.is_ascii_digit())
            && (value == "0" || !value.starts_with('0'));
        let rendered = match arg.get_action() {
            ArgAction::SetTrue if value == "true" || value == "false" => value,
            ArgAction::SetTrue => bail!("{}: {key}: expected true or false", at()),
            _ if integer => value,
            _ => toml::Value::String(value).to_string(),
        };
        if matches!(arg.get_action(), ArgAction::Append) {
            if let Some(&i) = lists.get(&key) {
                if let Out::List { values, .. } = &mut lines[i] {
                    values.push(rendered);
                }
                continue;
            }
            lists.insert(key.clone(), lines.len());
            lines.push(Out::List {
                key,
                values: vec![rendered],
                comment,
            });
        } else {
            lines.push(Out::Setting {
                key,
                value: rendered,
                comment,
            });
        }
    }
    let mut out = String::new();
    for l in lines {
        let (line, comment) = match l {
            Out::Text(t) => (t, None),
            Out::Setting {
                key,
                value,
                comment,
            } => (format!("{key} = {value}"), comment),
            Out::List {
                key,
                values,
                comment,
            } => (format!("{key} = [{}]", values.join(", ")), comment),
        };
        out.push_str(&line);
        if let Some(c) = comment {
            out.push_str("  ");
            out.push_str(&c);
        }
        out.push('\n');
    }
    FileSettings::parse(path, &out)
        .with_context(|| format!("the converted file would not load:\n{out}"))?;
    Ok(out)
}

/// One line of the output.
enum Out {
    Text(String),
    Setting {
        key: String,
        value: String,
        comment: Option<String>,
    },
    List {
        key: String,
        values: Vec<String>,
        comment: Option<String>,
    },
}

/// An old-form value: optionally in double quotes, with an optional ` # comment` after it.
fn old_value(v: &str) -> anyhow::Result<(String, Option<String>)> {
    match v.strip_prefix('"') {
        Some(rest) => match rest.split_once('"') {
            Some((inner, tail)) if tail.trim().is_empty() => Ok((inner.to_string(), None)),
            Some((inner, tail)) if tail.trim().starts_with('#') => {
                Ok((inner.to_string(), Some(tail.trim().to_string())))
            }
            _ => bail!("unterminated or trailing text after a quoted value"),
        },
        None => match v.split_once(" #") {
            Some((value, comment)) => Ok((
                value.trim().to_string(),
                Some(format!("#{}", comment.trim_end())),
            )),
            None => Ok((v.trim().to_string(), None)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_form_converts_to_toml_that_means_the_same() {
        let old = "# ours\nrtmp = 0.0.0.0:1935\nplay_wait_ms = 5000 # short\n\
                   play-auth = token\nplay_auth = free=none\ncheck = false\n\
                   node_id = \"a b\"\ntoken_key = 00ff\n";
        let new = convert(Path::new("old.conf"), old).unwrap();
        assert_eq!(
            new,
            "# ours\nrtmp = \"0.0.0.0:1935\"\nplay_wait_ms = 5000  # short\n\
             play_auth = [\"token\", \"free=none\"]\n\
             # check = false: dropped (a command-line flag, not a setting)\nnode_id = \"a b\"\ntoken_key = [\"00ff\"]\n"
        );
        assert_eq!(old_form_line(old), Some(2));
        assert_eq!(old_form_line(&new), None);
    }

    #[test]
    fn what_the_old_form_refused_is_refused() {
        let e = convert(Path::new("old.conf"), "colour = blue\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("old.conf:1: colour: no such setting"),
            "{e}"
        );
        let e = convert(Path::new("old.conf"), "\ncores 2\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("old.conf:2: expected `name = value`"),
            "{e}"
        );
    }
}
