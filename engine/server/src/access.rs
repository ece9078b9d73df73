//! Access checks where a peer asks to play or publish (an RTMP play or publish, an HTTP-FLV
//! request, every playlist and segment request): edge-core's policy verdict, the hook call
//! when the policy says `hook`, the counters, and one log line naming the reason. Notices
//! (`on_unpublish`, `on_stop`) go out from a task of their own and are never waited for.
//!
//! Callers ask before doing any work for the peer: before a publish reaches the owner, before
//! a viewer joins, before an edge starts a pull.
//!
//! Must not: block a shard (a hook is non-blocking I/O in the asking connection's task), log
//! a token, a key or a query, or decide anything edge-core's [`Policy`] decides.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_core::access::{
    hook_verdict, Action, GrantKey, HookEvent, HookRefusal, HookRequest, Policy, Verdict,
};
use edge_core::token::{self, EdgeAuthClaims, HashAlg, TokenError};
use edge_core::StreamKey;
use tracing::{info, warn};

use crate::hook::{self, HookFailure, HookUrl};
use crate::shard::ShardHandle;
use crate::stats::{AccessStats, Counter};

/// What a failing (unreachable, slow, garbled) play hook means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Allow,
    Deny,
}

/// The hook URLs, by event.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub on_publish: Option<HookUrl>,
    pub on_unpublish: Option<HookUrl>,
    pub on_play: Option<HookUrl>,
    pub on_stop: Option<HookUrl>,
}

impl Hooks {
    fn url(&self, event: HookEvent) -> Option<&HookUrl> {
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
pub struct UpstreamSign {
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
    pub fn stream_name(&self, app: &str, key: &StreamKey, viewer_query: Option<&str>) -> String {
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
pub struct AccessConfig {
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

/// One request to play or publish.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub action: Action,
    pub key: &'a StreamKey,
    /// As the peer sent it, without `?`.
    pub query: Option<&'a str>,
    pub peer: Option<SocketAddr>,
    /// The RTMP tcUrl, or the URL an HTTP viewer asked for.
    pub tc_url: &'a str,
    pub client_id: u64,
    /// An HLS request: a hook's allowance is remembered for the viewer's next requests.
    pub hls: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Token(TokenError),
    HookRefused(HookRefusal),
    HookFailed(HookFailure),
    /// The policy says hook but no hook URL is configured (validation prevents it).
    NoHook,
}

impl Denial {
    /// The HTTP status: 410 for an expired token, 503 when the hook could not be asked,
    /// 403 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Denial::Token(e) => e.status(),
            Denial::HookFailed(_) | Denial::NoHook => 503,
            Denial::HookRefused(_) => 403,
        }
    }

    /// The counter label.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Token(e) => e.as_str(),
            Denial::HookRefused(_) => "hook_refused",
            Denial::HookFailed(_) | Denial::NoHook => "hook_failed",
        }
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::Token(e) => write!(f, "{e}"),
            Denial::HookRefused(r) => write!(f, "refused by the hook ({r})"),
            Denial::HookFailed(e) => write!(f, "the hook failed ({e})"),
            Denial::NoHook => write!(f, "no hook configured"),
        }
    }
}

/// Unix time in seconds (a vDSO read, not a system call).
pub fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Decides `ask`; a denial is counted and logged here.
pub async fn authorize(shard: &ShardHandle, ask: &Ask<'_>) -> Result<(), Denial> {
    let cfg = &shard.config().access;
    let ip = ask.peer.map(|p| p.ip());
    let verdict = cfg.policy.check(
        ask.action,
        ask.key.app(),
        ask.key.stream(),
        ask.query,
        ip,
        unix_s(),
    );
    let result = match verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny(e) => Err(Denial::Token(e)),
        Verdict::AskHook => ask_hook(shard, ask).await,
    };
    let stats = &shard.stats().access;
    match &result {
        Ok(()) => stats.allowed[action_index(ask.action)].inc(),
        Err(d) => {
            stats.denied[action_index(ask.action)][AccessStats::reason_index(d.reason())].inc();
            info!(
                shard = %shard.id(),
                key = %ask.key,
                peer = ?ask.peer,
                action = ask.action.as_str(),
                reason = d.reason(),
                "{} denied: {d}",
                ask.action.as_str()
            );
        }
    }
    result
}

async fn ask_hook(shard: &ShardHandle, ask: &Ask<'_>) -> Result<(), Denial> {
    let cfg = &shard.config().access;
    let grant = ask.hls.then(|| GrantKey {
        ip: ask.peer.map(|p| p.ip()),
        stream: ask.key.as_str().to_string(),
        query: ask.query.map(str::to_string),
    });
    let now = shard.now_ms();
    if let Some(g) = &grant {
        if shard.grants().borrow().holds(g, now) {
            return Ok(());
        }
    }
    let event = match ask.action {
        Action::Play => HookEvent::OnPlay,
        Action::Publish => HookEvent::OnPublish,
    };
    let Some(url) = cfg.hooks.url(event) else {
        return Err(Denial::NoHook);
    };
    let body = hook_body(shard, event, ask);
    let outcome = hook::post(url, body, cfg.hook_timeout).await;
    count_hook(shard, event, &outcome);
    let result = match outcome {
        Ok((status, reply)) => hook_verdict(status, &reply).map_err(Denial::HookRefused),
        Err(failure) => {
            let open = ask.action == Action::Play && cfg.play_hook_failure == OnFailure::Allow;
            if open {
                warn!(shard = %shard.id(), key = %ask.key, "on_play hook failed ({failure}); allowing (--play-hook-failure allow)");
                Ok(())
            } else {
                Err(Denial::HookFailed(failure))
            }
        }
    };
    if let (Ok(()), Some(g)) = (&result, grant) {
        shard.grants().borrow_mut().grant(g, shard.now_ms());
    }
    result
}

fn hook_body(shard: &ShardHandle, event: HookEvent, ask: &Ask<'_>) -> String {
    HookRequest {
        event,
        server_id: &shard.config().access.node_id,
        client_id: ask.client_id,
        ip: ask.peer.map(|p| p.ip()),
        app: ask.key.app(),
        stream: ask.key.stream(),
        query: ask.query,
        tc_url: ask.tc_url,
    }
    .body()
}

/// Sends `on_unpublish` or `on_stop` for a session that ended, if that hook is configured.
pub fn notify(shard: &ShardHandle, event: HookEvent, ask: &Ask<'_>) {
    let cfg = &shard.config().access;
    let Some(url) = cfg.hooks.url(event).cloned() else {
        return;
    };
    let body = hook_body(shard, event, ask);
    let timeout = cfg.hook_timeout;
    let shard = shard.clone();
    monoio::spawn(async move {
        let outcome = hook::post(&url, body, timeout).await;
        count_hook(&shard, event, &outcome);
        if let Err(e) = outcome {
            info!(shard = %shard.id(), event = event.as_str(), "hook notice not delivered: {e}");
        }
    });
}

fn count_hook(
    shard: &ShardHandle,
    event: HookEvent,
    outcome: &Result<(u16, Vec<u8>), HookFailure>,
) {
    let label = match outcome {
        Ok((status, body)) => match hook_verdict(*status, body) {
            Ok(()) => "allowed",
            Err(_) => "refused",
        },
        Err(HookFailure::Timeout(_)) => "timeout",
        Err(HookFailure::Unreachable(_)) => "unreachable",
        Err(HookFailure::BadReply(_)) => "bad_reply",
    };
    shard.stats().access.hook_calls[event_index(event)][AccessStats::outcome_index(label)].inc();
}

pub fn action_index(a: Action) -> usize {
    match a {
        Action::Play => 0,
        Action::Publish => 1,
    }
}

pub fn event_index(e: HookEvent) -> usize {
    match e {
        HookEvent::OnPublish => 0,
        HookEvent::OnUnpublish => 1,
        HookEvent::OnPlay => 2,
        HookEvent::OnStop => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::token::{TokenConfig, TokenFormat};

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

    #[test]
    fn denials_map_to_statuses() {
        assert_eq!(Denial::Token(TokenError::Expired).status(), 410);
        assert_eq!(Denial::Token(TokenError::BadSignature).status(), 403);
        assert_eq!(Denial::HookRefused(HookRefusal::Code(1)).status(), 403);
        assert_eq!(Denial::HookFailed(HookFailure::Timeout(5)).status(), 503);
        assert_eq!(Denial::Token(TokenError::AclMismatch).reason(), "acl");
    }
}
