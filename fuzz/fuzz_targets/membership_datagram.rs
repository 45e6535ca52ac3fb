//! The `membership_datagram` property (`foundation_fuzz_checks::membership_datagram`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::membership_datagram::check(data));
