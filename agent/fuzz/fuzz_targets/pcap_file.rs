//! Fuzz target `pcap_file`: see `aiscout_agent::fuzzing::pcap_file`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aiscout_agent::fuzzing::pcap_file(data));
