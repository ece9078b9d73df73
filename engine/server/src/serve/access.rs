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

use edge_core::access::{
    hook_verdict, Action, GrantKey, HookEvent, HookRefusal, HookRequest, Verdict,
};
use edge_core::token::TokenError;
use edge_core::StreamKey;
use tracing::{info, warn};

use crate::config::access::{unix_s, OnFailure};
use crate::machine::stats::{AccessStats, Counter};
use crate::shard::ShardHandle;
use crate::upstream::hook::{self, HookFailure};

/// One request to play or publish.
#[derive(Debug, Clone)]
pub(crate) struct Ask<'a> {
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
pub(crate) enum Denial {
    Token(TokenError),
    HookRefused(HookRefusal),
    HookFailed(HookFailure),
    /// The policy says hook but no hook URL is configured (validation prevents it).
    NoHook,
}

impl Denial {
    /// The HTTP status: 410 for an expired token, 503 when the hook could not be asked,
    /// 403 otherwise.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Denial::Token(e) => e.status(),
            Denial::HookFailed(_) | Denial::NoHook => 503,
            Denial::HookRefused(_) => 403,
        }
    }

    /// The counter label.
    pub(crate) fn reason(&self) -> &'static str {
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

/// Decides `ask`; a denial is counted and logged here.
pub(crate) async fn authorize(shard: &ShardHandle, ask: &Ask<'_>) -> Result<(), Denial> {
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
pub(crate) fn notify(shard: &ShardHandle, event: HookEvent, ask: &Ask<'_>) {
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

pub(crate) fn action_index(a: Action) -> usize {
    match a {
        Action::Play => 0,
        Action::Publish => 1,
    }
}

pub(crate) fn event_index(e: HookEvent) -> usize {
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

    #[test]
    fn denials_map_to_statuses() {
        assert_eq!(Denial::Token(TokenError::Expired).status(), 410);
        assert_eq!(Denial::Token(TokenError::BadSignature).status(), 403);
        assert_eq!(Denial::HookRefused(HookRefusal::Code(1)).status(), 403);
        assert_eq!(Denial::HookFailed(HookFailure::Timeout(5)).status(), 503);
        assert_eq!(Denial::Token(TokenError::AclMismatch).reason(), "acl");
    }
}
