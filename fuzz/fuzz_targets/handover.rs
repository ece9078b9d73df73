//! cargo-fuzz entry for [`edge_fuzz::handover`]: `cargo fuzz run handover` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::handover(data));
