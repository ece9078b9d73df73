//! cargo-fuzz entry for [`edge_fuzz::m3u8`]: `cargo fuzz run m3u8` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::m3u8(data));
