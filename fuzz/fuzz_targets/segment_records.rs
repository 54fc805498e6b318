//! `bloodbank_fuzz::segment_records` under libFuzzer (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bloodbank_fuzz::segment_records(data));
