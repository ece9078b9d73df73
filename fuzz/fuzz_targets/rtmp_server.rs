//! cargo-fuzz entry for [`edge_fuzz::rtmp_server`]: `cargo fuzz run rtmp_server` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::rtmp_server(data));
