//! HLS: MPEG-TS muxing ([`ts`]) and live segmenting with playlists ([`segmenter`]).
//! Sans-IO like the rest of edge-core: frames in, segment bytes and playlists out.

pub mod blocking;
pub mod catalog;
pub mod demux;
pub mod feed;
pub mod fmp4;
pub mod hinted;
pub mod llhls;
pub mod llrelay;
pub mod llsnapshot;
pub mod m3u8;
pub mod packets;
pub mod playlist;
pub mod pull;
pub mod segmenter;
pub mod ts;
pub mod tsscan;

pub use segmenter::{
    HlsConfig, HlsSnapshot, Segment, SegmentData, SegmentStore, Segmenter, SegmenterError, VecStore,
};

#[cfg(test)]
mod lltests;
#[cfg(test)]
mod tests;
