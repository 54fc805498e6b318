//! `bloodbank_fuzz::definitions` under libFuzzer (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bloodbank_fuzz::definitions(data));
