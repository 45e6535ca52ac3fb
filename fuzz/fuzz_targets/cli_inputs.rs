//! The `cli_inputs` property (`foundation_fuzz_checks::cli_inputs`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::cli_inputs::check(data));
