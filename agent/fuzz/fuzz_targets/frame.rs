//! Fuzz target `frame`: see `aiscout_agent::fuzzing::frame`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_agent::fuzzing::frame(data));
