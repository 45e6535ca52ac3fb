//! The `federation_wire` property (`foundation_fuzz_checks::federation_wire`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::federation_wire::check(data));
