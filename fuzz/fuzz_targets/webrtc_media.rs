//! cargo-fuzz entry for [`edge_fuzz::webrtc_media`]: `cargo fuzz run webrtc_media` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::webrtc_media(data));
