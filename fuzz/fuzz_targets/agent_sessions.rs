//! The `agent_sessions` property (`foundation_fuzz_checks::agent_sessions`) on what libFuzzer finds.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foundation_fuzz_checks::agent_sessions::check(data));
