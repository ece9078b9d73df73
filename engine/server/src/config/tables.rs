//! The config file's tables, for what one flag per setting cannot say: `[apps.NAME]` (one
//! app's access modes, HLS cutting and stream limits) and `[[origins]]` (one origin's role,
//! connect timeout, signing key and egress path). Read by serde with unknown keys refused;
//! checked here into what the shards use.
//!
//! Must not: read files or the command line (`file` does), or reach the network.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{anyhow, bail};
use edge_core::access::Mode;
use edge_core::gop::GopLimits;
use edge_core::hls::pull::HttpOrigin;
use edge_core::hls::HlsConfig;
use edge_core::upstream::OriginUrl;
use serde::Deserialize;

use crate::config::access::UpstreamSign;
use crate::net::dial::Egress;

/// One `[apps.NAME]` table: settings for the streams of app NAME; what it leaves out comes
/// from the top-level settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSettings {
    /// Who may play: `none`, `token` or `hook` (as `--play-auth NAME=MODE`).
    pub play_auth: Option<AuthMode>,
    /// Who may publish (as `--publish-auth NAME=MODE`).
    pub publish_auth: Option<AuthMode>,
    /// As `--hls-segment-ms`, for this app's streams.
    pub hls_segment_ms: Option<u64>,
    /// As `--hls-window`.
    pub hls_window: Option<usize>,
    /// As `--gop-max-frames`.
    pub gop_max_frames: Option<usize>,
    /// As `--gop-max-bytes`.
    pub gop_max_bytes: Option<usize>,
    /// As `--republish-grace-ms`.
    pub republish_grace_ms: Option<u64>,
    /// As `--play-wait-ms`.
    pub play_wait_ms: Option<u64>,
}

/// An access mode in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthMode {
    None,
    Token,
    Hook,
}

impl From<AuthMode> for Mode {
    fn from(m: AuthMode) -> Mode {
        match m {
            AuthMode::None => Mode::None,
            AuthMode::Token => Mode::Token,
            AuthMode::Hook => Mode::Hook,
        }
    }
}

/// One `[[origins]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OriginSettings {
    /// As `--origin`: `rtmp[s]://HOST[:PORT]/APP` or `http[s]://HOST[:PORT]/PATH`.
    pub url: String,
    /// `primary` (the default) or `backup`: backups come after every primary in the
    /// failover order, whatever their place in the file.
    #[serde(default)]
    pub role: OriginRole,
    /// Connecting (name, TCP and TLS handshakes) may take this long; default
    /// `upstream_timeout_ms`.
    pub connect_timeout_ms: Option<u64>,
    /// RTMP origins: sign pulls and forwards to this origin with this key (hex) instead of
    /// `upstream_sign_key`.
    pub sign_key: Option<String>,
    /// Connect from this local address (a source address routed over one uplink).
    pub bind: Option<IpAddr>,
    /// Connect through this network interface only (`SO_BINDTODEVICE`; needs
    /// CAP_NET_RAW).
    pub interface: Option<String>,
    /// Mark the connection's packets for `ip rule fwmark` routing (`SO_MARK`; needs
    /// CAP_NET_ADMIN).
    pub mark: Option<u32>,
}

/// An origin's place in the failover order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OriginRole {
    #[default]
    Primary,
    Backup,
}

/// What a stream of one app is held to: the top-level settings with the app's table over
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamPolicy {
    pub hls: HlsConfig,
    pub gop: GopLimits,
    pub republish_grace_ms: u64,
    pub play_wait_ms: u64,
}

/// Every app's stream policy: the default, and the apps with a table that changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppPolicies {
    pub default: StreamPolicy,
    pub apps: BTreeMap<String, StreamPolicy>,
}

impl AppPolicies {
    /// The policy for the streams of `app`.
    pub(crate) fn get(&self, app: &str) -> &StreamPolicy {
        self.apps.get(app).unwrap_or(&self.default)
    }

    /// Checks every table over `default`.
    pub(crate) fn new(
        default: StreamPolicy,
        tables: &BTreeMap<String, AppSettings>,
    ) -> anyhow::Result<AppPolicies> {
        let mut apps = BTreeMap::new();
        for (name, t) in tables {
            if name.is_empty() || name.contains(['/', '?', ' ']) {
                bail!("[apps.{name:?}]: an app name has no '/', '?' or space");
            }
            let p = StreamPolicy {
                hls: HlsConfig {
                    segment_ms: t.hls_segment_ms.unwrap_or(default.hls.segment_ms),
                    window: t.hls_window.unwrap_or(default.hls.window),
                    keep_extra: default.hls.keep_extra,
                    part_ms: default.hls.part_ms,
                },
                gop: GopLimits {
                    max_frames: t.gop_max_frames.unwrap_or(default.gop.max_frames),
                    max_bytes: t.gop_max_bytes.unwrap_or(default.gop.max_bytes),
                },
                republish_grace_ms: t.republish_grace_ms.unwrap_or(default.republish_grace_ms),
                play_wait_ms: t.play_wait_ms.unwrap_or(default.play_wait_ms),
            };
            p.check().map_err(|e| anyhow!("[apps.{name}] {e}"))?;
            if p != default {
                apps.insert(name.clone(), p);
            }
        }
        Ok(AppPolicies { default, apps })
    }
}

impl StreamPolicy {
    /// The bounds every policy keeps (the flags' and the tables' alike); the error names
    /// the setting.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if !(100..=60_000).contains(&self.hls.segment_ms) {
            bail!("hls-segment-ms must be within 100..=60000");
        }
        if !(1..=100).contains(&self.hls.window) {
            bail!("hls-window must be within 1..=100");
        }
        if self.hls.part_ms > self.hls.segment_ms {
            bail!("hls-part-ms must not exceed hls-segment-ms");
        }
        if self.gop.max_frames == 0 || self.gop.max_bytes == 0 {
            bail!("gop-max-frames and gop-max-bytes must be positive");
        }
        Ok(())
    }
}

/// An origin's own settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginPath {
    pub origin: OriginRef,
    pub role: OriginRole,
    pub connect_timeout_ms: Option<u64>,
    /// Replaces `--upstream-sign-key` for this origin.
    pub sign: Option<UpstreamSign>,
    pub egress: Egress,
}

/// Which origin a path is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginRef {
    Rtmp(OriginUrl),
    Http(HttpOrigin),
}

impl std::fmt::Display for OriginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginRef::Rtmp(u) => write!(f, "{u}"),
            OriginRef::Http(o) => write!(f, "{o}"),
        }
    }
}

impl OriginPath {
    /// Checks one table; `sign` turns a hex key into the signer (with the node's algorithm,
    /// parameter and TTL).
    pub(crate) fn new(
        t: &OriginSettings,
        sign: impl Fn(&str) -> anyhow::Result<UpstreamSign>,
    ) -> anyhow::Result<OriginPath> {
        let at = |e: String| anyhow!("[[origins]] {}: {e}", t.url);
        let origin = if t.url.starts_with("http://") || t.url.starts_with("https://") {
            OriginRef::Http(HttpOrigin::parse(&t.url).map_err(|e| at(e.to_string()))?)
        } else {
            OriginRef::Rtmp(OriginUrl::parse(&t.url).map_err(|e| at(e.to_string()))?)
        };
        if let Some(ms) = t.connect_timeout_ms {
            if !(100..=600_000).contains(&ms) {
                return Err(at("connect_timeout_ms must be within 100..=600000".into()));
            }
        }
        let sign = match (&t.sign_key, &origin) {
            (None, _) => None,
            (Some(k), OriginRef::Rtmp(_)) => Some(sign(k).map_err(|e| at(format!("{e:#}")))?),
            (Some(_), OriginRef::Http(_)) => {
                return Err(at(
                    "sign_key is for RTMP origins (HLS pulls are not signed)".into(),
                ))
            }
        };
        if let Some(i) = &t.interface {
            // IFNAMSIZ is 16 with the NUL.
            if i.is_empty() || i.len() > 15 || i.contains(['/', ' ', '\0']) {
                return Err(at(format!("interface {i:?}: not an interface name")));
            }
        }
        Ok(OriginPath {
            origin,
            role: t.role,
            connect_timeout_ms: t.connect_timeout_ms,
            sign,
            egress: Egress {
                bind: t.bind,
                interface: t.interface.clone(),
                mark: t.mark,
            },
        })
    }

    /// Whether this path is for `url`.
    pub(crate) fn is_rtmp(&self, url: &OriginUrl) -> bool {
        matches!(&self.origin, OriginRef::Rtmp(o) if o == url)
    }

    /// Whether this path is for an HTTP origin at this host, port and scheme.
    pub(crate) fn is_http(&self, host: &str, port: u16, tls: bool) -> bool {
        matches!(&self.origin, OriginRef::Http(o) if o.host == host && o.port == port && o.tls == tls)
    }
}

/// The `[[origins]]` URLs in failover order: every primary, then every backup, each in the
/// file's order.
pub(crate) fn failover_order(tables: &[OriginSettings]) -> Vec<String> {
    let mut sorted: Vec<&OriginSettings> = tables.iter().collect();
    sorted.sort_by_key(|t| t.role);
    sorted.into_iter().map(|t| t.url.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> StreamPolicy {
        StreamPolicy {
            hls: HlsConfig::default(),
            gop: GopLimits {
                max_frames: 10,
                max_bytes: 1000,
            },
            republish_grace_ms: 5,
            play_wait_ms: 6,
        }
    }

    #[test]
    fn an_app_table_changes_only_what_it_names() {
        let tables: BTreeMap<String, AppSettings> = toml::from_str(
            "[low]\nhls_segment_ms = 1000\nhls_window = 3\n[same]\nplay_auth = \"token\"\n",
        )
        .unwrap();
        let p = AppPolicies::new(default_policy(), &tables).unwrap();
        let low = p.get("low");
        assert_eq!((low.hls.segment_ms, low.hls.window), (1000, 3));
        assert_eq!(low.gop, default_policy().gop);
        assert_eq!(low.hls.keep_extra, default_policy().hls.keep_extra);
        assert_eq!(p.get("same"), &default_policy());
        assert_eq!(p.get("other"), &default_policy());
        assert_eq!(p.apps.len(), 1, "an app that changes nothing is not listed");
    }

    #[test]
    fn app_tables_are_held_to_the_flags_bounds() {
        let bad = |text: &str| {
            let tables: BTreeMap<String, AppSettings> = toml::from_str(text).unwrap();
            AppPolicies::new(default_policy(), &tables)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad("[a]\nhls_window = 0\n"),
            "[apps.a] hls-window must be within 1..=100"
        );
        assert!(bad("[\"a/b\"]\nhls_window = 2\n").contains("no '/'"));
        assert!(toml::from_str::<BTreeMap<String, AppSettings>>("[a]\ncolour = 1\n").is_err());
        assert!(
            toml::from_str::<BTreeMap<String, AppSettings>>("[a]\nplay_auth = \"maybe\"\n")
                .is_err()
        );
    }

    #[test]
    fn origin_tables_are_checked_and_backups_come_last() {
        #[derive(Deserialize)]
        struct Doc {
            origins: Vec<OriginSettings>,
        }
        let doc: Doc = toml::from_str(
            "[[origins]]\nurl = \"rtmp://b/live\"\nrole = \"backup\"\n\
             [[origins]]\nurl = \"rtmp://a/live\"\nbind = \"127.0.0.2\"\nmark = 7\n\
             [[origins]]\nurl = \"http://c:8080/hls\"\ninterface = \"eth1\"\n",
        )
        .unwrap();
        assert_eq!(
            failover_order(&doc.origins),
            ["rtmp://a/live", "http://c:8080/hls", "rtmp://b/live"]
        );
        let no_sign = |_: &str| -> anyhow::Result<UpstreamSign> { bail!("unused") };
        let a = OriginPath::new(&doc.origins[1], no_sign).unwrap();
        assert!(a.is_rtmp(&OriginUrl::parse("rtmp://a/live").unwrap()));
        assert!(!a.is_rtmp(&OriginUrl::parse("rtmp://a/other").unwrap()));
        assert_eq!(a.egress.bind, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(a.egress.mark, Some(7));
        let c = OriginPath::new(&doc.origins[2], no_sign).unwrap();
        assert!(c.is_http("c", 8080, false) && !c.is_http("c", 8080, true));
        let mut t = doc.origins[2].clone();
        t.sign_key = Some("00".into());
        let e = OriginPath::new(&t, no_sign).unwrap_err().to_string();
        assert!(e.contains("sign_key is for RTMP origins"), "{e}");
        t.sign_key = None;
        t.interface = Some("a-name-longer-than-ifnamsiz".into());
        assert!(OriginPath::new(&t, no_sign).is_err());
        t.interface = None;
        t.connect_timeout_ms = Some(5);
        assert!(OriginPath::new(&t, no_sign).is_err());
        t.connect_timeout_ms = None;
        t.url = "ftp://x/y".into();
        assert!(OriginPath::new(&t, no_sign).is_err());
    }
}
