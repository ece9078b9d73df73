//! cargo-fuzz entry for [`edge_fuzz::ts_demux`]: `cargo fuzz run ts_demux` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::ts_demux(data));
