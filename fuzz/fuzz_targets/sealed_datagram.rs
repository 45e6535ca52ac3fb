//! The `sealed_datagram` property (`foundation_fuzz_checks::sealed_datagram`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::sealed_datagram::check(data));
