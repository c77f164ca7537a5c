//! Fuzz target `tls_client_hello`: see `aiscout_agent::fuzzing::tls_client_hello`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_agent::fuzzing::tls_client_hello(data));
