//! cargo-fuzz entry for [`edge_fuzz::http`]: `cargo fuzz run http` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::http(data));
