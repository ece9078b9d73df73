//! Which stream an RTMP play or publish names, and its `?query`, from what the client sent:
//! the connect's `app` and `tcUrl`, and the play/publish name.
//!
//! Clients cut `rtmp://HOST/APP/STREAM?QUERY` into an app and a name at a `/`, and the
//! common ones do not stop at the `?`. A signed URL's query usually holds a `/` (an EdgeAuth
//! ACL such as `acl=/live/*`), and then:
//! - ffmpeg's native RTMP cuts at the `/` after the second path segment when there is
//!   another: app `live/a?token=st=1~exp=2~acl=`, name `live/*~hmac=…`;
//! - librtmp (rtmpdump, older OBS) cuts after the fourth `/`: app
//!   `live/a?token=…~acl=/live`, name `*~hmac=…`;
//! - OBS with the query on the server URL sends app `live?token=…` and name `a`;
//! - GStreamer's rtmp2 parses the URI first and sends app `live`, name `a?token=…`.
//!
//! Resolving, in steps:
//! 1. An app whose part before `?` holds a `/` was cut inside the query: join app, `/` and
//!    name back into `live/a?…` and split that at its first `?`.
//! 2. Otherwise a `?` in the app is the app's own query (step 3 keeps it).
//! 3. The name's own `?query` follows the name; with a query on the app too, both are kept,
//!    joined by `&` (the app's first). With neither, a query on the tcUrl's path is used.
//! 4. What is left must be one app and one stream name ([`StreamKey::new`]'s rules).
//!
//! Must not: decode escapes (a token's own parser does, for what it reads), or guess past
//! these rules: a name that fits none of them is refused with its reason.

use crate::media::StreamKey;

/// Why a play or publish names no stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The app and name, joined, are not `app/stream` with valid parts (empty, `.`/`..`, a
    /// `/` inside a part, not printable ASCII, over 256 bytes).
    #[error("invalid stream name {0:?}")]
    Invalid(String),
}

/// The stream a play or publish names, and the query it came with (not empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: StreamKey,
    pub query: Option<String>,
}

/// Resolves the connect's `app` (a trailing `/` removed), its `tc_url`, and the play or
/// publish `name` into a stream and its query.
pub fn resolve(app: &str, tc_url: &str, name: &str) -> Result<Target, NameError> {
    let invalid = || NameError::Invalid(format!("{app}/{name}"));
    let (app_path, app_query) = split_query(app);
    let (path, query) = if app_path.contains('/') {
        // Step 1: the cut fell inside the query.
        let joined = format!("{app}/{name}");
        let (path, query) = split_query(&joined);
        let (a, s) = path.split_once('/').ok_or_else(invalid)?;
        ((a.to_string(), s.to_string()), query.map(str::to_string))
    } else {
        // Steps 2 and 3.
        let (stream, name_query) = split_query(name);
        let query = match (app_query, name_query) {
            (Some(a), Some(n)) => Some(format!("{a}&{n}")),
            (a, n) => a.or(n).or_else(|| tc_url_query(tc_url)).map(str::to_string),
        };
        ((app_path.to_string(), stream.to_string()), query)
    };
    let key = StreamKey::new(&path.0, &path.1).ok_or_else(invalid)?;
    // Step 4: `StreamKey::new` drops a `?` it sees, so a part that still held one is refused
    // rather than cut short.
    if path.0.contains('?') || path.1.contains('?') {
        return Err(invalid());
    }
    Ok(Target {
        key,
        query: query.filter(|q| !q.is_empty()),
    })
}

/// `text` before its first `?`, and what follows it.
fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    }
}

/// The query of a tcUrl (`rtmp://host/app?query`), if its path has one.
fn tc_url_query(tc_url: &str) -> Option<&str> {
    let rest = tc_url.split_once("://").map_or(tc_url, |(_, r)| r);
    let path = rest.split_once('/')?.1;
    split_query(path).1.filter(|q| !q.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "token=st=1700000000~exp=1700003600~acl=/live/*~hmac=0123abcd";

    fn ok(app: &str, tc_url: &str, name: &str) -> (String, Option<String>) {
        let t = resolve(app, tc_url, name).unwrap_or_else(|e| panic!("{app} | {name}: {e}"));
        (t.key.as_str().to_string(), t.query)
    }

    /// Cuts `live/a?TOKEN` as ffmpeg's rtmpproto.c does: after the second segment when a
    /// third `/` follows (the app up to that `/`, the name after it).
    fn ffmpeg_cut(path: &str) -> (String, String) {
        let first = path.find('/').unwrap();
        match path[first + 1..].find('/') {
            Some(i) => {
                let at = first + 1 + i;
                (path[..at].to_string(), path[at + 1..].to_string())
            }
            None => (path[..first].to_string(), path[first + 1..].to_string()),
        }
    }

    /// Cuts as librtmp's RTMP_ParseURL does: the app runs to the fourth `/` of the URL's
    /// path when there is one (else the third, else the second).
    fn librtmp_cut(path: &str) -> (String, String) {
        let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
        let at = slashes
            .get(2)
            .or(slashes.get(1))
            .or(slashes.first())
            .unwrap();
        (path[..*at].to_string(), path[at + 1..].to_string())
    }

    #[test]
    fn a_plain_name_and_a_query_on_the_name() {
        assert_eq!(ok("live", "rtmp://h/live", "a"), ("live/a".into(), None));
        assert_eq!(
            ok("live", "rtmp://h/live", &format!("a?{TOKEN}")),
            ("live/a".into(), Some(TOKEN.into()))
        );
        assert_eq!(ok("live", "rtmp://h/live", "a?"), ("live/a".into(), None));
    }

    #[test]
    fn ffmpeg_cuts_a_signed_url_inside_its_query_and_the_url_is_put_back() {
        let (app, name) = ffmpeg_cut(&format!("live/a?{TOKEN}"));
        assert_eq!(app, "live/a?token=st=1700000000~exp=1700003600~acl=");
        assert_eq!(name, "live/*~hmac=0123abcd");
        assert_eq!(
            ok(&app, &format!("rtmp://h:1935/{app}"), &name),
            ("live/a".into(), Some(TOKEN.into()))
        );
    }

    #[test]
    fn librtmp_cuts_elsewhere_and_the_url_is_put_back_too() {
        let (app, name) = librtmp_cut(&format!("live/a?{TOKEN}"));
        assert_eq!(app, "live/a?token=st=1700000000~exp=1700003600~acl=/live");
        assert_eq!(name, "*~hmac=0123abcd");
        assert_eq!(
            ok(&app, &format!("rtmp://h/{app}"), &name),
            ("live/a".into(), Some(TOKEN.into()))
        );
    }

    #[test]
    fn a_query_on_the_app_stays_the_apps_and_joins_the_names() {
        // OBS: server rtmp://h/live?k=1, stream key a.
        assert_eq!(
            ok("live?k=1", "rtmp://h/live?k=1", "a"),
            ("live/a".into(), Some("k=1".into()))
        );
        assert_eq!(
            ok("live?k=1", "rtmp://h/live?k=1", "a?m=2"),
            ("live/a".into(), Some("k=1&m=2".into()))
        );
        // A `/` in the app's own query does not make it a cut URL.
        assert_eq!(
            ok("live?acl=/x/*", "rtmp://h/live", "a"),
            ("live/a".into(), Some("acl=/x/*".into()))
        );
    }

    #[test]
    fn a_query_only_on_the_tc_url_is_used() {
        assert_eq!(
            ok("live", &format!("rtmp://h:1935/live?{TOKEN}"), "a"),
            ("live/a".into(), Some(TOKEN.into()))
        );
        assert_eq!(ok("live", "rtmp://h/live?", "a"), ("live/a".into(), None));
        assert_eq!(ok("live", "", "a"), ("live/a".into(), None));
    }

    #[test]
    fn a_percent_encoded_query_passes_through_unchanged() {
        let q = "token=st=1~exp=2~acl=%2Flive%2F%2A~hmac=ab";
        assert_eq!(
            ok("live", "rtmp://h/live", &format!("a?{q}")),
            ("live/a".into(), Some(q.into()))
        );
    }

    #[test]
    fn what_fits_no_rule_is_refused() {
        for (app, name) in [
            ("live", ""),
            ("", "a"),
            ("live", ".."),
            ("live/x", "a"),
            ("live", "a/b"),
            ("live/a/b?q=1", "x"),
            ("li ve", "a"),
        ] {
            assert!(
                matches!(resolve(app, "", name), Err(NameError::Invalid(_))),
                "{app} | {name}"
            );
        }
    }
}
