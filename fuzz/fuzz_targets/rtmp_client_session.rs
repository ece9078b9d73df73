//! cargo-fuzz entry for [`edge_fuzz::rtmp_client_session`]: `cargo fuzz run rtmp_client_session` in fuzz/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::rtmp_client_session(data));
