//! HLS: MPEG-TS muxing ([`ts`]) and live segmenting with playlists ([`segmenter`]).
//! Sans-IO like the rest of edge-core: frames in, segment bytes and playlists out.

pub mod m3u8;
pub mod segmenter;
pub mod ts;

pub use segmenter::{HlsConfig, HlsSnapshot, Segment, SegmentStore, Segmenter, VecStore};

#[cfg(test)]
mod tests;
