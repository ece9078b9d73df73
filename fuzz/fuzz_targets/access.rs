//! cargo-fuzz entry for [`edge_fuzz::access`]: `cargo fuzz run access` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::access(data));
