//! cargo-fuzz entry for [`edge_fuzz::registry`]: `cargo fuzz run registry` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::registry(data));
