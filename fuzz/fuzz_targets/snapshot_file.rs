//! The `snapshot_file` property (`foundation_fuzz_checks::snapshot_file`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::snapshot_file::check(data));
