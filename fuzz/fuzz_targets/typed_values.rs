//! The `typed_values` property (`foundation_fuzz_checks::typed_values`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::typed_values::check(data));
