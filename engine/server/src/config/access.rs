//! Access settings, validated by the config: the play and publish policy (edge-core's), the
//! hook URLs, what a failing play hook means, and how an edge signs its upstream URLs.
//!
//! Must not: check a request (the serving layer's `access` does), or call a hook.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_core::access::{HookEvent, Policy};
use edge_core::token::{self, EdgeAuthClaims, HashAlg};
use edge_core::StreamKey;

/// What a failing (unreachable, slow, garbled) play hook means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    Allow,
    Deny,
}

/// The hook URLs, by event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hooks {
    pub on_publish: Option<HookUrl>,
    pub on_unpublish: Option<HookUrl>,
    pub on_play: Option<HookUrl>,
    pub on_stop: Option<HookUrl>,
}

impl Hooks {
    pub(crate) fn url(&self, event: HookEvent) -> Option<&HookUrl> {
        match event {
            HookEvent::OnPublish => self.on_publish.as_ref(),
            HookEvent::OnUnpublish => self.on_unpublish.as_ref(),
            HookEvent::OnPlay => self.on_play.as_ref(),
            HookEvent::OnStop => self.on_stop.as_ref(),
        }
    }
}

/// How an edge signs its own upstream URLs (`--upstream-sign-key`). `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct UpstreamSign {
    pub key: Vec<u8>,
    pub alg: HashAlg,
    pub param: String,
    pub ttl_s: u64,
}

impl std::fmt::Debug for UpstreamSign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSign")
            .field("key", &format_args!("<hidden>"))
            .field("alg", &self.alg)
            .field("param", &self.param)
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

impl UpstreamSign {
    /// `{stream}?…` for origin app `app`: the viewer's query without its token, plus a fresh
    /// token for `/{app}/{stream}` valid from now for the TTL.
    pub(crate) fn stream_name(
        &self,
        app: &str,
        key: &StreamKey,
        viewer_query: Option<&str>,
    ) -> String {
        let now = unix_s();
        let acl = format!("/{app}/{}", key.stream());
        let token = token::sign_edgeauth(
            &self.key,
            self.alg,
            &EdgeAuthClaims {
                exp_s: now + self.ttl_s,
                acl: Some(&acl),
                ..Default::default()
            },
        );
        let rest = viewer_query.map(|q| token::without_param(q, &self.param));
        let mut query = format!("{}={token}", self.param);
        if let Some(rest) = rest.filter(|r| !r.is_empty()) {
            query = format!("{rest}&{query}");
        }
        format!("{}?{query}", key.stream())
    }
}

/// Access settings (validated by the config).
#[derive(Debug, Clone)]
pub(crate) struct AccessConfig {
    pub policy: Policy,
    pub hooks: Hooks,
    pub hook_timeout: Duration,
    pub play_hook_failure: OnFailure,
    /// How long an HLS viewer's hook allowance covers its next requests.
    pub hook_grant_ms: u64,
    /// `server_id` in hook bodies.
    pub node_id: String,
    pub upstream_sign: Option<UpstreamSign>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            policy: Policy::default(),
            hooks: Hooks::default(),
            hook_timeout: Duration::from_secs(3),
            play_hook_failure: OnFailure::Deny,
            hook_grant_ms: 30_000,
            node_id: "edge-engine".into(),
            upstream_sign: None,
        }
    }
}

/// Unix time in seconds (a vDSO read, not a system call).
pub(crate) fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a hook is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query, as sent in the request line.
    pub(crate) target: String,
    /// `Host:` header value.
    pub(crate) authority: String,
}

impl HookUrl {
    pub(crate) fn parse(url: &str) -> Result<HookUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: hooks are http:// URLs"))?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p:?}"))?,
            ),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || target.bytes().any(|b| b <= b' ') {
            return Err(format!("{url}: not a usable hook URL"));
        }
        Ok(HookUrl {
            host: host.to_string(),
            port,
            target: target.to_string(),
            authority: authority.to_string(),
        })
    }
}

impl std::fmt::Display for HookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::token::{TokenConfig, TokenError, TokenFormat};

    #[test]
    fn upstream_names_carry_a_fresh_token_for_the_origin_app() {
        let sign = UpstreamSign {
            key: b"edge-key".to_vec(),
            alg: HashAlg::Sha1,
            param: "token".into(),
            ttl_s: 60,
        };
        let key = StreamKey::new("live", "cam").unwrap();
        let name = sign.stream_name("origin-app", &key, Some("a=1&token=viewers-old-one"));
        let (stream, query) = name.split_once('?').unwrap();
        assert_eq!(stream, "cam");
        assert!(query.starts_with("a=1&token="), "{query}");
        assert!(!query.contains("viewers-old-one"));
        let origin = TokenConfig {
            format: TokenFormat::EdgeAuth {
                alg: HashAlg::Sha1,
                keys: vec![b"edge-key".to_vec()],
                param: "token".into(),
            },
            skew_s: 0,
        };
        let now = unix_s();
        assert_eq!(
            origin.verify(Some(query), "/origin-app/cam", None, now),
            Ok(())
        );
        assert_eq!(
            origin.verify(Some(query), "/origin-app/other", None, now),
            Err(TokenError::AclMismatch)
        );
        assert_eq!(
            origin.verify(Some(query), "/origin-app/cam", None, now + 120),
            Err(TokenError::Expired)
        );
        assert!(sign.stream_name("o", &key, None).starts_with("cam?token="));
    }
}
