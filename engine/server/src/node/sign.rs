//! `edge-engine sign`: mints a token (or a signed URL) with the engine's own signing code, for
//! operators and tests.
//!
//! Must not: start anything, or print the key.

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use edge_core::token::{self, EdgeAuthClaims, HashAlg};

/// Print an EdgeAuth 2.0 token (or, with --secure-link-md5, nginx secure_link arguments).
#[derive(Debug, Parser)]
#[command(name = "edge-engine sign")]
pub(crate) struct SignArgs {
    /// The key, in hex (EdgeAuth).
    #[arg(long, value_name = "HEX")]
    pub key: Option<String>,

    /// What the token covers: `/{app}/{stream}` patterns with `*`, several joined by `!`.
    #[arg(long, value_name = "PATTERN")]
    pub acl: Option<String>,

    /// Bind the token to this one path instead of an ACL (the path is hashed, not sent).
    #[arg(long, value_name = "PATH", conflicts_with = "acl")]
    pub url: Option<String>,

    /// Lifetime in seconds from now (or from --start).
    #[arg(long, value_name = "SECONDS")]
    pub ttl: u64,

    /// Valid from this Unix time (default: no start; `now` for the current time).
    #[arg(long, value_name = "UNIX")]
    pub start: Option<String>,

    /// Only for this client address.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<String>,

    /// Optional session id and data fields.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    #[arg(long, value_name = "DATA")]
    pub data: Option<String>,

    /// sha256, sha1 or md5.
    #[arg(long, value_name = "ALG", default_value = "sha256", value_parser = ["sha256", "sha1", "md5"])]
    pub alg: String,

    /// Print `URL?PARAM=TOKEN` (or `&…` when URL has a query) instead of the bare token; the
    /// token's `/` are percent-encoded there, as RTMP URLs need (ffmpeg reads a second `/`
    /// as the start of the stream name), and the engine decodes them.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// The query parameter for --base-url.
    #[arg(long, value_name = "NAME", default_value = "token")]
    pub param: String,

    /// nginx secure_link mode: the template (as for the engine's flag); prints
    /// `md5=…&expires=…` for --url (the `/{app}/{stream}` path) and --ip.
    #[arg(long, value_name = "TEMPLATE")]
    pub secure_link_md5: Option<String>,
}

/// Runs `sign` with `argv` (its first item is "sign").
pub(crate) fn run(argv: impl Iterator<Item = String>) -> anyhow::Result<()> {
    // clap prints help, version and usage errors itself (help exits 0, a usage error 2).
    let args = SignArgs::try_parse_from(argv).unwrap_or_else(|e| e.exit());
    println!("{}", mint(&args, crate::config::access::unix_s())?);
    Ok(())
}

/// The text `sign` prints, at Unix time `now`.
pub(crate) fn mint(args: &SignArgs, now: u64) -> anyhow::Result<String> {
    let start = match args.start.as_deref() {
        None => None,
        Some("now") => Some(now),
        Some(s) => Some(s.parse::<u64>().context("--start: a Unix time or `now`")?),
    };
    let exp = start.unwrap_or(now) + args.ttl;
    if let Some(template) = &args.secure_link_md5 {
        let uri = args
            .url
            .as_deref()
            .context("secure-link mode needs --url /{app}/{stream}")?;
        let signed = token::sign_secure_link(template, uri, args.ip.as_deref().unwrap_or(""), exp);
        return Ok(with_base(args, &signed));
    }
    let key = args
        .key
        .as_deref()
        .context("--key HEX is required (or --secure-link-md5)")?;
    let key = token::parse_hex_key(key).ok_or_else(|| anyhow!("--key: not hex"))?;
    if args.acl.is_none() && args.url.is_none() {
        bail!("give --acl PATTERN or --url PATH");
    }
    let alg = HashAlg::parse(&args.alg).context("--alg")?;
    let t = token::sign_edgeauth(
        &key,
        alg,
        &EdgeAuthClaims {
            ip: args.ip.as_deref(),
            start_s: start,
            exp_s: exp,
            acl: args.acl.as_deref(),
            url: args.url.as_deref(),
            id: args.id.as_deref(),
            data: args.data.as_deref(),
        },
    );
    Ok(match args.base_url {
        Some(_) => with_base(args, &format!("{}={}", args.param, t.replace('/', "%2F"))),
        None => t,
    })
}

fn with_base(args: &SignArgs, query: &str) -> String {
    match &args.base_url {
        None => query.to_string(),
        Some(base) if base.contains('?') => format!("{base}&{query}"),
        Some(base) => format!("{base}?{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::token::{TokenConfig, TokenError, TokenFormat};

    fn args(extra: &[&str]) -> SignArgs {
        let mut v = vec!["sign"];
        v.extend_from_slice(extra);
        SignArgs::try_parse_from(v).unwrap()
    }

    #[test]
    fn minted_tokens_verify_with_the_engines_checker() {
        let a = args(&["--key", "abcd", "--acl", "/live/*", "--ttl", "60"]);
        let t = mint(&a, 1000).unwrap();
        assert!(t.starts_with("exp=1060~acl=/live/*~hmac="), "{t}");
        let check = TokenConfig {
            format: TokenFormat::EdgeAuth {
                alg: HashAlg::Sha256,
                keys: vec![vec![0xab, 0xcd]],
                param: "token".into(),
            },
            skew_s: 0,
        };
        let q = format!("token={t}");
        assert_eq!(check.verify(Some(&q), "/live/x", None, 1001), Ok(()));
        assert_eq!(
            check.verify(Some(&q), "/live/x", None, 1061),
            Err(TokenError::Expired)
        );
        let u = args(&[
            "--key",
            "abcd",
            "--acl",
            "/live/x",
            "--ttl",
            "5",
            "--base-url",
            "http://h/live/x.m3u8",
        ]);
        let url = mint(&u, 0).unwrap();
        assert!(
            url.starts_with("http://h/live/x.m3u8?token=exp=5~"),
            "{url}"
        );
        let sl = args(&[
            "--secure-link-md5",
            "$secure_link_expires$uri$remote_addr s",
            "--url",
            "/live/x",
            "--ttl",
            "10",
        ]);
        assert!(mint(&sl, 0).unwrap().starts_with("md5="));
        assert!(mint(&args(&["--key", "zz", "--acl", "/a", "--ttl", "1"]), 0).is_err());
        assert!(mint(&args(&["--key", "ab", "--ttl", "1"]), 0).is_err());
    }
}
