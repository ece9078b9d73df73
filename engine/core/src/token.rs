//! Signed URLs: verifying the token a viewer or publisher brings, and minting one. Sans-IO:
//! the caller gives the path, the client's address and the Unix time.
//!
//! Two formats:
//! - **EdgeAuth 2.0** (Akamai's, for which operators have signers in many languages):
//!   `[ip=ADDR~][st=START~]exp=END~(acl=PATTERN[!PATTERN…]|url is hashed, not sent)
//!   [~id=ID][~data=DATA]~hmac=HEX`. The HMAC (SHA-256 by default, SHA-1 or MD5 selectable,
//!   key in hex) is over every field before `hmac` joined by `~`, plus `url=PATH` when the
//!   token has no `acl`. An ACL pattern matches the request path with `*` as a wildcard.
//! - **nginx `secure_link`**: `md5=B64URL&expires=UNIX` query arguments, the MD5 of a
//!   template the way `secure_link_md5` writes it (`$secure_link_expires$uri$remote_addr
//!   secret`), base64url without padding.
//!
//! A bad or missing token is 403, an expired one 410 (nginx's split). Comparisons are
//! constant-time; a configurable skew is allowed on both ends of the validity window.
//!
//! Must not: read a clock, log, or let a key leave this module in an error.

use std::net::IpAddr;

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The HMAC of an EdgeAuth token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha1,
    Md5,
}

impl HashAlg {
    pub fn parse(s: &str) -> Option<HashAlg> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Some(HashAlg::Sha256),
            "sha1" => Some(HashAlg::Sha1),
            "md5" => Some(HashAlg::Md5),
            _ => None,
        }
    }
}

/// How tokens are checked. Its `Debug` hides the keys and the template (which holds the
/// secret), so a printed configuration never shows them.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenFormat {
    /// EdgeAuth 2.0 tokens in the query parameter `param`; any of `keys` may have signed it
    /// (several allow rotation).
    EdgeAuth {
        alg: HashAlg,
        keys: Vec<Vec<u8>>,
        param: String,
    },
    /// nginx `secure_link`: `md5`/`expires` arguments over `template`, which names
    /// `$secure_link_expires`, `$uri` and `$remote_addr` and holds the secret as text.
    SecureLink { template: String },
}

impl std::fmt::Debug for TokenFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenFormat::EdgeAuth { alg, keys, param } => f
                .debug_struct("EdgeAuth")
                .field("alg", alg)
                .field("keys", &format_args!("<{} hidden>", keys.len()))
                .field("param", param)
                .finish(),
            TokenFormat::SecureLink { .. } => f
                .debug_struct("SecureLink")
                .field("template", &format_args!("<hidden>"))
                .finish(),
        }
    }
}

/// Token checking, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub format: TokenFormat,
    /// Seconds of clock difference tolerated at both ends of a token's validity.
    pub skew_s: u64,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token does not cover this path")]
    AclMismatch,
    #[error("token is for another address")]
    IpMismatch,
}

impl TokenError {
    /// The HTTP status: 410 for an expired token, 403 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::Expired => 410,
            _ => 403,
        }
    }

    /// A short name for counters and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::AclMismatch => "acl",
            TokenError::IpMismatch => "ip",
        }
    }
}

/// Parses a hex key (for `--token-key`).
pub fn parse_hex_key(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if hex.is_empty() || hex.len() & 1 == 1 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The value of query parameter `name` in `query` (no leading `?`), as sent.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `query` without parameter `name` (for replacing a viewer's token with the edge's own).
pub fn without_param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(name))
        .collect::<Vec<_>>()
        .join("&")
}

impl TokenConfig {
    /// Checks the token in `query` (the request's query string, without `?`) for `path`
    /// (`/{app}/{stream}` for RTMP, the request path for HTTP) from `client`, at `now_s`.
    pub fn verify(
        &self,
        query: Option<&str>,
        path: &str,
        client: Option<IpAddr>,
        now_s: u64,
    ) -> Result<(), TokenError> {
        let query = query.unwrap_or("");
        match &self.format {
            TokenFormat::EdgeAuth { alg, keys, param } => {
                let token = query_param(query, param).ok_or(TokenError::Missing)?;
                let token = percent_decode(token).ok_or(TokenError::Malformed("bad escape"))?;
                verify_edgeauth(&token, *alg, keys, path, client, now_s, self.skew_s)
            }
            TokenFormat::SecureLink { template } => {
                let md5 = query_param(query, "md5").ok_or(TokenError::Missing)?;
                let expires = query_param(query, "expires").ok_or(TokenError::Missing)?;
                verify_secure_link(template, md5, expires, path, client, now_s, self.skew_s)
            }
        }
    }
}

/// The fields of an EdgeAuth token, to sign.
#[derive(Debug, Clone, Default)]
pub struct EdgeAuthClaims<'a> {
    pub ip: Option<&'a str>,
    pub start_s: Option<u64>,
    pub exp_s: u64,
    /// `!`-separated patterns; without one, `url` is hashed instead.
    pub acl: Option<&'a str>,
    pub url: Option<&'a str>,
    pub id: Option<&'a str>,
    pub data: Option<&'a str>,
}

/// Mints an EdgeAuth token (what `edge-engine sign` prints, and what an edge sends upstream).
pub fn sign_edgeauth(key: &[u8], alg: HashAlg, c: &EdgeAuthClaims<'_>) -> String {
    let mut fields = Vec::new();
    if let Some(ip) = c.ip {
        fields.push(format!("ip={ip}"));
    }
    if let Some(st) = c.start_s {
        fields.push(format!("st={st}"));
    }
    fields.push(format!("exp={}", c.exp_s));
    if let Some(acl) = c.acl {
        fields.push(format!("acl={acl}"));
    }
    if let Some(id) = c.id {
        fields.push(format!("id={id}"));
    }
    if let Some(data) = c.data {
        fields.push(format!("data={data}"));
    }
    let mut hashed = fields.join("~");
    if c.acl.is_none() {
        if let Some(url) = c.url {
            hashed.push_str(&format!("~url={url}"));
        }
    }
    let mac = hex(&hmac(alg, key, hashed.as_bytes()));
    fields.push(format!("hmac={mac}"));
    fields.join("~")
}

/// Mints nginx `secure_link` arguments (`md5=…&expires=…`) for `uri` from `client`.
pub fn sign_secure_link(template: &str, uri: &str, client: &str, expires_s: u64) -> String {
    let digest = secure_link_md5(template, uri, client, expires_s);
    format!("md5={digest}&expires={expires_s}")
}

fn verify_edgeauth(
    token: &str,
    alg: HashAlg,
    keys: &[Vec<u8>],
    path: &str,
    client: Option<IpAddr>,
    now_s: u64,
    skew_s: u64,
) -> Result<(), TokenError> {
    let (signed, mac_hex) = token
        .rsplit_once("~hmac=")
        .ok_or(TokenError::Malformed("no hmac"))?;
    let mac = unhex(mac_hex).ok_or(TokenError::Malformed("hmac is not hex"))?;
    let (mut ip, mut st, mut exp, mut acl) = (None, None, None, None);
    for field in signed.split('~') {
        let (k, v) = field
            .split_once('=')
            .ok_or(TokenError::Malformed("a field without '='"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| TokenError::Malformed("bad time"))
        };
        match k {
            "ip" => ip = Some(v),
            "st" => st = Some(num(v)?),
            "exp" => exp = Some(num(v)?),
            "acl" => acl = Some(v),
            "id" | "data" => {}
            _ => return Err(TokenError::Malformed("unknown field")),
        }
    }
    let exp = exp.ok_or(TokenError::Malformed("no exp"))?;
    // Without an ACL the token is bound to one URL, which is hashed but not sent.
    let url_bound;
    let hashed: &str = match acl {
        Some(_) => signed,
        None => {
            url_bound = format!("{signed}~url={path}");
            &url_bound
        }
    };
    // Signature first: nothing else about the token is believed before it holds.
    let good = keys
        .iter()
        .any(|k| hmac_matches(alg, k, hashed.as_bytes(), &mac));
    if !good {
        return Err(TokenError::BadSignature);
    }
    if now_s > exp.saturating_add(skew_s) {
        return Err(TokenError::Expired);
    }
    if st.is_some_and(|st| now_s.saturating_add(skew_s) < st) {
        return Err(TokenError::NotYetValid);
    }
    if let Some(acl) = acl {
        if !acl.split('!').any(|pattern| glob_match(pattern, path)) {
            return Err(TokenError::AclMismatch);
        }
    }
    if let Some(ip) = ip {
        if client.map(|c| c.to_string()).as_deref() != Some(ip) {
            return Err(TokenError::IpMismatch);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn verify_secure_link(
    template: &str,
    md5_b64: &str,
    expires: &str,
    path: &str,
    client: Option<IpAddr>,
    now_s: u64,
    skew_s: u64,
) -> Result<(), TokenError> {
    let expires_s: u64 = expires
        .parse()
        .map_err(|_| TokenError::Malformed("bad expires"))?;
    let client = client.map(|c| c.to_string()).unwrap_or_default();
    let want = secure_link_md5(template, path, &client, expires_s);
    if !constant_time_eq(want.as_bytes(), md5_b64.trim_end_matches('=').as_bytes()) {
        return Err(TokenError::BadSignature);
    }
    if now_s > expires_s.saturating_add(skew_s) {
        return Err(TokenError::Expired);
    }
    Ok(())
}

fn secure_link_md5(template: &str, uri: &str, client: &str, expires_s: u64) -> String {
    use md5::Digest;
    let text = template
        .replace("$secure_link_expires", &expires_s.to_string())
        .replace("$uri", uri)
        .replace("$remote_addr", client);
    let digest = md5::Md5::digest(text.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

fn hmac(alg: HashAlg, key: &[u8], data: &[u8]) -> Vec<u8> {
    // new_from_slice takes keys of any length.
    match alg {
        HashAlg::Sha256 => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        HashAlg::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        HashAlg::Md5 => {
            let mut m = Hmac::<md5::Md5>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Constant-time HMAC check (the `hmac` crate's `verify_slice`).
fn hmac_matches(alg: HashAlg, key: &[u8], data: &[u8], mac: &[u8]) -> bool {
    match alg {
        HashAlg::Sha256 => Hmac::<sha2::Sha256>::new_from_slice(key)
            .map(|mut m| {
                m.update(data);
                m.verify_slice(mac).is_ok()
            })
            .unwrap_or(false),
        HashAlg::Sha1 => Hmac::<sha1::Sha1>::new_from_slice(key)
            .map(|mut m| {
                m.update(data);
                m.verify_slice(mac).is_ok()
            })
            .unwrap_or(false),
        HashAlg::Md5 => Hmac::<md5::Md5>::new_from_slice(key)
            .map(|mut m| {
                m.update(data);
                m.verify_slice(mac).is_ok()
            })
            .unwrap_or(false),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `*` matches any run of characters (including `/`), as EdgeAuth ACLs use it.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    parse_hex_key(s)
}

/// `%XX` escapes (tokens in URLs are sometimes escaped: `~` as `%7E`, `*` as `%2A`).
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn edgeauth(alg: HashAlg) -> TokenConfig {
        TokenConfig {
            format: TokenFormat::EdgeAuth {
                alg,
                keys: vec![parse_hex_key(KEY).unwrap()],
                param: "token".into(),
            },
            skew_s: 0,
        }
    }

    fn sign(
        acl: Option<&str>,
        url: Option<&str>,
        st: Option<u64>,
        exp: u64,
        ip: Option<&str>,
    ) -> String {
        sign_edgeauth(
            &parse_hex_key(KEY).unwrap(),
            HashAlg::Sha256,
            &EdgeAuthClaims {
                ip,
                start_s: st,
                exp_s: exp,
                acl,
                url,
                ..Default::default()
            },
        )
    }

    fn q(token: &str) -> String {
        format!("a=1&token={token}&b=2")
    }

    #[test]
    fn edgeauth_acl_tokens_cover_their_paths_until_they_expire() {
        let c = edgeauth(HashAlg::Sha256);
        let t = sign(Some("/live/cam*"), None, Some(1000), 2000, None);
        assert!(
            t.starts_with("st=1000~exp=2000~acl=/live/cam*~hmac="),
            "{t}"
        );
        for path in ["/live/cam.m3u8", "/live/cam-12.ts", "/live/cam"] {
            assert_eq!(c.verify(Some(&q(&t)), path, None, 1500), Ok(()), "{path}");
        }
        assert_eq!(
            c.verify(Some(&q(&t)), "/live/other.m3u8", None, 1500),
            Err(TokenError::AclMismatch)
        );
        assert_eq!(
            c.verify(Some(&q(&t)), "/live/cam", None, 2001),
            Err(TokenError::Expired)
        );
        assert_eq!(TokenError::Expired.status(), 410);
        assert_eq!(
            c.verify(Some(&q(&t)), "/live/cam", None, 999),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            c.verify(Some("a=1"), "/live/cam", None, 1500),
            Err(TokenError::Missing)
        );
        assert_eq!(
            c.verify(None, "/live/cam", None, 1500),
            Err(TokenError::Missing)
        );
        // A skew allowance on both ends.
        let lenient = TokenConfig {
            skew_s: 5,
            ..c.clone()
        };
        assert_eq!(
            lenient.verify(Some(&q(&t)), "/live/cam", None, 2005),
            Ok(())
        );
        assert_eq!(lenient.verify(Some(&q(&t)), "/live/cam", None, 995), Ok(()));
    }

    #[test]
    fn tampering_and_other_keys_break_the_signature() {
        let c = edgeauth(HashAlg::Sha256);
        let t = sign(Some("/live/*"), None, None, 2000, None);
        let longer = t.replace("exp=2000", "exp=9000");
        assert_eq!(
            c.verify(Some(&q(&longer)), "/live/x", None, 1),
            Err(TokenError::BadSignature)
        );
        let wider = t.replace("acl=/live/*", "acl=/*");
        assert_eq!(
            c.verify(Some(&q(&wider)), "/live/x", None, 1),
            Err(TokenError::BadSignature)
        );
        let other = sign_edgeauth(
            b"another key",
            HashAlg::Sha256,
            &EdgeAuthClaims {
                exp_s: 2000,
                acl: Some("/live/*"),
                ..Default::default()
            },
        );
        assert_eq!(
            c.verify(Some(&q(&other)), "/live/x", None, 1),
            Err(TokenError::BadSignature)
        );
        // Rotation: a second key is accepted too.
        let mut rotated = c.clone();
        if let TokenFormat::EdgeAuth { keys, .. } = &mut rotated.format {
            keys.push(b"another key".to_vec());
        }
        assert_eq!(rotated.verify(Some(&q(&other)), "/live/x", None, 1), Ok(()));
        for bad in ["exp=1", "exp=1~hmac=zz", "exp=x~hmac=00", "nope~hmac=00"] {
            assert!(
                matches!(
                    c.verify(Some(&q(bad)), "/live/x", None, 1),
                    Err(TokenError::Malformed(_) | TokenError::BadSignature)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ip_bound_url_bound_and_escaped_tokens() {
        let c = edgeauth(HashAlg::Sha256);
        let t = sign(Some("/live/*"), None, None, 2000, Some("10.0.0.7"));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(c.verify(Some(&q(&t)), "/live/x", ip("10.0.0.7"), 1), Ok(()));
        assert_eq!(
            c.verify(Some(&q(&t)), "/live/x", ip("10.0.0.8"), 1),
            Err(TokenError::IpMismatch)
        );
        // No ACL: bound to the one URL, which is hashed and not sent.
        let u = sign(None, Some("/live/x.m3u8"), None, 2000, None);
        assert!(!u.contains("url="));
        assert_eq!(c.verify(Some(&q(&u)), "/live/x.m3u8", None, 1), Ok(()));
        assert_eq!(
            c.verify(Some(&q(&u)), "/live/y.m3u8", None, 1),
            Err(TokenError::BadSignature)
        );
        let escaped = t.replace('~', "%7E").replace('*', "%2A");
        assert_eq!(
            c.verify(Some(&q(&escaped)), "/live/x", ip("10.0.0.7"), 1),
            Ok(())
        );
    }

    #[test]
    fn sha1_and_md5_and_multiple_acls() {
        for alg in [HashAlg::Sha1, HashAlg::Md5] {
            let c = edgeauth(alg);
            let t = sign_edgeauth(
                &parse_hex_key(KEY).unwrap(),
                alg,
                &EdgeAuthClaims {
                    exp_s: 10,
                    acl: Some("/a/*!/b/x*"),
                    ..Default::default()
                },
            );
            assert_eq!(
                c.verify(Some(&q(&t)), "/b/x.flv", None, 1),
                Ok(()),
                "{alg:?}"
            );
            assert_eq!(
                c.verify(Some(&q(&t)), "/c/x.flv", None, 1),
                Err(TokenError::AclMismatch)
            );
            assert_eq!(
                edgeauth(HashAlg::Sha256).verify(Some(&q(&t)), "/b/x.flv", None, 1),
                Err(TokenError::BadSignature)
            );
        }
    }

    /// The nginx documentation's own example: `secure_link_md5 "$secure_link_expires$uri$remote_addr secret";`
    /// with the link made by `echo -n '2147483647/s/link127.0.0.1 secret' | openssl md5 -binary |
    /// openssl base64 | tr +/ -_ | tr -d =` → `_e4Nc3iduzkWRm01TBBNYw`.
    #[test]
    fn secure_link_matches_nginx_docs() {
        let template = "$secure_link_expires$uri$remote_addr secret";
        assert_eq!(
            sign_secure_link(template, "/s/link", "127.0.0.1", 2147483647),
            "md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647"
        );
        let c = TokenConfig {
            format: TokenFormat::SecureLink {
                template: template.into(),
            },
            skew_s: 0,
        };
        let local = Some("127.0.0.1".parse().unwrap());
        let good = "md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647";
        assert_eq!(
            c.verify(Some(good), "/s/link", local, 1_700_000_000),
            Ok(())
        );
        assert_eq!(
            c.verify(Some(good), "/s/other", local, 1),
            Err(TokenError::BadSignature)
        );
        let old = sign_secure_link(template, "/s/link", "127.0.0.1", 100);
        assert_eq!(
            c.verify(Some(&old), "/s/link", local, 101),
            Err(TokenError::Expired)
        );
        assert_eq!(
            c.verify(Some("expires=5"), "/s/link", local, 1),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn glob_and_query_helpers() {
        assert!(glob_match("/live/*", "/live/a/b.ts"));
        assert!(glob_match("*", ""));
        assert!(glob_match("/l*e/x*", "/live/x-1.ts"));
        assert!(!glob_match("/live/x", "/live/x.ts"));
        assert!(!glob_match("/live/*.m3u8", "/live/x.ts"));
        assert_eq!(query_param("a=1&token=xyz", "token"), Some("xyz"));
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(without_param("a=1&token=x&b=2", "token"), "a=1&b=2");
        assert_eq!(parse_hex_key("0aff"), Some(vec![10, 255]));
        assert_eq!(parse_hex_key("0af"), None);
        assert_eq!(parse_hex_key("zz"), None);
    }
}
