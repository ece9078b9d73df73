//! cargo-fuzz entry for [`edge_fuzz::rtmp_chunks`]: `cargo fuzz run rtmp_chunks` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::rtmp_chunks(data));
