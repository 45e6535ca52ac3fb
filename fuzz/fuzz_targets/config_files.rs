//! The `config_files` property (`foundation_fuzz_checks::config_files`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::config_files::check(data));
