//! An HTTP/3 request as the HTTP/1.1 request head our routes answer, and an HTTP/1.1
//! response head as HTTP/3 response fields. With the two, HTTP/3 is served by the same code as
//! HTTP/1.1, with the same headers and bytes; only what is connection-specific in HTTP/1.1
//! (`Connection`, `Transfer-Encoding`, ...) is left out, as RFC 9114 §4.2 requires.

use super::code;
use super::qpack::Field;

/// Header fields that are about an HTTP/1.1 connection: malformed in an HTTP/3 request
/// (RFC 9114 §4.2), left out of an HTTP/3 response.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];
/// Most header fields in a request or a response head.
const MAX_FIELDS: usize = 64;

/// A malformed request or response (RFC 9114 §4.1.2): the stream ends with
/// `H3_MESSAGE_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct MessageError(pub &'static str);

impl MessageError {
    pub fn code(&self) -> u64 {
        code::MESSAGE_ERROR
    }
}

/// An HTTP/3 request's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub scheme: String,
    pub authority: Option<String>,
    /// The path and query, as sent.
    pub path: String,
    /// Regular header fields, names lowercase, in order (cookies joined into one).
    pub headers: Vec<(String, String)>,
    /// The body's length as sent (DATA frames' payloads, summed), for a request that has one.
    pub body_len: u64,
    /// The body, when it is at most [`crate::http::MAX_BODY_BYTES`] long (else empty: the
    /// routes refuse a longer one by its length, as over HTTP/1.1).
    pub body: bytes::BytesMut,
}

impl Request {
    /// Reads a request from its decoded field section.
    pub fn from_fields(fields: Vec<Field>) -> Result<Request, MessageError> {
        if fields.len() > MAX_FIELDS {
            return Err(MessageError("too many header fields"));
        }
        let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut cookies: Vec<String> = Vec::new();
        for (name, value) in fields {
            let name = String::from_utf8(name).map_err(|_| MessageError("a name not ASCII"))?;
            let value = String::from_utf8(value).map_err(|_| MessageError("a value not UTF-8"))?;
            if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(MessageError("CR, LF or NUL in a value"));
            }
            if let Some(pseudo) = name.strip_prefix(':') {
                if !headers.is_empty() || !cookies.is_empty() {
                    return Err(MessageError("a pseudo-header after a regular one"));
                }
                let slot = match pseudo {
                    "method" => &mut method,
                    "scheme" => &mut scheme,
                    "authority" => &mut authority,
                    "path" => &mut path,
                    _ => return Err(MessageError("an unknown or response pseudo-header")),
                };
                if slot.replace(value).is_some() {
                    return Err(MessageError("a pseudo-header twice"));
                }
                continue;
            }
            if name.is_empty() || !name.bytes().all(is_lowercase_token) {
                return Err(MessageError("a header name that is not a lowercase token"));
            }
            if CONNECTION_SPECIFIC.contains(&name.as_str()) || (name == "te" && value != "trailers")
            {
                return Err(MessageError("a connection-specific header"));
            }
            if name == "cookie" {
                cookies.push(value);
            } else {
                headers.push((name, value));
            }
        }
        if !cookies.is_empty() {
            // HTTP/1.1 takes one cookie header (RFC 9114 §4.2.1).
            headers.push(("cookie".into(), cookies.join("; ")));
        }
        let method = method.ok_or(MessageError("no :method"))?;
        if method == "CONNECT" {
            return Err(MessageError("CONNECT is not served"));
        }
        if !method.bytes().all(|b| b.is_ascii_uppercase()) || method.is_empty() {
            return Err(MessageError("a malformed :method"));
        }
        let scheme = scheme.ok_or(MessageError("no :scheme"))?;
        let path = path.ok_or(MessageError("no :path"))?;
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(MessageError("a :path that is not an absolute path"));
        }
        if authority
            .as_deref()
            .is_some_and(|a| a.is_empty() || a.bytes().any(|b| b <= b' ' || b == b'/'))
        {
            return Err(MessageError("a malformed :authority"));
        }
        Ok(Request {
            method,
            scheme,
            authority,
            path,
            headers,
            body_len: 0,
            body: bytes::BytesMut::new(),
        })
    }

    /// Whether a body may follow the HEADERS (every method but GET and HEAD): the request is
    /// complete only when its stream ends.
    pub fn takes_body(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }

    /// The HTTP/1.1 request head the routes would get for the same request: `Host` from
    /// `:authority` (a `host` field of its own is dropped then), every other field as it
    /// came.
    pub fn to_http1(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.path.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(a) = &self.authority {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.takes_body() {
            // The length is the body's as it came in DATA frames.
            out.extend_from_slice(format!("content-length: {}\r\n", self.body_len).as_bytes());
        }
        for (name, value) in &self.headers {
            // A client's content-length is not passed on: the body's is above, and a GET's
            // or HEAD's body is not read (a claimed length would leave the driver waiting).
            if (name == "host" && self.authority.is_some()) || name == "content-length" {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn is_lowercase_token(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*'
        | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// An HTTP/1.1 response head as HTTP/3 response fields: `:status`, then every header but the
/// connection-specific ones, names lowercased. Also returns the head's length.
pub fn response_fields(head: &[u8]) -> Result<(Vec<Field>, usize), MessageError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(MessageError("an incomplete response head")),
        Err(_) => return Err(MessageError("a response head that does not parse")),
    };
    let status = resp.code.ok_or(MessageError("no status"))?;
    let mut fields = vec![(b":status".to_vec(), status.to_string().into_bytes())];
    for h in resp.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        fields.push((name.into_bytes(), h.value.to_vec()));
    }
    Ok((fields, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(list: &[(&str, &str)]) -> Vec<Field> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_browsers_get_becomes_the_http1_request_the_routes_parse() {
        let req = Request::from_fields(f(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "edge.example:8443"),
            (
                ":path",
                "/live/x/llhls.m3u8?_HLS_msn=12&_HLS_part=3&token=abc",
            ),
            ("user-agent", "Chromium"),
            ("cookie", "a=1"),
            ("authorization", "Bearer t0k"),
            ("cookie", "b=2"),
        ]))
        .unwrap();
        let http1 = req.to_http1();
        let (parsed, used) = crate::http::parse_request(&http1).unwrap().unwrap();
        assert_eq!(used, http1.len());
        assert_eq!(parsed.method, crate::http::Method::Get);
        assert_eq!(parsed.path, "/live/x/llhls.m3u8");
        assert_eq!(
            parsed.query.as_deref(),
            Some("_HLS_msn=12&_HLS_part=3&token=abc")
        );
        assert!(parsed.keep_alive);
        let text = String::from_utf8(http1).unwrap();
        assert!(text.contains("host: edge.example:8443\r\n"), "{text}");
        assert!(text.contains("cookie: a=1; b=2\r\n"), "{text}");
    }

    #[test]
    fn malformed_requests_are_message_errors() {
        let ok = [(":method", "GET"), (":scheme", "https"), (":path", "/")];
        assert!(Request::from_fields(f(&ok)).is_ok());
        let bad: [&[(&str, &str)]; 10] = [
            &[(":method", "GET"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "https")],
            &[(":scheme", "https"), (":path", "/")],
            &[
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":status", "200"),
            ],
            &[
                (":method", "GET"),
                ("accept", "*/*"),
                (":scheme", "https"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("Accept", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("connection", "close"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/a\r\nx: y"),
            ],
            &[(":method", "CONNECT"), (":scheme", "https"), (":path", "/")],
        ];
        for fields in bad {
            let e = Request::from_fields(f(fields)).unwrap_err();
            assert_eq!(e.code(), code::MESSAGE_ERROR, "{fields:?}");
        }
    }

    #[test]
    fn a_response_head_becomes_fields_without_its_connection_headers() {
        let head = crate::http::response_head(200, "video/mp2t", Some(1234), "max-age=3600", true);
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"body");
        let (fields, len) = response_fields(&bytes).unwrap();
        assert_eq!(len, head.len());
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        let names: Vec<_> = fields.iter().map(|(n, _)| n.clone()).collect();
        assert!(names.contains(&b"content-type".to_vec()));
        assert!(names.contains(&b"content-length".to_vec()));
        assert!(!names
            .iter()
            .any(|n| n == b"connection" || n == b"transfer-encoding"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: video/x-flv\r\nConnection: keep-alive\r\n\r\n";
        let (fields, _) = response_fields(chunked).unwrap();
        assert_eq!(
            fields,
            vec![
                (b":status".to_vec(), b"200".to_vec()),
                (b"content-type".to_vec(), b"video/x-flv".to_vec()),
            ]
        );
        assert!(response_fields(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
