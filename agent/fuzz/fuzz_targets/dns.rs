//! Fuzz target `dns`: see `aiscout_agent::fuzzing::dns`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_agent::fuzzing::dns(data));
