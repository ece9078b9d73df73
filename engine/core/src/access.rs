//! Who may play and who may publish: the per-app policy (none, token or hook), the
//! SRS-compatible hook protocol (the JSON a hook is sent, the verdict read from its reply),
//! and the short-lived grants that spare an HLS viewer one hook call per segment.
//!
//! Every token is checked against the stream's path, `/{app}/{stream}`, whichever protocol
//! asks (RTMP, HTTP-FLV, the HLS playlist, each segment): one token covers one stream on every
//! protocol, and an ACL such as `/live/*` covers an app.
//!
//! Must not: do I/O, read a clock (callers pass `now_ms`/`now_s`), or log.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::json;
use crate::token::{TokenConfig, TokenError};

/// What a peer asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Play,
    Publish,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Play => "play",
            Action::Publish => "publish",
        }
    }
}

/// How an action is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Anyone may.
    None,
    /// A valid token in the query.
    Token,
    /// The hook's verdict (`--on-play` / `--on-publish`).
    Hook,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "none" => Some(Mode::None),
            "token" => Some(Mode::Token),
            "hook" => Some(Mode::Hook),
            _ => None,
        }
    }
}

/// One action's mode, with per-app exceptions (`--play-auth token --play-auth free=none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeByApp {
    default: Mode,
    apps: Vec<(String, Mode)>,
}

impl Default for ModeByApp {
    fn default() -> Self {
        ModeByApp {
            default: Mode::None,
            apps: Vec::new(),
        }
    }
}

impl ModeByApp {
    /// Parses `MODE` and `APP=MODE` specs; the last `MODE` is the default, an app named twice
    /// is an error.
    pub fn parse(specs: &[String]) -> Result<ModeByApp, String> {
        ModeByApp::default().parse_over(specs)
    }

    /// Sets `app`'s mode (a config file's `[apps.NAME]` table).
    pub fn set(&mut self, app: &str, mode: Mode) {
        match self.apps.iter_mut().find(|(a, _)| a == app) {
            Some((_, m)) => *m = mode,
            None => self.apps.push((app.to_string(), mode)),
        }
    }

    /// Parses specs as [`ModeByApp::parse`] does, over the modes already set: a spec wins
    /// over a mode set before it; an app named twice among the specs is an error.
    pub fn parse_over(self, specs: &[String]) -> Result<ModeByApp, String> {
        let mut out = self;
        let mut named: Vec<&str> = Vec::new();
        for spec in specs {
            let (app, mode) = match spec.split_once('=') {
                Some((app, mode)) => (Some(app.trim()), mode.trim()),
                None => (None, spec.trim()),
            };
            let mode = Mode::parse(mode)
                .ok_or_else(|| format!("{spec:?}: the mode is none, token or hook"))?;
            match app {
                None => out.default = mode,
                Some("") => return Err(format!("{spec:?}: empty app name")),
                Some(app) if named.contains(&app) => {
                    return Err(format!("{spec:?}: app {app} given twice"))
                }
                Some(app) => {
                    named.push(app);
                    out.set(app, mode);
                }
            }
        }
        Ok(out)
    }

    /// The mode for `app` (without any `?query`).
    pub fn mode(&self, app: &str) -> Mode {
        self.apps
            .iter()
            .find(|(a, _)| a == app)
            .map_or(self.default, |(_, m)| *m)
    }

    /// Whether any app uses `mode`.
    pub fn uses(&self, mode: Mode) -> bool {
        self.default == mode || self.apps.iter().any(|(_, m)| *m == mode)
    }
}

/// The access policy of a node.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub play: ModeByApp,
    pub publish: ModeByApp,
    /// Required when any mode is `token`.
    pub tokens: Option<TokenConfig>,
}

/// What the policy says about one request, before any hook is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(TokenError),
    /// Ask the hook (the engine calls it, then [`hook_verdict`]).
    AskHook,
}

impl Policy {
    /// Decides `action` on `app/stream` carrying `query`, from `client`, at `now_s`.
    pub fn check(
        &self,
        action: Action,
        app: &str,
        stream: &str,
        query: Option<&str>,
        client: Option<IpAddr>,
        now_s: u64,
    ) -> Verdict {
        let modes = match action {
            Action::Play => &self.play,
            Action::Publish => &self.publish,
        };
        match modes.mode(app) {
            Mode::None => Verdict::Allow,
            Mode::Hook => Verdict::AskHook,
            Mode::Token => {
                let Some(tokens) = &self.tokens else {
                    // Validation refuses this configuration; fail closed regardless.
                    return Verdict::Deny(TokenError::Missing);
                };
                let path = format!("/{app}/{stream}");
                match tokens.verify(query, &path, client, now_s) {
                    Ok(()) => Verdict::Allow,
                    Err(e) => Verdict::Deny(e),
                }
            }
        }
    }
}

/// A hook event, as SRS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    OnPublish,
    OnUnpublish,
    OnPlay,
    OnStop,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::OnPublish => "on_publish",
            HookEvent::OnUnpublish => "on_unpublish",
            HookEvent::OnPlay => "on_play",
            HookEvent::OnStop => "on_stop",
        }
    }

    /// Whether the reply decides anything (on_unpublish and on_stop are notices).
    pub fn decides(self) -> bool {
        matches!(self, HookEvent::OnPublish | HookEvent::OnPlay)
    }
}

/// What a hook is told: SRS's `http_hooks` fields.
#[derive(Debug, Clone)]
pub struct HookRequest<'a> {
    pub event: HookEvent,
    pub server_id: &'a str,
    pub client_id: u64,
    pub ip: Option<IpAddr>,
    pub app: &'a str,
    pub stream: &'a str,
    /// The query as the peer sent it, without `?`.
    pub query: Option<&'a str>,
    /// `rtmp://…/app` as the peer declared it; for HTTP, the URL it asked for.
    pub tc_url: &'a str,
}

impl HookRequest<'_> {
    /// The JSON body SRS sends (`param` keeps its leading `?`, as SRS's does).
    pub fn body(&self) -> String {
        let param = self.query.map(|q| format!("?{q}")).unwrap_or_default();
        let ip = self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let mut fields = vec![
            ("server_id", json::string(self.server_id)),
            ("service_id", json::string(self.server_id)),
            ("action", json::string(self.event.as_str())),
            ("client_id", json::string(&self.client_id.to_string())),
            ("ip", json::string(&ip)),
            ("vhost", json::string("__defaultVhost__")),
            ("app", json::string(self.app)),
            ("tcUrl", json::string(self.tc_url)),
            ("stream", json::string(self.stream)),
            ("param", json::string(&param)),
            (
                "stream_url",
                json::string(&format!("/{}/{}", self.app, self.stream)),
            ),
            (
                "stream_id",
                json::string(&format!("{}/{}", self.app, self.stream)),
            ),
        ];
        if self.event == HookEvent::OnPlay {
            fields.push(("pageUrl", json::string("")));
        }
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(","))
    }
}

/// Why a hook did not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookRefusal {
    /// An HTTP status other than 200.
    Status(u16),
    /// A reply code other than 0.
    Code(i64),
    /// A 200 whose body is neither a number nor an object with a `code`.
    Unreadable,
}

impl fmt::Display for HookRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookRefusal::Status(s) => write!(f, "HTTP {s}"),
            HookRefusal::Code(c) => write!(f, "code {c}"),
            HookRefusal::Unreadable => write!(f, "an unreadable reply"),
        }
    }
}

/// SRS's rule: HTTP 200 with body `0`, or a JSON object whose `code` is 0, allows.
pub fn hook_verdict(status: u16, body: &[u8]) -> Result<(), HookRefusal> {
    if status != 200 {
        return Err(HookRefusal::Status(status));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| HookRefusal::Unreadable)?
        .trim();
    let code = match text.parse::<i64>() {
        Ok(code) => code,
        Err(_) => top_level_code(text).ok_or(HookRefusal::Unreadable)?,
    };
    if code == 0 {
        Ok(())
    } else {
        Err(HookRefusal::Code(code))
    }
}

/// The integer `code` member of a JSON object, looking only at the top level (a nested
/// `{"data":{"code":0}}` does not count).
fn top_level_code(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = 0;
    // Whether the next string at depth 1 is a key.
    let mut expect_key = false;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = b[i] == b'{' && depth == 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b',' => {
                expect_key = depth == 1;
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let s = text.get(start..j.min(b.len()))?;
                i = j + 1;
                if depth == 1 && expect_key {
                    expect_key = false;
                    let rest = text.get(i..)?.trim_start();
                    let value = rest.strip_prefix(':')?.trim_start();
                    if s == "code" {
                        let end = value
                            .find(|c: char| !(c == '-' || c.is_ascii_digit()))
                            .unwrap_or(value.len());
                        return value[..end].parse().ok();
                    }
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Who a grant is for: one client address, one stream, one query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub ip: Option<IpAddr>,
    pub stream: String,
    pub query: Option<String>,
}

/// Recent hook allowances, so an HLS viewer's playlist reloads and segments ask the hook
/// once per `ttl_ms` rather than once per request. Bounded: when full, expired grants go;
/// when still full, nothing new is remembered (the hook is asked again).
#[derive(Debug)]
pub struct Grants {
    ttl_ms: u64,
    cap: usize,
    until: HashMap<GrantKey, u64>,
}

impl Grants {
    pub fn new(ttl_ms: u64, cap: usize) -> Grants {
        Grants {
            ttl_ms,
            cap,
            until: HashMap::new(),
        }
    }

    /// Whether `key` was allowed less than the TTL ago.
    pub fn holds(&self, key: &GrantKey, now_ms: u64) -> bool {
        self.until.get(key).is_some_and(|&t| now_ms < t)
    }

    /// Remembers that the hook allowed `key` at `now_ms`.
    pub fn grant(&mut self, key: GrantKey, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        if self.until.len() >= self.cap && !self.until.contains_key(&key) {
            self.until.retain(|_, &mut t| now_ms < t);
            if self.until.len() >= self.cap {
                return;
            }
        }
        self.until.insert(key, now_ms.saturating_add(self.ttl_ms));
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{sign_edgeauth, EdgeAuthClaims, HashAlg, TokenFormat};

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modes_by_app() {
        let m = ModeByApp::parse(&specs(&["token", "free=none", "vip=hook"])).unwrap();
        assert_eq!(m.mode("live"), Mode::Token);
        assert_eq!(m.mode("free"), Mode::None);
        assert_eq!(m.mode("vip"), Mode::Hook);
        assert!(m.uses(Mode::Hook) && !ModeByApp::default().uses(Mode::Token));
        assert!(ModeByApp::parse(&specs(&["tokens"])).is_err());
        assert!(ModeByApp::parse(&specs(&["a=none", "a=token"])).is_err());
        assert!(ModeByApp::parse(&specs(&["=none"])).is_err());
        // A config file's app modes, with the flags' specs over them.
        let mut file = ModeByApp::default();
        file.set("free", Mode::Token);
        file.set("vip", Mode::Hook);
        let m = file.parse_over(&specs(&["free=none", "token"])).unwrap();
        assert_eq!(
            (m.mode("free"), m.mode("vip"), m.mode("other")),
            (Mode::None, Mode::Hook, Mode::Token)
        );
    }

    #[test]
    fn token_policy_checks_the_stream_path() {
        let key = b"k3y".to_vec();
        let policy = Policy {
            play: ModeByApp::parse(&specs(&["token"])).unwrap(),
            publish: ModeByApp::default(),
            tokens: Some(TokenConfig {
                format: TokenFormat::EdgeAuth {
                    alg: HashAlg::Sha256,
                    keys: vec![key.clone()],
                    param: "token".into(),
                },
                skew_s: 0,
            }),
        };
        let token = sign_edgeauth(
            &key,
            HashAlg::Sha256,
            &EdgeAuthClaims {
                exp_s: 2000,
                acl: Some("/live/a*"),
                ..Default::default()
            },
        );
        let q = format!("token={token}");
        let play = |stream: &str, q: Option<&str>, now| {
            policy.check(Action::Play, "live", stream, q, None, now)
        };
        assert_eq!(play("a", Some(&q), 1000), Verdict::Allow);
        assert_eq!(
            play("b", Some(&q), 1000),
            Verdict::Deny(TokenError::AclMismatch)
        );
        assert_eq!(
            play("a", Some(&q), 3000),
            Verdict::Deny(TokenError::Expired)
        );
        assert_eq!(play("a", None, 1000), Verdict::Deny(TokenError::Missing));
        // Publishing is open in this policy.
        assert_eq!(
            policy.check(Action::Publish, "live", "a", None, None, 1000),
            Verdict::Allow
        );
        let hooked = Policy {
            publish: ModeByApp::parse(&specs(&["hook"])).unwrap(),
            ..Policy::default()
        };
        assert_eq!(
            hooked.check(Action::Publish, "live", "a", None, None, 0),
            Verdict::AskHook
        );
    }

    #[test]
    fn hook_bodies_carry_srs_fields() {
        let r = HookRequest {
            event: HookEvent::OnPublish,
            server_id: "edge-1",
            client_id: 7,
            ip: Some("10.0.0.2".parse().unwrap()),
            app: "live",
            stream: "cam\"1",
            query: Some("token=x"),
            tc_url: "rtmp://h/live",
        };
        let body = r.body();
        for want in [
            "\"action\":\"on_publish\"",
            "\"client_id\":\"7\"",
            "\"ip\":\"10.0.0.2\"",
            "\"vhost\":\"__defaultVhost__\"",
            "\"app\":\"live\"",
            "\"stream\":\"cam\\\"1\"",
            "\"param\":\"?token=x\"",
            "\"server_id\":\"edge-1\"",
            "\"tcUrl\":\"rtmp://h/live\"",
        ] {
            assert!(body.contains(want), "{want} in {body}");
        }
        assert!(!body.contains("pageUrl"));
    }

    #[test]
    fn hook_verdicts_follow_srs() {
        assert_eq!(hook_verdict(200, b"0"), Ok(()));
        assert_eq!(hook_verdict(200, b" 0\n"), Ok(()));
        assert_eq!(hook_verdict(200, br#"{"code": 0, "msg": "ok"}"#), Ok(()));
        assert_eq!(
            hook_verdict(200, br#"{"msg":"code","code":403}"#),
            Err(HookRefusal::Code(403))
        );
        assert_eq!(hook_verdict(200, b"1"), Err(HookRefusal::Code(1)));
        assert_eq!(hook_verdict(403, b"0"), Err(HookRefusal::Status(403)));
        assert_eq!(hook_verdict(200, b""), Err(HookRefusal::Unreadable));
        assert_eq!(hook_verdict(200, b"ok"), Err(HookRefusal::Unreadable));
        assert_eq!(
            hook_verdict(200, br#"{"data":{"code":0}}"#),
            Err(HookRefusal::Unreadable)
        );
        assert_eq!(
            hook_verdict(200, br#"{"s":"\"code\":0","code":5}"#),
            Err(HookRefusal::Code(5))
        );
        assert_eq!(
            hook_verdict(200, &[0xff, 0x30]),
            Err(HookRefusal::Unreadable)
        );
    }

    #[test]
    fn grants_expire_and_stay_bounded() {
        let key = |s: &str| GrantKey {
            ip: None,
            stream: s.into(),
            query: None,
        };
        let mut g = Grants::new(1000, 2);
        g.grant(key("a"), 0);
        assert!(g.holds(&key("a"), 999) && !g.holds(&key("a"), 1000));
        g.grant(key("b"), 10);
        g.grant(key("c"), 20);
        assert!(!g.holds(&key("c"), 30), "full: not remembered");
        g.grant(key("c"), 1005);
        assert!(g.holds(&key("c"), 1006), "an expired grant made room");
        assert!(g.len() <= 2);
        let mut off = Grants::new(0, 2);
        off.grant(key("a"), 0);
        assert!(off.is_empty());
    }
}
