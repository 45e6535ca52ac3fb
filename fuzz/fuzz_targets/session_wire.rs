//! The `session_wire` property (`foundation_fuzz_checks::session_wire`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::session_wire::check(data));
