//! cargo-fuzz entry for [`edge_fuzz::http_response`]: `cargo fuzz run http_response` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::http_response(data));
