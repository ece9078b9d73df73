//! WebRTC playback's decisions that need no socket: H.264 as RTP payloads ([`h264`]), AAC as
//! Opus ([`audio`]), keyframe requests answered from the cache ([`rewind`]) and the names of
//! WHEP sessions ([`SessionId`]), which say the shard that holds them.

pub mod audio;
pub mod h264;
pub mod rewind;

use std::fmt;

/// Largest SDP offer a WHEP `POST` may carry (browsers send 3–6 KB; a bundle of many
/// transceivers stays far below this).
pub const MAX_OFFER_BYTES: usize = 16 * 1024;

/// A WHEP session's id: its shard in the top byte, 56 random bits below, so a session's URL
/// cannot be guessed and any shard can tell where a `DELETE` for it must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    pub fn new(shard: usize, random: u64) -> Self {
        SessionId(((shard as u64 & 0xff) << 56) | (random & ((1 << 56) - 1)))
    }

    /// The shard that holds the session.
    pub fn shard(self) -> usize {
        (self.0 >> 56) as usize
    }

    /// Parses the 16 hex digits [`fmt::Display`] writes.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The `a=mid:` of each media section of `kind` (`video`, `audio`) of an SDP offer, in order
/// (str0m parses the offer itself; this only finds which of its sections carry what).
pub fn media_mids<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    let mut video = false;
    let mut out = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            video = m.strip_prefix(kind).is_some_and(|r| r.starts_with(' '));
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if video && !mid.is_empty() {
                out.push(mid.trim());
            }
        }
    }
    out
}

/// The local ICE username fragment a STUN Binding request is for: the part of its USERNAME
/// attribute before the colon (RFC 8445 §7.2.2: `local:remote` as the receiver names them).
/// `None` for anything else. Only the header and the attributes' lengths are read; the
/// message's integrity is str0m's to check.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    const BINDING_REQUEST: u16 = 0x0001;
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    let header = datagram.get(..20)?;
    if u16::from_be_bytes([header[0], header[1]]) != BINDING_REQUEST || header[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attrs = datagram.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let n = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + n)?;
        if kind == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            // An empty fragment names no session (str0m's are never empty).
            return name
                .split_once(':')
                .map(|(local, _)| local)
                .filter(|local| !local.is_empty());
        }
        attrs = attrs.get(4 + n.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    None
}

/// A reason for a client from an SDP parser's error text: one line, without the memory
/// address str0m's parser puts in it ("Parse error at PointerOffset(0x7f…)"), which would
/// tell a peer where the engine's heap is.
pub fn offer_error_reason(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find("PointerOffset(") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        rest = rest.find(')').map_or("", |end| &rest[end + 1..]);
    }
    out.push_str(rest);
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.trim().trim_end_matches(" at"))
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_errors_reason_is_one_line_without_an_address() {
        let raw =
            "SDP parse: Parse error at PointerOffset(0x7f29e4052a43)\nUnexpected ` `\n\nsdp line\n";
        assert_eq!(
            offer_error_reason(raw),
            "SDP parse: Parse error; Unexpected ` `; sdp line"
        );
        assert_eq!(offer_error_reason("PointerOffset(0x1"), "");
        assert_eq!(offer_error_reason("no offer"), "no offer");
    }

    #[test]
    fn a_binding_requests_local_ufrag_is_read_and_other_datagrams_have_none() {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        // PRIORITY (4 bytes), then USERNAME "abcd:xyz" (8 bytes), then a padded attribute.
        m.extend_from_slice(&[0x00, 0x24, 0, 4, 1, 2, 3, 4]);
        m.extend_from_slice(&[0x00, 0x06, 0, 8]);
        m.extend_from_slice(b"abcd:xyz");
        m.extend_from_slice(&[0x80, 0x29, 0, 3, 1, 2, 3, 0]);
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(stun_local_ufrag(&m), Some("abcd"));
        let mut empty = m.clone();
        empty[32..36].copy_from_slice(b":::x");
        assert_eq!(stun_local_ufrag(&empty), None);
        let mut response = m.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(stun_local_ufrag(&response), None);
        assert_eq!(stun_local_ufrag(&m[..30]), None, "cut short");
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None, "RTP");
    }

    #[test]
    fn the_video_sections_mids_are_found_in_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=application 9 x\r\na=mid:2\r\nm=video 9 y\r\na=mid:v2\r\n";
        assert_eq!(media_mids(sdp, "video"), vec!["1", "v2"]);
        assert_eq!(media_mids(sdp, "audio"), vec!["0"]);
        assert!(media_mids("garbage\na=mid:9", "video").is_empty());
    }

    #[test]
    fn a_session_id_names_its_shard_and_round_trips_through_its_text() {
        let id = SessionId::new(3, u64::MAX);
        assert_eq!(id.shard(), 3);
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(SessionId::parse("03ffffffffffffff"), Some(id));
        assert_eq!(SessionId::parse("3ffffffffffffff"), None);
        assert_eq!(SessionId::parse("03fffffffffffffg"), None);
        assert_eq!(SessionId::parse("+3ffffffffffffff"), None);
    }
}
