//! A media playlist parser (RFC 8216 §4.3), for players written in Rust (the load generator's
//! HLS viewers, the tests) and for the HLS pull of an edge (`hls::pull`), which also reads a
//! multivariant playlist's variant URIs and EXT-X-SERVER-CONTROL here.
//! Tolerant of tags it does not know, strict on the ones it uses.

/// A malformed playlist.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum M3u8Error {
    /// The first line is not `#EXTM3U`.
    #[error("not an M3U8 playlist")]
    NotM3u8,
    /// A tag the parser needs has a value it cannot read.
    #[error("bad value on line {line}: {text}")]
    BadValue { line: usize, text: String },
    /// A URI line without an EXTINF before it.
    #[error("segment URI without EXTINF on line {0}")]
    UriWithoutExtinf(usize),
    /// A tag RFC 8216 allows once, before the first segment, seen again or after one
    /// (EXT-X-MEDIA-SEQUENCE, EXT-X-DISCONTINUITY-SEQUENCE).
    #[error("{tag} repeated or after the first segment, line {line}")]
    MisplacedTag { line: usize, tag: &'static str },
}

/// One listed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistSegment {
    pub seq: u64,
    pub duration_ms: u64,
    pub uri: String,
    pub discontinuity: bool,
}

/// A parsed media playlist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaPlaylist {
    pub target_duration_s: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<PlaylistSegment>,
    pub ended: bool,
    /// A multivariant playlist's variant URIs (EXT-X-STREAM-INF), in order; empty for a
    /// media playlist.
    pub variants: Vec<String>,
    /// EXT-X-SERVER-CONTROL says CAN-BLOCK-RELOAD=YES (LL-HLS blocking reloads).
    pub can_block_reload: bool,
}

/// Parses a media playlist.
pub fn parse_media_playlist(text: &str) -> Result<MediaPlaylist, M3u8Error> {
    let mut lines = text.lines().enumerate().map(|(n, l)| (n + 1, l.trim()));
    match lines.next() {
        Some((_, "#EXTM3U")) => {}
        _ => return Err(M3u8Error::NotM3u8),
    }
    let mut p = MediaPlaylist::default();
    let mut duration: Option<u64> = None;
    let mut discontinuity = false;
    let mut variant_next = false;
    let (mut seen_media_sequence, mut seen_discontinuity_sequence) = (false, false);
    let bad = |line: usize, text: &str| M3u8Error::BadValue {
        line,
        text: text.to_string(),
    };
    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration_s = v.parse().map_err(|_| bad(n, line))?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            // Once, before any segment (RFC 8216 4.3.3.2): a second one would renumber the
            // segments after it but not those before.
            let tag = "EXT-X-MEDIA-SEQUENCE";
            if std::mem::replace(&mut seen_media_sequence, true) || !p.segments.is_empty() {
                return Err(M3u8Error::MisplacedTag { line: n, tag });
            }
            p.media_sequence = v.parse().map_err(|_| bad(n, line))?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            let tag = "EXT-X-DISCONTINUITY-SEQUENCE";
            if std::mem::replace(&mut seen_discontinuity_sequence, true) || !p.segments.is_empty() {
                return Err(M3u8Error::MisplacedTag { line: n, tag });
            }
            p.discontinuity_sequence = v.parse().map_err(|_| bad(n, line))?;
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if line == "#EXT-X-ENDLIST" {
            p.ended = true;
        } else if line.starts_with("#EXT-X-STREAM-INF:") {
            variant_next = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            p.can_block_reload = v.split(',').any(|a| a.trim() == "CAN-BLOCK-RELOAD=YES");
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let secs = v.split(',').next().unwrap_or("");
            let value: f64 = secs.trim().parse().map_err(|_| bad(n, line))?;
            if !(0.0..=86_400.0).contains(&value) {
                return Err(bad(n, line));
            }
            duration = Some((value * 1000.0).round() as u64);
        } else if line.starts_with('#') {
            // Other tags (VERSION, PROGRAM-DATE-TIME, ...) do not change what we fetch.
        } else if std::mem::take(&mut variant_next) {
            p.variants.push(line.to_string());
        } else {
            let duration_ms = duration.take().ok_or(M3u8Error::UriWithoutExtinf(n))?;
            // An origin may announce any media sequence; the next one must still exist.
            let seq = p
                .media_sequence
                .checked_add(p.segments.len() as u64)
                .ok_or_else(|| bad(n, line))?;
            p.segments.push(PlaylistSegment {
                seq,
                duration_ms,
                uri: line.to_string(),
                discontinuity: std::mem::take(&mut discontinuity),
            });
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_segmenter_renders() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXTINF:2.000,\ncam-41.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.960,\n\
cam-42.ts\n#EXT-X-ENDLIST\n";
        let p = parse_media_playlist(text).unwrap();
        assert_eq!(
            (
                p.target_duration_s,
                p.media_sequence,
                p.discontinuity_sequence
            ),
            (2, 41, 1)
        );
        assert!(p.ended);
        assert_eq!(
            p.segments,
            vec![
                PlaylistSegment {
                    seq: 41,
                    duration_ms: 2000,
                    uri: "cam-41.ts".into(),
                    discontinuity: false
                },
                PlaylistSegment {
                    seq: 42,
                    duration_ms: 1960,
                    uri: "cam-42.ts".into(),
                    discontinuity: true
                },
            ]
        );
    }

    /// Regression (issue 11): `media_sequence + segments.len()` overflowed.
    #[test]
    fn regression_media_sequence_at_u64_max() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
        assert!(matches!(
            parse_media_playlist(text),
            Err(M3u8Error::BadValue { line: 6, .. })
        ));
        let one = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1,\na.ts\n";
        assert_eq!(parse_media_playlist(one).unwrap().segments[0].seq, u64::MAX);
    }

    /// Regression (fuzz, m3u8): a media sequence after the first segment renumbered only the
    /// segments after it.
    #[test]
    fn regression_media_sequence_after_a_segment() {
        let late = "#EXTM3U\n#EXTINF:2,\na.ts\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2,\nb.ts\n";
        assert_eq!(
            parse_media_playlist(late),
            Err(M3u8Error::MisplacedTag {
                line: 4,
                tag: "EXT-X-MEDIA-SEQUENCE"
            })
        );
        let twice = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MEDIA-SEQUENCE:41\n";
        assert!(matches!(
            parse_media_playlist(twice),
            Err(M3u8Error::MisplacedTag { line: 3, .. })
        ));
        let disc = "#EXTM3U\n#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY-SEQUENCE:3\n";
        assert!(matches!(
            parse_media_playlist(disc),
            Err(M3u8Error::MisplacedTag { line: 4, .. })
        ));
    }

    #[test]
    fn multivariant_and_server_control() {
        let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nx_lo.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000000\nx_hi.m3u8\n";
        let p = parse_media_playlist(text).unwrap();
        assert_eq!(p.variants, ["x_lo.m3u8", "x_hi.m3u8"]);
        assert!(p.segments.is_empty() && !p.can_block_reload);
        let ll = "#EXTM3U\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0\n";
        assert!(parse_media_playlist(ll).unwrap().can_block_reload);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(
            parse_media_playlist("HTTP/1.1 404"),
            Err(M3u8Error::NotM3u8)
        );
        assert!(matches!(
            parse_media_playlist("#EXTM3U\n#EXTINF:abc,\nx.ts"),
            Err(M3u8Error::BadValue { line: 2, .. })
        ));
        assert_eq!(
            parse_media_playlist("#EXTM3U\nx.ts"),
            Err(M3u8Error::UriWithoutExtinf(2))
        );
    }
}
