//! The `storage_records` property (`foundation_fuzz_checks::storage_records`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::storage_records::check(data));
