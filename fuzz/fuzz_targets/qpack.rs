//! cargo-fuzz entry for [`edge_fuzz::qpack`]: `cargo fuzz run qpack` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::qpack(data));
