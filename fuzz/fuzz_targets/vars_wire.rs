//! The `vars_wire` property (`foundation_fuzz_checks::vars_wire`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::vars_wire::check(data));
