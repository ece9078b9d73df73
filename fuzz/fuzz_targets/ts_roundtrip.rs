//! cargo-fuzz entry for [`edge_fuzz::ts_roundtrip`]: `cargo fuzz run ts_roundtrip` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::ts_roundtrip(data));
