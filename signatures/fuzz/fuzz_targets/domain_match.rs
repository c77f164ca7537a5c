//! Arbitrary bytes as a domain name, descriptor, process and model name: must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_signatures::fuzzing::domain_match(data));
