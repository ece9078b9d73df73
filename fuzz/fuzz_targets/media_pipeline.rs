//! cargo-fuzz entry for [`edge_fuzz::media_pipeline`]: `cargo fuzz run media_pipeline` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::media_pipeline(data));
