//! RESP2, the Redis protocol, sans-IO: commands encoded as arrays of bulk strings, replies
//! decoded incrementally from whatever bytes arrived.
//!
//! Must not: trust a length the server sends. Every bulk string, array and nesting depth is
//! bounded ([`Limits`]); a reply beyond them is an error, and the connection is closed by the
//! caller (the protocol cannot be resynchronised).

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array (`*-1`).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The text of a bulk or simple string, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(a)) => Some(a),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

/// Bounds on what a reply may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bulk: usize,
    pub max_elements: usize,
    pub max_depth: usize,
    /// The longest line (simple string, error, integer, header).
    pub max_line: usize,
    /// The most bytes buffered for one reply.
    pub max_reply: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk: 1 << 20,
            max_elements: 1 << 16,
            max_depth: 4,
            max_line: 4096,
            max_reply: 16 << 20,
        }
    }
}

/// A reply the decoder cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("unknown reply type byte {0:#04x}")]
    Type(u8),
    #[error("a malformed length or integer")]
    Number,
    #[error("a line longer than {0} bytes")]
    Line(usize),
    #[error("a bulk string of {0} bytes is over the limit")]
    Bulk(i64),
    #[error("an array of {0} elements is over the limit")]
    Elements(i64),
    #[error("arrays nested deeper than {0}")]
    Depth(usize),
    #[error("a reply longer than {0} bytes")]
    Reply(usize),
    #[error("a bulk string not ended by CRLF")]
    Terminator,
}

/// Encodes one command as an array of bulk strings.
pub fn command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// An incremental reply decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            limits,
        }
    }

    /// Bytes from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole reply, if one has arrived.
    pub fn next_reply(&mut self) -> Result<Option<Value>, RespError> {
        match parse(&self.buf, 0, &self.limits)? {
            // Bounded whole or in part, so that where the bytes were split never matters.
            Some((_, used)) if used > self.limits.max_reply => {
                Err(RespError::Reply(self.limits.max_reply))
            }
            Some((value, used)) => {
                self.buf.drain(..used);
                Ok(Some(value))
            }
            None => {
                // Nothing whole yet: what is buffered is bounded by the largest reply allowed.
                if self.buf.len() > self.limits.max_reply {
                    return Err(RespError::Reply(self.limits.max_reply));
                }
                Ok(None)
            }
        }
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// One line (without CRLF) starting at `at`, and where the next begins.
fn line<'a>(
    buf: &'a [u8],
    at: usize,
    limits: &Limits,
) -> Result<Option<(&'a [u8], usize)>, RespError> {
    let rest = &buf[at.min(buf.len())..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end > limits.max_line => Err(RespError::Line(limits.max_line)),
        Some(end) => Ok(Some((&rest[..end], at + end + 2))),
        None if rest.len() > limits.max_line + 1 => Err(RespError::Line(limits.max_line)),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(RespError::Number)
}

/// A reply starting at `at`, with the offset after it; `None` when incomplete.
fn parse(buf: &[u8], at: usize, limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    parse_depth(buf, at, limits, 0)
}

fn parse_depth(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1, limits)? else {
        return Ok(None);
    };
    let string = || String::from_utf8_lossy(text).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Simple(string()), next))),
        b'-' => Ok(Some((Value::Error(string()), next))),
        b':' => Ok(Some((Value::Integer(number(text)?), next))),
        b'$' => {
            let n = number(text)?;
            if n == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            if n < 0 || n as u64 > limits.max_bulk as u64 {
                return Err(RespError::Bulk(n));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(RespError::Terminator);
            }
            Ok(Some((
                Value::Bulk(Some(buf[next..next + n].to_vec())),
                next + n + 2,
            )))
        }
        b'*' => {
            let n = number(text)?;
            if n == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            if n < 0 || n as u64 > limits.max_elements as u64 {
                return Err(RespError::Elements(n));
            }
            if depth >= limits.max_depth {
                return Err(RespError::Depth(limits.max_depth));
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            let mut at = next;
            for _ in 0..n {
                match parse_depth(buf, at, limits, depth + 1)? {
                    Some((v, after)) => {
                        items.push(v);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(RespError::Type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Result<Vec<Value>, RespError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        // Byte by byte: every split point must work.
        for b in bytes {
            d.feed(std::slice::from_ref(b));
            while let Some(v) = d.next_reply()? {
                out.push(v);
            }
        }
        Ok(out)
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&["SET", "k", "v w"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv w\r\n");
    }

    #[test]
    fn replies_decode_at_any_split() {
        let got = all(
            b"+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:-7\r\n*-1\r\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                Value::Simple("OK".into()),
                Value::Error("ERR no".into()),
                Value::Integer(42),
                Value::Bulk(Some(b"a\r\n".to_vec())),
                Value::Bulk(None),
                Value::Array(Some(vec![
                    Value::Bulk(Some(b"x".to_vec())),
                    Value::Array(Some(vec![Value::Integer(-7)])),
                ])),
                Value::Array(None),
            ]
        );
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        assert_eq!(
            all(b"$99999999999\r\n"),
            Err(RespError::Bulk(99_999_999_999))
        );
        assert_eq!(all(b"*9999999\r\n"), Err(RespError::Elements(9_999_999)));
        assert_eq!(all(b"$-2\r\n"), Err(RespError::Bulk(-2)));
        assert_eq!(
            all(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(RespError::Depth(4))
        );
        assert_eq!(all(b"$1\r\nab\r\n"), Err(RespError::Terminator));
        assert_eq!(all(b"?\r\n"), Err(RespError::Type(b'?')));
        assert_eq!(all(b":x\r\n"), Err(RespError::Number));
        let long = [b"+".as_slice(), &[b'a'; 5000]].concat();
        assert_eq!(all(&long), Err(RespError::Line(4096)));
    }
}
