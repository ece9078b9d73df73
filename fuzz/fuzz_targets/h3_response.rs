//! cargo-fuzz entry for [`edge_fuzz::h3_response`]: `cargo fuzz run h3_response` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::h3_response(data));
