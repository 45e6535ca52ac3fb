//! The `frame_decoder` property (`foundation_fuzz_checks::frame_decoder`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::frame_decoder::check(data));
