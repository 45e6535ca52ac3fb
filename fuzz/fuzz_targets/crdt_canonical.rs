//! The `crdt_canonical` property (`foundation_fuzz_checks::crdt_canonical`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::crdt_canonical::check(data));
