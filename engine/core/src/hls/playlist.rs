//! The TS media playlist, rendered: the segmenter's playlists and an HLS pull's are both
//! written here, so a player sees one format from either.

use std::fmt::Write as _;

use bytes::Bytes;

/// What a rendered media playlist says besides its segments.
pub struct PlaylistHeader<'a> {
    /// Segments are `{stream_name}-{seq}.ts`.
    pub stream_name: &'a str,
    pub target_duration_s: u64,
    /// EXT-X-MEDIA-SEQUENCE (the first listed segment's number).
    pub first_seq: u64,
    /// Discontinuities that left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuity_seq: u64,
    pub ended: bool,
}

/// Renders a media playlist of `(seq, duration_ms, discontinuity)` segments: the text and
/// where each segment URI ends in it (before its newline). The segmenter's playlists and
/// an HLS pull's are both written here, so a player sees one format from either.
pub fn render_media_playlist(
    h: &PlaylistHeader<'_>,
    listed: impl Iterator<Item = (u64, u64, bool)>,
) -> (Bytes, Vec<usize>) {
    let mut p = String::with_capacity(512);
    let mut uri_ends = Vec::new();
    let _ = write!(
        p,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        h.target_duration_s, h.first_seq
    );
    if h.discontinuity_seq > 0 {
        let _ = writeln!(p, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", h.discontinuity_seq);
    }
    for (seq, duration_ms, discontinuity) in listed {
        if discontinuity {
            p.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = write!(
            p,
            "#EXTINF:{}.{:03},\n{}-{}.ts",
            duration_ms / 1000,
            duration_ms % 1000,
            h.stream_name,
            seq
        );
        uri_ends.push(p.len());
        p.push('\n');
    }
    if h.ended {
        p.push_str("#EXT-X-ENDLIST\n");
    }
    (Bytes::from(p), uri_ends)
}
