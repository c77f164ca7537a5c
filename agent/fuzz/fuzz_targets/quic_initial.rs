//! Fuzz target `quic_initial`: see `aiscout_agent::fuzzing::quic_initial`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_agent::fuzzing::quic_initial(data));
