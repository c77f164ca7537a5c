//! Arbitrary bytes as a catalog artifact: split, verify and decode must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_signatures::fuzzing::catalog_artifact(data));
