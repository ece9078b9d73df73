//! cargo-fuzz entry for [`edge_fuzz::amf0`]: `cargo fuzz run amf0` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::amf0(data));
