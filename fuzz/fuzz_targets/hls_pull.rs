//! cargo-fuzz entry for [`edge_fuzz::hls_pull`]: `cargo fuzz run hls_pull` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::hls_pull(data));
