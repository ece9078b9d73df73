//! cargo-fuzz entry for [`edge_fuzz::llhls_request`]: `cargo fuzz run llhls_request` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::llhls_request(data));
