//! cargo-fuzz entry for [`edge_fuzz::llhls`]: `cargo fuzz run llhls` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::llhls(data));
