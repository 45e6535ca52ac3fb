//! The `local_adverts` property (`foundation_fuzz_checks::local_adverts`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::local_adverts::check(data));
