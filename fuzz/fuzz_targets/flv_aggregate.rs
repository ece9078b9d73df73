//! cargo-fuzz entry for [`edge_fuzz::flv_aggregate`]: `cargo fuzz run flv_aggregate` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::flv_aggregate(data));
