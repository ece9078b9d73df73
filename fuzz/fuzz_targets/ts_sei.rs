//! cargo-fuzz entry for [`edge_fuzz::ts_sei`]: `cargo fuzz run ts_sei` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::ts_sei(data));
