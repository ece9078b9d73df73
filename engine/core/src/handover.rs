//! The zero-downtime upgrade's wire format: the messages the running engine and its
//! successor exchange over a Unix seqpacket socket (`--upgrade-socket` / `--upgrade-from`),
//! encoded and parsed here, sans-IO. One message is one packet of at most [`MAX_MESSAGE`]
//! bytes of ASCII text ending in `\n`; a `Listener` packet carries its socket as SCM_RIGHTS
//! ancillary data, which the engine attaches and takes off.
//!
//! The exchange, successor first:
//!
//! ```text
//! new → old  HELLO 1 <pid>
//! old → new  LISTENER <service> <addr>     (one per listening socket, each with its fd)
//! old → new  RELAY <addr>                  (optional: where the old one serves its streams)
//! old → new  STREAM <app>/<name>           (each stream it holds, after RELAY)
//! old → new  END <count>                   (or REFUSED <reason>)
//! new → old  READY                         (its shards accept on the sockets)
//! old → new  DRAINING <pid>                (it has stopped accepting and drains)
//! ```
//!
//! The relay lets the new engine serve streams whose publishers stay connected to the old
//! one (a publisher is not moved by a handover): it pulls them from the RELAY address, an
//! RTMP listener on loopback that the old engine keeps while it drains.
//!
//! Must not: do I/O, or trust a packet: every field is checked and bounded.

use std::fmt;
use std::net::SocketAddr;

/// The protocol version a successor speaks.
pub const VERSION: u32 = 1;

/// The largest packet either side sends or accepts.
pub const MAX_MESSAGE: usize = 256;

/// The most listening sockets one handover carries (shards × services).
pub const MAX_LISTENERS: usize = 4096;

/// The most streams one handover names.
pub const MAX_STREAMS: usize = 65_536;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        version: u32,
        pid: u32,
    },
    /// A listening socket: what it serves (`rtmp`, `http`, `rtmps`, `https`) and where.
    Listener {
        service: String,
        addr: SocketAddr,
    },
    /// The old engine's private RTMP listener for the new one's pulls (loopback).
    Relay {
        addr: SocketAddr,
    },
    /// A stream the old engine holds (`app/name`, a valid stream key).
    Stream {
        key: crate::media::StreamKey,
    },
    End {
        count: usize,
    },
    Refused {
        reason: String,
    },
    Ready,
    Draining {
        pid: u32,
    },
}

/// Why a packet is not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    TooLong(usize),
    NotText,
    Unterminated,
    Unknown(String),
    BadField(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLong(n) => write!(f, "message of {n} bytes (at most {MAX_MESSAGE})"),
            Error::NotText => f.write_str("message is not printable ASCII"),
            Error::Unterminated => f.write_str("message does not end in a newline"),
            Error::Unknown(w) => write!(f, "unknown message {w:?}"),
            Error::BadField(name) => write!(f, "bad or missing field: {name}"),
        }
    }
}

impl std::error::Error for Error {}

/// The services a listener may carry.
const SERVICES: [&str; 4] = ["rtmp", "http", "rtmps", "https"];

impl Message {
    /// The packet for this message.
    pub fn encode(&self) -> Vec<u8> {
        let text = match self {
            Message::Hello { version, pid } => format!("HELLO {version} {pid}\n"),
            Message::Listener { service, addr } => format!("LISTENER {service} {addr}\n"),
            Message::Relay { addr } => format!("RELAY {addr}\n"),
            Message::Stream { key } => format!("STREAM {key}\n"),
            Message::End { count } => format!("END {count}\n"),
            Message::Refused { reason } => {
                // Kept to one printable line that fits a packet.
                let clean: String = reason
                    .chars()
                    .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
                    .take(MAX_MESSAGE - "REFUSED \n".len())
                    .collect();
                format!("REFUSED {clean}\n")
            }
            Message::Ready => "READY\n".to_string(),
            Message::Draining { pid } => format!("DRAINING {pid}\n"),
        };
        text.into_bytes()
    }

    /// Parses one packet.
    pub fn parse(packet: &[u8]) -> Result<Message, Error> {
        if packet.len() > MAX_MESSAGE {
            return Err(Error::TooLong(packet.len()));
        }
        let Some(body) = packet.strip_suffix(b"\n") else {
            return Err(Error::Unterminated);
        };
        if !body.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(Error::NotText);
        }
        // Printable ASCII is UTF-8.
        let text = std::str::from_utf8(body).map_err(|_| Error::NotText)?;
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        let mut fields = (!rest.is_empty())
            .then(|| rest.split(' '))
            .into_iter()
            .flatten();
        let mut next = |name: &'static str| {
            fields
                .next()
                .filter(|f| !f.is_empty())
                .ok_or(Error::BadField(name))
        };
        let message = match word {
            "HELLO" => {
                let version = number(next("version")?, "version")?;
                let pid = number(next("pid")?, "pid")?;
                Message::Hello { version, pid }
            }
            "LISTENER" => {
                let service = next("service")?;
                if !SERVICES.contains(&service) {
                    return Err(Error::BadField("service"));
                }
                let service = service.to_string();
                let addr = next("addr")?.parse().map_err(|_| Error::BadField("addr"))?;
                Message::Listener { service, addr }
            }
            "RELAY" => Message::Relay {
                addr: next("addr")?.parse().map_err(|_| Error::BadField("addr"))?,
            },
            "STREAM" => {
                let text = next("key")?;
                let (app, name) = text.split_once('/').ok_or(Error::BadField("key"))?;
                match crate::media::StreamKey::new(app, name) {
                    Some(key) if key.as_str() == text => Message::Stream { key },
                    _ => return Err(Error::BadField("key")),
                }
            }
            "END" => {
                let count: usize = number(next("count")?, "count")?;
                if count > MAX_LISTENERS {
                    return Err(Error::BadField("count"));
                }
                Message::End { count }
            }
            // The reason is free text: everything after the word.
            "REFUSED" => {
                return Ok(Message::Refused {
                    reason: rest.to_string(),
                })
            }
            "READY" => Message::Ready,
            "DRAINING" => Message::Draining {
                pid: number(next("pid")?, "pid")?,
            },
            other => return Err(Error::Unknown(other.chars().take(16).collect())),
        };
        if fields.next().is_some() {
            return Err(Error::BadField("trailing"));
        }
        Ok(message)
    }
}

fn number<T: std::str::FromStr>(field: &str, name: &'static str) -> Result<T, Error> {
    if field.len() > 10 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadField(name));
    }
    field.parse().map_err(|_| Error::BadField(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let all = [
            Message::Hello {
                version: 1,
                pid: 4242,
            },
            Message::Listener {
                service: "rtmp".into(),
                addr: "127.0.0.1:1935".parse().unwrap(),
            },
            Message::Listener {
                service: "https".into(),
                addr: "[::1]:8443".parse().unwrap(),
            },
            Message::End { count: 8 },
            Message::Relay {
                addr: "127.0.0.1:40123".parse().unwrap(),
            },
            Message::Stream {
                key: crate::media::StreamKey::new("live", "x").unwrap(),
            },
            Message::Refused {
                reason: "already draining".into(),
            },
            Message::Ready,
            Message::Draining { pid: 7 },
        ];
        for m in all {
            assert_eq!(Message::parse(&m.encode()), Ok(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn bad_packets_are_errors() {
        let bad: [(&[u8], Error); 13] = [
            (b"RELAY nowhere\n", Error::BadField("addr")),
            (b"STREAM live\n", Error::BadField("key")),
            (b"STREAM live/a/b\n", Error::BadField("key")),
            (b"STREAM live/x?token=1\n", Error::BadField("key")),
            (b"READY", Error::Unterminated),
            (b"HELLO 1\n", Error::BadField("pid")),
            (b"HELLO -1 3\n", Error::BadField("version")),
            (b"HELLO 1 99999999999\n", Error::BadField("pid")),
            (b"LISTENER ftp 127.0.0.1:21\n", Error::BadField("service")),
            (b"LISTENER rtmp localhost:1935\n", Error::BadField("addr")),
            (b"END 5000\n", Error::BadField("count")),
            (b"READY now\n", Error::BadField("trailing")),
            (b"HELLO 1 \x01\n", Error::NotText),
        ];
        for (packet, want) in bad {
            assert_eq!(Message::parse(packet), Err(want), "{packet:?}");
        }
        assert_eq!(
            Message::parse(&[b'A'; MAX_MESSAGE + 1]),
            Err(Error::TooLong(MAX_MESSAGE + 1))
        );
        assert!(matches!(Message::parse(b"BYE\n"), Err(Error::Unknown(_))));
    }

    #[test]
    fn a_refusal_reason_is_one_bounded_line() {
        let m = Message::Refused {
            reason: format!("line one\nline two{}", "x".repeat(1000)),
        };
        let packet = m.encode();
        assert!(packet.len() <= MAX_MESSAGE);
        match Message::parse(&packet) {
            Ok(Message::Refused { reason }) => assert!(reason.starts_with("line one line two")),
            other => panic!("{other:?}"),
        }
    }
}
