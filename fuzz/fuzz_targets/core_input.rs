//! The `core_input` property (`foundation_fuzz_checks::core_input`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::core_input::check(data));
