//! The `replicated_records` property (`foundation_fuzz_checks::replicated_records`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::replicated_records::check(data));
