//! Arbitrary bytes as a people CSV: must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_collector::fuzzing::people_csv(data));
