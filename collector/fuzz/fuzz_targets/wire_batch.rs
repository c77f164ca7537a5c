//! Arbitrary bytes as an agent's sightings batch: must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_collector::fuzzing::wire_batch(data));
