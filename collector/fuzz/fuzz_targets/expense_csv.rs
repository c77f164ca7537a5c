//! Arbitrary bytes as an expense export, in every layout: must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_collector::fuzzing::expense_csv(data));
