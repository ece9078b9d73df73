//! Request bytes for loadgen's HTTP viewers. Response heads and chunked bodies are read
//! with edge-core's parsers ([`edge_core::http::parse_response_head`],
//! [`edge_core::http::Dechunker`]), the same the tests and the engine use.

use std::net::SocketAddr;

/// `GET path` with keep-alive.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-loadgen\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// Where a redirect's `Location` points: the server (an `IP:port`, as the engine's redirects
/// name nodes; a host name is not looked up) and the path with its query. A path alone stays
/// on `current`.
pub fn split_location(location: &str, current: SocketAddr) -> Option<(SocketAddr, String)> {
    if location.starts_with('/') {
        return Some((current, location.to_string()));
    }
    let rest = location.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .parse()
        .or_else(|_| format!("{authority}:80").parse())
        .ok()?;
    Some((addr, path.to_string()))
}

/// The directory of a request path (up to its last `/`, query left off): what a relative
/// URI in the playlist at `path` is resolved against.
pub fn base_of(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    &path[..path.rfind('/').map_or(0, |i| i + 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_bases() {
        let here: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            split_location("http://127.0.0.2:9000/live/x.m3u8?token=a", here),
            Some((
                "127.0.0.2:9000".parse().unwrap(),
                "/live/x.m3u8?token=a".into()
            ))
        );
        assert_eq!(
            split_location("http://127.0.0.3", here),
            Some(("127.0.0.3:80".parse().unwrap(), "/".into()))
        );
        assert_eq!(
            split_location("/other/y.m3u8", here),
            Some((here, "/other/y.m3u8".into()))
        );
        assert_eq!(split_location("https://127.0.0.2/x", here), None);
        assert_eq!(split_location("http://edge.example/x", here), None);
        assert_eq!(base_of("/live/x.m3u8?t=/a/b"), "/live/");
        assert_eq!(base_of("x.m3u8"), "");
    }
}
