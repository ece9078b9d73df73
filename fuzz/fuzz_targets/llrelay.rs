//! cargo-fuzz entry for [`edge_fuzz::llrelay`]: `cargo fuzz run llrelay` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::llrelay(data));
