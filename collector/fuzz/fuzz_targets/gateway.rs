//! Arbitrary bytes as a gateway or provider export, CSV and JSON: must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_collector::fuzzing::gateway(data));
